"""Figures a person would rather look at than read: curves, confusion matrix, image grids."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from playbook.run.results import metric_words  # noqa: E402


def save(fig, path: Path) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def learning_curves(history: list[dict], path: Path, *, test: dict | None = None,
                    title: str = "Learning curves") -> Path:
  """Train and validation loss and accuracy per epoch, one line per seed (mean in bold)."""
  epochs = [row["epoch"] for row in history]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, metric in zip(axes, ("xent", "accuracy")):
    for split, color in (("train", "tab:blue"), ("val", "tab:orange"),
                         ("test_curve", "tab:green")):
      if split not in history[0]:
        continue  # A test curve only where the study evaluated the test set every epoch.
      values = np.array([np.atleast_1d(row[split][metric]) for row in history])  # (epochs, seeds)
      if values.shape[1] > 1:
        ax.plot(epochs, values, color=color, alpha=0.25, lw=0.8)
      name = "test (every epoch)" if split == "test_curve" else split
      ax.plot(epochs, values.mean(1), color=color, lw=2, label=f"{name} (mean)"
              if values.shape[1] > 1 else name)
    if test is not None:
      ax.axhline(float(np.mean(test[metric])), color="tab:green", ls="--", label="test (best ckpt)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy" if metric == "xent" else "accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_yscale("log")
  fig.suptitle(title)
  return save(fig, path)


def accuracy_vs_time(history: list[dict], seconds: list[float], path: Path, *,
                     split: str = "test_curve",
                     title: str = "Accuracy against training time") -> Path:
  """``split`` accuracy after each epoch against the training wall time up to it."""
  accuracy = [float(np.mean(row[split]["accuracy"])) for row in history]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(seconds, accuracy, "o-")
  ax.set_xlabel("training wall time (s, this machine)")
  ax.set_ylabel(f"{'test' if split == 'test_curve' else split} accuracy")
  ax.grid(alpha=0.3)
  ax.set_title(title)
  return save(fig, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, class_names: list[str],
                     path: Path) -> Path:
  n = len(class_names)
  counts = np.zeros((n, n), np.int64)
  np.add.at(counts, (labels, predictions), 1)
  fig, ax = plt.subplots(figsize=(7, 6))
  im = ax.imshow(counts, cmap="Blues")
  for i in range(n):
    for j in range(n):
      ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=7,
              color="white" if counts[i, j] > counts.max() / 2 else "black")
  ax.set_xticks(range(n), class_names, rotation=45, ha="right")
  ax.set_yticks(range(n), class_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  fig.colorbar(im, ax=ax)
  ax.set_title(f"Test confusion matrix (accuracy {np.mean(labels == predictions):.2%})")
  return save(fig, path)


def image_grid(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
               class_names: list[str], path: Path, *, title: str,
               confidences: np.ndarray | None = None, cols: int = 8) -> Path:
  """Images with 'pred (true)' captions; wrong predictions in red."""
  rows = max(1, -(-len(images) // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for k, ax in enumerate(axes.flat[: len(images)]):
    img = images[k]
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    caption = f"{class_names[predictions[k]]}\n({class_names[labels[k]]})"
    if confidences is not None:
      caption = f"{class_names[predictions[k]]} {confidences[k]:.0%}\n({class_names[labels[k]]})"
    ax.set_title(caption, fontsize=7, color="black" if predictions[k] == labels[k] else "red")
  fig.suptitle(title)
  return save(fig, path)


def sweep(variants: list[dict], axes_keys: dict[str, str], path: Path, *, metric: str,
          ylabel: str, seeds: int, guide: str | None = None, scale: float = 1.0,
          min_span: float = 0.0, best: str | None = None) -> Path:
  """A sweep's ``metric`` against each swept value (``axes_keys``: swept name -> the key of its
  value in a variant's ``values``): every seed a point, the mean over seeds a line (one per
  combination of the other swept values), ``guide`` (the validation figure that picks the best
  variant, on the same scale) dashed, the best variant starred. Values ``* scale``; the y axis
  spans at least ``min_span``, so seed noise looks its size. With several swept names each panel's
  colours are its combinations, listed under it, and one key above says what line styles mean."""
  names = list(axes_keys)
  value = lambda row, name: row["values"][axes_keys[name]]
  combos = {name: sorted({tuple((n, value(r, n)) for n in names if n != name) for r in variants})
            for name in names}
  label = lambda fixed: ", ".join(f"{n}={v:g}" for n, v in fixed)
  # Legend columns under each panel: two where the labels are short enough to sit side by side.
  ncol = 2 if max(len(label(f)) for c in combos.values() for f in c) <= 30 else 1
  rows_below = -(-max(len(c) for c in combos.values()) // ncol) if len(names) > 1 else 0
  fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4 + 0.22 * rows_below),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    for fixed in combos[name]:
      rows = [r for r in variants if all(value(r, n) == v for n, v in fixed)]
      x = np.array([value(r, name) for r in rows])
      line, = ax.plot(x, [scale * r[metric]["mean"] for r in rows], marker="o",
                      label=label(fixed) or f"{metric_words(metric)}, mean over seeds")
      if guide:
        ax.plot(x, [scale * r[guide]["mean"] for r in rows], ls="--", lw=1,
                color=line.get_color(), label="_" if fixed else metric_words(guide))
      for xi, r in zip(x, rows):
        per_seed = scale * np.asarray(r[metric]["per_seed"])
        ax.scatter(np.full(len(per_seed), xi), per_seed, s=12, alpha=0.5, color=line.get_color())
        if r["name"] == best:
          ax.scatter([xi], [scale * r[metric]["mean"]], marker="*", s=160, zorder=3,
                     color=line.get_color(), label="_" if fixed else "best on validation")
    if np.all(x > 0) and x.max() / x.min() >= 10:
      ax.set_xscale("log")
    ax.set_xticks(sorted(set(x)), [f"{v:g}" for v in sorted(set(x))], minor=False)
    ax.set_xticks([], minor=True)
    low, high = ax.get_ylim()
    if high - low < min_span:
      middle = (low + high) / 2
      ax.set_ylim(middle - min_span / 2, middle + min_span / 2)
    ax.set_xlabel(name)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(names) == 1:
      ax.legend(fontsize=8)
    else:  # Below the panel, clear of the data: one colour per combination of the others.
      ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=ncol,
                frameon=False)
  if len(names) > 1:
    key = [plt.Line2D([], [], color="0.3", marker="o", label=f"{metric_words(metric)} (dots: "
                      "seeds, line: their mean)")]
    if guide:
      key.append(plt.Line2D([], [], color="0.3", ls="--", lw=1, label=metric_words(guide)))
    if best:
      key.append(plt.Line2D([], [], color="0.3", marker="*", ms=12, ls="",
                            label="best on validation"))
    fig.legend(handles=key, loc="upper center", bbox_to_anchor=(0.5, 0.97), ncol=len(key),
               fontsize=9, frameon=False)
  fig.suptitle(f"Sweep: {len(variants)} variants x {seeds} seed{'s' * (seeds > 1)}, one program",
               y=1.03 if len(names) > 1 else 0.98)
  return save(fig, path)
