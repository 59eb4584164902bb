"""Fetching registered files into the cache: verified, resumable, locked and atomic.

``ensure(path)`` is what a reader calls: the file (or an archive's folder) from the data root the
user named, else from the cache, else fetched into the cache. Fetching (stdlib ``urllib`` only):

* URLs in order: the mirror (``--mirror`` / ``PLAYBOOK_MIRROR``, a URL or a folder laid out like a
  data root) first, then the registry's (official first); the next one on any failure.
* The bytes stream into a temp file beside the target (``.<name>.part``) under a lock
  (``fcntl.flock``), so two processes fetching one file never clash: the second waits and then
  finds the file. A dropped connection resumes with an HTTP ``Range`` request (or restarts
  cleanly when the server ignores it); every socket operation has a timeout.
* Size and checksums are checked before an atomic rename; a mismatch removes the file and the
  error names the file, the URL, what was expected and what came.
* Archives are unpacked into a temp folder beside their target and renamed into place once their
  members are verified; a member with an absolute path, ``..``, a link or a device is refused.
* ``PLAYBOOK_OFFLINE=1`` forbids the network (a local mirror folder still works).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

from playbook.data import sources
from playbook.data.paths import DataError, cache_root, data_root, keras_models_dir, search_roots
from playbook.data.sources import Digest, Source

ENV_MIRROR = "PLAYBOOK_MIRROR"
ENV_OFFLINE = "PLAYBOOK_OFFLINE"
TIMEOUT_S = 30.0       # Per socket operation (connect, each read): a stalled server fails fast.
TRIES_PER_URL = 3      # Attempts on one URL after a dropped connection or a server error.
CHUNK = 1 << 16
USER_AGENT = "playbook-fetch/1 (python urllib)"
LOCKS, DOWNLOADS = ".locks", ".downloads"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
NETWORK_SCHEMES = {"http", "https", "ftp"}


class ChecksumError(DataError):
  """A fetched file does not match the registry (it was removed)."""


class _UrlFailed(Exception):
  """One URL did not give the file; the next one is tried."""

  def __init__(self, message: str, mismatch: bool = False):
    super().__init__(message)
    self.mismatch = mismatch


# ------------------------------------------------------------------------------ settings


def offline() -> bool:
  return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def mirror_bases(mirror: str | None = None) -> list[str]:
  """``mirror`` then $PLAYBOOK_MIRROR, as URL bases (a local folder becomes a file: URL)."""
  bases = []
  for value in (mirror, os.environ.get(ENV_MIRROR)):
    if value and value.strip():
      value = value.strip()
      if urllib.parse.urlsplit(value).scheme not in NETWORK_SCHEMES | {"file"}:
        value = Path(value).expanduser().resolve().as_uri()
      if value not in bases:
        bases.append(value)
  return bases


def candidate_urls(source: Source, mirror: str | None = None) -> list[str]:
  """Where ``source`` is fetched from, in order: the mirrors, then the registry's URLs."""
  return [base.rstrip("/") + "/" + source.path for base in mirror_bases(mirror)] + list(source.urls)


def is_network(url: str) -> bool:
  return urllib.parse.urlsplit(url).scheme in NETWORK_SCHEMES


def human(size: float) -> str:
  for unit in ("B", "kB", "MB", "GB"):
    if size < 1000 or unit == "GB":
      return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1000
  return ""


def fixes(source: Source) -> str:
  """The two ways out when a file can be neither found nor fetched."""
  return (f"Fix: point {ENV_MIRROR} (or launch.fetch --mirror) at a URL or folder laid out like a "
          f"data root (<mirror>/{source.path}), or use a data root that has it: Set "
          f"PLAYBOOK_DATA_DIR=/path/to/data (or pass --data_dir) to a folder holding "
          f"{source.target}.")


# ------------------------------------------------------------------------------ look-up


def extra_dirs(source: Source) -> list[Path]:
  """Folders searched after the data roots: Keras's cache for weight files (used in place)."""
  return [keras_models_dir()] if source.path.startswith("weights/") else []


def present(source: Source, data_dir=None) -> Path | None:
  """The copy of ``source`` a reader would use (named root, cache, Keras's cache), or None."""
  candidates = [root / source.target for root in search_roots(data_dir)]
  candidates += [folder / source.name for folder in extra_dirs(source)]
  for path in candidates:
    if path.is_dir() if source.archive else path.is_file():
      return path
  return None


def ensure(source: Source | str, data_dir=None, *, mirror: str | None = None,
           progress: bool | None = None) -> Path:
  """The file (or an archive's folder) a reader should open: present, else fetched to the cache.

  A root the user named is never written into. Files found are returned as they are: the reader
  runs its own checks (format, checksums) on them.
  """
  source = sources.get(source) if isinstance(source, str) else source
  found = present(source, data_dir)
  if found is not None:
    return found
  looked = [root / source.target for root in search_roots(data_dir)]
  return _fetch(source, cache_root(), mirror=mirror, progress=progress, timeout=TIMEOUT_S,
                looked=looked)


def data_file(relative: str, data_dir=None, *, verify: bool = True) -> Path:
  """A path relative to the data root (e.g. a style image, ``style/tubingen.jpg``): a registered
  file comes from the named root, the cache or the network, and is checked against the registry
  (``verify``) since no other reader checks it; any other path is just ``<data root>/relative``.
  """
  source = sources.SOURCES.get(Path(relative).as_posix())
  if source is None:
    return data_root(data_dir) / relative
  path = ensure(source, data_dir)
  if verify and not source.archive:
    ok, got = verify_file(path, source.digests)
    if not ok:
      raise DataError(f"{path} is not the registered {source.path}: got {describe_got(got)}, "
                      f"expected {' or '.join(d.describe() for d in source.digests)}. Replace it "
                      f"with the original ({source.urls[0]}).")
  return path


def fetch(source: Source | str, *, root: Path | None = None, mirror: str | None = None,
          progress: bool | None = None, timeout: float = TIMEOUT_S) -> Path:
  """Fetches ``source`` into ``root`` (default: the cache) unless a verified copy is there."""
  source = sources.get(source) if isinstance(source, str) else source
  return _fetch(source, Path(root) if root else cache_root(), mirror=mirror, progress=progress,
                timeout=timeout, looked=())


def _fetch(source: Source, root: Path, *, mirror, progress, timeout, looked) -> Path:
  dest = root / source.target
  if dest.is_dir() if source.archive else (
      dest.is_file() and verify_file(dest, source.digests)[0]):
    return dest  # Renamed into place whole, so complete; and verified (offline works too).
  urls = _usable_urls(source, mirror, looked)
  if source.archive:
    return _fetch_archive(source, root, urls, progress=progress, timeout=timeout)
  with _locked(root, source.path):
    if dest.is_file():
      if verify_file(dest, source.digests)[0]:
        return dest  # Another process fetched it while this one waited for the lock.
      print(f"{dest} does not match the registry: fetching it again.", file=sys.stderr)
      dest.unlink()
    return download(urls, dest, source.digests, what=source.path, progress=progress,
                    timeout=timeout, fix=fixes(source))


def _usable_urls(source: Source, mirror, looked: Sequence[Path]) -> list[str]:
  """The candidate URLs allowed now; offline with none left is the one clear error."""
  urls = candidate_urls(source, mirror)
  if not offline():
    return urls
  local = [u for u in urls if not is_network(u)]
  if local:
    return local
  where = f" It is not in {', '.join(map(str, looked))}." if looked else ""
  raise DataError(f"Cannot fetch {source.path} ({human(source.size)}) from {source.urls[0]}: "
                  f"{ENV_OFFLINE}=1 forbids the network.{where} {fixes(source)}")


# ------------------------------------------------------------------------------- locking


@contextlib.contextmanager
def _locked(root: Path, key: str) -> Iterator[None]:
  """An exclusive ``flock`` on ``<root>/.locks/<key>.lock`` (per open file: threads too)."""
  folder = root / LOCKS
  folder.mkdir(parents=True, exist_ok=True)
  fd = os.open(folder / (key.replace("/", "__") + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      import fcntl  # POSIX only; imported here so the module still imports elsewhere.
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        print(f"Waiting for another process fetching {key} ...", file=sys.stderr)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except ImportError:
      pass
    yield
  finally:
    os.close(fd)  # Closing releases the lock.


# ------------------------------------------------------------------------------ checking


def file_hashes(path: Path, md5: bool = True) -> dict:
  """{size, sha256, md5} of a file, in one pass."""
  sha, mdig = hashlib.sha256(), hashlib.md5() if md5 else None
  with open(path, "rb") as f:
    while block := f.read(1 << 20):
      sha.update(block)
      if mdig:
        mdig.update(block)
  return {"size": path.stat().st_size, "sha256": sha.hexdigest(),
          "md5": mdig.hexdigest() if mdig else ""}


def matches(got: dict, digest: Digest) -> bool:
  return (got["size"] == digest.size and (not digest.sha256 or got["sha256"] == digest.sha256)
          and (not digest.md5 or got["md5"] == digest.md5))


def verify_file(path: Path, digests: Sequence[Digest]) -> tuple[bool, dict]:
  """(whether ``path`` matches one of ``digests``, its size and hashes)."""
  if path.stat().st_size not in {d.size for d in digests}:
    return False, {"size": path.stat().st_size, "sha256": "", "md5": ""}
  got = file_hashes(path, md5=any(d.md5 for d in digests))
  return any(matches(got, d) for d in digests), got


def describe_got(got: dict) -> str:
  return ", ".join([f"{got['size']} bytes"] + [f"{k} {got[k]}" for k in ("sha256", "md5")
                                               if got.get(k)])


# ----------------------------------------------------------------------------- download


def download(urls: Sequence[str], dest: Path, digests: Sequence[Digest], *, what: str,
             progress: bool | None = None, timeout: float = TIMEOUT_S, fix: str = "") -> Path:
  """Streams the first of ``urls`` that works into ``dest``, verified against ``digests``.

  Each URL gets a few tries (resuming the temp file); a checksum mismatch removes the file and
  moves on. Raises ``ChecksumError`` when a mismatch was among the failures, else ``DataError``.
  """
  dest = Path(dest)
  created = not dest.parent.exists()
  dest.parent.mkdir(parents=True, exist_ok=True)
  _check_space(dest.parent, digests[0].size)
  part = dest.parent / f".{dest.name}.part"
  failures, mismatch = [], False
  print(f"Fetching {what} ({human(digests[0].size)}) from {urls[0]} to {dest}", file=sys.stderr)
  for i, url in enumerate(urls):
    if i:
      print(f"  trying {url}", file=sys.stderr)
    try:
      _download_verified(url, part, digests, what=what, progress=progress, timeout=timeout)
    except _UrlFailed as e:
      failures.append(f"{url}: {e}")
      mismatch |= e.mismatch
      print(f"  failed: {e}", file=sys.stderr)
      continue
    _fsync(part)
    os.replace(part, dest)  # Atomic: a reader sees the whole verified file or none.
    return dest
  if created and not any(dest.parent.iterdir()):
    dest.parent.rmdir()
  error = ChecksumError if mismatch else DataError
  fix = fix or f"Fix: point {ENV_MIRROR} at a mirror that has {what}."
  raise error(f"Could not fetch {what} to {dest}: " + "; ".join(failures) + f". {fix}")


def _download_verified(url, part, digests, *, what, progress, timeout) -> None:
  """One URL: transfer (resuming what is there), verify; a resumed file that fails the check is
  fetched once more from scratch before the URL is given up."""
  resumed = _transfer(url, part, digests[0].size, what=what, progress=progress, timeout=timeout)
  ok, got = verify_file(part, digests)
  if not ok and resumed:
    part.unlink()
    _transfer(url, part, digests[0].size, what=what, progress=progress, timeout=timeout)
    ok, got = verify_file(part, digests)
  if not ok:
    part.unlink()
    raise _UrlFailed(
        f"{what} from {url} does not match the registry: got {describe_got(got)}; expected "
        f"{' or '.join(d.describe() for d in digests)}. The file was removed", mismatch=True)


def _transfer(url, part: Path, expected_size: int, *, what, progress, timeout) -> bool:
  """Streams ``url`` into ``part``, resuming a partial file with a Range request; retries a
  dropped connection or a server error. Returns whether the data was appended to earlier bytes."""
  resumed = False
  for attempt in range(TRIES_PER_URL):
    offset = part.stat().st_size if part.exists() else 0
    if offset >= expected_size or not is_network(url):
      offset = 0
    try:
      resumed |= _stream(url, part, offset, expected_size, what=what, progress=progress,
                         timeout=timeout)
      return resumed
    except urllib.error.HTTPError as e:
      if e.code == 416:  # The range is past the end: start over.
        part.unlink(missing_ok=True)
      elif not (500 <= e.code < 600) or attempt == TRIES_PER_URL - 1:
        raise _UrlFailed(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, _Short) as e:
      reason = getattr(e, "reason", None) or e
      if isinstance(reason, socket.gaierror):
        host = urllib.parse.urlsplit(url).hostname
        raise _UrlFailed(f"cannot resolve {host} ({reason.strerror}): no network?") from None
      if attempt == TRIES_PER_URL - 1 or not _retryable(reason):
        raise _UrlFailed(f"{type(e).__name__}: {reason}") from None
      print(f"  {what}: {reason}; retrying", file=sys.stderr)
    time.sleep(min(0.2 * 2 ** attempt, 2.0))
  raise _UrlFailed("gave up")


class _Short(Exception):
  """The connection closed before the promised number of bytes."""


def _retryable(reason) -> bool:
  """A dropped or stalled transfer is worth another try; no such host, a refused connection, a
  missing local file or a bad certificate is not (the next URL is tried at once)."""
  permanent = (socket.gaierror, ConnectionRefusedError, FileNotFoundError, PermissionError,
               IsADirectoryError, ssl.SSLCertVerificationError)
  return not isinstance(reason, (str, *permanent))


def _open(url: str, offset: int, timeout: float):
  headers = {"User-Agent": USER_AGENT}
  if offset:
    headers["Range"] = f"bytes={offset}-"
  request = urllib.request.Request(url, headers=headers)
  host = urllib.parse.urlsplit(url).hostname or ""
  # A proxy cannot reach this machine's loopback: talk to a local server directly.
  handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
  return urllib.request.build_opener(*handlers).open(request, timeout=timeout)


def _stream(url, part: Path, offset: int, expected_size: int, *, what, progress, timeout) -> bool:
  """One request: append from ``offset`` when the server honours the range, else rewrite."""
  with _open(url, offset, timeout) as response:
    status = getattr(response, "status", None) or 200  # file: URLs have none.
    if status == 206:
      content_range = response.headers.get("Content-Range")
      if not offset or _range_start(content_range) != offset:
        part.unlink(missing_ok=True)  # Not the range asked for: start over cleanly.
        raise _Short(f"unexpected partial answer {content_range!r}")
    else:
      offset = 0  # The server ignored the range: the body is the whole file.
    length = response.headers.get("Content-Length")
    remaining = int(length) if length and length.isdigit() else None
    total = offset + remaining if remaining is not None else expected_size
    received = 0
    with open(part, "ab" if offset else "wb") as out, \
        _Meter(what, total, offset, progress) as meter:
      while block := response.read(CHUNK):
        out.write(block)
        received += len(block)
        meter.update(len(block))
    if remaining is not None and received < remaining:
      raise _Short(f"connection closed after {offset + received} of {total} bytes")
  return offset > 0


def _range_start(content_range: str | None) -> int | None:
  match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (content_range or "").strip())
  return int(match.group(1)) if match else None


def _check_space(folder: Path, needed: int) -> None:
  free = shutil.disk_usage(folder).free
  if free < needed * 1.05:
    raise DataError(f"Not enough disk space in {folder}: {human(needed)} needed, {human(free)} "
                    "free. Free some space, or set XDG_CACHE_HOME to a larger disk.")


def _fsync(path: Path) -> None:
  with open(path, "rb") as f:
    os.fsync(f.fileno())


class _Meter:
  """Progress: a tqdm bar (bytes, rate, ETA) on a terminal; plain lines every few seconds when
  stderr is not a TTY or $CI is set; nothing with ``progress=False``."""

  def __init__(self, what: str, total: int, initial: int, progress: bool | None):
    self.what, self.total, self.done = what, total, initial
    self.start, self.last, self.initial = time.monotonic(), time.monotonic(), initial
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    self.mode = "off" if progress is False else "bar" if interactive else "lines"
    self.bar = None
    if self.mode == "bar":
      from tqdm import tqdm
      size = shutil.get_terminal_size((100, 24))  # Some ptys report 0 x 0: tqdm then hides bars.
      self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1000,
                      desc=what.rsplit("/", 1)[-1], file=sys.stderr, leave=True,
                      ncols=min(size.columns or 100, 120), nrows=size.lines or 24)

  def __enter__(self):
    return self

  def update(self, n: int) -> None:
    self.done += n
    if self.bar is not None:
      self.bar.update(n)
    elif self.mode == "lines" and time.monotonic() - self.last >= 5.0:
      self.last = time.monotonic()
      print("  " + self.line(), file=sys.stderr)

  def line(self) -> str:
    elapsed = max(time.monotonic() - self.start, 1e-6)
    rate = (self.done - self.initial) / elapsed
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    pct = 100.0 * self.done / self.total if self.total else 100.0
    return (f"{self.what}: {human(self.done)} of {human(self.total)} ({pct:.0f} %), "
            f"{human(rate)}/s, ETA {eta:.0f} s")

  def __exit__(self, *exc):
    if self.bar is not None:
      self.bar.close()
    elif self.mode == "lines" and exc[0] is None:
      print("  " + self.line(), file=sys.stderr)


# ------------------------------------------------------------------------------ archives


def _fetch_archive(source: Source, root: Path, urls: list[str], *, progress, timeout) -> Path:
  """Downloads the archive to ``<root>/.downloads``, unpacks and checks it into its folder, and
  removes the archive."""
  target = root / source.archive.into
  archive = root / DOWNLOADS / source.name
  with _locked(root, source.path):
    if target.is_dir():
      return target
    if not (archive.is_file() and verify_file(archive, source.digests)[0]):
      _check_space(root, int(source.size * 2.2))  # The archive and its unpacked members.
      download(urls, archive, source.digests, what=source.path, progress=progress,
               timeout=timeout, fix=fixes(source))
    for stale in target.parent.glob(f".{target.name}.extract-*"):  # Left by a killed process.
      shutil.rmtree(stale, ignore_errors=True)
    print(f"Extracting {source.name} to {target}", file=sys.stderr)
    try:
      extract_archive(archive, target, strip=source.archive.strip, include=source.archive.include,
                      check=lambda folder, members: check_members(source, folder, members))
    finally:
      archive.unlink(missing_ok=True)  # Unpacked, or refused: either way it is not kept.
  return target


def check_members(source: Source, folder: Path, members: Sequence[str]) -> None:
  """Checks the unpacked members against the registry; writes the manifest when there is one."""
  spec = source.archive
  missing = sorted(set(spec.member_md5) - set(members))
  if missing:
    raise ChecksumError(f"{source.name} lacks member(s) {missing}: it is not the original "
                        f"archive. {fixes(source)}")
  for name, md5 in spec.member_md5.items():
    got = file_hashes(folder / name)["md5"]
    if got != md5:
      raise ChecksumError(f"{source.name}: member {name} has md5 {got}, expected {md5}; the "
                          f"archive was removed. {fixes(source)}")
  if spec.manifest_sha256:
    entries = {rel: file_hashes(folder / rel, md5=False)["sha256"] for rel in members}
    got = sources.manifest_sha256(entries)
    if got != spec.manifest_sha256:
      raise ChecksumError(
          f"{source.name}: its {len(entries)} members do not match the registered listing "
          f"({spec.manifest}: sha256 of the sorted listing {got}, expected "
          f"{spec.manifest_sha256}); the archive was removed. {fixes(source)}")
    (folder / spec.manifest).write_text(sources.manifest_text(entries))


def extract_archive(archive: Path, target: Path, *, strip: str = "", include: str | None = None,
                    check: Callable[[Path, list[str]], None] | None = None) -> list[str]:
  """Unpacks ``archive`` (tar or zip) into the new folder ``target``, atomically.

  Members go into a temp folder beside ``target``; those under ``strip`` whose remaining path
  matches the regex ``include`` are kept. ``check(folder, members)`` may raise; then nothing is
  left. Any member with an absolute path, ``..``, a link or a device refuses the whole archive.
  Returns the kept members' paths (relative to ``target``).
  """
  archive, target = Path(archive), Path(target)
  if target.exists():
    raise DataError(f"Cannot unpack {archive.name}: {target} already exists.")
  target.parent.mkdir(parents=True, exist_ok=True)
  temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
  try:
    members = _unpack(archive, temp, strip, include)
    if check is not None:
      check(temp, members)
    os.rename(temp, target)
  except BaseException:
    shutil.rmtree(temp, ignore_errors=True)
    raise
  return members


def _unpack(archive: Path, dest: Path, strip: str, include: str | None) -> list[str]:
  try:
    if zipfile.is_zipfile(archive):
      return _unpack_zip(archive, dest, strip, include)
    if tarfile.is_tarfile(archive):
      return _unpack_tar(archive, dest, strip, include)
  except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
    raise DataError(f"{archive} is not a readable archive ({type(e).__name__}: {e}). Remove it "
                    "and fetch it again.") from None
  raise DataError(f"{archive} is neither a tar nor a zip archive. Remove it and fetch it again.")


def _refuse(archive: Path, name: str, why: str):
  return DataError(f"Refusing archive {archive}: member {name!r} {why}. Nothing was extracted; "
                   "the archive is not the original (or is malicious): remove it.")


def safe_member_path(archive: Path, name: str) -> str:
  """``name`` as a clean relative path, or a refusal for an absolute path or ``..``."""
  if "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
    raise _refuse(archive, name, "has an absolute path")
  parts = [p for p in name.split("/") if p not in ("", ".")]
  if ".." in parts:
    raise _refuse(archive, name, "climbs out with '..'")
  return "/".join(parts)


def _selected(rel: str, strip: str, include: str | None) -> str | None:
  prefix = strip.strip("/") + "/" if strip.strip("/") else ""
  if not rel.startswith(prefix):
    return None
  rel = rel[len(prefix):]
  if not rel or (include and not re.fullmatch(include, rel)):
    return None
  return rel


def _write_member(dest: Path, rel: str, stream) -> None:
  out = dest / rel
  out.parent.mkdir(parents=True, exist_ok=True)
  with open(out, "xb") as f:  # "x": a duplicate member cannot overwrite an earlier one.
    shutil.copyfileobj(stream, f, CHUNK)


def _unpack_tar(archive: Path, dest: Path, strip: str, include: str | None) -> list[str]:
  kept = []
  with tarfile.open(archive, "r:*") as tar:
    for member in tar:
      rel = safe_member_path(archive, member.name)
      if member.issym() or member.islnk():
        raise _refuse(archive, member.name, f"is a link (to {member.linkname!r})")
      if member.ischr() or member.isblk() or member.isfifo():
        raise _refuse(archive, member.name, "is a device or pipe")
      if not (member.isfile() or member.isdir()):
        raise _refuse(archive, member.name, "is not a regular file or folder")
      chosen = _selected(rel, strip, include)
      if chosen is None or member.isdir():
        continue
      try:
        _write_member(dest, chosen, tar.extractfile(member))
      except FileExistsError:
        raise _refuse(archive, member.name, "appears twice") from None
      kept.append(chosen)
  return kept


def _unpack_zip(archive: Path, dest: Path, strip: str, include: str | None) -> list[str]:
  kept = []
  with zipfile.ZipFile(archive) as zf:
    infos = zf.infolist()
    for info in infos:  # Every member is checked before anything is written.
      safe_member_path(archive, info.filename)
      mode = info.external_attr >> 16
      if stat.S_ISLNK(mode):
        raise _refuse(archive, info.filename, "is a link")
      if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise _refuse(archive, info.filename, "is a device or pipe")
    for info in infos:
      chosen = _selected(safe_member_path(archive, info.filename), strip, include)
      if chosen is None or info.is_dir():
        continue
      try:
        with zf.open(info) as stream:
          _write_member(dest, chosen, stream)
      except FileExistsError:
        raise _refuse(archive, info.filename, "appears twice") from None
      kept.append(chosen)
  return kept


# -------------------------------------------------------------------------------- status


def status(source: Source, data_dir=None) -> tuple[str, Path | None, str]:
  """(state, path, note) of ``source``: 'verified', 'differs' (present but not the registry's
  copy) or 'missing'. Reads and hashes the files present."""
  path = present(source, data_dir)
  if path is None:
    return "missing", None, ""
  if source.archive:
    ok, note = _check_folder(source, path)
    return ("verified" if ok else "differs"), path, note
  ok, got = verify_file(path, source.digests)
  if ok:
    copy = next(d.copy for d in source.digests if matches(got, d)) if got["sha256"] else ""
    return "verified", path, copy
  return "differs", path, f"got {describe_got(got)}"


def _check_folder(source: Source, folder: Path) -> tuple[bool, str]:
  spec = source.archive
  for name, md5 in spec.member_md5.items():
    if not (folder / name).is_file() or file_hashes(folder / name)["md5"] != md5:
      return False, f"{name} missing or changed"
  for listing in spec.listings:
    if (folder / listing).is_file():
      entries = sources.parse_manifest((folder / listing).read_text())
      bad = [rel for rel, sha in entries.items()
             if not (folder / rel).is_file()
             or file_hashes(folder / rel, md5=False)["sha256"] != sha]
      if bad:
        return False, f"{len(bad)} file(s) differ from {listing}, e.g. {bad[0]}"
      if listing == spec.manifest and sources.manifest_sha256(entries) != spec.manifest_sha256:
        return False, f"{listing} is not the registered listing"
      return True, f"{len(entries)} files checked against {listing}"
  return (True, "members checked") if spec.member_md5 else (False, "no checksum listing")
