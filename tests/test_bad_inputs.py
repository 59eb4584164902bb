"""Every wrong input ends in one clear line and a non-zero exit, with no traceback, and leaves the
workdir as it was: a table of (command, message fragment, exit status, workdir afterwards).

The commands run as users run them (``python -m launch.<entry> ...``), all at once in a small
pool (each is a second or two of start-up); each table row is then one test.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, write_idx_gz

MLP = "--config=experiments/mnist_mlp.py:quick"
# workdir state afterwards: "absent" (never created), "same" (files and bytes unchanged).
CASES = {
    # --- config values: refused before anything is written (exit 2) -------------------------
    "misspelt argument": (["main", "--config=experiments/mnist_mlp.py:quik"],
                          "unknown config argument 'quik'", 2, "absent"),
    "unknown study file": (["main", "--config=experiments/no_such_study.py"],
                           "no config file experiments/no_such_study.py. The studies:", 2,
                           "absent"),
    "unknown key": (["main", MLP, "--config.train.no_such_key=1"],
                    "unknown config key 'no_such_key'", 2, "absent"),
    "ill-typed value": (["main", MLP, "--config.train.batch_size=many"],
                        "--config.train.batch_size=many", 2, "absent"),
    "zero batch": (["main", MLP, "--config.train.batch_size=0"],
                   "config.train.batch_size=0 is not accepted: expected an integer > 0", 2,
                   "absent"),
    "negative epochs": (["main", MLP, "--config.train.num_epochs=-1"],
                        "config.train.num_epochs=-1", 2, "absent"),
    "negative width": (["main", MLP, "--config.model.hidden=(-3,)"],
                       "config.model.hidden=(-3,) is not accepted: expected an integer > 0", 2, "absent"),
    "string width": (["main", MLP, "--config.model.hidden=('wide',)"],
                     "config.model.hidden=('wide',)", 2, "absent"),
    "NaN learning rate": (["main", MLP, "--config.optim.learning_rate=nan"],
                          "config.optim.learning_rate=nan", 2, "absent"),
    "negative learning rate": (["main", MLP, "--config.optim.learning_rate=-0.1"],
                               "expected a finite number > 0", 2, "absent"),
    "dropout of 1.5": (["main", MLP, "--config.model.dropout=1.5"],
                       "config.model.dropout=1.5 is not accepted: expected a number in [0, 1)",
                       2, "absent"),
    "unknown model": (["main", MLP, "--config.model.name=resnet"],
                      "config.model.name='resnet' is not accepted: expected one of 'mlp'", 2,
                      "absent"),
    "unknown optimiser": (["main", MLP, "--config.optim.name=adamx"],
                          "config.optim.name='adamx'", 2, "absent"),
    "zero seeds": (["main", MLP, "--config.num_seeds=0"], "config.num_seeds=0", 2, "absent"),
    "unknown data set": (["main", MLP, "--config.data.name=imagenet"],
                         "config.data.name='imagenet'", 2, "absent"),
    "sweep of a layer width": (["main", MLP, "--config.sweep.hidden=64,128"],
                               "config.sweep.hidden cannot be swept in one program", 2, "absent"),
    "sweep of a value the optimiser ignores": (["main", MLP, "--config.sweep.momentum=0.8,0.9"],
                                               "the 'adamw' optimiser does not use momentum", 2,
                                               "absent"),
    "sweep of a negative rate": (["main", MLP, "--config.sweep.learning_rate=0.1,-1"],
                                 "config.optim.learning_rate=-1.0 is not accepted", 2, "absent"),
    "sweep of one value twice": (["main", MLP, "--config.sweep.learning_rate=0.001,1e-3"],
                                 "config.sweep.learning_rate='0.001,1e-3' lists 0.001 more than "
                                 "once", 2, "absent"),
    "sweep of dropout 1": (["main", MLP, "--config.sweep.dropout=0.2,1"],
                           "config.model.dropout=1.0 is not accepted", 2, "absent"),
    "sweep of dropout in a net without it": (
        ["main", "--config=experiments/cifar10_fast.py:quick", "--config.sweep.dropout=0.1,0.2"],
        "the 'fast_resnet' model has no dropout rate to sweep", 2, "absent"),
    "char_lstm sweep of label smoothing": (
        ["main", "--config=experiments/char_lstm.py:quick", "--config.sweep.label_smoothing=0,.1"],
        "config.sweep.label_smoothing cannot be swept in one program", 2, "absent"),
    "cats_dogs sweep of a negative dropout": (
        ["main", "--config=experiments/cats_dogs.py:quick", "--config.sweep.dropout=0.1,-0.5"],
        "config.head.dropout=-0.5 is not accepted", 2, "absent"),
    "unknown task": (["main", MLP, "--config.task=regression"],
                     "config.task='regression' is not a task; known:", 2, "absent"),
    "scratch activation": (["main", "--config=experiments/scratch_nn.py:quick",
                            "--config.model.activation=swish"],
                           "config.model.activation='swish'", 2, "absent"),
    "zero sequence length": (["main", "--config=experiments/char_lstm.py:quick",
                              "--config.data.seq_len=0"], "config.data.seq_len=0", 2, "absent"),
    "eval streams differ": (["main", "--config=experiments/char_lstm.py:quick",
                             "--config.train.eval_batch_size=16"],
                            "must equal train.batch_size=32", 2, "absent"),
    "transfer mode": (["main", "--config=experiments/cats_dogs.py:quick",
                       "--config.mode=partial"], "config.mode='partial'", 2, "absent"),
    "style size below 16": (["main", "--config=experiments/style_transfer.py:quick",
                             "--config.sizes=(8,)", "--config.steps=(5,)"],
                            "config.sizes=(8,)", 2, "absent"),
    # --- workdirs ------------------------------------------------------------------------------
    "workdir is a file": (["main", MLP], "is a file, not a folder", 1, "same"),
    "workdir of another study": (["main", MLP], "holds a run of study 'fashion_mlp'", 1, "same"),
    "damaged config.json": (["main", MLP], "is not valid JSON", 1, "same"),
    "data root missing": (["main", MLP, "--data_dir={tmp}/no_such_root"], "no_such_root", 1,
                          "absent"),
    "labels where images belong": (["main", MLP, "--data_dir={tmp}/swapped_root"],
                                   "is a labels file, where an images file belongs", 1, "absent"),
    "other values, well formed": (["main", MLP, "--data_dir={tmp}/altered_root"],
                                  "its decompressed content has sha256", 1, "absent"),
    # --- images from outside (launch.predict, launch.stylize) ---------------------------------
    "predict without a run": (["predict", "{tmp}/image.png"], "not a run directory", 1, "same"),
    "predict on a language model": (["predict", "{tmp}/image.png"], "does not classify images",
                                    1, "same"),
    "predict a non-image": (["predict", "{tmp}/not_an_image.jpg"], "cannot be decoded", 1,
                            "same"),
    "predict a truncated PNG": (["predict", "{tmp}/truncated.png"], "cannot be decoded", 1,
                                "same"),
    "predict a decompression bomb": (["predict", "{tmp}/bomb.png"],
                                     "declares 20000 x 20000 pixels", 1, "same"),
    "predict an array of the wrong shape": (["predict", "{tmp}/wrong.npy"],
                                            "this run takes uint8 images of shape (28, 28, 1)", 1, "same"),
    "predict a labels IDX file": (["predict", "{tmp}/labels-idx1-ubyte.gz"],
                                  "holds uint8 images of shape ()", 1, "same"),
    "stylize a missing image": (["stylize", "--content={tmp}/nope.jpg", "--style={tmp}/bomb.png"],
                                "Missing content image", 1, "same"),
    "stylize a bomb": (["stylize", "--content={tmp}/image.png", "--style={tmp}/bomb.png"],
                       "Refused style image", 1, "same"),
    # --- text --------------------------------------------------------------------------------
    "sample from a classifier run": (["sample"], "which does not write text", 1, "same"),
}


def prepare(name: str, tmp: Path) -> tuple[list[str], Path]:
  """The command of case ``name`` and its workdir, with the workdir set up as the case needs."""
  entry, *args = CASES[name][0]
  workdir = tmp / name.replace(" ", "_")
  args = [a.replace("{tmp}", str(tmp)) for a in args]
  if name == "workdir is a file":
    workdir.write_text("not a folder")
  elif name in ("workdir of another study", "damaged config.json"):
    (workdir / "checkpoints" / "latest" / "8").mkdir(parents=True)  # Progress to protect.
    config = {"task": "classify", "study": "fashion_mlp"}
    (workdir / "config.json").write_text("{broken" if name.startswith("damaged")
                                         else json.dumps(config))
  elif entry == "predict" and name not in ("predict without a run",
                                           "predict on a language model"):
    workdir = tmp / "classifier_run"  # Trained once by the fixture; every case only reads it.
  elif name in ("predict on a language model", "sample from a classifier run"):
    workdir.mkdir()
    task = "char_lm" if "language model" in name else "classify"
    (workdir / "config.json").write_text(json.dumps({"task": task, "study": "s", "num_seeds": 1}))
  cmd = [sys.executable, "-m", f"launch.{entry}"]
  if entry in ("main", "predict", "sample"):
    cmd.append(f"--workdir={workdir}")
  if entry == "stylize":
    cmd += ["--noprogress", f"--out={workdir}/out.png"]
  return cmd + args, workdir


def make_roots(tmp: Path, real: Path) -> None:
  """Data roots with one wrong MNIST file each: a labels file in the images' place, and the
  test labels with one value changed (a well-formed file, recompressed)."""
  import gzip
  import shutil
  for name in ("swapped_root", "altered_root"):
    shutil.copytree(real / "mnist", tmp / name / "mnist")
  folder = tmp / "swapped_root" / "mnist"
  (folder / "train-images-idx3-ubyte.gz").unlink()
  shutil.copy(folder / "train-labels-idx1-ubyte.gz", folder / "train-images-idx3-ubyte.gz")
  labels = tmp / "altered_root" / "mnist" / "t10k-labels-idx1-ubyte.gz"
  raw = bytearray(gzip.decompress(labels.read_bytes()))
  raw[100] = (raw[100] + 1) % 10
  labels.unlink()
  labels.write_bytes(gzip.compress(bytes(raw)))


def make_inputs(tmp: Path) -> None:
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp / "image.png")
  (tmp / "not_an_image.jpg").write_bytes(b"this is text, not a JPEG")
  png = (tmp / "image.png").read_bytes()
  (tmp / "truncated.png").write_bytes(png[:len(png) // 2])
  Image.new("L", (20000, 20000)).save(tmp / "bomb.png")  # ~400 KB declaring 400 megapixels.
  np.save(tmp / "wrong.npy", np.zeros((2, 5, 5), np.uint8))
  write_idx_gz(tmp / "labels-idx1-ubyte.gz", np.zeros(3, np.uint8), 2049)


def snapshot(workdir: Path):
  if not workdir.exists():
    return None
  if workdir.is_file():
    return workdir.read_bytes()
  return {str(p.relative_to(workdir)): p.read_bytes() if p.is_file() else None
          for p in sorted(workdir.rglob("*")) if p.name != ".lock"}


@pytest.fixture(scope="module")
def outcomes(real_data_dir, tmp_path_factory):
  """Every case run once, three at a time: {name: (returncode, stderr, before, after)}."""
  tmp = tmp_path_factory.mktemp("bad_inputs")
  make_inputs(tmp)
  make_roots(tmp, real_data_dir)
  trained = subprocess.run(
      [sys.executable, "-m", "launch.main", MLP, f"--workdir={tmp / 'classifier_run'}",
       "--noprogress", "--config.train.num_epochs=1", "--config.data.train_limit=1024",
       "--config.tensorboard=False"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert trained.returncode == 0, trained.stderr[-3000:]
  prepared = {name: prepare(name, tmp) for name in CASES}
  before = {name: snapshot(workdir) for name, (_, workdir) in prepared.items()}
  env = dict(os.environ, PLAYBOOK_OFFLINE="1")

  def run(name):
    cmd, _ = prepared[name]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    done = dict(zip(CASES, pool.map(run, CASES)))
  return {name: (done[name].returncode, done[name].stderr, before[name],
                 snapshot(prepared[name][1])) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_ends_in_one_clear_line(outcomes, name):
  _, fragment, status, state = CASES[name]
  returncode, stderr, before, after = outcomes[name]
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert returncode == status, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert any(fragment in line for line in lines), stderr[-3000:]
  assert sum(line.startswith("error:") for line in lines) == 1, lines
  if state == "absent":
    assert after is None
  else:
    assert after == before  # Nothing written, nothing removed.


def test_the_table_covers_at_least_thirty_cases():
  assert len(CASES) >= 30


def test_a_full_disk_while_writing_results_names_the_path_and_keeps_the_checkpoints(
    real_data_dir, tmp_path):
  """ENOSPC when results.json is written (simulated), then the same command on a disk with
  room: it resumes from the intact checkpoints and finishes."""
  workdir = tmp_path / "run"
  code = (
      "import errno, sys\n"
      "from playbook.run import rundir\n"
      "write = rundir._write_json\n"
      "def full(path, obj):\n"
      "  if path.name == 'results.json':\n"
      "    raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
      "  return write(path, obj)\n"
      "rundir._write_json = full\n"
      "from absl import app\n"
      "from launch import main\n"
      f"sys.argv = ['main', '{MLP}', '--workdir={workdir}', '--noprogress',\n"
      "            '--config.train.num_epochs=1']\n"
      "app.run(main.main, flags_parser=main.parse_flags)\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert f"the disk is full: writing {workdir / 'results.json'} failed" in out.stderr
  assert not (workdir / "results.json").exists()
  assert list((workdir / "checkpoints" / "latest").glob("[0-9]*"))  # Intact.
  again = subprocess.run([sys.executable, "-m", "launch.main", MLP, f"--workdir={workdir}",
                          "--noprogress", "--config.train.num_epochs=1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads((workdir / "results.json").read_text())["epochs_run"] == 1
