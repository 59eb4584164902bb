"""A study page's sweep tables: a sweep run recorded, then printed with each variant against the
config's own."""

from __future__ import annotations

import json

import pytest

from playbook.run import commands, results, sweep_report

ENV = {"platform": "cpu", "cpu": "Test CPU", "cpu_count": 2}
MEAN_STD = lambda *v: {"mean": sum(v) / len(v), "per_seed": list(v), "std": 0.0}


def write_sweep(workdir, accuracies: dict[float, list[float]], best: float):
  config = commands.default_config("mnist_mlp") | {"num_seeds": 3}
  config["sweep"] = dict(config["sweep"], learning_rate=",".join(f"{v:g}" for v in accuracies))
  variants = [{"name": f"learning_rate={lr:g}", "values": {"optim.learning_rate": lr},
               "best_epochs": [5, 6, 7], "test_accuracy": MEAN_STD(*acc),
               "test_loss": MEAN_STD(0.1, 0.1, 0.1), "val_accuracy": MEAN_STD(*acc)}
              for lr, acc in accuracies.items()]
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps(config))
  (workdir / "results.json").write_text(json.dumps({
      "study": "mnist_mlp", "variants": variants, "best_variant": f"learning_rate={best:g}",
      "test_accuracy": variants[0]["test_accuracy"], "wall_seconds": 30.0, "environment": ENV}))
  return workdir


def test_each_variant_is_compared_with_the_configs_own_and_the_pick_is_bold(tmp_path):
  own = commands.default_config("mnist_mlp")["optim"]["learning_rate"]
  run = write_sweep(tmp_path / "lr_sweep", {own / 10: [0.970, 0.971, 0.972],
                                            own: [0.990, 0.991, 0.992]}, best=own)
  entry = json.loads(sweep_report.add_sweep(run, root=tmp_path / "results").read_text())
  assert entry["own_variant"] == f"learning_rate={own:g}"
  assert entry["command"].endswith(f"--config.sweep.learning_rate={own / 10:g},{own:g}")
  table = sweep_report.block("mnist_mlp", tmp_path / "results").splitlines()
  assert table[6].endswith(f"| vs learning_rate={own:g} (the config's own) |")
  low, high = table[8], table[9]
  assert low.startswith(f"| {own / 10:g} | 97.10 ± 0.10 % | 97.00, 97.10, 97.20 "
                        "| 97.10 ± 0.10 % |")
  assert low.endswith("| 5, 6, 7 | -2.00 points, p = 0.00 (Welch) |")
  assert high == (f"| {own:g} | **99.10 ± 0.10 %** | 99.00, 99.10, 99.20 | 99.10 ± 0.10 % "
                  "| 5, 6, 7 | (baseline) |")


def test_a_plain_run_is_not_a_sweep(tmp_path):
  run = tmp_path / "plain"
  run.mkdir()
  (run / "config.json").write_text(json.dumps(commands.default_config("mnist_mlp")))
  (run / "results.json").write_text(json.dumps({"test_accuracy": MEAN_STD(0.99)}))
  with pytest.raises(results.ReportError, match="is not a sweep"):
    sweep_report.add_sweep(run, root=tmp_path / "results")


def test_recorded_sweeps_stay_out_of_the_results_table(tmp_path):
  run = write_sweep(tmp_path / "lr_sweep", {0.001: [0.99, 0.99, 0.99]}, best=0.001)
  root = tmp_path / "results"
  assert sweep_report.add_sweep(run, root=root).parent == root / "sweeps"
  assert results.records(root) == []
