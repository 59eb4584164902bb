"""docs/img/ publishes a style transfer's pictures only where its images are in the public
domain."""

from __future__ import annotations

import json

import pytest

from playbook.run import docimages


@pytest.mark.parametrize("config, publishable", [
    ({"task": "stylize", "content": "style/wave.jpg", "style": "style/starry_night.jpg"}, True),
    ({"task": "stylize", "content": "style/tubingen.jpg", "style": "style/starry_night.jpg"},
     False),  # A photograph whose licence is unverified.
    ({"task": "stylize", "content": "style/wave.jpg", "style": "style/hockney.jpg"}, False),
    ({"task": "stylize", "content": "/somewhere/mine.jpg", "style": "style/wave.jpg"}, False),
    ({"task": "classify", "study": "mnist_mlp"}, True),
])
def test_only_public_domain_style_pictures_are_published(tmp_path, config, publishable):
  (tmp_path / "config.json").write_text(json.dumps(config))
  assert docimages.publishable(tmp_path) is publishable
