"""The fetcher, without internet: a loopback HTTP server (127.0.0.1, an ephemeral port) serves
files the tests make, and can answer 404, drop the connection mid-file, ignore or honour Range,
and serve slowly. Also: safe archive extraction, offline refusal, the registry against the real
data root, and MNIST end to end through a mirror into an empty cache."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import re
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import ml_collections
import numpy as np
import pytest

from conftest import ROOT, real_path
from playbook.data import cifar10, fetch, mnist, sources
from playbook.data.paths import DataError, data_root, search_roots
from playbook.data.sources import Archive, Digest, Source


# ---------------------------------------------------------------------------------- server


class Handler(http.server.BaseHTTPRequestHandler):
  """Serves ``server.files``; ``server.modes[path]``: 'ok', '404', 'drop' (half the body, once),
  'norange' (ignores Range), 'slow' (the body in pieces, with pauses)."""

  def do_GET(self):  # noqa: N802 (http.server's name)
    state = self.server.state
    path = urlsplit(self.path).path.lstrip("/")
    state.log.append((path, self.headers.get("Range")))
    mode = state.modes.get(path, "ok")
    if path not in state.files or mode == "404":
      self.send_error(404)
      return
    data, start = state.files[path], 0
    wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
    if wanted and mode != "norange" and int(wanted.group(1)) < len(data):
      start = int(wanted.group(1))
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if mode in ("drop", "norange") and path not in state.dropped:
      state.dropped.add(path)
      self.wfile.write(body[:len(body) // 2])  # HTTP/1.0: the connection closes after this.
      return
    pieces = 8 if mode == "slow" else 1
    for i in range(pieces):
      self.wfile.write(body[i * len(body) // pieces:(i + 1) * len(body) // pieces])
      if mode == "slow":
        self.wfile.flush()
        time.sleep(0.04)

  def log_message(self, *args):
    pass


@dataclasses.dataclass
class ServerState:
  url: str = ""
  files: dict = dataclasses.field(default_factory=dict)
  modes: dict = dataclasses.field(default_factory=dict)
  log: list = dataclasses.field(default_factory=list)
  dropped: set = dataclasses.field(default_factory=set)

  def gets(self, path: str) -> list:
    return [r for p, r in self.log if p == path]


@pytest.fixture
def server(monkeypatch):
  """A loopback HTTP server for one test; the network is allowed (to it) by unsetting OFFLINE."""
  monkeypatch.delenv("PLAYBOOK_OFFLINE", raising=False)
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  httpd.daemon_threads = True
  httpd.state = ServerState(url=f"http://127.0.0.1:{httpd.server_address[1]}")
  thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
  thread.start()
  yield httpd.state
  httpd.shutdown()
  httpd.server_close()
  thread.join(5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """An empty cache ($XDG_CACHE_HOME/playbook) and no named data root."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  monkeypatch.delenv("PLAYBOOK_DATA_DIR", raising=False)
  return tmp_path / "xdg" / "playbook"


def blob(n: int = 200_000, seed: int = 0) -> bytes:
  return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def toy(data: bytes, urls=(), path="toy/blob.bin", archive=None) -> Source:
  return Source(path, "toy", (Digest(len(data), hashlib.sha256(data).hexdigest()),), tuple(urls),
                "test data", "none", archive)


def files_under(folder: Path) -> list[str]:
  """Every file left under ``folder`` (lock files aside: they stay by design)."""
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                if p.is_file() and fetch.LOCKS not in p.parts)


# -------------------------------------------------------------------------------- download


def test_fetch_streams_verifies_and_says_what_from_where_to_where(server, cache, capsys):
  data = blob()
  server.files["f/blob.bin"] = data
  source = toy(data, [f"{server.url}/f/blob.bin"])
  path = fetch.ensure(source)
  assert path == cache / "toy" / "blob.bin" and path.read_bytes() == data
  assert files_under(cache) == ["toy/blob.bin"]  # No temp file left.
  line = capsys.readouterr().err.splitlines()[0]
  assert line == f"Fetching toy/blob.bin (200.0 kB) from {server.url}/f/blob.bin to {path}"
  assert fetch.ensure(source) == path and len(server.log) == 1  # Present: not fetched again.


def test_wrong_checksum_removes_the_file_and_names_url_expected_and_got(server, cache):
  data = blob()
  server.files["f/blob.bin"] = data[:-1] + b"\x00"  # Same size, one byte changed.
  source = toy(data, [f"{server.url}/f/blob.bin"])
  with pytest.raises(fetch.ChecksumError) as error:
    fetch.ensure(source)
  message = str(error.value)
  assert "toy/blob.bin" in message and f"{server.url}/f/blob.bin" in message
  assert source.digests[0].sha256 in message
  assert hashlib.sha256(server.files["f/blob.bin"]).hexdigest() in message
  assert "PLAYBOOK_MIRROR" in message and "PLAYBOOK_DATA_DIR" in message
  assert files_under(cache) == []


@pytest.mark.parametrize("mode", ["drop", "norange"])
def test_dropped_connection_resumes_with_range_or_restarts_cleanly(server, cache, mode):
  data = blob(300_000)
  server.files["f/blob.bin"], server.modes["f/blob.bin"] = data, mode
  path = fetch.ensure(toy(data, [f"{server.url}/f/blob.bin"]))
  assert path.read_bytes() == data
  ranges = server.gets("f/blob.bin")
  assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"  # Asked to resume.


def test_404_then_the_next_url(server, cache, capsys):
  data = blob()
  server.files["mirror/blob.bin"] = data
  urls = [f"{server.url}/gone/blob.bin", f"{server.url}/mirror/blob.bin"]
  assert fetch.ensure(toy(data, urls)).read_bytes() == data
  assert [p for p, _ in server.log] == ["gone/blob.bin", "mirror/blob.bin"]
  assert "HTTP 404" in capsys.readouterr().err


def test_mirror_is_tried_first_and_laid_out_like_a_data_root(server, cache, monkeypatch):
  data = blob()
  server.files["m/toy/blob.bin"] = data
  monkeypatch.setenv("PLAYBOOK_MIRROR", f"{server.url}/m")
  fetch.ensure(toy(data, [f"{server.url}/official/blob.bin"]))
  assert [p for p, _ in server.log] == ["m/toy/blob.bin"]


def test_two_concurrent_fetches_of_one_file_make_one_download(server, cache):
  data = blob()
  server.files["f/blob.bin"], server.modes["f/blob.bin"] = data, "slow"
  source = toy(data, [f"{server.url}/f/blob.bin"])
  barrier, results = threading.Barrier(2), []

  def worker():
    barrier.wait()
    results.append(fetch.fetch(source))

  threads = [threading.Thread(target=worker) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(30)
  assert len(results) == 2 and results[0] == results[1] == cache / "toy" / "blob.bin"
  assert results[0].read_bytes() == data and len(server.gets("f/blob.bin")) == 1
  assert files_under(cache) == ["toy/blob.bin"]


def test_offline_refuses_the_network_with_both_fixes(server, cache, monkeypatch):
  monkeypatch.setenv("PLAYBOOK_OFFLINE", "1")
  data = blob(1000)
  url = f"{server.url}/f/blob.bin"
  server.files["f/blob.bin"] = data
  with pytest.raises(DataError) as error:
    fetch.ensure(toy(data, [url]))
  message = str(error.value)
  for part in ("toy/blob.bin", url, "PLAYBOOK_OFFLINE=1", "PLAYBOOK_MIRROR",
               "PLAYBOOK_DATA_DIR=/path/to/data", str(cache / "toy" / "blob.bin")):
    assert part in message
  assert server.log == [] and not cache.exists()


def test_offline_still_reads_a_local_mirror_folder(cache, tmp_path, monkeypatch):
  data = blob(1000)
  (tmp_path / "mirror" / "toy").mkdir(parents=True)
  (tmp_path / "mirror" / "toy" / "blob.bin").write_bytes(data)
  monkeypatch.setenv("PLAYBOOK_MIRROR", str(tmp_path / "mirror"))
  path = fetch.ensure(toy(data, ["https://example.invalid/blob.bin"]))
  assert path.read_bytes() == data


def test_a_named_root_is_read_never_written(server, cache, tmp_path, monkeypatch):
  named = tmp_path / "named"
  (named / "toy").mkdir(parents=True)
  monkeypatch.setenv("PLAYBOOK_DATA_DIR", str(named))
  data = blob(1000)
  server.files["f/blob.bin"] = data
  source = toy(data, [f"{server.url}/f/blob.bin"])
  assert search_roots() == [named, cache] and data_root() == named
  assert fetch.ensure(source) == cache / "toy" / "blob.bin"
  assert files_under(named) == []
  (named / "toy" / "blob.bin").write_bytes(b"the user's own copy")  # Read as it is: the
  assert fetch.ensure(source) == named / "toy" / "blob.bin"         # reader checks it.


def test_default_data_root_is_the_xdg_cache(cache):
  assert data_root() == cache and search_roots() == [cache]


def test_data_file_fetches_and_checks_a_registered_image(cache, tmp_path, monkeypatch):
  data = blob(1000)
  (tmp_path / "mirror" / "style").mkdir(parents=True)
  (tmp_path / "mirror" / "style" / "toy.jpg").write_bytes(data)
  monkeypatch.setenv("PLAYBOOK_MIRROR", str(tmp_path / "mirror"))
  monkeypatch.setitem(sources.SOURCES, "style/toy.jpg",
                      toy(data, ["https://example.invalid/toy.jpg"], "style/toy.jpg"))
  assert fetch.data_file("style/toy.jpg") == cache / "style" / "toy.jpg"
  assert fetch.data_file("style/mine.jpg") == cache / "style" / "mine.jpg"  # Not registered.
  named = tmp_path / "named"
  (named / "style").mkdir(parents=True)
  (named / "style" / "toy.jpg").write_bytes(b"changed")
  with pytest.raises(DataError, match="toy.jpg is not the registered style/toy.jpg"):
    fetch.data_file("style/toy.jpg", named)


# -------------------------------------------------------------------------------- archives


def tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
  path = tmp_path / "bad.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    ok = tarfile.TarInfo("pkg/ok.txt")
    ok.size = 2
    tar.addfile(ok, io.BytesIO(b"ok"))
    member.size = len(data) if member.isfile() else 0
    tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
  return path


def bad_tar_member(kind: str) -> tarfile.TarInfo:
  member = tarfile.TarInfo({"dotdot": "pkg/../../evil.txt", "absolute": "/tmp/evil.txt"}.get(
      kind, "pkg/evil"))
  if kind == "symlink":
    member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
  elif kind == "hardlink":
    member.type, member.linkname = tarfile.LNKTYPE, "pkg/ok.txt"
  elif kind == "device":
    member.type = tarfile.CHRTYPE
  return member


@pytest.mark.parametrize("kind,why", [("dotdot", "'..'"), ("absolute", "absolute path"),
                                      ("symlink", "is a link"), ("hardlink", "is a link"),
                                      ("device", "device")])
def test_unsafe_tar_member_refuses_the_archive(tmp_path, kind, why):
  archive = tar_with(tmp_path, bad_tar_member(kind), b"evil")
  work = tmp_path / "work"
  work.mkdir()
  with pytest.raises(DataError, match=f"Refusing archive .*{re.escape(why)}"):
    fetch.extract_archive(archive, work / "out")
  assert list(work.iterdir()) == []  # Neither the target nor a temp folder is left.
  assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


@pytest.mark.parametrize("kind", ["dotdot", "symlink"])
def test_unsafe_zip_member_refuses_the_archive(tmp_path, kind):
  archive = tmp_path / "bad.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    zf.writestr("pkg/ok.txt", b"ok")
    if kind == "dotdot":
      zf.writestr("pkg/../../evil.txt", b"evil")
    else:
      info = zipfile.ZipInfo("pkg/link")
      info.external_attr = (stat.S_IFLNK | 0o777) << 16
      zf.writestr(info, "/etc/passwd")
  with pytest.raises(DataError, match="Refusing archive"):
    fetch.extract_archive(archive, tmp_path / "work" / "out")
  assert list((tmp_path / "work").iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def toy_tarball() -> tuple[bytes, dict[str, bytes]]:
  members = {"a.bin": blob(5000, 1), "sub/b.bin": blob(7000, 2)}
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    for name, data in {**members, "readme.txt": b"skipped"}.items():
      info = tarfile.TarInfo(f"pkg/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue(), members


def test_archive_is_fetched_checked_unpacked_into_place_and_removed(server, cache):
  raw, members = toy_tarball()
  server.files["f/pkg.tar.gz"] = raw
  spec = Archive(into="toy/pkg", strip="pkg/", include=r"a\.bin|sub/b\.bin",
                 member_md5={k: hashlib.md5(v).hexdigest() for k, v in members.items()})
  folder = fetch.ensure(toy(raw, [f"{server.url}/f/pkg.tar.gz"], "toy/pkg.tar.gz", spec))
  assert folder == cache / "toy" / "pkg"
  assert {p: (folder / p).read_bytes() for p in members} == members
  assert files_under(cache) == ["toy/pkg/a.bin", "toy/pkg/sub/b.bin"]  # Archive removed.


def test_archive_with_a_wrong_member_leaves_nothing(server, cache):
  raw, members = toy_tarball()
  server.files["f/pkg.tar.gz"] = raw
  spec = Archive(into="toy/pkg", strip="pkg/", include=r".*\.bin",
                 member_md5={"a.bin": "0" * 32, "sub/b.bin": hashlib.md5(b"x").hexdigest()})
  with pytest.raises(fetch.ChecksumError, match="member a.bin has md5"):
    fetch.ensure(toy(raw, [f"{server.url}/f/pkg.tar.gz"], "toy/pkg.tar.gz", spec))
  assert files_under(cache) == []


def test_manifest_archive_writes_its_listing(tmp_path):
  members = {"train/cats/cat.0.jpg": b"c", "train/dogs/dog.0.jpg": b"d"}
  archive = tmp_path / "cd.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for name, data in members.items():
      zf.writestr(f"cats_and_dogs_filtered/{name}", data)
    zf.writestr("cats_and_dogs_filtered/vectorize.py", b"print()")
  sums = {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}
  spec = dataclasses.replace(sources.CATS_DOGS.archive,
                             manifest_sha256=sources.manifest_sha256(sums))
  source = dataclasses.replace(sources.CATS_DOGS, archive=spec)
  folder = tmp_path / "cats_and_dogs"
  fetch.extract_archive(archive, folder, strip=spec.strip, include=spec.include,
                        check=lambda f, m: fetch.check_members(source, f, m))
  assert sources.parse_manifest((folder / "originals.sha256").read_text()) == sums
  assert not (folder / "vectorize.py").exists()


# ------------------------------------------------------------------------- the registry


def test_every_experiment_is_a_registered_study():
  studies = {p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__"}
  assert studies == set(sources.STUDIES)
  for study in studies:
    assert sources.resolve(study)


def test_registry_entries_are_complete():
  for source in sources.SOURCES.values():
    assert source.urls and all(u.startswith(("https://", "http://")) for u in source.urls)
    assert source.licence and source.citation and source.size > 0
    for digest in source.digests:
      assert not digest.sha256 or re.fullmatch(r"[0-9a-f]{64}", digest.sha256)
      assert not digest.md5 or re.fullmatch(r"[0-9a-f]{32}", digest.md5)
  assert sources.CIFAR10.digests[0] == Digest(
      170498071, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
      "c58f30108f718f92721af3b95e74349a")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "anna", "style", "vgg16"])
def test_real_data_root_matches_the_registry(name, monkeypatch):
  real_path("", "mnist/t10k-labels-idx1-ubyte.gz")
  for source in sources.resolve(name):
    state, path, note = fetch.status(source)
    assert state == "verified", (source.path, path, note)


def test_real_cats_and_dogs_originals_list_is_the_registered_one(real_cats_dogs_dir):
  entries = sources.parse_manifest((real_cats_dogs_dir / "originals.sha256").read_text())
  assert len(entries) == 3000
  assert sources.manifest_sha256(entries) == sources.CATS_DOGS_ORIGINALS_SHA256


# ------------------------------------------------------------------------------ readers


def test_cifar10_auto_reads_the_roots_copy_else_fetches_the_official(cache, tmp_path):
  named = tmp_path / "named"
  cfg = ml_collections.ConfigDict(dict(source="auto", dir=str(named)))
  (named / "cifar10").mkdir(parents=True)
  assert cifar10.resolve(cfg) == ("official", None)  # Nothing there: to be fetched.
  (named / "cifar10" / "images.sha256").write_text("")
  assert cifar10.resolve(cfg) == ("files", named / "cifar10")
  assert "LOSSY JPEG" in cifar10.describe(cfg)
  (named / "cifar10" / cifar10.BATCHES).mkdir()
  assert cifar10.resolve(cfg) == ("official", named / "cifar10")
  assert cifar10.describe(cfg) == cifar10.COPIES["official"]


def test_cifar10_auto_fetches_and_unpacks_the_official_tarball(server, cache, monkeypatch):
  from test_cifar_data import official_batches
  members, arrays = official_batches(n=2)
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    for name, data in {**members, "readme.html": b"<html>"}.items():
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  raw = buffer.getvalue()
  server.files["toronto/cifar-10-python.tar.gz"] = raw
  md5s = {k: hashlib.md5(v).hexdigest() for k, v in members.items()}
  monkeypatch.setattr(cifar10, "BATCH_MD5", md5s)
  monkeypatch.setattr(sources, "CIFAR10", dataclasses.replace(
      sources.CIFAR10, digests=(Digest(len(raw), hashlib.sha256(raw).hexdigest()),),
      urls=(f"{server.url}/toronto/cifar-10-python.tar.gz",),
      archive=dataclasses.replace(sources.CIFAR10.archive, member_md5=md5s)))
  cfg = ml_collections.ConfigDict(dict(source="auto", dir="", val_size=2, split_seed=0))
  data = cifar10.load(cfg)
  np.testing.assert_array_equal(data.test.x, arrays["test_batch"][0])
  assert files_under(cache) == sorted(f"cifar10/cifar-10-batches-py/{k}" for k in members)
  assert cifar10.describe(cfg) == cifar10.COPIES["official"]


def test_registered_weights_are_fetched_into_the_cache(server, cache, monkeypatch, tmp_path):
  from playbook.weights.locate import locate
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
  data = blob(1000)
  server.files["w/fake.h5"] = data
  source = toy(data, [f"{server.url}/w/fake.h5"], "weights/fake.h5")
  monkeypatch.setitem(sources.SOURCES, source.path, source)
  assert locate("fake.h5", where_to_get="x") == cache / "weights" / "fake.h5"
  (tmp_path / "keras" / "models").mkdir(parents=True)  # Keras's cache is used in place...
  (tmp_path / "keras" / "models" / "other.h5").write_bytes(data)
  monkeypatch.setitem(sources.SOURCES, "weights/other.h5",
                      toy(data, [f"{server.url}/w/none.h5"], "weights/other.h5"))
  assert locate("other.h5", where_to_get="x") == tmp_path / "keras" / "models" / "other.h5"
  assert [p for p, _ in server.log] == ["w/fake.h5"]  # ...and not fetched.


@pytest.fixture
def real_mnist_server(real_data_dir, server, cache):
  """The server, holding a copy of the real mnist/ folder under mnist/ as a mirror."""
  for path in (real_data_dir / "mnist").glob("*.gz"):
    server.files[f"mnist/{path.name}"] = path.read_bytes()
  return server


def test_mnist_end_to_end_from_a_mirror_into_an_empty_cache(real_mnist_server, cache,
                                                            monkeypatch, capsys):
  monkeypatch.setenv("PLAYBOOK_MIRROR", real_mnist_server.url)
  cfg = ml_collections.ConfigDict(dict(name="mnist", source="files", dir="", val_size=5000,
                                       split_seed=0))
  data = mnist.load(cfg)
  assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
  assert files_under(cache / "mnist") == sorted(sources.IDX_FILES["mnist"])
  err = capsys.readouterr().err
  assert f"Fetching mnist/train-images-idx3-ubyte.gz (9.9 MB) from {real_mnist_server.url}" in err


def test_altered_mirror_file_is_refused_and_nothing_is_kept(real_mnist_server, cache,
                                                            monkeypatch):
  name = "train-images-idx3-ubyte.gz"
  data = bytearray(real_mnist_server.files[f"mnist/{name}"])
  data[5000] ^= 0xFF
  real_mnist_server.files[f"mnist/{name}"] = bytes(data)
  monkeypatch.setenv("PLAYBOOK_MIRROR", real_mnist_server.url)
  for path, source in list(sources.SOURCES.items()):  # The official URLs: a 404 on loopback.
    if source.dataset == "mnist":
      monkeypatch.setitem(sources.SOURCES, path, dataclasses.replace(
          source, urls=(f"{real_mnist_server.url}/official/{source.name}",)))
  cfg = ml_collections.ConfigDict(dict(name="mnist", source="auto", dir="", val_size=5000,
                                       split_seed=0))
  got = hashlib.sha256(data).hexdigest()
  with pytest.raises(fetch.ChecksumError, match=f"mnist/{name} from {real_mnist_server.url}/"
                     f"mnist/{name} does not match the registry: got 9912422 bytes, sha256 "
                     f"{got}.*expected 9912422 bytes, sha256 440fcabf"):
    mnist.load(cfg)
  assert not cache.exists() or files_under(cache) == []


def test_launch_fetch_lists_and_fetches_from_a_local_mirror(real_data_dir, cache, tmp_path,
                                                            capsys):
  from launch import fetch as launch_fetch
  shutil.copytree(real_data_dir / "mnist", tmp_path / "mirror" / "mnist")
  assert launch_fetch.list_sources(["mnist_mlp"]) == 4
  assert "Missing: 4 file(s), 11.6 MB" in capsys.readouterr().out
  assert launch_fetch.fetch_sources(["mnist_mlp"], mirror=str(tmp_path / "mirror")) == 0
  assert launch_fetch.list_sources(["mnist_mlp"]) == 0
  assert capsys.readouterr().out.count("verified") == 4
