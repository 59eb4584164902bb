"""The tables of figures in ``benchmarks/README.md``, printed from the JSON in ``results/``.

    python -m benchmarks.tables            # every block, under its name
    python -m benchmarks.tables --write    # rewrites the README's generated blocks
    python -m benchmarks.tables --check    # exit 1, naming them, if a block is stale

Each block sits between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->``. A figure
whose JSON was not kept stays outside the blocks, marked **no stored JSON** by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks import plot_ratios
from playbook.run.blocks import between, replace_between
from playbook.run.results import ReportError

RESULTS = plot_ratios.RESULTS
README = Path(__file__).resolve().parent / "README.md"


def markers(name: str) -> tuple[str, str]:
  """The begin and end marker lines of block ``name``."""
  return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


# ------------------------------------------------------------------------------------ formatting


def _load(root: Path, name: str) -> dict:
  return json.loads((root / name).read_text())


def _table(header: list[str], rows: list[list[str]]) -> str:
  """A Markdown table, in the README's compact form (``|---|``)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _fig(x: float) -> str:
  """A rate or time: whole above 100, else one decimal."""
  return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _rate(x: float) -> str:
  """A slow rate (steps or iterations/s): two decimals, two significant figures below 0.1."""
  return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def _x(ratio: float) -> str:
  return f"{ratio:.2f}x"


def _slower_or_faster(ratio: float) -> tuple[str, str]:
  """A time ratio (new / old) as (``1.25x``, ``slower``) or (``1.25x``, ``faster``)."""
  return (_x(ratio), "slower") if ratio >= 1 else (_x(1 / ratio), "faster")


def _thousands(x: float) -> str:
  """A whole number with spaces between its thousands, as the README writes them."""
  return f"{x:,.0f}".replace(",", " ")


def _pct(fraction: float) -> str:
  return f"{100 * fraction:.0f} %"


def _bold(text: str, on: bool = True) -> str:
  return f"**{text}**" if on else text


# ---------------------------------------------------------------------------------- the renderers


def ratios(root: Path = RESULTS) -> str:
  """Every JAX / PyTorch ratio: ``plot_ratios``'s table, its paths relative to this folder."""
  return plot_ratios.table(root).replace("`benchmarks/results/", "`results/")


# The bar of train_throughput.json: mnist_mlp at batch 128 (plot_ratios marks the same row).
MLP_BAR = "mnist_mlp"


def train_throughput(root: Path = RESULTS) -> str:
  """Steps/s of each MLP and batch, per column, and the ratios to the torch peer."""
  data = _load(root, "train_throughput.json")
  rows = []
  for model, entry in data["results"].items():
    # MNIST and Fashion-MNIST: 784 pixels in, 10 classes out.
    widths = "-".join(str(w) for w in [784, *entry["hidden"], 10])
    for i, batch in enumerate(data["settings"]["batch_sizes"]):
      cell = entry[str(batch)]
      steps = [_fig(cell[c]["steps_per_s"])
               for c in ("jax_scan", "jax_dispatch", "torch", "torch_threads1")]
      rows.append([f"{model} {widths}" if i == 0 else model, str(batch), *steps,
                   _bold(_x(cell["ratio_jax_scan_over_torch"])),
                   _x(cell["ratio_jax_dispatch_over_torch"])])
  return _table(["model", "batch", "jax_scan", "jax_dispatch", "torch", "torch 1 thread",
                 "**jax_scan / torch**", "jax_dispatch / torch"], rows)


def train_roofline(root: Path = RESULTS) -> str:
  """GFLOP/s at the roofline batch and the fractions of the JAX matmul peak."""
  models = _load(root, "train_throughput.json")["roofline"]["models"]
  rows = []
  for model, m in models.items():
    jax = (f"{_pct(m['jax_scan_fraction_of_jax_matmul_peak'])} / "
           f"{_pct(m['jax_scan_needed_fraction_of_jax_matmul_peak'])}")
    torch = (f"{_pct(m['torch_fraction_of_jax_matmul_peak'])} / "
             f"{_pct(m['torch_needed_fraction_of_jax_matmul_peak'])}")
    rows.append([model, f"{m['jax_scan_gflops']:.0f}", _bold(jax, model == MLP_BAR), torch])
  return _table(["model", "jax_scan GFLOP/s (nominal)",
                 "JAX, fraction of the JAX matmul peak: nominal / needed", "torch, the same"],
                rows)


def train_vmap(root: Path = RESULTS) -> str:
  """Examples/s over all seeds: one vmapped program against sequential 1-seed runs."""
  vmap = _load(root, "train_throughput.json")["vmap"]
  seeds = next(iter(vmap.values()))["num_seeds"]
  rows = [[model, _thousands(v["vmapped"]["examples_per_s"]),
           _thousands(v["sequential"]["examples_per_s"]),
           _x(v["speedup_vmapped_over_sequential"])] for model, v in vmap.items()]
  return _table(["model", f"vmapped (`fit` with `num_seeds={seeds}`)",
                 f"{seeds} sequential 1-seed runs", "speed-up"], rows)


# (file, model, the JAX convolutions, the bar row, show the command's flags)
CIFAR_ROWS = (
    ("cifar_throughput.json", "seed_cnn",
     "im2col forward, input and weight gradients (`fast_conv`)", True, False),
    ("cifar_throughput.json", "fast_resnet", "same", False, False),
    ("cifar_throughput_loaded_machine.json", "seed_cnn", "matmul weight gradient, loaded machine",
     False, True),
)
CIFAR_MODELS = {"seed_cnn": "seed CNN", "fast_resnet": "fast net"}


def _quiet(entry: dict) -> str:
  """How many calls of each column were quiet, in words."""
  columns = {c: v for c, v in entry.items() if isinstance(v, dict) and "calls" in v}
  counts = {(v["quiet_calls"], v["calls"]) for v in columns.values()}
  if len(counts) > 1:
    return ", ".join(f"{c} {v['quiet_calls']}/{v['calls']}" for c, v in columns.items()) + " quiet"
  quiet, calls = counts.pop()
  if quiet == 0:
    return f"{calls} call{'s' * (calls > 1)} each, none quiet"
  return f"{quiet}/{calls} quiet"


def _cifar_source(data: dict, name: str, entry: dict, flags: bool) -> str:
  """The source cell: the file, its CPU, the command's flags where asked, the quiet calls."""
  cpu = data["environment"]["cpu_model"]
  if not flags:
    return f"`results/{name}` ({cpu}, {_quiet(entry)})"
  args = data["command"].split(" -m benchmarks.cifar_throughput ", 1)[1].split()
  args = " ".join(a for a in args if not a.startswith("--out="))
  return f"`results/{name}` ({cpu}, `{args}`; {_quiet(entry)})"


def _cifar_row(data: dict, spec: tuple, same: bool) -> list[str]:
  """One row of CIFAR_ROWS; ``same``: the file is the previous row's."""
  name, model, convs, bar, flags = spec
  entry = data["results"][model]
  jax, torch = _rate(entry["jax_fast"]["steps_per_s"]), _rate(entry["torch"]["steps_per_s"])
  ratio = _bold(_x(entry["ratio_jax_fast_over_torch"]), bar)
  paired = _x(entry["ratio_jax_fast_over_torch_paired_median"])
  if paired != _x(entry["ratio_jax_fast_over_torch"]):
    ratio += f" (paired {paired})"
  if "jax_xla" in entry:
    jax += f" (`jax_xla`: {_rate(entry['jax_xla']['steps_per_s'])})"
    ratio += f" (`jax_xla`: {_x(entry['ratio_jax_xla_over_torch'])})"
  source = "same" if same else _cifar_source(data, name, entry, flags)
  return [convs, CIFAR_MODELS[model], _bold(jax, bar), torch, ratio, source]


def cifar_throughput(root: Path = RESULTS) -> str:
  """The CIFAR-10 nets' steps/s against the torch peers, one row per stored measurement."""
  rows, last = [], None
  for spec in CIFAR_ROWS:
    rows.append(_cifar_row(_load(root, spec[0]), spec, spec[0] == last))
    last = spec[0]
  return _table(["JAX convolutions", "model", "jax_fast steps/s", "torch steps/s",
                 "jax_fast / torch", "source"], rows)


def lstm_levers(root: Path = RESULTS) -> str:
  """The char-LSTM's levers and where each stands, with the two that were measured."""
  unroll = _load(root, "lstm_throughput.json")["ratio_vs_torch_median"]
  bf16 = _load(root, "precision_cpu.json")["models"]["char_lstm"]["ratio_bf16_over_f32"]
  how = "{} *{}*".format(*_slower_or_faster(bf16))
  rows = [
      ["input projection of all time steps hoisted out of the scan (layer 0: a row lookup of "
       "`W_x`)", "in the model"],
      ["the four gates fused into one `(B, H) x (H, 4H)` matmul per step", "in the model"],
      ["time-major layout inside the model", "in the model"],
      ["`lax.scan` unroll 4", f"{_x(unroll['jax_unroll4'])} torch against unroll 1's "
       f"{_x(unroll['jax_unroll1'])} in the same contended run (`results/lstm_throughput.json`); "
       "the config keeps `unroll=1`"],
      ["remat", "off"],
      ["bf16", f"{how} per step "
       "([`precision.py`](#bfloat16-against-float32-train-steps-precisionpy))"],
      ["XLA CPU flags", "not measured for the LSTM"],
  ]
  return _table(["lever", "status"], rows)


def _medians(row: dict) -> tuple[float, float]:
  """The median JAX and PyTorch iterations/s of a style_speed row."""
  return statistics.median(row["jax_it_per_s"]), statistics.median(row["torch_it_per_s"])


def style_speed(root: Path = RESULTS) -> str:
  """The style-transfer step at each size on a quiet machine."""
  rows = []
  for row in _load(root, "style_speed.json")["rows"]:
    jax, torch = _medians(row)
    rows.append(["x".join(map(str, row["size"])), f"{row['iteration_gflop']:.1f}", _rate(jax),
                 _rate(torch), _x(row["median_ratio"]), f"{row['jax_gflops']:.0f}",
                 f"{row['torch_gflops']:.0f}", row["quiet_calls"]])
  return _table(["size (HxW)", "GFLOP / iteration", "JAX it/s", "PyTorch it/s", "JAX / PyTorch",
                 "JAX GFLOP/s", "PyTorch GFLOP/s", "quiet calls"], rows)


STYLE_WINOGRAD = ("style_speed_winograd_malloc.json", "style_speed_winograd.json",
                  "style_speed_xla_malloc.json")
CONV_IMPLS = {"winograd": "Winograd", "xla": "XLA"}


def style_winograd(root: Path = RESULTS) -> str:
  """Winograd against XLA convolutions, with and without glibc keeping its memory."""
  rows = []
  for name in STYLE_WINOGRAD:
    data = _load(root, name)
    jax, torch = _medians(data["rows"][0])
    rows.append([CONV_IMPLS[data["jax_conv_impl"]],
                 # An empty malloc_env: glibc's defaults.
                 "kept memory" if data.get("malloc_env") else "default", _rate(jax), _rate(torch),
                 _x(data["rows"][0]["median_ratio"]), f"`results/{name}`"])
  return _table(["convolutions", "malloc settings", "JAX it/s", "PyTorch it/s", "JAX / PyTorch",
                 "file"], rows)


STYLE_SETTINGS = ("style_speed_torch1thread.json", "style_speed_xla_onednn.json")


def style_settings(root: Path = RESULTS) -> str:
  """The style step under other XLA flags and torch thread counts, at 192x256."""
  rows = []
  for name in STYLE_SETTINGS:
    data = _load(root, name)
    jax, torch = _medians(data["rows"][0])
    threads = data["torch_threads"]
    run = []
    if data["xla_flags"]:
      run.append(f"XLA_FLAGS={data['xla_flags']}")
    if threads != 2:  # 2: torch's own count on this 2-core machine, no flag
      run.append(f"--torch_threads={threads}")
    peers = [_rate(torch) if threads == 2 else "–", _rate(torch) if threads == 1 else "–"]
    rows.append([f"`{' '.join(run)}`", _rate(jax), *peers, _x(data["rows"][0]["median_ratio"]),
                 f"`results/{name}`"])
  return _table(["run", "JAX", "PyTorch 2 threads", "PyTorch 1 thread", "ratio", "source"], rows)


PRECISION_MODELS = {"cifar10_cnn": "cifar10_cnn (seed CNN)", "char_lstm": "char_lstm 2x512",
                    "scratch_nn": "scratch_nn (hand backprop)",
                    "scratch_cnn": "scratch_cnn (hand backprop)"}
PRECISION_MATMULS = {"bfloat16": "matmul 2048², bf16 result (GFLOP/s)",
                     "bfloat16_float32_sums": "matmul 2048², bf16 operands, f32 sums (GFLOP/s)"}


def precision(root: Path = RESULTS) -> str:
  """Step time in float32 and bfloat16 per model, and the 2048² matmul rate in each; the ratios of
  a second run, in another session, beside them: the size of run-to-run noise."""
  data, rerun = _load(root, "precision_cpu.json"), _load(root, "precision_cpu_rerun.json")
  rows = [[PRECISION_MODELS.get(model, model), _fig(m["step_ms"]["float32"]),
           _fig(m["step_ms"]["bfloat16"]), f"{m['ratio_bf16_over_f32']:.2f}",
           f"{rerun['models'][model]['ratio_bf16_over_f32']:.2f}"]
          for model, m in data["models"].items()]
  for key, label in PRECISION_MATMULS.items():  # The script's default --matmul_size, 2048.
    if key in data["matmul_gflop_s"]:  # Rates: the time ratio is float32's rate over bfloat16's.
      f32, bf16 = data["matmul_gflop_s"]["float32"], data["matmul_gflop_s"][key]
      again = rerun["matmul_gflop_s"]
      rows.append([label, _fig(f32), _fig(bf16), "({} {})".format(*_slower_or_faster(f32 / bf16)),
                   "({} {})".format(*_slower_or_faster(again["float32"] / again[key]))])
  return (f"`results/precision_cpu.json`, and the ratios of a second run in another session, "
          f"`results/precision_cpu_rerun.json`, both on {data['environment']['cpu_model']}:\n\n"
          + _table(["model", "float32 ms/step", "bfloat16 ms/step", "bf16 / f32",
                    "bf16 / f32, second run"], rows))


def precision_loaded(root: Path = RESULTS) -> str:
  """The bfloat16/float32 step ratios measured with bfloat16-result matmuls, on a loaded machine."""
  data = _load(root, "precision_cpu_loaded_machine.json")
  ratios = [f"{m['ratio_bf16_over_f32']:.2f} (`{model}`)" for model, m in data["models"].items()]
  return (f"With bfloat16-result matmuls the ratios were {', '.join(ratios[:-1])} and "
          f"{ratios[-1]}, on a loaded {data['environment']['cpu_model']} "
          "(`results/precision_cpu_loaded_machine.json`).")


def sweep_speed(root: Path = RESULTS) -> str:
  """One program's sweep against the same runs one after another: wall clock, then per step."""
  data = _load(root, "sweep_speed.json")
  rates, each, step = data["learning_rates"], data["sequential_wall_seconds_each"], data["per_step"]
  models, load = len(rates), data["load_average_1min"]
  steps = data["epochs"] * step["train_steps_per_epoch"]  # Train steps per model.
  # What is not training: start-up, data checks, compilation, validation, checkpoints.
  train_s = steps * step["sweep_ms_per_step_per_model"] / 1e3
  rest_sweep = data["sweep_wall_seconds"] - models * train_s
  rest_each = statistics.mean(each) - steps * step["single_model_ms_per_step"] / 1e3
  gap = max(abs(a - b) for a, b in zip(data["test_accuracy_sweep"],
                                         data["test_accuracy_sequential"]))
  env = data["environment"]
  head = (f"{models} learning rates from {min(rates):g} to {max(rates):g}, "
          f"{data['epochs']} epochs each, on {env['cpu_model']} ({env['cpu_count']} cores), load "
          f"average {load['start']:.1f}-{load['end']:.1f}, `results/sweep_speed.json`:\n\n")
  wall = _table(["", "wall s", "of which not training"], [
      [f"one program, {models} models", f"{data['sweep_wall_seconds']:.0f}", f"{rest_sweep:.0f} s"],
      [f"{models} runs one after another", f"{data['sequential_wall_seconds']:.0f} "
       f"({min(each):.0f}-{max(each):.0f} each)", f"{rest_each:.0f} s each"],
      ["**one program is faster by**", f"**{_x(data['speedup'])}**", ""]])
  matmul_ms = step["floor_ms_per_step"] - step["optimizer_ms_per_step"]
  per_step = _table(["one model's train step", "ms", "what it is"], [
      ["alone", f"{step['single_model_ms_per_step']:.2f}",
       f"{step['single_model_gflop_s']:.0f} GFLOP/s, "
       f"{_pct(step['single_model_fraction_of_matmul_rate'])} of a 2048² `jnp.dot`'s "
       f"{step['matmul_gflop_s']:.0f}"],
      ["inside the sweep", f"{step['sweep_ms_per_step_per_model']:.2f}",
       f"{step['sweep_over_single_per_model']:.2f} of alone"],
      ["floor", f"{step['floor_ms_per_step']:.2f}",
       f"its matmuls at the `jnp.dot` rate ({matmul_ms:.2f}) and the AdamW update "
       f"({step['optimizer_ms_per_step']:.2f}, timed apart)"]])
  return (head + wall + f"\n\nThe test accuracies of the two sides differ by at most "
          f"{100 * gap:.2f} percentage points per rate. Per step (the trainer's jitted epoch of "
          f"{step['steps_per_call']} steps at batch {step['batch_size']}, median of the calls):\n\n"
          + per_step + "\n\nWere every model's step at the floor and the rest as measured, one "
          f"program would be **{_x(data['speedup_if_every_step_ran_at_the_floor'])}** faster.")


STYLE_SWEEP_WAY = {"adam": "vmapped", "lbfgs": "sequential"}  # What optimize.stylize does.


def style_sweep(root: Path = RESULTS) -> str:
  """A style-weight sweep per optimiser: vmapped against one image after another."""
  data = _load(root, "style_sweep.json")
  rows = [[name, *(_fig(r["ms_per_image_step"][way]) for way in ("vmapped", "sequential")),
           f"{r['vmapped_over_sequential']:.2f}", f"{r['final_loss_max_relative_difference']:.0e}",
           STYLE_SWEEP_WAY[name]] for name, r in data["optimizers"].items()]
  env = data["environment"]
  return (f"{len(data['style_weights'])} style weights, {data['steps']} steps each at "
          f"{'x'.join(map(str, data['size']))} px, median of the rounds, on {env['cpu_model']} "
          f"({env['cpu_count']} cores), `results/style_sweep.json`:\n\n"
          + _table(["optimiser", "ms / image-step vmapped", "ms / image-step sequential",
                    "vmapped / sequential", "final losses differ by", "`stylize` takes"], rows))


def _mean_std(summary: dict, scale: float = 1.0, digits: int = 2) -> str:
  """``mean ± std`` of a gpu_peers summary (std only where there are several values)."""
  mean = f"{scale * summary['mean']:.{digits}f}"
  return mean if len(summary["per_seed"]) < 2 else f"{mean} ± {scale * summary['std']:.{digits}f}"


def _seconds(value) -> str:
  return "–" if value is None else f"{value:.1f}"


def gpu_peers(root: Path = RESULTS) -> str:
  """Each GPU study beside its PyTorch peer (``gpu_peers.py``), or how to measure it."""
  path = root / "gpu_peers.json"
  if not path.exists():
    return ("No GPU results stored yet: `bash benchmarks/device/gpu_peers.sh` on a GPU machine "
            "writes `gpu_peers.json`; copy it to `results/` and run `python -m benchmarks.tables "
            "--write`.")
  return gpu_peers_table(json.loads(path.read_text()))


def gpu_peers_table(data: dict) -> str:
  """``gpu_peers.json``'s runs as a table, each study beside its peer."""
  rows = []
  if "cifar10_fast" in data:
    ours = data["cifar10_fast"]
    config = Path(ours.get("config", "experiments/cifar10_fast.py:official94")).name
    rows.append([f"`{config.replace('.py', '')}`, JAX float32",
                 f"{_mean_std(ours['test_accuracy'], 100)} % (flip TTA)",
                 str(len(ours["test_accuracy"]["per_seed"])),
                 _seconds(ours["train_seconds"]["mean"]),
                 _seconds(ours["steady_train_seconds"]["mean"]),
                 _seconds(ours["process_wall_seconds"]["mean"])])
    for variant in data.get("cifar10_fast_variants", []):
      rows.append([f"the same, `{' '.join(variant['overrides'])}`",
                   f"{100 * variant['test_accuracy']:.2f} % (flip TTA)", "1",
                   _seconds(variant["train_seconds"]), _seconds(variant["steady_train_seconds"]),
                   _seconds(variant["process_wall_seconds"])])
  if "airbench94" in data:
    peer = data["airbench94"]
    rows.append(["airbench94, PyTorch float16",
                 f"{_mean_std(peer['tta1_accuracy'], 100)} % (flip TTA); "
                 f"{_mean_std(peer['tta2_accuracy'], 100)} % (its TTA)",
                 str(len(peer["tta1_accuracy"]["per_seed"])),
                 _seconds(peer["total_time_seconds"]["mean"]), "–",
                 _seconds(peer["call_seconds"]["mean"])])
  for key, name in (("char_lstm", "`char_lstm`, JAX float32"),
                    ("torch_lstm", "`torch.nn.LSTM` (cuDNN)")):
    if key in data:
      r = data[key]
      rows.append([name, f"{r['best_val_nats_per_char']:.4f} nats/char (epoch "
                   f"{r['best_epoch']}/{r['epochs_run']})", "1", _seconds(r["train_seconds"]),
                   _seconds(r["steady_train_seconds"]),
                   _seconds(r.get("process_wall_seconds"))])
  gpu = data["environment"].get("gpu") or data["environment"]["device"]
  return (f"On one {gpu} (`results/gpu_peers.json`):\n\n"
          + _table(["run", "test accuracy / validation loss", "runs", "train s",
                    "steady train s", "wall s"], rows))


BLOCKS = {
    "ratios": ratios,
    "train_throughput": train_throughput,
    "train_roofline": train_roofline,
    "train_vmap": train_vmap,
    "cifar_throughput": cifar_throughput,
    "lstm_levers": lstm_levers,
    "style_speed": style_speed,
    "style_winograd": style_winograd,
    "style_settings": style_settings,
    "precision": precision,
    "precision_loaded": precision_loaded,
    "sweep_speed": sweep_speed,
    "style_sweep": style_sweep,
    "gpu_peers": gpu_peers,
}


# ------------------------------------------------------------------------------ check and write


def stale_blocks(root: Path = RESULTS, readme: Path = README) -> list[str]:
  """The names of the blocks whose text in ``readme`` differs from what ``root`` gives now (a
  block without its markers counts as stale)."""
  text = readme.read_text()
  return [name for name, render in BLOCKS.items()
          if between(text, *markers(name)) != render(root)]


def write_blocks(root: Path = RESULTS, readme: Path = README) -> bool:
  """Rewrites every block of ``readme`` from ``root``; whether the file changed."""
  text = new = readme.read_text()
  for name, render in BLOCKS.items():
    new = replace_between(new, *markers(name), render(root))
  if new != text:
    readme.write_text(new)
  return new != text


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.tables",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--write", action="store_true", help="Rewrite the README's blocks.")
  parser.add_argument("--check", action="store_true",
                      help="Exit 1, naming them, if blocks differ from results/.")
  args = parser.parse_args(argv)
  try:
    if args.write:
      print(f"rewrote {README.name}" if write_blocks() else "up to date")
    elif args.check:
      stale = stale_blocks()
      if stale:
        print(f"stale: {', '.join(stale)}. Run `python -m benchmarks.tables --write`.",
              file=sys.stderr)
        return 1
      print("up to date")
    else:
      print("\n\n".join(f"{name}:\n{render()}" for name, render in BLOCKS.items()))
  except (ReportError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
