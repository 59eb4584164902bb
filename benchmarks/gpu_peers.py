"""The GPU studies beside their PyTorch peers: same GPU, same data, same epochs, one script.

    python -m benchmarks.gpu_peers --out=gpu_peers.json      # on a GPU machine
    # (benchmarks/device/gpu_peers.sh runs it on the device machine with the data carried along)

* ``cifar10_fast`` against **airbench94** (``benchmarks/peers/airbench94.py``, the published file
  unchanged). Ours is ``experiments/cifar10_fast.py:official94`` (airbench94's recipe: batch 1024,
  10 epochs) on the staged JPEG copy, one process per seed, as a user runs it. airbench94 trains on
  exactly the training images our run trains on (the same 49,000 after the validation split; its
  own loader, augmentation and fp16 net), for the same 10 epochs, and is tested on the same 10,000
  test images. Its own warm-up run (random labels, cuDNN autotuning) comes first and is reported
  apart. Accuracy: ours with flip test-time augmentation; airbench94's with its three TTA levels
  (0 none, 1 flip, as ours, 2 flip + translate, its published figure).
* ``char_lstm`` against ``torch.nn.LSTM`` (cuDNN). Ours is ``experiments/char_lstm.py``. The peer
  is the seed notebook's CharRNN (``lstm_throughput.torch_char_rnn``) on the same streams and
  validation split, with our learning-rate schedule evaluated step by step, Adam, clipping at 5,
  the state carried from batch to batch and zeroed each epoch, validation nats/char after every
  epoch as ``fit`` measures it; PyTorch's own initialisation.

Times: ours from ``results.json`` (``train_seconds`` includes XLA's compilation, which lands in the
first epoch; ``steady_train_seconds`` is every epoch at the later epochs' pace); the peers' from
CUDA-synchronised clocks (airbench94's own ``total_time_seconds``: whitening, training and its
final TTA pass). ``wall_seconds`` is each side's whole process or call, data loading included.
Each part is written to ``--out`` as soon as it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import harness
from playbook.tasks.classify import mean_std

CIFAR_CONFIG = "experiments/cifar10_fast.py:official94"
CIFAR_ARGS = ("--config.data.source=files",)
LSTM_CONFIG = "experiments/char_lstm.py"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--parts", default="cifar,lstm", help="Which pairs: cifar, lstm.")
  p.add_argument("--seeds", type=harness.positive_int, default=3,
                 help="Seeds of cifar10_fast (one process each).")
  p.add_argument("--peer_runs", type=harness.positive_int, default=5,
                 help="airbench94 runs after its warm-up.")
  p.add_argument("--variants", default="",
                 help="Extra cifar10_fast runs, ';'-separated override lists (one seed each).")
  p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "gpu_peers"))
  p.add_argument("--timeout", type=int, default=300, help="Seconds for each of our runs.")
  p.add_argument("--quick", action="store_true",
                 help="A small dry run: the :quick configs, airbench94 on 2,048 images.")
  p.add_argument("--out", default="benchmarks/results/gpu_peers.json")
  return p.parse_args(argv)


def run_ours(config: str, workdir: Path, args: list[str], timeout: int) -> dict:
  """``python -m launch.main`` as a user runs it, in a fresh workdir; its results.json and the
  process wall time."""
  shutil.rmtree(workdir, ignore_errors=True)  # A finished run would be read back, not trained.
  cmd = [sys.executable, "-m", "launch.main", f"--config={config}", f"--workdir={workdir}",
         "--config.progress=False", "--config.tensorboard=False", *args]
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  wall = time.perf_counter() - start
  (workdir.parent / f"{workdir.name}.log").write_text(proc.stdout + proc.stderr)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: "
                       f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
  results = json.loads((workdir / "results.json").read_text())
  return {"command": " ".join(["python", "-m", "launch.main", *cmd[3:]]),
          "process_wall_seconds": wall, "results": results}


def steady_seconds(cumulative: list[float]) -> float | None:
  """Training time with the first epoch (compilation) at the later epochs' mean pace."""
  if len(cumulative) < 2:
    return None
  later = (cumulative[-1] - cumulative[0]) / (len(cumulative) - 1)
  return later * len(cumulative)


# --- cifar10_fast against airbench94 ---------------------------------------------------------

def cifar_config(quick: bool) -> str:
  return "experiments/cifar10_fast.py:quick" if quick else CIFAR_CONFIG


def cifar_run(args, name: str, overrides: list[str]) -> dict:
  """One of our cifar10_fast runs: its command, results, test accuracy and times."""
  r = run_ours(cifar_config(args.quick), Path(args.workdir) / name, [*CIFAR_ARGS, *overrides],
               args.timeout)
  res = r["results"]
  return dict(r, test_accuracy=float(np.mean(res["test_accuracy"]["per_seed"])),
              train_seconds=res["train_seconds"],
              steady_train_seconds=steady_seconds(res["train_seconds_per_epoch_cumulative"]))


def cifar_ours(args) -> dict:
  runs = [cifar_run(args, f"cifar10_fast_s{seed}", [f"--config.seed={seed}"])
          for seed in range(args.seeds)]
  return {"config": cifar_config(args.quick), "overrides": list(CIFAR_ARGS), "runs": runs,
          **{key: mean_std([np.nan if r[key] is None else r[key] for r in runs])
             for key in ("test_accuracy", "train_seconds", "steady_train_seconds",
                         "process_wall_seconds")}}


def cifar_variants(args) -> list[dict]:
  """Extra single-seed runs of ours (e.g. ``--config.precision=bfloat16``)."""
  rows = []
  for i, spec in enumerate(v for v in args.variants.split(";") if v.strip()):
    r = cifar_run(args, f"cifar10_fast_v{i}", spec.split())
    rows.append({"overrides": spec.split(), **{k: v for k, v in r.items() if k != "results"}})
  return rows


def cifar_peer(args, epochs: float, quick: bool) -> dict:
  """airbench94 on our split: its runs' TTA accuracies and its own timer."""
  import torch

  from benchmarks.peers import airbench94
  from playbook.tasks import classify
  from experiments import cifar10_fast

  config = cifar10_fast.get_config("official94")
  config.data.source = "files"
  data = classify.load_data(config.data)
  train, test = (data.train.take(2048), data.test.take(1000)) if quick else (data.train, data.test)
  folder = Path(args.workdir) / "airbench"
  (folder / "cifar10").mkdir(parents=True, exist_ok=True)
  for name, split in (("train", train), ("test", test)):
    torch.save({"images": torch.from_numpy(split.x), "labels": torch.from_numpy(
        split.y.astype(np.int64)), "classes": data.class_names}, folder / "cifar10" / f"{name}.pt")

  airbench94.hyp["opt"]["train_epochs"] = epochs
  seen = {}
  print_details = airbench94.print_training_details
  evaluate = airbench94.evaluate

  def record_details(variables, is_final_entry):  # The locals of airbench94.main.
    if is_final_entry:
      seen["total_time_seconds"] = variables["total_time_seconds"]
    print_details(variables, is_final_entry)

  def record_evaluate(model, loader, tta_level=0):  # Keeps the final model for the other TTAs.
    seen["model"], seen["loader"] = model, loader
    return evaluate(model, loader, tta_level)

  airbench94.print_training_details = record_details
  airbench94.evaluate = record_evaluate
  cwd = os.getcwd()
  os.chdir(folder)  # airbench94 reads ./cifar10/{train,test}.pt.
  try:
    runs = []
    for run in ["warmup", *range(args.peer_runs)]:
      torch.manual_seed(0 if run == "warmup" else run)
      seen.clear()
      start = time.perf_counter()
      tta2 = airbench94.main(run)
      torch.cuda.synchronize()
      wall = time.perf_counter() - start
      row = {"run": run, "total_time_seconds": seen["total_time_seconds"], "call_seconds": wall,
             "tta2_accuracy": tta2}
      for level in (0, 1):
        row[f"tta{level}_accuracy"] = evaluate(seen["model"], seen["loader"], tta_level=level)
      runs.append(row)
  finally:
    os.chdir(cwd)
    airbench94.print_training_details, airbench94.evaluate = print_details, evaluate
  timed = runs[1:]
  return {"source": "benchmarks/peers/airbench94.py (KellerJordan/cifar10-airbench "
                    "legacy/airbench94.py, f1c599c4, unchanged)",
          "train_images": len(train), "test_images": len(test),
          "train_epochs": epochs, "warmup": runs[0], "runs": timed,
          **{f"tta{k}_accuracy": mean_std([r[f"tta{k}_accuracy"] for r in timed])
             for k in (0, 1, 2)},
          "total_time_seconds": mean_std([r["total_time_seconds"] for r in timed]),
          "call_seconds": mean_std([r["call_seconds"] for r in timed])}


# --- char_lstm against torch.nn.LSTM -----------------------------------------------------------

def lstm_peer(quick: bool, deadline: float) -> dict:
  """The seed notebook's CharRNN on our streams, our schedule, validation after every epoch."""
  import jax
  import jax.numpy as jnp
  import torch
  import torch.nn.functional as F

  from benchmarks.lstm_throughput import torch_char_rnn
  from experiments import char_lstm
  from playbook.tasks import char_lm
  from playbook.train.optim import learning_rate_schedule

  config = char_lstm.get_config("quick" if quick else "")
  vocab, train, val, _ = char_lm.prepare_data(config)
  b, epochs = config.train.batch_size, config.train.num_epochs
  steps = len(train["inputs"]) // b
  schedule = learning_rate_schedule(config.optim, steps, epochs, b)
  lrs = np.asarray(jax.vmap(schedule)(jnp.arange(steps * epochs))).tolist()
  device = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def batches(split):
    rows = len(split["inputs"]) // b * b
    as_t = lambda a: torch.from_numpy(a[:rows].astype(np.int64)).reshape(rows // b, b, -1)
    return as_t(split["inputs"]).to(device), as_t(split["targets"]).to(device)

  (x, y), (vx, vy) = batches(train), batches(val)
  m = config.model
  zeros = lambda: tuple(torch.zeros(m.num_layers, b, m.hidden, device=device) for _ in range(2))
  torch.manual_seed(config.seed)
  model = torch_char_rnn(m, len(vocab)).to(device)
  opt = torch.optim.Adam(model.parameters(), lr=lrs[0])

  def validate():
    model.eval()
    hidden, total = zeros(), 0.0
    with torch.no_grad():
      for xb, yb in zip(vx, vy):
        logits, hidden = model(xb, hidden)
        total += F.cross_entropy(logits.reshape(-1, len(vocab)), yb.reshape(-1)).item()
    return total / len(vx)

  history, cumulative, step = [], [], 0
  for epoch in range(epochs):
    if time.time() > deadline:
      break
    model.train()
    sync()
    start = time.perf_counter()
    hidden = zeros()
    for xb, yb in zip(x, y):
      for group in opt.param_groups:
        group["lr"] = lrs[step]
      hidden = tuple(h.detach() for h in hidden)
      logits, hidden = model(xb, hidden)
      loss = F.cross_entropy(logits.reshape(-1, len(vocab)), yb.reshape(-1))
      opt.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip_norm)
      opt.step()
      step += 1
    sync()
    cumulative.append((cumulative[-1] if cumulative else 0.0) + time.perf_counter() - start)
    history.append({"epoch": epoch + 1, "train_nats_per_char": loss.item(),
                    "val_nats_per_char": validate()})
  best = min(history, key=lambda h: h["val_nats_per_char"])
  return {"model": f"one-hot -> nn.LSTM({len(vocab)}, {m.hidden}, {m.num_layers}, dropout="
                   f"{m.dropout}) -> Dropout({m.dropout}) -> Linear({m.hidden}, {len(vocab)})",
          "device": device, "cudnn": (torch.backends.cudnn.version()
                                      if device == "cuda" else None),
          "epochs_run": len(history), "epochs": epochs,
          "best_val_nats_per_char": best["val_nats_per_char"], "best_epoch": best["epoch"],
          "train_seconds": cumulative[-1] if cumulative else None,
          "steady_train_seconds": steady_seconds(cumulative),
          "train_seconds_per_epoch_cumulative": cumulative, "history": history}


def lstm_ours(args, quick: bool) -> dict:
  config = LSTM_CONFIG + (":quick" if quick else "")
  r = run_ours(config, Path(args.workdir) / "char_lstm", [], args.timeout)
  res = r["results"]
  return {"config": config, "command": r["command"], "epochs_run": res["epochs_run"],
          "best_val_nats_per_char": float(np.mean(res["best_val_nats_per_char"])),
          "best_epoch": res["best_epoch"], "train_seconds": res["train_seconds"],
          "steady_train_seconds": steady_seconds(res["train_seconds_per_epoch_cumulative"]),
          "process_wall_seconds": r["process_wall_seconds"], "environment": res.get("environment")}


def main(argv=None) -> dict:
  args = parse_args(argv)
  # JAX in this process only prepares the peers' data and learning rates: on the CPU, so that it
  # leaves the GPU's memory to PyTorch. Our runs are processes of their own, on the GPU.
  jax.config.update("jax_platforms", "cpu")
  parts = [p.strip() for p in args.parts.split(",") if p.strip()]
  unknown = set(parts) - {"cifar", "lstm"}
  if unknown:
    sys.exit(f"--parts: unknown {sorted(unknown)}; use cifar and/or lstm.")
  Path(args.workdir).mkdir(parents=True, exist_ok=True)
  out = Path(args.out)
  report = {"what": __doc__.split("\n\n")[0], "command": harness.command("benchmarks.gpu_peers",
                                                                         argv)}

  def save(key, value):
    import torch
    report[key] = value
    ours = report.get("cifar10_fast", report.get("char_lstm"))
    if ours:  # Where our runs ran (this process's JAX is on the CPU).
      report["jax_runs_environment"] = (ours["runs"][0]["results"] if "runs" in ours
                                        else ours).get("environment")
    report["environment"] = harness.environment(
        torch_cuda=torch.version.cuda, gpu=(torch.cuda.get_device_name(0)
                                            if torch.cuda.is_available() else None),
        torch_tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        torch_tf32_cudnn=torch.backends.cudnn.allow_tf32)
    harness.write_json(out, report)
    print(f"{key}: written to {out}", flush=True)

  if "cifar" in parts:
    ours = cifar_ours(args)
    save("cifar10_fast", ours)
    epochs = ours["runs"][0]["results"]["epochs_run"]
    save("airbench94", cifar_peer(args, epochs, args.quick))
    if args.variants:
      save("cifar10_fast_variants", cifar_variants(args))
  if "lstm" in parts:
    save("char_lstm", lstm_ours(args, args.quick))
    save("torch_lstm", lstm_peer(args.quick, deadline=time.time() + args.timeout))
  from benchmarks import tables
  print(tables.gpu_peers_table(report))
  return report


if __name__ == "__main__":
  main()
