"""Shared fixtures: small IDX files written by the tests, the real data root when present, and a
guard that fails any test reaching past this machine's loopback."""

from __future__ import annotations

import gzip
import ipaddress
import os
import socket
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playbook.run import compile_cache  # noqa: E402

# One cache for the test process and the runs it launches: the same programs compile once.
os.environ.setdefault("PLAYBOOK_JAX_CACHE", str(ROOT / ".pytest_cache" / "jax"))
compile_cache.enable()
# Nothing is downloaded while testing, in fixtures and launched runs too (no_network below adds a
# guard per test; the loopback-server tests of test_fetch.py lift OFFLINE for themselves).
os.environ["PLAYBOOK_OFFLINE"] = "1"
os.environ.pop("PLAYBOOK_MIRROR", None)


def _is_loopback(host) -> bool:
  host = str(host).strip("[]")
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host.split("%")[0]).is_loopback or host.startswith("::ffff:127.")
  except ValueError:
    return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch, request):
  """Tests never use the network: PLAYBOOK_OFFLINE=1 (a test serving files on 127.0.0.1 unsets
  it), no inherited PLAYBOOK_MIRROR, and a connection to anything but loopback or a Unix socket
  raises and fails the test, even if the code under test swallowed the error."""
  monkeypatch.setenv("PLAYBOOK_OFFLINE", "1")
  monkeypatch.delenv("PLAYBOOK_MIRROR", raising=False)
  attempts = []
  real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

  def check(sock, address):
    if sock.family not in (socket.AF_INET, socket.AF_INET6):  # Unix sockets and the like.
      return
    if not _is_loopback(address[0]):
      attempts.append(address)
      raise ConnectionRefusedError(f"test tried to reach {address}: tests must stay offline")

  def connect(sock, address):
    check(sock, address)
    return real_connect(sock, address)

  def connect_ex(sock, address):
    check(sock, address)
    return real_connect_ex(sock, address)

  monkeypatch.setattr(socket.socket, "connect", connect)
  monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
  yield
  if attempts:
    pytest.fail(f"{request.node.nodeid} opened non-loopback connection(s) to {attempts}",
                pytrace=False)


def write_idx_gz(path: Path, array: np.ndarray, magic: int) -> Path:
  """Writes ``array`` (uint8) as a gzipped IDX file, the MNIST distribution format."""
  path.parent.mkdir(parents=True, exist_ok=True)
  header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())
  return path


def real_path(relative: str, marker: str | None = None) -> Path:
  """$PLAYBOOK_DATA_DIR/``relative``; the calling test skips when it (or ``marker`` in it) is
  missing, so unit tests run anywhere and real-data tests run in CI."""
  root = os.environ.get("PLAYBOOK_DATA_DIR")
  path = Path(root or ".") / relative
  if not root or not (path / marker if marker else path).exists():
    pytest.skip(f"needs the real {relative or 'data'}: set PLAYBOOK_DATA_DIR "
                "(CI points it at ../shared/data)")
  return path


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
  """$PLAYBOOK_DATA_DIR with the real MNIST files."""
  return real_path("", "mnist/t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def real_weights_dir() -> Path:
  """$PLAYBOOK_DATA_DIR/weights with the real VGG16 base."""
  return real_path("weights", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")


@pytest.fixture(scope="session")
def real_cats_dogs_dir() -> Path:
  """$PLAYBOOK_DATA_DIR/cats_and_dogs."""
  return real_path("cats_and_dogs", "resized.sha256")


@pytest.fixture(scope="session")
def real_cifar10_dir() -> Path:
  """$PLAYBOOK_DATA_DIR/cifar10 (the staged JPEG copy)."""
  return real_path("cifar10", "images.sha256")


@pytest.fixture(scope="session")
def anna_path() -> Path:
  """The real $PLAYBOOK_DATA_DIR/text/anna.txt."""
  return real_path("text/anna.txt")
