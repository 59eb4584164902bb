"""Metrics to ``metrics.jsonl`` (one JSON object per line) and TensorBoard event files.

TensorBoard goes through CLU's ``metric_writers.SummaryWriter``. The JSONL side is ours because
CLU's writers take one scalar per name, while a row here holds a value per seed (or per swept
variant) of one split, and a resumed run must drop the rows its killed predecessor wrote after the
checkpoint (``truncate_after``): neither fits ``write_scalars``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plain(value):
  """A JSON-able float, or list of floats for per-seed metrics."""
  value = np.asarray(value)
  return float(value) if value.ndim == 0 else value.astype(float).tolist()


class MetricWriter:
  """Appends ``{"step": s, "split": ..., name: value}`` rows; mean over seeds goes to TensorBoard.

  With several JAX processes only process 0 writes (``active`` defaults to that); on the others
  every method does nothing.
  """

  def __init__(self, workdir: str | Path, *, tensorboard: bool = True,
               active: bool | None = None):
    self.path = Path(workdir) / "metrics.jsonl"
    self._tb = None
    if active is None:
      import jax
      active = jax.process_index() == 0
    self.active = active
    if tensorboard and active:
      from clu import metric_writers  # Imports TensorFlow's summary writer: only when asked.
      self._tb = metric_writers.SummaryWriter(str(Path(workdir) / "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops rows past ``step``, and any test row: a resumed run rewrites what the killed (or
    finished) run logged after its checkpoint, and evaluates the test set once more at its end."""
    if not self.active or not self.path.exists():
      return
    keep = lambda row: row["step"] <= step and row["split"] != "test"
    rows = [line for line in self.path.read_text().splitlines() if line and keep(json.loads(line))]
    tmp = self.path.with_suffix(".tmp")
    tmp.write_text("".join(r + "\n" for r in rows))
    tmp.replace(self.path)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.active:
      return
    row = {"step": int(step), "split": split} | {k: _plain(v) for k, v in metrics.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      self._tb.write_scalars(int(step), {f"{split}/{k}": float(np.mean(v))
                                         for k, v in metrics.items()})

  def close(self):
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()


def read_metrics(workdir: str | Path) -> list[dict]:
  path = Path(workdir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line]
