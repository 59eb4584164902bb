"""launch.compare on run directories written here: table rows and mean ± std, the Welch and
bootstrap significance, sweep variants as rows, the curves figure, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT
from playbook.run import compare
from playbook.run.rundir import RunDirError


def write_run(workdir, per_seed=None, *, variants=None, epochs=3, test_curve=False,
              steps_per_second=100.0, wall_seconds=60.0):
  """A finished run as launch.main leaves it: config, results and a metrics log whose val rows
  (per seed, variant-major for sweeps) end at each seed's final value."""
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps({"study": "toy", "task": "classify"}))
  results = {"study": "toy", "train_steps_per_second": steps_per_second,
             "wall_seconds": wall_seconds}
  if variants is None:
    results |= {"test_accuracy": mean_std(per_seed), "test_loss": mean_std(per_seed),
                "num_seeds": len(per_seed)}
    finals = list(per_seed)
  else:
    results["variants"] = [{"name": name, "values": {"optim.learning_rate": float(name[14:])},
                            "test_accuracy": mean_std(v)} for name, v in variants.items()]
    results["num_seeds"] = len(next(iter(variants.values())))
    finals = [x for v in variants.values() for x in v]
  (workdir / "results.json").write_text(json.dumps(results))
  rows = []
  for epoch in range(1, epochs + 1):
    values = [x * epoch / epochs for x in finals]
    values = values[0] if len(values) == 1 else values
    rows.append({"step": 10 * epoch, "split": "train", "accuracy": values, "xent": 1.0})
    rows.append({"step": 10 * epoch, "split": "val", "accuracy": values, "xent": 1.0})
    if test_curve:
      rows.append({"step": 10 * epoch, "split": "test_curve", "accuracy": values})
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return workdir


def mean_std(values):
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
          else 0.0, "per_seed": values.tolist()}


def run_cli(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", "launch.compare", *map(str, args)], cwd=cwd,
                        capture_output=True, text=True, timeout=120)


BASE = [0.980, 0.981, 0.982, 0.979, 0.983]
BETTER = [0.985, 0.987, 0.986, 0.988, 0.984]


def test_rows_hold_mean_std_seeds_and_speed(tmp_path):
  a = write_run(tmp_path / "a", BASE)
  b = write_run(tmp_path / "b", BETTER, steps_per_second=250.0, wall_seconds=30.0)
  rows = [r for d in (a, b) for r in compare.load_rows(d, "test_accuracy")]
  assert [r.name for r in rows] == [str(a), str(b)]
  assert rows[1].mean == pytest.approx(np.mean(BETTER))
  assert rows[1].std == pytest.approx(np.std(BETTER, ddof=1))
  cells = compare.table(rows, "test_accuracy")
  assert cells[0][:5] == ["run", "test_accuracy (mean ± std)", "seeds", "steps/s", "wall s"]
  assert cells[1][1:6] == ["0.9810 ± 0.0016", "5", "100.0", "60", "(baseline)"]
  assert cells[2][1:5] == ["0.9860 ± 0.0016", "5", "250.0", "30"]


def test_welch_p_value_matches_scipy(tmp_path):
  a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([2.0, 4.0, 6.0, 8.0, 11.0])
  expected = stats.ttest_ind(a, b, equal_var=False).pvalue
  assert compare.welch_p(a, b) == pytest.approx(expected)
  # By hand: variances 2.5 and 12.2, t = -3.2 / sqrt(2.94) = -1.866, Welch df = 5.57.
  t, df = -3.2 / np.sqrt(2.94), 2.94 ** 2 / ((2.5 / 5) ** 2 / 4 + (12.2 / 5) ** 2 / 4)
  assert compare.welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df))
  assert compare.welch_p(a, b) == pytest.approx(0.1150, abs=1e-4)
  rows = [r for d, v in (("a", BASE), ("b", BETTER))
          for r in compare.load_rows(write_run(tmp_path / d, v), "test_accuracy")]
  p = stats.ttest_ind(BETTER, BASE, equal_var=False).pvalue
  assert compare.significance(rows[0], rows[1]) == f"Δ {np.mean(BETTER) - np.mean(BASE):+.4f}, " \
                                                   f"p={p:.3g} (Welch)"


def test_two_seeds_get_a_bootstrap_interval_spanning_the_seed_to_seed_differences(tmp_path):
  base = compare.load_rows(write_run(tmp_path / "a", [0.900, 0.902]), "test_accuracy")[0]
  other = compare.load_rows(write_run(tmp_path / "b", [0.950, 0.953]), "test_accuracy")[0]
  low, high = compare.bootstrap_interval(base.values, other.values)
  # Each resampled mean of 2 seeds is one seed, the other or their mean (1 in 4 each way for the
  # extremes): the percentiles are the smallest and largest differences, 0.950-0.902, 0.953-0.900.
  assert (low, high) == pytest.approx((0.048, 0.053))
  assert (low, high) == compare.bootstrap_interval(base.values, other.values)  # Fixed seed.
  assert compare.significance(base, other) == "Δ +0.0505, bootstrap interval [+0.0480, +0.0530]"
  assert "claims no 95 % coverage" in compare.caveat([base, other])
  assert compare.caveat([base, base]) is None


def test_one_seed_has_no_significance(tmp_path):
  base = compare.load_rows(write_run(tmp_path / "a", BASE), "test_accuracy")[0]
  one = compare.load_rows(write_run(tmp_path / "b", [0.99]), "test_accuracy")[0]
  assert compare.significance(base, one) == "n/a (1 seed)"
  assert compare.significance(one, base) == "n/a (1 seed)"


def test_sweep_variants_become_rows_with_their_own_curves(tmp_path):
  variants = {"learning_rate=0.001": [0.90, 0.91, 0.92], "learning_rate=0.01": [0.95, 0.96, 0.97]}
  sweep = write_run(tmp_path / "sweep", variants=variants, test_curve=True)
  rows = compare.load_rows(sweep, "test_accuracy")
  assert [r.name for r in rows] == [f"{sweep} [learning_rate=0.001]",
                                    f"{sweep} [learning_rate=0.01]"]
  assert [r.mean for r in rows] == pytest.approx([0.91, 0.96])
  assert rows[1].curves["val"].shape == (3, 3)
  np.testing.assert_allclose(rows[1].curves["val"][-1], [0.95, 0.96, 0.97])
  np.testing.assert_allclose(rows[0].curves["test_curve"][0], np.array([0.90, 0.91, 0.92]) / 3)
  assert rows[0].curve_key == "accuracy"


def test_per_seed_lists_and_scalars_are_metrics_too(tmp_path):
  """char_lm stores best_val_nats_per_char as a list per seed, or a number for one seed."""
  assert compare.seed_values([1.2, 1.4])[:2] == pytest.approx((1.3, np.std([1.2, 1.4], ddof=1)))
  assert compare.seed_values(1.25)[:2] == (1.25, 0.0)
  assert compare.metric_names({"best_val_nats_per_char": [1.2, 1.3], "wall_seconds": 3.0,
                               "best_epoch": 4, "test_loss": {"mean": 0.1}}) == \
      ["best_val_nats_per_char", "test_loss"]
  assert compare.curve_key("best_val_nats_per_char", {"xent", "accuracy"}) == "xent"
  assert compare.curve_key("test_loss", {"xent", "accuracy"}) == "xent"


def test_unreadable_and_missing_runs_are_refused(tmp_path):
  with pytest.raises(RunDirError, match="does not exist"):
    compare.load_rows(tmp_path / "nowhere", "test_accuracy")
  bad = write_run(tmp_path / "bad", BASE)
  (bad / "results.json").write_text("{not json")
  with pytest.raises(RunDirError, match="not readable JSON"):
    compare.load_rows(bad, "test_accuracy")


def test_figure_and_markdown_are_written(tmp_path):
  a = write_run(tmp_path / "a", BASE, test_curve=True)
  b = write_run(tmp_path / "b", BETTER)
  text, md, png = compare.compare([a, b], "test_accuracy", tmp_path / "out" / "cmp")
  assert png == tmp_path / "out" / "cmp.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
  lines = md.read_text().splitlines()
  assert len(lines) == 4 and lines[0].startswith("| run | test_accuracy (mean ± std) |")
  assert "(Welch)" in lines[3] and "(Welch)" in text.splitlines()[3]


def test_cli_prints_the_table_and_writes_its_files(tmp_path):
  a = write_run(tmp_path / "a", BASE)
  b = write_run(tmp_path / "b", [0.99, 0.991])
  out = run_cli(a, b, "--metric=test_loss", f"--out={tmp_path / 'cmp'}")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0].split()[:3] == ["run", "test_loss", "(mean"]
  assert lines[3].startswith(str(b)) and "bootstrap interval [" in lines[3]
  assert lines[5].startswith("Bootstrap rows have fewer than 3 seeds a side")
  assert (tmp_path / "cmp.md").read_text().rstrip().endswith("Welch's t-test.")
  assert (tmp_path / "cmp.md").is_file() and (tmp_path / "cmp.png").stat().st_size > 0


def test_cli_writes_beside_the_first_run_by_default(tmp_path):
  a = write_run(tmp_path / "runs" / "a", BASE)
  out = run_cli(a, write_run(tmp_path / "runs" / "b", BETTER))
  assert out.returncode == 0, out.stderr
  assert out.stdout.rstrip().endswith(f"table in {tmp_path / 'runs' / 'compare.md'}; curves in "
                                      f"{tmp_path / 'runs' / 'compare.png'}")


@pytest.mark.parametrize("case,message", [
    ("no_results", "is not finished: no results.json; run or resume it first."),
    ("unknown_metric", "has no metric 'top5'; its metrics: test_accuracy, test_loss."),
])
def test_cli_errors_are_one_line_and_exit_1(tmp_path, case, message):
  run = write_run(tmp_path / "run", BASE)
  if case == "no_results":
    (run / "results.json").unlink()
  out = run_cli(run, "--metric=top5", f"--out={tmp_path / 'cmp'}")
  assert out.returncode == 1
  assert out.stderr.splitlines() == [f"error: {run} {message}"]
  assert not (tmp_path / "cmp.md").exists()


def test_json_holds_each_rows_figures_and_its_test(tmp_path):
  a = write_run(tmp_path / "a", BASE)
  b = write_run(tmp_path / "b", BETTER)
  compare.compare([a, b], "test_accuracy", tmp_path / "cmp")
  data = json.loads((tmp_path / "cmp.json").read_text())
  base, other = data["rows"]
  assert data["metric"] == "test_accuracy" and base["vs_first"] == {"test": None, "why": "baseline"}
  assert other["num_seeds"] == len(BETTER) and other["mean"] == pytest.approx(np.mean(BETTER))
  assert other["vs_first"]["test"] == "welch"
  assert other["vs_first"]["p_value"] == pytest.approx(compare.welch_p(np.array(BASE),
                                                                       np.array(BETTER)))


def test_without_a_metric_the_studys_headline_is_compared(tmp_path):
  run = write_run(tmp_path / "run", BASE)
  assert compare.headline_metric(run) == "test_accuracy"
  (tmp_path / "lm").mkdir()
  (tmp_path / "lm" / "results.json").write_text(json.dumps(
      {"best_val_nats_per_char": [1.30, 1.28], "final_train_nats_per_char": [1.1, 1.1]}))
  assert compare.headline_metric(tmp_path / "lm") == "best_val_nats_per_char"
  (tmp_path / "lm" / "results.json").write_text(json.dumps({"final_loss": 2.0}))
  with pytest.raises(RunDirError, match=r"name one of its metrics with --metric \(final_loss\)"):
    compare.headline_metric(tmp_path / "lm")
