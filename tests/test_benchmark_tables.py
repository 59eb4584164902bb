"""benchmarks/README.md's tables of figures are what ``python -m benchmarks.tables`` prints from
benchmarks/results/."""

from __future__ import annotations

import json

from benchmarks import tables


def test_every_block_of_the_committed_readme_is_up_to_date():
  assert tables.stale_blocks() == [], "run `python -m benchmarks.tables --write`"


def test_precision_rows_come_from_the_json(tmp_path):
  models = {"mnist_mlp": {"step_ms": {"float32": 3.88, "bfloat16": 5.43},
                          "ratio_bf16_over_f32": 1.4005},
            "char_lstm": {"step_ms": {"float32": 1897.2, "bfloat16": 3086.4},
                          "ratio_bf16_over_f32": 1.6268}}
  (tmp_path / "precision_cpu.json").write_text(json.dumps(
      {"models": models, "matmul_gflop_s": {"float32": 150.0, "bfloat16": 200.0}}))
  assert tables.precision(tmp_path).splitlines()[2:] == [
      "| mnist_mlp | 3.9 | 5.4 | 1.40 |",
      "| char_lstm 2x512 | 1897 | 3086 | 1.63 |",
      "| matmul 2048² (GFLOP/s) | 150 | 200 | (1.33x faster) |"]


def test_check_names_a_stale_block(tmp_path):
  readme = tmp_path / "README.md"
  begin, _ = tables.markers("precision")
  text = tables.README.read_text()
  readme.write_text(text.replace(f"{begin}\n", f"{begin}\n| a hand-typed row |\n"))
  assert tables.stale_blocks(readme=readme) == ["precision"]
  assert tables.write_blocks(readme=readme)
  assert readme.read_text() == text
