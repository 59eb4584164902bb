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
  env = {"environment": {"cpu_model": "Some CPU"}}
  (tmp_path / "precision_cpu.json").write_text(json.dumps(
      {"models": models, "matmul_gflop_s": {"float32": 150.0, "bfloat16": 120.0,
                                            "bfloat16_float32_sums": 300.0}, **env}))
  rerun = {"mnist_mlp": {"ratio_bf16_over_f32": 1.1}, "char_lstm": {"ratio_bf16_over_f32": 0.9}}
  (tmp_path / "precision_cpu_rerun.json").write_text(json.dumps(
      {"models": rerun, "matmul_gflop_s": {"float32": 100.0, "bfloat16": 125.0,
                                           "bfloat16_float32_sums": 150.0}, **env}))
  assert tables.precision(tmp_path).splitlines()[4:] == [
      "| mnist_mlp | 3.9 | 5.4 | 1.40 | 1.10 |",
      "| char_lstm 2x512 | 1897 | 3086 | 1.63 | 0.90 |",
      "| matmul 2048², bf16 result (GFLOP/s) | 150 | 120 | (1.25x slower) | (1.25x faster) |",
      "| matmul 2048², bf16 operands, f32 sums (GFLOP/s) | 150 | 300 | (2.00x faster) "
      "| (1.50x faster) |"]


def test_check_names_a_stale_block(tmp_path):
  readme = tmp_path / "README.md"
  begin, _ = tables.markers("precision")
  text = tables.README.read_text()
  readme.write_text(text.replace(f"{begin}\n", f"{begin}\n| a hand-typed row |\n"))
  assert tables.stale_blocks(readme=readme) == ["precision"]
  assert tables.write_blocks(readme=readme)
  assert readme.read_text() == text


def test_gpu_peers_rows_put_each_study_beside_its_peer(tmp_path):
  assert "No GPU results stored yet" in tables.gpu_peers(tmp_path)
  summary = lambda *values: {"mean": sum(values) / len(values), "per_seed": list(values),
                             "std": 0.01 if len(values) > 1 else 0.0}
  lstm = {"best_val_nats_per_char": 1.23456, "best_epoch": 29, "epochs_run": 30,
          "train_seconds": 60.0, "steady_train_seconds": 50.0}
  (tmp_path / "gpu_peers.json").write_text(json.dumps({
      "environment": {"gpu": "NVIDIA H100 80GB HBM3", "device": "cpu"},
      "cifar10_fast": {"config": "experiments/cifar10_fast.py:quick",  # A dry run's.
                       "test_accuracy": summary(0.88, 0.90), "train_seconds": summary(9.0),
                       "steady_train_seconds": summary(5.0),
                       "process_wall_seconds": summary(20.0)},
      "airbench94": {"tta1_accuracy": summary(0.89), "tta2_accuracy": summary(0.895),
                     "total_time_seconds": summary(3.5), "call_seconds": summary(4.0)},
      "char_lstm": dict(lstm, process_wall_seconds=70.0), "torch_lstm": lstm}))
  lines = tables.gpu_peers(tmp_path).splitlines()
  assert lines[0] == "On one NVIDIA H100 80GB HBM3 (`results/gpu_peers.json`):"
  assert lines[4:] == [
      "| `cifar10_fast:quick`, JAX float32 | 89.00 ± 1.00 % (flip TTA) | 2 | 9.0 | 5.0 "
      "| 20.0 |",
      "| airbench94, PyTorch float16 | 89.00 % (flip TTA); 89.50 % (its TTA) | 1 | 3.5 | – "
      "| 4.0 |",
      "| `char_lstm`, JAX float32 | 1.2346 nats/char (epoch 29/30) | 1 | 60.0 | 50.0 | 70.0 |",
      "| `torch.nn.LSTM` (cuDNN) | 1.2346 nats/char (epoch 29/30) | 1 | 60.0 | 50.0 | – |"]


def test_sweep_speed_derives_the_time_not_spent_training_from_the_json(tmp_path):
  step = {"steps_per_call": 100, "batch_size": 128, "train_steps_per_epoch": 100,
          "optimizer_ms_per_step": 0.5, "floor_ms_per_step": 2.0, "single_model_ms_per_step": 4.0,
          "sweep_ms_per_step_per_model": 3.0, "sweep_over_single_per_model": 0.75,
          "matmul_gflop_s": 200.0, "single_model_gflop_s": 100.0,
          "single_model_fraction_of_matmul_rate": 0.5}
  (tmp_path / "sweep_speed.json").write_text(json.dumps({
      "epochs": 2, "learning_rates": [0.001, 0.01], "per_step": step,
      "sweep_wall_seconds": 10.0, "sequential_wall_seconds": 30.0,
      "sequential_wall_seconds_each": [14.0, 16.0], "speedup": 3.0,
      "test_accuracy_sweep": [0.9, 0.95], "test_accuracy_sequential": [0.91, 0.95],
      "speedup_if_every_step_ran_at_the_floor": 4.0,
      "load_average_1min": {"start": 0.5, "end": 1.0},
      "environment": {"cpu_model": "Some CPU", "cpu_count": 2}}))
  lines = tables.sweep_speed(tmp_path).splitlines()
  # 2 models x 200 steps x 3 ms = 1.2 s of training in the sweep; 200 x 4 ms = 0.8 s in each run.
  assert lines[4:7] == ["| one program, 2 models | 10 | 9 s |",
                        "| 2 runs one after another | 30 (14-16 each) | 14 s each |",
                        "| **one program is faster by** | **3.00x** |  |"]
  assert "differ by at most 1.00 percentage points" in lines[8]
  assert lines[14].startswith("| floor | 2.00 | its matmuls at the `jnp.dot` rate (1.50) and ")
  assert lines[-1].endswith("**4.00x** faster.")
