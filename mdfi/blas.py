"""One BLAS thread for the float path's matrix products, whatever the process's BLAS uses.

The float path must be a deterministic function of the image: the eval, calibrate and golden
pipelines compare (and merge) float results computed in this process, in worker processes
(which run BLAS on one thread) and on Dask workers, and write them byte for byte.  OpenBLAS
does not keep the floats of a product when its thread count changes: on an AVX2-only AMD EPYC
(OpenBLAS 0.3.31, its Haswell kernels) ``a @ b`` of every convolution shape of yolov3-tiny
differed in the last bits between one and two threads (up to 1e-4), while the AVX-512 kernels
of the machines before happened to agree.  So the float path's products always run on one BLAS
thread (``one_thread()``); the float forward's time is mostly im2col and NumPy element-wise
work, so this costs little (yolov3-tiny: 270-290 ms either way on that CPU, measured before
the max pool change of the same stop).

How: the OpenBLAS that NumPy loaded (found in ``/proc/self/maps`` on Linux: NumPy's wheels
bundle ``libscipy_openblas64_``) is told ``openblas_set_num_threads(1)`` for the duration and
restored afterwards; the first thread in sets it, the last one out restores it.  The setting
is the library's, not the thread's: while a float layer's product runs, products of other
Python threads of the process run on one BLAS thread too (slower, never different).  Elsewhere
(macOS, Windows, MKL, BLIS) ``threadpoolctl`` does the same when it is installed; without it
the floats of a product may depend on the BLAS's thread count there (docs/scale.md).  The
integer paths never use BLAS.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")

_lock = threading.Lock()
_depth = 0
_saved: List[int] = []
_libs: Optional[List[Tuple[Any, Any]]] = None      # (set_num_threads, get_num_threads)
_tpc = None                                              # threadpoolctl's controller, if used
_tpc_ctx: list = []                                      # its active limit


def _openblas_paths() -> List[str]:
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            found = {line.split(None, 5)[5].strip() for line in f
                     if len(line.split(None, 5)) == 6 and "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return []
    return sorted(p for p in found if p.startswith("/") and ".so" in p)


def _find() -> List[Tuple[Any, Any]]:
    """The set/get thread-count functions of every OpenBLAS loaded in this process."""
    out = []
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LOCAL", 0)
    for path in _openblas_paths():
        try:
            lib = ctypes.CDLL(path, mode=mode)
        except OSError:
            continue
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                setter = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                getter = getattr(lib, f"{pre}_get_num_threads{suf}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    out.append((setter, getter))
                    break
            else:
                continue
            break
    return out


def _init() -> None:
    """Find the BLAS controls once (under _lock)."""
    global _libs, _tpc
    if _libs is None:
        _libs = _find()
        if not _libs and not sys.platform.startswith("linux"):
            _tpc = _threadpoolctl()


def _threadpoolctl():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed NumPy matrix products on one BLAS thread (see the module doc)."""
    global _depth
    with _lock:
        _init()
        if _depth == 0:
            if _libs:
                _saved[:] = [int(get()) for _, get in _libs]
                for setter, _ in _libs:
                    setter(1)
            elif _tpc is not None:
                _tpc_ctx.append(_tpc.limit(limits=1, user_api="blas"))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if _libs:
                    for (setter, _), n in zip(_libs, _saved):
                        setter(max(1, n))
                elif _tpc_ctx:
                    _tpc_ctx.pop().restore_original_limits()


def blas_threads() -> List[int]:
    """The thread count of every OpenBLAS found in this process (for tests and reports)."""
    with _lock:
        _init()
        return [int(get()) for _, get in _libs or ()]
