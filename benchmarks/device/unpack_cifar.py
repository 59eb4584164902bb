"""Rebuilds {train,test}/<class>/*.jpg and images.sha256 from pack_cifar.py's files.

    python benchmarks/device/unpack_cifar.py .devdata .devdata/data/cifar10

The index is written in the original's order and format, so the reader's check of its published
sha256 verifies every byte end to end.
"""

import hashlib
import sys
from pathlib import Path


def unpack(source: Path, out: Path) -> str:
  lines = []
  with open(source / "cifar.bin", "rb") as blob:
    for row in (source / "cifar.idx").read_text().splitlines():
      path, length = row.split("\t")
      data = blob.read(int(length))
      (out / path).parent.mkdir(parents=True, exist_ok=True)
      (out / path).write_bytes(data)
      lines.append(f"{hashlib.sha256(data).hexdigest()}  {path}\n")
  index = "".join(lines)
  (out / "images.sha256").write_text(index)
  print("unpacked", len(lines), "images; index sha256", hashlib.sha256(index.encode()).hexdigest())
  return index


if __name__ == "__main__":
  unpack(Path(sys.argv[1]), Path(sys.argv[2]))
