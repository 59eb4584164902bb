"""Lists what each study reads and fetches it: data and weights, verified, into the cache.

    python -m launch.fetch --list                  # every study: files, sizes, what is here
    python -m launch.fetch mnist_mlp cats_dogs     # fetch what these studies read
    python -m launch.fetch cifar10 weights/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
    python -m launch.fetch --all [--mirror=URL_OR_DIR] [--data_dir=DIR]

NAMEs are studies, data sets or registry paths (``playbook/data/sources.py``). Files go to the
cache, ``$XDG_CACHE_HOME/playbook`` (``~/.cache/playbook``); a data root you name
(``--data_dir`` / ``PLAYBOOK_DATA_DIR``) is read, never written. ``--mirror`` (or
``PLAYBOOK_MIRROR``): a URL (http, https, file) or folder laid out like a data root, tried before
the official URLs. ``PLAYBOOK_OFFLINE=1`` forbids the network. The studies fetch what they miss
by themselves on first use; this is for doing it ahead (e.g. before going offline).
"""

from __future__ import annotations

import sys

from absl import app, flags

from playbook.data import DataError, fetch, sources
from playbook.data.paths import cache_root, named_root

_ALL = flags.DEFINE_bool("all", False, "Fetch every registered file: all data sets and weights.")
_LIST = flags.DEFINE_bool("list", False, "Only list: files, sizes, and what is present and "
                          "verified (the default when no NAME is given).")
_MIRROR = flags.DEFINE_string("mirror", None, "URL (http/https/file) or folder laid out like a "
                              "data root, tried first (default: $PLAYBOOK_MIRROR).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data root to look in first (default: "
                                "$PLAYBOOK_DATA_DIR); never written.")

STATE_WIDTH = 10


def jpeg_copy_read_instead(data_dir=None) -> bool:
  """Whether the CIFAR-10 studies (source 'auto') read a data root's JPEG copy, not the tarball."""
  import ml_collections
  from playbook.data import cifar10
  return cifar10.resolve(ml_collections.ConfigDict(dict(source="auto", dir=data_dir or "")))[0] \
      == "files"


def needed(names: list[str], data_dir=None) -> list[sources.Source]:
  """The sources ``names`` stand for; a study's CIFAR-10 tarball is left out while a data root's
  JPEG copy is what the study reads."""
  out = {}
  for name in names:
    skip_tarball = name in sources.STUDIES and jpeg_copy_read_instead(data_dir)
    for source in sources.resolve(name):
      if not (skip_tarball and source is sources.CIFAR10):
        out[source.path] = source
  return list(out.values())


def describe_roots(data_dir=None) -> str:
  named = named_root(data_dir)
  read = f"data root {named} (read only), then " if named else ""
  return f"Looking in: {read}the cache {cache_root()} (fetched files go there)."


def list_sources(names: list[str], data_dir=None, mirror=None) -> int:
  """Prints studies -> data sets, then every file with its state; returns how many are missing."""
  print(describe_roots(data_dir))
  groups = {}  # Studies that read the same things share a line.
  for study, needs in sources.STUDIES.items():
    if not names or study in names:
      groups.setdefault(needs, []).append(study)
  if groups:
    print("\nStudies and what they read:")
    for needs, studies in groups.items():
      parts = [f"{part} ({fetch.human(sum(s.size for s in sources.resolve(part)))})"
               for part in needs]
      print(f"  {', '.join(studies)}: {', '.join(parts)}")
  chosen = [s for n in (names or list(sources.STUDIES)) for s in sources.resolve(n)]
  chosen = list({s.path: s for s in chosen}.values())
  jpeg = jpeg_copy_read_instead(data_dir)
  print("\nFiles:")
  missing = []
  for source in chosen:
    state, path, note = fetch.status(source, data_dir)
    if state == "missing" and source is sources.CIFAR10 and jpeg:
      state, note = "not needed", ("the data root's LOSSY JPEG copy is read instead (source=auto);"
                                   " fetch cifar10 for the official batches")
    if state == "missing":
      missing.append(source)
    where = path if path else fetch.candidate_urls(source, mirror)[0]
    extra = f"  [{note}]" if note else ""
    print(f"  {state:{STATE_WIDTH}s} {fetch.human(source.size):>9s}  {source.path}  {where}{extra}")
  total = sum(s.size for s in missing)
  if missing:
    datasets = list(dict.fromkeys(s.dataset for s in missing))
    print(f"\nMissing: {len(missing)} file(s), {fetch.human(total)}. Fetch them with: python -m "
          f"launch.fetch {' '.join(datasets)}  (the studies also fetch them on first use)")
  else:
    print("\nNothing missing.")
  return len(missing)


def fetch_sources(names: list[str], *, mirror=None, data_dir=None) -> int:
  """Fetches what ``names`` need and is missing; returns the number of problems (0: all good)."""
  problems = 0
  for source in needed(names, data_dir):
    state, path, note = fetch.status(source, data_dir)
    if state == "verified":
      print(f"present   {source.path}: {path}")
      continue
    if state == "differs" and source.path.startswith("weights/"):
      print(f"present   {source.path}: {path} (another container than the registered files; "
            "its tensors are checked when it is loaded)")
      continue
    if state == "differs" and not path.is_relative_to(cache_root()):
      print(f"error: {path} is not the registered {source.path} ({note}) and is in a folder that "
            "is never written: replace it, or point --data_dir elsewhere.", file=sys.stderr)
      problems += 1
      continue
    path = fetch.fetch(source, mirror=mirror)
    print(f"fetched   {source.path}: {path}")
  return problems


def main(argv):
  names = argv[1:]
  try:
    if _LIST.value or not (names or _ALL.value):
      list_sources(names, _DATA_DIR.value, _MIRROR.value)
      return
    for name in names:
      sources.resolve(name)  # Unknown names are refused before anything is fetched.
    problems = fetch_sources(names or sources.datasets(), mirror=_MIRROR.value,
                             data_dir=_DATA_DIR.value)
  except (DataError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  sys.exit(1 if problems else 0)


if __name__ == "__main__":
  app.run(main)
