"""launch.main end to end: flags are checked before work, bad workdirs are refused, every study's
:quick config runs, and a run killed with SIGKILL resumes to exactly the uninterrupted result."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from playbook import tasks
from playbook.run import rundir
from playbook.run.writer import read_metrics

STUDIES = ["mnist_dense", "mnist_mlp", "fashion_mlp", "scratch_nn"]


def launch(*args, workdir, wait=True):
  cmd = [sys.executable, "-m", "launch.main", f"--workdir={workdir}", "--noprogress", *args]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def load_config(study, arg="quick"):
  """(task module, config) of experiments/<study>.py:<arg>."""
  config = importlib.import_module(f"experiments.{study}").get_config(arg)
  return tasks.get(config.task), config


@pytest.mark.parametrize("flag,message", [
    ("--config.train.no_such_key=1", "unknown config key 'no_such_key'"),
    ("--config.train.batch_size=many", "batch_size"),
])
def test_bad_config_flags_fail_before_any_work(tmp_path, flag, message):
  out = launch("--config=experiments/mnist_dense.py:quick", flag, workdir=tmp_path / "run")
  assert out.returncode != 0
  assert message in out.stderr
  assert not (tmp_path / "run").exists()


def test_misspelt_config_argument_names_the_valid_ones(tmp_path):
  out = launch("--config=experiments/mnist_mlp.py:quik", workdir=tmp_path / "run")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: unknown config argument 'quik'; this study accepts '', 'quick' "
      "(e.g. --config=experiments/<study>.py:quick)."]
  assert not (tmp_path / "run").exists()


def test_every_experiment_is_a_config_naming_a_registered_task():
  for path in sorted((ROOT / "experiments").glob("[!_]*.py")):
    config = importlib.import_module(f"experiments.{path.stem}").get_config("quick")
    assert config.study == path.stem or path.stem == "cats_dogs", path
    assert tasks.get(config.task).train, path


def test_workdir_of_another_study_is_refused_by_the_cli(tmp_path):
  _, other = load_config("fashion_mlp")
  rundir.prepare(tmp_path, other)
  rundir.release(tmp_path)
  (tmp_path / "checkpoints" / "latest" / "8").mkdir(parents=True)  # Progress to protect.
  out = launch("--config=experiments/mnist_dense.py:quick", workdir=tmp_path)
  assert out.returncode == 1
  assert "holds a run of study 'fashion_mlp', not 'mnist_dense'" in out.stderr


def test_incompatible_config_in_same_workdir_is_refused(tmp_path):
  _, config = load_config("mnist_mlp")
  rundir.prepare(tmp_path, config)
  (tmp_path / "checkpoints" / "latest" / "8").mkdir(parents=True)  # Progress to protect.
  config.optim.learning_rate = 0.5
  with pytest.raises(rundir.RunDirError, match=r"optim\.learning_rate: 0\.001 -> 0\.5"):
    rundir.prepare(tmp_path, config)
  config.optim.learning_rate = 1e-3
  config.data.dir = "/elsewhere"  # Where the data comes from may change on resume.
  rundir.prepare(tmp_path, config)


def test_two_runs_on_one_workdir_the_second_is_refused_and_no_row_is_doubled(real_data_dir,
                                                                            tmp_path):
  first = launch(*kill_args("mnist_mlp"), workdir=tmp_path, wait=False)
  lock = tmp_path / ".lock"
  deadline = time.monotonic() + 120
  while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
    time.sleep(0.05)
  second = launch(*kill_args("mnist_mlp"), workdir=tmp_path)
  still_training = first.poll() is None
  _, first_err = first.communicate(timeout=300)
  assert first.returncode == 0, first_err.decode()[-2000:]
  assert still_training  # The refusal came while the first run held the workdir.
  assert second.returncode == 1
  assert f"is in use by pid {first.pid} on host" in second.stderr
  rows = [(r["step"], r["split"]) for r in read_metrics(tmp_path)]
  assert len(rows) == len(set(rows))


def test_a_run_that_failed_before_its_first_checkpoint_takes_the_corrected_config(tmp_path):
  """A bad value that got past validation and crashed at start leaves nothing to resume: the
  corrected command is not refused as 'a different config'."""
  _, config = load_config("mnist_mlp")
  config.optim.learning_rate = 0.5
  rundir.prepare(tmp_path, config)
  config.optim.learning_rate = 1e-3
  rundir.prepare(tmp_path, config)
  assert json.loads((tmp_path / "config.json").read_text())["optim"]["learning_rate"] == 1e-3


def test_a_held_workdir_is_refused_at_once_naming_the_holder(tmp_path):
  _, config = load_config("mnist_dense")
  rundir.prepare(tmp_path, config)  # This process holds it now.
  start = time.monotonic()
  out = launch("--config=experiments/mnist_dense.py:quick", workdir=tmp_path)
  assert out.returncode == 1 and time.monotonic() - start < 60
  assert f"is in use by pid {os.getpid()} on host" in out.stderr
  assert not (tmp_path / "metrics.jsonl").exists()
  rundir.release(tmp_path)


@pytest.mark.parametrize("study", STUDIES)
def test_quick_config_runs_end_to_end(real_data_dir, tmp_path, study):
  task, config = load_config(study)
  config.progress = False
  results = task.train(config, tmp_path)
  assert results["test_accuracy"]["mean"] > (0.7 if study == "fashion_mlp" else 0.85)
  stored = json.loads((tmp_path / "results.json").read_text())
  assert stored["test_accuracy"] == results["test_accuracy"]
  for plot in ("learning_curves", "confusion_matrix", "test_predictions",
               "most_confident_mistakes"):
    assert (tmp_path / "plots" / f"{plot}.png").stat().st_size > 1000
  assert any(r["split"] == "test" for r in read_metrics(tmp_path))
  assert list((tmp_path / "tensorboard").iterdir())


def kill_args(study):
  return (f"--config=experiments/{study}.py:quick", "--config.train.num_epochs=4")


@pytest.fixture(scope="module", params=["mnist_mlp", "scratch_nn"])
def uninterrupted(request, real_data_dir, tmp_path_factory):
  """(study, workdir of its uninterrupted run): the autodiff and the hand-derived trainer."""
  workdir = tmp_path_factory.mktemp("uninterrupted")
  out = launch(*kill_args(request.param), workdir=workdir)
  assert out.returncode == 0, out.stderr[-2000:]
  return request.param, workdir


def kill_when(study: str, workdir: Path, ready, timeout=300.0, sig=signal.SIGKILL):
  """Starts a run, sends ``sig`` as soon as ``ready(checkpoint_root)`` holds; returns the
  process's (returncode, stderr), or None if it finished first."""
  proc = launch(*kill_args(study), workdir=workdir, wait=False)
  root = workdir / "checkpoints" / "latest"
  deadline = time.monotonic() + timeout
  try:
    while proc.poll() is None and time.monotonic() < deadline:
      if root.exists() and ready(root):
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=120)
        return proc.returncode, stderr.decode()
      time.sleep(0.002)
    return None
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def finished_steps(root: Path):
  return [p for p in root.iterdir() if p.name.isdigit()]


@pytest.mark.parametrize("moment", ["mid_training", "mid_save", "sigterm"])
def test_sigkill_then_resume_gives_exactly_the_uninterrupted_metrics(uninterrupted, tmp_path,
                                                                     moment):
  study, uninterrupted = uninterrupted
  if study == "scratch_nn" and moment != "mid_training":
    pytest.skip("the autodiff study covers the other moments; the trainer is the same")
  if moment == "mid_save":  # While orbax is writing the second checkpoint (its temporary dir).
    ready = lambda root: bool(finished_steps(root)) and any("tmp" in p.name for p in root.iterdir())
  else:  # After the first epoch's checkpoint, while epoch 2 trains.
    ready = lambda root: bool(finished_steps(root))
  sig = signal.SIGTERM if moment == "sigterm" else signal.SIGKILL
  stopped = kill_when(study, tmp_path, ready, sig=sig)
  assert stopped is not None, "the run finished before it could be killed"
  if moment == "sigterm":  # A clean stop between jitted calls, saying how to resume.
    returncode, stderr = stopped
    assert returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped: SIGTERM: training stopped in epoch" in stderr
    assert "Run the same command again to resume" in stderr and "Traceback" not in stderr
  assert not (tmp_path / "results.json").exists()
  out = launch(*kill_args(study), workdir=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  expected = json.loads((uninterrupted / "results.json").read_text())
  got = json.loads((tmp_path / "results.json").read_text())
  assert got["test_accuracy"] == expected["test_accuracy"]
  assert got["test_loss"] == expected["test_loss"]
  assert read_metrics(tmp_path) == read_metrics(uninterrupted)


def test_a_finished_run_run_again_trains_nothing_and_keeps_its_results(uninterrupted, tmp_path):
  study, workdir = uninterrupted
  before = (workdir / "results.json").read_bytes()
  # A data root whose MNIST is corrupt: the answer comes before any data are read.
  (tmp_path / "mnist").mkdir()
  (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
  out = launch(*kill_args(study), f"--config.data.dir={tmp_path}", workdir=workdir)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "finished: nothing to train" in out.stdout
  assert (workdir / "results.json").read_bytes() == before
