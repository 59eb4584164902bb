"""Text for character-level language models: the verified Anna Karenina, or any UTF-8 file.

``anna.txt`` (the Udacity char-RNN lessons' copy, fetched into the cache when no data root has
it) is checked against its registered size and sha256 (``playbook.data.sources``), then read in
text mode: its CRLF line endings become ``\\n``, which gives the lessons' 1,985,223 characters
over 83 symbols. Any other UTF-8 file can be given by path (no checksum then). The vocabulary
is built from the whole text, so it covers both splits, and is saved with the run
(``vocab.json``) for sampling.

Truncated backpropagation through time reads the text as ``batch_size`` parallel streams:
``stream_batches`` lays it out so that batch ``i + 1`` continues, stream by stream, where batch
``i`` stopped (the seed notebook's ``get_batches``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from playbook.data import fetch, sources
from playbook.data.paths import DataError, verified_file

ANNA = sources.ANNA  # Size, sha256, URLs and licence: the registry's entry.


class VocabError(ValueError):
  """Text has characters the model's vocabulary does not know."""


def read_text(path: str | Path) -> str:
  """A UTF-8 file in text mode (universal newlines: CRLF -> LF), with clear errors."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise DataError(f"Missing text file {path}. Give an existing UTF-8 text file with "
                    "--config.data.path, or leave it empty for anna.txt from the data directory.")
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise DataError(f"Text file {path} is not UTF-8 ({e.reason} at byte {e.start}). Convert it, "
                    "e.g. iconv -f latin1 -t utf-8, and pass the converted file.") from e
  if len(text) < 2:
    raise DataError(f"Text file {path} holds {len(text)} characters: nothing to learn from.")
  return text


def load_text(cfg) -> str:
  """``cfg.path`` if set (any UTF-8 file), else the verified ``anna.txt`` from the data root
  (fetched into the cache when no root has it)."""
  if cfg.path:
    return read_text(cfg.path)
  path = fetch.ensure(ANNA, cfg.dir or None)
  hint = (f"it is recurrent-neural-networks/char-rnn/data/anna.txt of "
          f"github.com/udacity/deep-learning-v2-pytorch ({ANNA.urls[0]})")
  verified_file(path, size=ANNA.size, sha256=ANNA.digests[0].sha256, source=hint)
  return read_text(path)


class CharVocab:
  """Characters <-> integer ids, sorted by code point (so the same text gives the same ids)."""

  def __init__(self, chars: list[str]):
    self.chars = list(chars)
    self.index = {c: i for i, c in enumerate(self.chars)}

  @classmethod
  def from_text(cls, text: str) -> "CharVocab":
    return cls(sorted(set(text)))

  def __len__(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    unknown = sorted(set(text) - self.index.keys())
    if unknown:
      raise VocabError(f"{len(unknown)} character(s) not in the vocabulary: "
                       f"{', '.join(repr(c) for c in unknown)}. The vocabulary has "
                       f"{len(self)} characters: {''.join(self.chars)!r}.")
    return np.array([self.index[c] for c in text], np.int32)

  def decode(self, ids) -> str:
    return "".join(self.chars[i] for i in np.asarray(ids).ravel())

  def save(self, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"chars": self.chars}, ensure_ascii=False, indent=1) + "\n")
    tmp.replace(path)
    return path

  @classmethod
  def load(cls, path: str | Path) -> "CharVocab":
    path = Path(path)
    if not path.is_file():
      raise DataError(f"No vocabulary at {path}: is this the workdir of a char_lstm run?")
    return cls(json.loads(path.read_text())["chars"])


def split_by_position(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """The first ``1 - val_fraction`` of the text for training, the rest for validation."""
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}.")
  cut = int(len(ids) * (1.0 - val_fraction))
  return ids[:cut], ids[cut:]


def stream_batches(ids: np.ndarray, batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
  """``ids`` as ``batch_size`` streams cut into windows of ``seq_len``, in batch order.

  Returns ``{"inputs", "targets"}`` of shape (num_batches * batch_size, seq_len): rows
  ``i*batch_size .. (i+1)*batch_size - 1`` are batch ``i``, and its row ``b`` is the ``i``-th
  window of stream ``b``; targets are the inputs shifted by one character. The ragged tail that
  fills no whole batch is dropped.
  """
  num_batches = (len(ids) - 1) // (batch_size * seq_len)
  if num_batches == 0:
    raise DataError(f"The text split has {len(ids)} characters: fewer than one batch of "
                    f"{batch_size} streams x {seq_len} (+1). Use a longer text or lower "
                    "train.batch_size / data.seq_len.")
  length = num_batches * seq_len

  def windows(start):
    streams = ids[start:start + batch_size * length].reshape(batch_size, length)
    return (streams.reshape(batch_size, num_batches, seq_len).transpose(1, 0, 2)
            .reshape(num_batches * batch_size, seq_len).astype(np.int32))

  return {"inputs": windows(0), "targets": windows(1)}
