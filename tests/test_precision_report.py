"""The README's mixed-precision table: a float32 run and its bfloat16 twin recorded as a pair."""

from __future__ import annotations

import json

import pytest

from playbook.run import commands, precision_report, results

ENV = {"platform": "cpu", "cpu": "Test CPU", "cpu_count": 2}


def write_run(workdir, precision, per_seed, **changes):
  config = commands.default_config("mnist_mlp") | {"precision": precision,
                                                  "num_seeds": len(per_seed)}
  config["train"] = dict(config["train"], **changes)
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config))
  (workdir / "results.json").write_text(json.dumps({
      "study": "mnist_mlp", "test_accuracy": {"per_seed": per_seed}, "train_seconds": 60.0,
      "environment": ENV}))
  return workdir


def test_a_pair_is_recorded_with_its_commands_and_welch_test(tmp_path):
  f32 = write_run(tmp_path / "f32", "float32", [0.990, 0.991, 0.989])
  bf16 = write_run(tmp_path / "bf16", "bfloat16", [0.989, 0.990, 0.991])
  path = precision_report.add_pair(f32, bf16, root=tmp_path / "results")
  entry = json.loads(path.read_text())
  assert entry["bfloat16"]["command"].endswith("--config.precision=bfloat16")
  assert entry["bfloat16_minus_float32"]["test"] == "welch"
  assert entry["bfloat16_minus_float32"]["difference"] == pytest.approx(0.0, abs=1e-9)
  table = precision_report.accuracy_table(tmp_path / "results")
  assert "| `mnist_mlp` test accuracy | 99.00 ± 0.10 % (n = 3) | 99.00 ± 0.10 % (n = 3) | +0.00 points, p = 1.00 (Welch) |" in table


@pytest.mark.parametrize("order, changes, message", [
    (("bfloat16", "float32"), {}, "pass the float32 run first"),
    (("float32", "bfloat16"), {"num_epochs": 7}, "differ in more than their precision: train.num_epochs"),
])
def test_pairs_that_do_not_compare_are_refused(tmp_path, order, changes, message):
  first = write_run(tmp_path / "a", order[0], [0.99, 0.98])
  second = write_run(tmp_path / "b", order[1], [0.99, 0.98], **changes)
  with pytest.raises(results.ReportError, match=message):
    precision_report.add_pair(first, second, root=tmp_path / "results")


def test_keys_a_run_predates_and_auto_resolved_sources_are_no_difference(tmp_path):
  f32 = write_run(tmp_path / "f32", "float32", [0.990, 0.991])
  config = json.loads((f32 / "config.json").read_text())
  del config["sweep"]  # Made before sweeps existed, with the source spelt out.
  config["data"]["source"] = "files"
  (f32 / "config.json").write_text(json.dumps(config))
  bf16 = write_run(tmp_path / "bf16", "bfloat16", [0.989, 0.990])
  results = json.loads((bf16 / "results.json").read_text())
  (bf16 / "results.json").write_text(json.dumps(results | {"data_copy": "mnist (files)"}))
  entry = json.loads(precision_report.add_pair(f32, bf16, root=tmp_path / "r").read_text())
  assert entry["bfloat16_minus_float32"]["test"] == "bootstrap"
