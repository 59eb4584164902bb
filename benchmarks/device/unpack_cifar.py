"""Rebuilds {train,test}/<class>/*.jpg and images.sha256 (same order and format as the original
index, so the reader's check of the index's published sha256 verifies every byte end to end)."""
import hashlib, sys
from pathlib import Path
src = Path(sys.argv[1]); dst = Path(sys.argv[2])
lines = []
with open(src / "cifar.bin", "rb") as b:
  for row in (src / "cifar.idx").read_text().splitlines():
    p, n = row.split("\t"); data = b.read(int(n))
    (dst / p).parent.mkdir(parents=True, exist_ok=True); (dst / p).write_bytes(data)
    lines.append(f"{hashlib.sha256(data).hexdigest()}  {p}\n")
(dst / "images.sha256").write_text("".join(lines))
print("unpacked", len(lines), "images; index sha256", hashlib.sha256("".join(lines).encode()).hexdigest())
