"""A progress bar over training steps (rate and ETA), quiet with --noprogress and under CI."""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_bar(total_steps: int, initial: int, *, enabled: bool, desc: str) -> tqdm:
  disable = not enabled or bool(os.environ.get("CI"))
  return tqdm(total=total_steps, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
              disable=disable, smoothing=0.3)
