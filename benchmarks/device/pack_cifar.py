"""Packs the staged CIFAR-10 JPEG copy into one file (cifar.bin + cifar.idx) for the device.

    python benchmarks/device/pack_cifar.py $PLAYBOOK_DATA_DIR/cifar10 .devdata
"""

import sys
from pathlib import Path


def pack(source: Path, out: Path) -> None:
  """The images in ``images.sha256``'s order, concatenated; the index keeps path and length."""
  paths = [line.split("  ", 1)[1].rstrip("\n") for line in (source / "images.sha256").open()]
  with open(out / "cifar.bin", "wb") as blob, open(out / "cifar.idx", "w") as index:
    for path in paths:
      data = (source / path).read_bytes()
      blob.write(data)
      index.write(f"{path}\t{len(data)}\n")


if __name__ == "__main__":
  pack(Path(sys.argv[1]), Path(sys.argv[2]))
