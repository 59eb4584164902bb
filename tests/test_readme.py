"""The README and docs/ tell the truth: their results tables are what ``launch.report`` prints from
results/, their pictures exist, and their shell commands run.

Every ```bash block of README.md and docs/**/*.md is a list of commands, unless the line above
it is ``<!-- untested: why -->``. Each command is run the way a reader would run it, made small:
``python -m launch.main`` gets the config's ``:quick`` variant and a workdir in a temporary
folder, ``launch.stylize`` a thumbnail and two steps, outputs go to the temporary folder, and
``launch.report`` writes into a copy of results/. To stay within a couple of minutes:

- a ``launch.main`` command of a study in FAST_STUDIES runs (once: a repeat of a config that
  already ran, e.g. a resume, only has its config checked); any other has its config parsed and
  validated by its task, nothing trained (``PLAYBOOK_TEST_DOCS=all`` runs them all);
- another entry point runs when the runs it reads were trained here (the first command of the
  costly ones, RUN_ONCE), otherwise its flags are checked against the entry point's
  definitions;
- a command whose data is missing from ``PLAYBOOK_DATA_DIR`` is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playbook.run import blocks, commands, recording, tables  # noqa: E402
from playbook.run import results as res  # noqa: E402

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FAST_STUDIES = {"mnist_dense", "mnist_mlp", "scratch_nn", "char_lstm"}
# Overrides that would make a :quick run long; the quick config's own value stands.
SLOW_OVERRIDES = ("--config.train.num_epochs=",)
DATA_OF_TASK = {"char_lm": ["text"], "stylize": ["style", "weights"],
                "transfer": ["cats_and_dogs", "weights"]}
ENTRY_POINTS = {"main", "predict", "export", "sample", "stylize", "fetch", "compare", "report"}
TIMEOUT = 600
# Entry points whose every run costs a model load and compilation: the first command of each
# runs, the rest have their flags checked (all of them run with PLAYBOOK_TEST_DOCS=all).
RUN_ONCE = {"stylize", "export", "predict", "sample", "compare"}


# ------------------------------------------------------------------------------ tables, pictures


def test_readme_results_table_is_what_launch_report_prints():
  text = (ROOT / "README.md").read_text()
  block = blocks.between(text, blocks.BEGIN, blocks.END)
  assert block is not None, f"README.md lacks the {blocks.BEGIN} / {blocks.END} markers"
  out = subprocess.run([sys.executable, "-m", "launch.report"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PLAYBOOK_RESULTS_DIR=""))
  assert out.returncode == 0, out.stderr
  assert block == out.stdout.rstrip("\n"), (
      "README.md's results table differs from `python -m launch.report`; run "
      "`python -m launch.report --write`.")


def test_every_generated_block_is_up_to_date():
  assert blocks.stale_blocks() == [], "run `python -m launch.report --write`"


def test_readme_is_short_and_docs_name_no_machine_paths():
  assert len((ROOT / "README.md").read_text().splitlines()) <= 300
  for path in DOCS:
    text = path.read_text()
    for bad in ("/work/", "/tmp/", "/home/", "/root/"):
      assert bad not in text, f"{path.relative_to(ROOT)} names a machine path ({bad})"
    assert not re.search(r"\bsession", text, re.I), f"{path.relative_to(ROOT)} says 'session'"


def test_every_linked_picture_and_page_exists():
  for path in DOCS:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
      if re.match(r"[a-z]+://", target):
        continue
      assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links {target}"
  pictures = [p for p in (ROOT / "docs" / "img").rglob("*") if p.suffix in (".png", ".jpg")]
  assert sum(p.stat().st_size for p in pictures) < 8e6, "docs/img/ should stay a few MB"


def test_every_study_has_a_page_with_a_picture():
  for study in res.reference()["order"]:
    page = ROOT / "docs" / "studies" / f"{study}.md"
    assert page.exists(), f"no docs/studies/{study}.md"
    assert re.search(r"!\[[^\]]*\]\([^)]+\.(png|jpg)\)", page.read_text()), f"{page.name}: no picture"


# ----------------------------------------------------------------------------- launch.report


def _fake_run(tmp_path: Path, name: str, *, seed: int, accuracy: list[float], wall=100.0,
              **overrides) -> Path:
  """A finished mnist_dense run directory: config.json as launch.main writes it, results.json."""
  config = commands.default_config("mnist_dense")
  config["seed"] = seed
  for key, value in overrides.items():
    section, leaf = key.split("__")
    config[section][leaf] = value
  workdir = tmp_path / "runs" / name
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(config))
  results = {"study": "mnist_dense", "task": "classify",
             "test_accuracy": {"mean": sum(accuracy) / len(accuracy), "per_seed": accuracy},
             "epochs_run": 30, "best_epoch": 20, "wall_seconds": wall,
             "train_seconds_per_epoch_cumulative": [wall / 2, wall * 0.9],
             "environment": {"platform": "cpu", "device": "cpu", "cpu": "Test CPU (avx2)",
                             "cpu_count": 4, "num_devices": 1, "jax": "0.0"}}
  (workdir / "results.json").write_text(json.dumps(results))
  return workdir


@pytest.fixture
def results_root(tmp_path):
  root = tmp_path / "results"
  root.mkdir()
  shutil.copy(res.RESULTS_DIR / res.REFERENCE_FILE, root / res.REFERENCE_FILE)
  return root


def test_add_records_the_run_and_rebuilds_its_command(tmp_path, results_root):
  run0 = _fake_run(tmp_path, "d0", seed=0, accuracy=[0.98])
  run1 = _fake_run(tmp_path, "d1", seed=1, accuracy=[0.99])
  path, _ = recording.add_run(run0, root=results_root)
  recording.add_run(run1, root=results_root)
  record = json.loads(path.read_text())
  assert path == results_root / "mnist_dense" / "test-cpu-avx2-4-cpus.json"
  assert [r["command"] for r in record["runs"]] == [
      "python -m launch.main --config=experiments/mnist_dense.py --workdir=runs/d0",
      "python -m launch.main --config=experiments/mnist_dense.py --workdir=runs/d1 "
      "--config.seed=1"]
  assert record["runs"][0]["results"] == json.loads((run0 / "results.json").read_text())
  [h] = res.headlines(results_root)
  assert (h.n, round(h.mean, 6), round(h.std, 6)) == (2, 98.5, round(0.5 * 2 ** 0.5, 6))
  row = next(line for line in tables.table(results_root).splitlines() if "mnist_dense" in line)
  assert "**98.50 ± 0.71 %** test accuracy (n = 2)" in row and "Test CPU (avx2), 4 CPUs" in row
  assert "100 / 100 s" in row
  # The same seed and config again replaces; another config is another row; --replace drops.
  recording.add_run(run0, root=results_root)
  assert len(json.loads(path.read_text())["runs"]) == 2
  other = _fake_run(tmp_path, "wide", seed=0, accuracy=[0.97], optim__learning_rate=0.01)
  _, messages = recording.add_run(other, root=results_root)
  assert any("other config" in m for m in messages)
  assert len(res.headlines(results_root)) == 2
  assert "--config.optim.learning_rate=0.01" in json.loads(path.read_text())["runs"][-1]["command"]
  recording.add_run(other, root=results_root, replace=True)
  assert len(res.headlines(results_root)) == 1


def test_add_refuses_an_unfinished_run_and_a_command_of_another_study(tmp_path, results_root):
  run = _fake_run(tmp_path, "d0", seed=0, accuracy=[0.98])
  (run / "results.json").unlink()
  with pytest.raises(res.ReportError, match="results.json is missing"):
    recording.add_run(run, root=results_root)
  run = _fake_run(tmp_path, "d1", seed=0, accuracy=[0.98])
  with pytest.raises(res.ReportError, match="runs study 'mnist_mlp'"):
    recording.add_run(run, root=results_root, command="python -m launch.main "
                      "--config=experiments/mnist_mlp.py --workdir=runs/x")


def test_a_rerun_that_overwrote_the_wall_time_shows_the_training_time(tmp_path, results_root):
  run = _fake_run(tmp_path, "d0", seed=0, accuracy=[0.98], wall=9.0)
  results = json.loads((run / "results.json").read_text())
  results["train_seconds_per_epoch_cumulative"] = [200.0, 353.0]
  (run / "results.json").write_text(json.dumps(results))
  recording.add_run(run, root=results_root)
  table = tables.table(results_root)
  assert "353 s of training †" in table and "† The run directory was run again" in table


def test_add_gpu_json_takes_the_rows_of_the_commands_config(results_root):
  command = ("python -m launch.main --config=experiments/cifar10_fast.py "
             "--workdir=runs/cifar10_fast --config.model.fast_conv=False")
  added = recording.add_gpu_json(ROOT / "benchmarks/results/gpu_h200.json", command=command,
                                 root=results_root)
  assert len(added) == 3
  [h] = res.headlines(results_root)
  rows = json.loads((ROOT / "benchmarks/results/gpu_h200.json").read_text())
  expected = [r["test_accuracy"]["mean"] * 100 for r in rows if r["study"] == "cifar10_fast"
              and r["config"]["train"]["num_epochs"] == 16
              and r["config"]["optim"]["schedule"] == "triangle"]
  assert sorted(h.values) == sorted(expected) and h.seeds == [0, 1, 2]
  assert h.machine["label"] == "NVIDIA H200"
  assert h.runs[1]["command"] == command + " --config.seed=1"
  with pytest.raises(res.ReportError, match="no row"):
    recording.add_gpu_json(ROOT / "benchmarks/results/gpu_h200.json", root=results_root,
                           command=command.replace("fast_conv=False", "fast_conv=True"))


def test_export_block_renders_a_recorded_export(tmp_path, results_root):
  run = _fake_run(tmp_path, "d0", seed=0, accuracy=[0.98])
  (run / "export").mkdir()
  fmt = dict(accuracy=0.98, accuracy_delta_points=0.0, max_abs_error=1e-6, top1_agreement=1.0,
             max_abs_error_relative=2e-7, max_abs_error_vs_float64=1e-6, passes=True,
             size_bytes=400000)
  (run / "export" / "report.json").write_text(json.dumps(dict(
      jax_accuracy=0.98, max_abs_logit=5.0, jax_max_abs_error_vs_float64=1e-6,
      formats={"onnx": fmt})))
  recording.add_run(run, root=results_root)
  block = tables.export_block(results_root)
  assert "| | | onnx | 0.40 MB | 1.00e-06 |" in block and "| yes |" in block


# ----------------------------------------------------------------------------- the commands


def shell_blocks(path: Path) -> list[tuple[int, str, str | None]]:
  """(line, body, reason it is untested or None) of each ```bash block."""
  text = path.read_text()
  out = []
  for m in re.finditer(r"(?:<!-- untested: (.*?) -->\n)?```bash\n(.*?)```", text, re.S):
    out.append((text[:m.start(2)].count("\n") + 1, m.group(2), m.group(1)))
  return out


def commands_of(body: str) -> list[str]:
  joined = re.sub(r"\\\n\s*", " ", body)
  return [line.strip() for line in joined.splitlines()
          if line.strip() and not line.strip().startswith("#")]


def doc_commands() -> list[tuple[str, str]]:
  out = []
  for path in DOCS:
    for line, body, untested in shell_blocks(path):
      if untested is None:
        out += [(f"{path.relative_to(ROOT)}:{line}", c) for c in commands_of(body)]
  return out


COMMANDS = doc_commands()


class Runner:
  """Runs the docs' commands in order, made small, in one temporary folder."""

  def __init__(self, tmp: Path):
    self.tmp = tmp
    self.env = dict(os.environ, PLAYBOOK_OFFLINE="1", CI="1",
                    PLAYBOOK_RESULTS_DIR=str(tmp / "results"), TF_CPP_MIN_LOG_LEVEL="3")
    shutil.copytree(res.RESULTS_DIR, tmp / "results")
    self.trained: set[str] = set()      # Workdirs (as the docs name them) trained here.
    self.configs_run: set[str] = set()  # Quick configs already trained (study + overrides).
    self.studies_run: set[str] = set()
    self.entries_run: set[str] = set()
    self.seen: set[str] = set()
    self.run_all = os.environ.get("PLAYBOOK_TEST_DOCS") == "all"
    self.data = os.environ.get("PLAYBOOK_DATA_DIR")

  def path(self, value: str) -> str:
    return str(self.tmp / value) if value.startswith(("runs/", "docs/img/")) else value

  def __call__(self, command: str) -> str:
    words = shlex.split(os.path.expandvars(command), comments=True)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value before the command.
      name, value = words.pop(0).split("=", 1)
      if name != "PLAYBOOK_DATA_DIR":  # The test's own data root stands.
        self.env[name] = value
    if words[:1] == ["export"] or (len(words) == 1 and "=" in words[0]):
      for word in words[words[:1] == ["export"]:]:
        name, value = word.split("=", 1)
        if name != "PLAYBOOK_DATA_DIR":
          os.environ[name] = self.env[name] = value
      return "set"
    if words[:2] != ["python", "-m"] or not words[2].startswith("launch."):
      pytest.fail(f"not a `python -m launch.X` command; mark its block <!-- untested: why -->: "
                  f"{command}")
    entry, args = words[2].split(".", 1)[1], words[3:]
    assert entry in ENTRY_POINTS, f"unknown entry point launch.{entry}"
    key = " ".join([entry, *args])
    if key in self.seen:
      return "repeat"
    self.seen.add(key)
    return getattr(self, f"_{entry}", self._other)(entry, args)

  # ---- launch.main

  def _main(self, entry, args):
    config_arg = next(a for a in args if a.startswith("--config="))
    spec = config_arg.split("=", 1)[1]
    study = Path(spec.split(":")[0]).stem
    overrides = [a for a in args if a.startswith("--config.")]
    # The command as written parses, and its task accepts the config, before anything runs.
    _, config = commands.config_from_command("python -m launch.main " + " ".join(args))
    from ml_collections import ConfigDict
    from playbook import tasks
    tasks.get(config["task"]).validate(ConfigDict(config))
    self._needs_data(config)
    quick = [a for a in overrides if not a.startswith(SLOW_OVERRIDES)]
    quick_key = " ".join([spec.split(":")[0], *sorted(quick)])
    workdir = next((a.split("=", 1)[1] for a in args if a.startswith("--workdir=")), None)
    if quick_key in self.configs_run or not self.run_all and (
        study not in FAST_STUDIES or study in self.studies_run):
      return "config checked"
    other = [a for a in args if not a.startswith(("--config", "--workdir="))]
    self._run(["launch.main", f"--config={spec.split(':')[0]}:quick", *quick,
               f"--workdir={self.path(workdir)}", "--noprogress", *other])
    self.configs_run.add(quick_key)
    self.studies_run.add(study)
    self.trained.add(workdir)
    return "ran"

  def _needs_data(self, config: dict) -> None:
    if not self.data:
      pytest.skip("PLAYBOOK_DATA_DIR is not set")
    needed = DATA_OF_TASK.get(config["task"], [config.get("data", {}).get("name", "")])
    missing = [n for n in needed if not (Path(self.data) / n).exists()]
    if missing:
      pytest.skip(f"{', '.join(missing)} not in PLAYBOOK_DATA_DIR")

  # ---- the other entry points

  def _reads(self, args) -> list[str]:
    """The run directories a command reads (its --workdir, or compare's arguments)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(("--workdir=", "--add="))]
    values += [a for a in args if a.startswith("runs/") and not a.startswith("--")]
    return values

  def _other(self, entry, args):
    self._check_flags(entry, args)
    if entry == "report" and "--add" in args:
      target = args[args.index("--add") + 1]
      if target not in self.trained:
        return "flags checked"
      args = [*args[:args.index("--add") + 1], self.path(target), *args[args.index("--add") + 2:]]
    elif any(r not in self.trained for r in self._reads(args)):
      return "flags checked (reads a run not trained here)"
    if entry in RUN_ONCE and entry in self.entries_run and not self.run_all:
      return "flags checked (ran once already)"
    self.entries_run.add(entry)
    if entry in ("stylize", "predict", "fetch", "export") and not self.data:
      pytest.skip("PLAYBOOK_DATA_DIR is not set")
    small = []
    for a in args:
      if a.startswith(("--size=", "--sizes=")):
        a = "--size=48"
      elif a.startswith("--steps="):
        a = "--steps=2"
      elif a.startswith("--length="):
        a = "--length=50"
      elif a.startswith("--quantize="):
        a = "--quantize=none"  # tests/test_export*.py cover the int8 variants.
      elif "=" in a and a.startswith("--"):
        flag, value = a.split("=", 1)
        a = f"{flag}={self.path(value)}"
      else:
        a = self.path(a)
      small.append(a)
    if entry == "stylize":
      small.append("--noprogress")
    self._run([f"launch.{entry}", *small])
    return "ran"

  def _check_flags(self, entry, args):
    source = (ROOT / "launch" / f"{entry}.py").read_text()
    names = set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source))
    names |= set(re.findall(r"add_argument\(\"--([\w-]+)\"", source))
    for a in args:
      if a.startswith("--"):
        name = a[2:].split("=", 1)[0]
        assert name in names or (name.startswith("no") and name[2:] in names), (
            f"launch.{entry} has no flag --{name}")

  def _run(self, argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=self.env,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, f"{' '.join(argv)}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
  return Runner(tmp_path_factory.mktemp("docs"))


def test_the_docs_have_commands():
  assert len(COMMANDS) > 20
  entries = {re.search(r"launch\.(\w+)", c).group(1) for _, c in COMMANDS if "launch." in c}
  assert ENTRY_POINTS <= entries, f"no tested command for {ENTRY_POINTS - entries}"


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_runs(runner, where, command):
  print(f"{where}: {runner(command)}: {command}")
