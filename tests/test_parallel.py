"""Scale-out on this CPU machine: 8 forced host devices, and two real processes joined by
jax.distributed, train what one device trains; checkpoints move between device counts.

The pytest process has one CPU device (JAX is already imported), so every multi-device run is a
subprocess that sets its device count before importing JAX: ``tests/parallel_worker.py`` (a tiny
problem through ``fit``) or ``launch.main`` (a real study, two processes).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import parallel_worker as worker
from conftest import ROOT
from playbook import parallel
from playbook.train import loop, steps
from playbook.train.checkpoint import Checkpoints
from playbook.run.writer import read_metrics

TOL = 1e-5
RUNS_8 = {  # name -> parallel_worker run arguments on 8 devices (2 epochs each).
    "dp": {"fsdp": 1},
    "fsdp": {"fsdp": -1},
    "hybrid": {"fsdp": 2},
    "fsdp_seeds": {"fsdp": -1, "num_seeds": 2},
}


def env_with_devices(n: int) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}")
  env.pop("JAX_PLATFORMS", None)
  return env


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def step_losses(workdir, *, upto=None):
  rows = [r for r in read_metrics(workdir) if r["split"] == "train_step"]
  return np.array([r["loss"] for r in rows if upto is None or r["step"] <= upto])


def val_rows(history, key="xent"):
  return np.array([row["val"][key] for row in history])


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
  """The RUNS_8 runs in one 8-device process: {name: (workdir, worker output)}."""
  root = tmp_path_factory.mktemp("eight")
  runs = {name: dict(kw, workdir=str(root / name)) for name, kw in RUNS_8.items()}
  out = root / "out.json"
  proc = subprocess.run([sys.executable, str(ROOT / "tests" / "parallel_worker.py"),
                         f"--out={out}", *map(json.dumps, runs.values())], cwd=ROOT,
                        env=env_with_devices(8), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return {name: (Path(runs[name]["workdir"]), result)
          for name, result in zip(runs, json.loads(out.read_text()))}


@pytest.fixture(scope="module")
def one(tmp_path_factory):
  """The same problem on this process's single device, 3 epochs: {num_seeds: (workdir, out)}."""
  root = tmp_path_factory.mktemp("one")
  assert jax.device_count() == 1
  return {s: (root / f"seeds{s}", worker.run(root / f"seeds{s}", num_seeds=s, num_epochs=3))
          for s in (1, 2)}


def test_mesh_and_fsdp_layout():
  assert parallel.fsdp_spec((784, 128), 8) == jax.sharding.PartitionSpec("fsdp")
  assert parallel.fsdp_spec((4, 32), 8) == jax.sharding.PartitionSpec(None, "fsdp")
  assert parallel.fsdp_spec((3,), 8) == jax.sharding.PartitionSpec()  # Not divisible: replicated.
  assert parallel.fsdp_spec((784, 128), 1) == jax.sharding.PartitionSpec()
  mesh = parallel.make_mesh()
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1}
  assert parallel.host_rows(10, mesh).tolist() == list(range(10))
  with pytest.raises(ValueError, match="parallel.fsdp=3 must be -1, or a positive divisor"):
    parallel.make_mesh(3, devices=jax.devices() * 2)


CLUSTER_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "OMPI_MCA_orte_hnp_uri",
                "OMPI_COMM_WORLD_SIZE", "TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")


def test_multi_process_launchers_are_detected_from_the_environment(monkeypatch):
  for var in CLUSTER_VARS:
    monkeypatch.delenv(var, raising=False)
  assert parallel.cluster_detected() is None
  assert parallel.initialize_distributed("auto") is False  # Plain single process: nothing to do.
  assert parallel.initialize_distributed("off", coordinator_address="x:1") is False
  with pytest.raises(ValueError, match="auto, on or off"):
    parallel.initialize_distributed("maybe")
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_STEP_NODELIST", "node[01-02]")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert parallel.cluster_detected() is None  # A one-task job step is a single process.
  monkeypatch.setenv("SLURM_NTASKS", "16")
  assert parallel.cluster_detected() == "slurm"
  for var in CLUSTER_VARS:
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.2,10.0.0.3")
  assert parallel.cluster_detected() == "tpu"


def test_global_batch_and_learning_rate_scaling_are_explicit():
  from experiments import mnist_mlp
  from playbook.train.optim import peak_learning_rate
  config = mnist_mlp.get_config()
  assert config.optim.lr_scaling == "none" and config.parallel.fsdp == 1
  assert peak_learning_rate(config.optim, 1024) == config.optim.learning_rate
  config.optim.lr_scaling, config.optim.base_batch_size = "linear", 128
  assert peak_learning_rate(config.optim, 1024) == pytest.approx(8 * config.optim.learning_rate)
  config.optim.lr_scaling = "sqrt"
  assert peak_learning_rate(config.optim, 512) == pytest.approx(2 * config.optim.learning_rate)
  config.optim.lr_scaling = "cubic"
  with pytest.raises(ValueError, match="Unknown lr_scaling"):
    peak_learning_rate(config.optim, 512)
  three_devices = types.SimpleNamespace(size=3)  # Only its size is read before the check.
  with pytest.raises(ValueError, match="global batch; it must be a multiple of the 3 devices"):
    loop.make_train_epoch(None, train_step=steps.make_train_step(worker.LOSS_FN), batch_size=32,
                          num_examples=64, mesh=three_devices)


@pytest.mark.parametrize("name", list(RUNS_8))
def test_eight_devices_train_the_one_device_trajectory(eight, one, name):
  workdir, out = eight[name]
  seeds = RUNS_8[name].get("num_seeds", 1)
  ref_dir, ref = one[seeds]
  assert out["num_devices"] == 8 and out["mesh"]["data"] * out["mesh"]["fsdp"] == 8
  fsdp = out["mesh"]["fsdp"]
  if fsdp > 1:  # The first kernel (4 x 32) is really split: each device holds 32 / fsdp columns.
    assert out["kernel_shard_shape"][-1] == 32 // fsdp
  else:
    assert out["kernel_shard_shape"] == [4, 32]  # Replicated.
  steps = 2 * (worker.NUM_TRAIN // 32)
  expected = step_losses(ref_dir, upto=steps)
  got = step_losses(workdir)
  assert got.shape == expected.shape == ((steps, seeds) if seeds > 1 else (steps,))
  np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)
  np.testing.assert_allclose(val_rows(out["history"]), val_rows(ref["history"])[:2], rtol=TOL,
                             atol=TOL)


def test_checkpoint_saved_on_8_devices_restores_on_1_with_identical_eval(eight, tmp_path):
  workdir, out = eight["fsdp"]
  like = loop.init_states(worker.init_fn, optax.adam(1e-2), seed=0, num_seeds=1,
                          mesh=parallel.make_mesh())
  ckpt = Checkpoints(workdir)
  saved, meta = ckpt.restore("best", like.saveable())
  ckpt.close()
  state = like.replace_saved(saved)
  assert state.params["Dense_0"]["kernel"].sharding.num_devices == 1
  metrics = loop.evaluate(state, worker.blobs(worker.NUM_VAL, seed=1), loss_fn=worker.LOSS_FN,
                          batch_size=32, num_seeds=1)
  for key, value in out["final_val"].items():
    np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)
  assert meta["epoch"] == out["history"][int(np.argmax(val_rows(out["history"], "accuracy")))][
      "epoch"]


def test_resume_of_an_8_device_run_on_1_device_continues_the_trajectory(eight, one, tmp_path):
  workdir = tmp_path / "fsdp"
  shutil.copytree(eight["fsdp"][0], workdir)
  ref_dir, ref = one[1]
  resumed = worker.run(workdir, fsdp=1, num_epochs=3)  # Epochs 1-2 on 8 devices, 3 on 1.
  np.testing.assert_allclose(val_rows(resumed["history"]), val_rows(ref["history"]), rtol=TOL,
                             atol=TOL)
  np.testing.assert_allclose(step_losses(workdir), step_losses(ref_dir), rtol=TOL, atol=TOL)


# --- Two processes on localhost, a real study through launch.main. ----------------------------

STUDY_ARGS = ("--config=experiments/mnist_dense.py:quick", "--config.data.train_limit=1024",
              "--config.train.num_epochs=2", "--config.train.log_every_steps=1")


def test_two_processes_with_jax_distributed_match_one_process(real_data_dir, tmp_path,
                                                             monkeypatch):
  """2 processes x 2 CPU devices, parameters FSDP-split over all 4 (so across the processes),
  each process loading only its half of the training rows; then the multi-host checkpoint is
  resumed in this 1-device process and evaluated again."""
  workdir, port = tmp_path / "two", free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "launch.main", *STUDY_ARGS, "--config.parallel.fsdp=-1",
       f"--workdir={workdir}", "--noprogress", f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"], cwd=ROOT, env=env_with_devices(2),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    outs = [p.communicate(timeout=600) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (stdout, stderr) in zip(procs, outs):
    assert p.returncode == 0, stderr[-3000:]
  assert "jax.distributed: 2 processes, 4 devices" in outs[0][0]
  assert "test accuracy" in outs[0][0] and "test accuracy" not in outs[1][0]  # Process 0 reports.
  two = json.loads((workdir / "results.json").read_text())
  assert two["parallel"]["mesh"] == {"data": 1, "fsdp": 4} and two["parallel"]["processes"] == 2

  from experiments import mnist_dense
  from playbook.tasks import classify
  monkeypatch.setattr(classify, "plot_results", lambda *a, **k: None)  # Numbers only, here.

  def config():
    c = mnist_dense.get_config("quick")
    c.data.train_limit, c.train.num_epochs, c.train.log_every_steps = 1024, 2, 1
    c.progress = False
    return c

  single = classify.train(config(), tmp_path / "one")
  rows_two, rows_one = read_metrics(workdir), read_metrics(tmp_path / "one")
  assert [(r["step"], r["split"]) for r in rows_two] == [(r["step"], r["split"])
                                                        for r in rows_one]  # No duplicates.
  for a, b in zip(rows_two, rows_one):
    for key in a.keys() - {"step", "split"}:
      np.testing.assert_allclose(a[key], b[key], rtol=TOL, atol=TOL, err_msg=f"{a['split']} {key}")
  assert two["test_accuracy"]["mean"] == pytest.approx(single["test_accuracy"]["mean"], abs=TOL)

  # The checkpoint both processes wrote, restored on this one device: the same test figures.
  # (A finished run is not trained again: without its results.json it resumes and evaluates.)
  (workdir / "results.json").unlink()
  resumed = classify.train(config(), workdir)
  assert resumed["parallel"]["processes"] == 1 and resumed["epochs_run"] == 2
  assert resumed["test_accuracy"]["mean"] == pytest.approx(two["test_accuracy"]["mean"], abs=1e-7)
  assert resumed["test_loss"]["mean"] == pytest.approx(two["test_loss"]["mean"], rel=1e-6)
