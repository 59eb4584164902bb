"""Runs one study: ``python -m launch.main --config=experiments/<study>.py[:quick] --workdir=DIR``.

Any config value can be overridden with ``--config.<key>=<value>``; unknown keys and ill-typed
values are refused while the flags are parsed, before any work starts.

Many hosts: start this same command once per process. Under SLURM (``srun``), Open MPI or on a
multi-host TPU slice the processes find each other by themselves (``--distributed=auto``);
elsewhere pass ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I``. See
``launch/slurm.sbatch``, ``launch/tpu_pod.sh`` and docs/scaling.md.
"""

from __future__ import annotations

import errno
import os
import sys

# TensorFlow is imported later, here only to write TensorBoard summaries (and by TFDS): its
# oneDNN kernels compute nothing of ours, and with them off it prints no start-up banner (nor the
# absl::InitializeLog line that came with it). Its warnings below errors are hidden too.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from playbook import parallel, tasks  # noqa: E402
from playbook.data import DataError  # noqa: E402
from playbook.run import compile_cache  # noqa: E402
from playbook.run.rundir import RunDirError  # noqa: E402
from playbook.train import Interrupted, NonFiniteLossError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. experiments/mnist_mlp.py[:quick].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; re-running with it resumes.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Data root, only read (default: $PLAYBOOK_DATA_DIR, else the cache "
                                "~/.cache/playbook); sets config.data.dir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar (--noprogress to hide).")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "jax.distributed.initialize: 'auto' when the flags below are given or a multi-process SLURM, "
    "Open MPI or TPU launcher is detected; 'on' always (a TPU pod slice finds its peers itself); "
    "'off' never.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0, where the coordinator listens "
    "(default: from the cluster's environment).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes (default: from the environment).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's id in 0..num_processes-1 (default: from the "
                                   "environment).")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "Devices of this host this process uses, e.g. 0,1 (default: all; "
    "one per process under SLURM and Open MPI on GPUs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax and TF log every save at INFO.
  # Before anything touches a device: the processes must join first.
  local_ids = [int(i) for i in _LOCAL_DEVICE_IDS.value] if _LOCAL_DEVICE_IDS.value else None
  if parallel.initialize_distributed(
      _DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
      local_device_ids=local_ids) and parallel.is_main_process():
    import jax
    print(f"jax.distributed: {jax.process_count()} processes, {jax.device_count()} devices "
          f"({jax.local_device_count()} on this host, {jax.devices()[0].platform}).")
  config_file = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
  if not os.path.isfile(config_file):
    studies = sorted(f[:-3] for f in os.listdir("experiments") if f.endswith(".py")
                     and not f.startswith("_")) if os.path.isdir("experiments") else []
    print(f"error: no config file {config_file}. The studies: "
          f"{', '.join(f'experiments/{s}.py' for s in studies) or 'see experiments/'}.",
          file=sys.stderr)
    sys.exit(2)
  compile_cache.enable()
  config = _CONFIG.value
  with config.unlocked():
    if _DATA_DIR.value:
      config.data.dir = _DATA_DIR.value
    if not _PROGRESS.value:
      config.progress = False
  try:
    task = tasks.get(config.get("task", ""))
    task.train(config, _WORKDIR.value)
  except tasks.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except (DataError, RunDirError, NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except Interrupted as e:
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  except OSError as e:
    full = disk_full(e)
    if full is None:
      raise
    print(f"error: the disk is full: writing {full.filename or 'a file'} failed (ENOSPC). "
          "Every checkpoint written before is intact (orbax writes a new one to a temporary "
          "folder first); free space, then run the same command to resume.", file=sys.stderr)
    sys.exit(1)


def disk_full(e: BaseException) -> OSError | None:
  """The ENOSPC error in ``e``'s chain (orbax and TensorFlow wrap them), or None."""
  while e is not None:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      return e
    e = e.__cause__ or e.__context__
  return None


def parse_flags(argv):
  """absl's parser, with ml_collections' raw traceback for an unknown key or config argument
  turned into one line."""
  try:
    return flags.FLAGS(argv)
  except flags.IllegalFlagValueError as e:
    # absl and ml_collections wrap what get_config raised (with its traceback in the text): the
    # innermost ConfigError is the one line to say.
    cause, chain = e, [e]
    while cause.__context__ is not None:
      cause = cause.__context__
      chain.append(cause)
    config_errors = [c for c in chain if isinstance(c, tasks.ConfigError)]
    print(f"error: {config_errors[-1] if config_errors else e}", file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    key = str(e).strip("\"'")
    swept = [a for a in overrides if a.startswith(f"--config.sweep.{key}=")]
    if swept:
      print(f"error: {swept[0].split('=')[0][2:]} cannot be swept in one program: only values "
            "that enter the training step as numbers can (this config's config.sweep keys); "
            "a value that changes shapes or the program (a layer width, the model, the "
            "optimiser) needs separate runs (then compare them with python -m launch.compare).",
            file=sys.stderr)
      sys.exit(2)
    print(f"error: unknown config key {key!r} in {overrides}. The config's keys are in its "
          "experiments/<study>.py get_config() and its task's base_config().", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
