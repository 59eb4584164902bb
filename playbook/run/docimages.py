"""The pictures in ``docs/img/``: small copies of runs' plots, and figures drawn from ``results/``.

``python -m launch.report --images`` calls ``refresh``. Per study (``docs/img/<study>/``):

- the plots of its run (``DIR/plots/*.png``), from the first run directory that has them: the
  runs recorded in ``results/<study>/``, then ``runs/<study>``, then ``runs/<study>_*``; wide
  figures are scaled to ``MAX_WIDTH`` pixels and photo grids saved as JPEG;
- ``sweep_<run>.png``: the sweep plot of every ``runs/<study>_*`` sweep run (``DIR/plots/sweep.png``);
- never a style transfer's pictures of images that are not in the public domain (``publishable``);
- ``test_curves_<machine>.png``: test accuracy per epoch of recorded runs that carry their curve
  (the device runs' rows do), one line per seed;
- ``architecture.png``: the layer stack of ``results/reference.json``'s ``sketch``.

``docs/img/index.json`` says where each file came from. The performance-ratio plot is
``benchmarks/plot_ratios.py``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from playbook.run import results as res  # noqa: E402

IMG = res.ROOT / "docs" / "img"
MAX_WIDTH = 900
PLOTS = ("learning_curves", "learning_curve", "confusion_matrix", "accuracy_vs_time",
         "gradient_norms", "first_layer_filters", "most_confident_mistakes", "side_by_side",
         "loss")
PHOTO_STUDIES = ("cifar10_cnn", "cifar10_fast", "cats_dogs")  # Image grids of photos: JPEG.


def run_dirs(study: str, root: Path) -> list[Path]:
  """Run directories that may hold this study's plots, the recorded ones first."""
  out = [res.ROOT / r["added_from"] for h in res.headlines(root) if h.study == study
         for r in h.runs]
  runs = res.ROOT / "runs"
  out += [runs / study, *sorted(runs.glob(f"{study}_*"))]
  return [d for d in dict.fromkeys(out) if (d / "plots").is_dir() and not _quick(d)]


# Plots that show a style-transfer run's input images (content, style) and its results.
IMAGE_PLOTS = ("side_by_side", "sweep")


def publishable(workdir: Path) -> bool:
  """Whether a run's pictures may go into docs/: a style transfer's show its content and style
  images, so both must be registered files in the public domain (``data/sources.py``); the
  staged photographs' licences are unverified, and a file of the user's is unknown."""
  try:
    config = json.loads((workdir / "config.json").read_text())
  except (OSError, ValueError):
    return False
  if config.get("task") != "stylize":
    return True
  from playbook.data.sources import SOURCES
  shown = [SOURCES.get(config.get(image, "")) for image in ("content", "style")]
  return all(s is not None and s.licence.startswith("public domain") for s in shown)


def _quick(workdir: Path) -> bool:
  """A run on part of the training data (a ``:quick`` config): its plots show nothing of the
  study."""
  try:
    config = json.loads((workdir / "config.json").read_text())
  except (OSError, ValueError):
    return False
  return config.get("data", {}).get("train_limit") is not None


def shrink(src: Path, dest: Path) -> Path:
  image = Image.open(src)
  image.load()
  if image.width > MAX_WIDTH:
    image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)),
                         Image.Resampling.LANCZOS)
  dest.parent.mkdir(parents=True, exist_ok=True)
  if dest.suffix == ".jpg":
    image.convert("RGB").save(dest, quality=82, optimize=True)
  else:
    image.save(dest, optimize=True)
  return dest


def test_curves(study: str, root: Path) -> list[tuple[Path, str]]:
  """One figure per machine whose recorded runs carry a per-epoch test curve."""
  out = []
  for h in res.headlines(root):
    curves = [(r["config"].get("seed"), r["results"].get("test_curve")) for r in h.runs]
    curves = [(s, c) for s, c in curves if c]
    if h.study != study or not curves:
      continue
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for seed, curve in curves:
      ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker=".", label=f"seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{study} on {h.machine['label']}")
    ax.grid(alpha=0.3)
    ax.legend()
    dest = IMG / study / f"test_curves_{h.machine['slug']}.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=90, bbox_inches="tight")
    plt.close(fig)
    out.append((dest, f"results/{study}/{h.machine['slug']}.json (test_curve of each run)"))
  return out


def sketch(study: str, layers: list[str]) -> Path:
  """The layer stack as a row of boxes, input on the left."""
  import textwrap
  fig, ax = plt.subplots(figsize=(1.6 * len(layers), 1.6))
  ax.set_xlim(0, len(layers))
  ax.set_ylim(0, 1)
  ax.axis("off")
  for i, text in enumerate(layers):
    ax.text(i + 0.5, 0.5, textwrap.fill(text, 15), ha="center", va="center", fontsize=8,
            bbox=dict(boxstyle="round,pad=0.4", fc="#e8eef7", ec="#4a6fa5"))
    if i:
      ax.annotate("", xy=(i + 0.08, 0.5), xytext=(i - 0.08, 0.5),
                  arrowprops=dict(arrowstyle="->", color="#4a6fa5"))
  dest = IMG / study / "architecture.png"
  dest.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(dest, dpi=90, bbox_inches="tight")
  plt.close(fig)
  return dest


def refresh(root: Path = res.RESULTS_DIR) -> list[str]:
  """Rewrites docs/img/ for every study; returns one line per file written."""
  ref = res.reference(root)
  index, lines = {}, []
  for study in ref["order"]:
    dirs = run_dirs(study, root)
    if dirs:
      source = dirs[0]
      for name in PLOTS:
        src = source / "plots" / f"{name}.png"
        if src.is_file() and name in IMAGE_PLOTS and not publishable(source):
          lines.append(f"not published: {src.relative_to(res.ROOT)} (shows an image whose "
                       "licence is not public domain)")
        elif src.is_file():
          photo = study in PHOTO_STUDIES and name == "most_confident_mistakes"
          dest = shrink(src, IMG / study / f"{name}{'.jpg' if photo else '.png'}")
          index[str(dest.relative_to(IMG))] = str(src.relative_to(res.ROOT))
    for src in (d / "plots" / "sweep.png" for d in dirs if publishable(d)):
      if src.is_file():
        dest = shrink(src, IMG / study / f"sweep_{src.parents[1].name}.png")
        index[str(dest.relative_to(IMG))] = str(src.relative_to(res.ROOT))
    for dest, source_text in test_curves(study, root):
      index[str(dest.relative_to(IMG))] = source_text
    if ref["studies"][study].get("sketch"):
      dest = sketch(study, ref["studies"][study]["sketch"])
      index[str(dest.relative_to(IMG))] = "results/reference.json (sketch)"
  try:
    from benchmarks import plot_ratios
    dest = plot_ratios.plot(IMG / "perf_ratios.png")
    index[str(dest.relative_to(IMG))] = "benchmarks/results/*.json (benchmarks/plot_ratios.py)"
  except ImportError:
    pass
  for path in sorted(IMG.glob("style_transfer/*.png")):
    index.setdefault(str(path.relative_to(IMG)), "python -m launch.stylize (docs/studies/"
                     "style_transfer.md, the gallery's commands)")
  old = json.loads((IMG / "index.json").read_text()) if (IMG / "index.json").exists() else {}
  merged = {k: v for k, v in (old | index).items() if (IMG / k).exists()}
  (IMG / "index.json").write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
  for name, source in sorted(index.items()):
    lines.append(f"docs/img/{name}  <-  {source}")
  return lines
