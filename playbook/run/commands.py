"""The ``python -m launch.main`` command of a run: parsed into the config it gives, the way
launch.main parses it, and rebuilt from a run's ``config.json`` (the study's config file and an
override for every recipe value that differs from its defaults, checked by parsing it back).
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path

from playbook.run.results import NOT_RECIPE, ROOT, ReportError, flatten, norm


def _flag_value(value) -> str:
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(_flag_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def default_config(study: str, arg: str = "") -> dict:
  """``experiments/<study>.py``'s ``get_config(arg)`` as plain JSON."""
  try:
    module = importlib.import_module(f"experiments.{study}")
  except ModuleNotFoundError:
    raise ReportError(f"there is no experiments/{study}.py to rebuild the command from; pass "
                      "--command") from None
  return json.loads(module.get_config(arg).to_json())


def config_from_command(command: str) -> tuple[str, dict]:
  """(study file stem, resolved config) of a ``python -m launch.main`` command, parsed the way
  launch.main parses it (ml_collections' config flags), without running anything."""
  from absl import flags
  from ml_collections import config_flags
  args = shlex.split(command)
  if "launch.main" not in args:
    raise ReportError(f"not a `python -m launch.main ...` command: {command!r}")
  args = args[args.index("launch.main") + 1:]
  keep = [a for a in args if a.startswith("--config")]
  spec = next((a.split("=", 1)[1] for a in keep if a.startswith("--config=")), None)
  if spec is None:
    raise ReportError(f"the command names no --config=experiments/<study>.py: {command!r}")
  values = flags.FlagValues()
  argv = ["report", *keep]
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                  sys_argv=argv)
  try:
    values(argv)
  except Exception as e:  # absl wraps ml_collections' errors in several types.
    raise ReportError(f"the command's config does not parse: {e}") from None
  return Path(spec.split(":")[0]).stem, json.loads(values["config"].value.to_json())


def auto_resolved(key: str, value, default, results: dict | None) -> bool:
  """Whether a run's ``data.source`` is what today's default 'auto' resolved to for it (its
  results name the source they read): the same files, so no override is needed."""
  return (key == "data.source" and default == "auto" and results is not None
          and f"({value})" in str(results.get("data_copy", results.get("data", ""))))


def _overrides(run: dict, default: dict, results: dict | None, spec: str):
  """(overrides, keys left to the defaults) that turn ``default`` into ``run`` (flat dicts)."""
  overrides, same = [], set()
  for key, value in sorted(run.items()):
    if key in NOT_RECIPE or key == "task":
      continue
    if key in default and auto_resolved(key, value, default[key], results):
      same.add(key)
      continue
    if key not in default:
      raise ReportError(f"config.json's {key} is not a key of experiments/{spec} today; "
                        "pass --command")
    if norm(value) != norm(default[key]):
      overrides.append(f"--config.{key}={_flag_value(value)}")
  return overrides, same


def rebuild_command(config: dict, workdir: str, results: dict | None = None) -> str:
  """The launch.main command that gives ``config``: the study's config file (or its ``:quick``
  variant, whichever needs fewer overrides) and an override for every recipe value that differs
  from its defaults, checked by parsing it back."""
  study = config.get("study")
  if not study:
    raise ReportError("config.json names no study; pass --command")
  run = flatten(config)
  spec = f"{study}.py"
  candidates = [(spec, *_overrides(run, flatten(default_config(study)), results, spec))]
  try:
    quick = flatten(default_config(study, "quick"))
  except ValueError:  # tasks.ConfigError: a study without a :quick variant.
    quick = None
  if quick is not None:
    candidates.append((f"{spec}:quick", *_overrides(run, quick, results, f"{spec}:quick")))
  spec, overrides, same = min(candidates, key=lambda c: len(c[1]))  # The first on a tie.
  command = " ".join(["python -m launch.main", f"--config=experiments/{spec}",
                      f"--workdir={workdir}", *map(shlex.quote, overrides)])
  _, parsed = config_from_command(command)
  parsed = flatten(parsed)
  wrong = [k for k, v in run.items() if k not in NOT_RECIPE and k not in same and k in parsed
           and norm(parsed[k]) != norm(v)]
  if wrong:
    raise ReportError(f"the rebuilt command ({command}) does not reproduce config.json "
                      f"({', '.join(wrong[:5])}); pass --command")
  return command


def relative_workdir(workdir: Path) -> str:
  """How a README names a workdir: relative to the repository, else runs/<name>."""
  try:
    return str(workdir.resolve().relative_to(ROOT))
  except ValueError:
    return f"runs/{workdir.resolve().name}"
