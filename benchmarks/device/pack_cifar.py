"""Packs the staged CIFAR-10 JPEG copy into one file (cifar.bin + cifar.idx) for the device."""
import sys
from pathlib import Path
src = Path(sys.argv[1]); out = Path(sys.argv[2])
paths = [line.split("  ", 1)[1].rstrip("\n") for line in (src / "images.sha256").open()]
with open(out / "cifar.bin", "wb") as b, open(out / "cifar.idx", "w") as idx:
  for p in paths:
    data = (src / p).read_bytes(); b.write(data); idx.write(f"{p}\t{len(data)}\n")
