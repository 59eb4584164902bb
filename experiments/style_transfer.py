"""Neural style transfer (Gatys, Ecker, Bethge, CVPR 2016): Tuebingen in the style of The Starry
Night, VGG16 features, L-BFGS over the pixels, coarse to fine 256 -> 512.

    python -m launch.main --config=experiments/style_transfer.py --workdir=runs/style_tubingen \\
        [--config.style=style/the_scream.jpg] [--config.colors=luminance] \\
        [--config.backbone.conv_impl=winograd]

Image paths are relative to $PLAYBOOK_DATA_DIR (or absolute). Writes result.png,
plots/side_by_side.png, plots/loss.png, progress.gif (gif_every > 0), metrics.jsonl and
results.json (final loss terms, wall time) under the workdir. A finished workdir is not redone.
The same code behind ``python -m launch.stylize`` (one pair of files, no workdir). Result: this
full-size config was not run on the shared 2-core machine; the README's gallery (Adam, 256 px,
100 steps, via launch.stylize) lists the runs that were, with commands and wall times. ``:quick``
(48 -> 64 px, 5 + 5 steps) is what the tests run (with Adam).
"""

from __future__ import annotations

import json
from pathlib import Path

from playbook import rundir, stylize
from playbook.data.paths import data_root


def get_config(arg: str = ""):
  config = stylize.default_config()
  config.sizes = (256, 512)
  config.steps = (150, 100)
  config.gif_every = 10
  return stylize.quick(config) if arg == "quick" else config


def _image_path(config, name: str) -> Path:
  path = Path(name).expanduser()
  return path if path.is_absolute() else data_root(config.data.dir or None) / path


def run(config, workdir) -> dict:
  workdir = rundir.prepare(workdir, config)
  done = workdir / "results.json"
  if done.exists():
    print(f"{workdir} already holds a finished run: {done}")
    return json.loads(done.read_text())
  result, content, style = stylize.stylize_files(
      config, _image_path(config, config.content), _image_path(config, config.style))
  written = stylize.save_outputs(
      result, content, style, image_path=workdir / "result.png",
      figure_path=workdir / "plots" / "side_by_side.png",
      gif_path=workdir / "progress.gif" if config.gif_every else None,
      loss_path=workdir / "plots" / "loss.png")
  with open(workdir / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in result.history)
  results = {"final_loss": result.parts, "seconds": round(result.seconds, 2),
             "steps": len(result.history), "size": list(result.image.shape[:2]),
             "outputs": written, "environment": rundir.environment()}
  rundir.write_results(workdir, results)
  print(f"loss {result.parts['total']:.4g} (content {result.parts['content']:.4g}, style "
        f"{result.parts['style']:.4g}, tv {result.parts['tv']:.4g}) in {result.seconds:.0f} s; "
        f"result in {written['image']}")
  return results
