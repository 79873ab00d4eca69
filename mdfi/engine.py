"""Inference engines behind :class:`mdfi.Model`.

* :class:`FloatEngine` (in :mod:`mdfi.model`): Darknet's float32 forward.
* :class:`FixedEngine`: the integer engine.  Backend ``"ref"`` is the NumPy integer
  reference (:meth:`mdfi.quant.quantize.QuantizedModel.forward_ref`), the executable
  specification; backend ``"c"`` runs the C kernels, bit-identical to it.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

import numpy as np

from .errors import MDFIError
from .postprocess import Raw
from .quant.qmodel import QuantizedModel, input_to_u8

BACKENDS = ("c", "ref")

#: Most threads the C kernels take (``MAX_THREADS`` of ``mdfi/_ext``).
MAX_THREADS = 256


def default_threads() -> int:
    """``MDFI_THREADS`` if set, else the number of CPUs available to this process."""
    raw = os.environ.get("MDFI_THREADS", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise MDFIError(f"MDFI_THREADS={raw!r}: expected a positive integer") from None
        if n < 1:
            raise MDFIError(f"MDFI_THREADS={raw!r}: expected a positive integer")
        if n > MAX_THREADS:
            raise MDFIError(f"MDFI_THREADS={raw!r}: expected 1..{MAX_THREADS}")
        return n
    try:
        return max(1, min(len(os.sched_getaffinity(0)), MAX_THREADS))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(os.cpu_count() or 1, MAX_THREADS))


class FixedEngine:
    """Integer-only inference of a :class:`QuantizedModel`."""

    def __init__(self, qmodel: QuantizedModel, backend: str = "ref", threads: Optional[int] = None):
        if backend not in BACKENDS:
            raise MDFIError(f"engine {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.qmodel = qmodel
        self.backend = backend
        self.threads = threads if threads is not None else default_threads()
        self._runner = None
        if backend == "c":
            from .cengine import CRunner
            self._runner = CRunner(qmodel, self.threads)

    @property
    def name(self) -> str:
        return f"fixed-point {self.qmodel.describe()}, {self.backend} engine"

    def run(self, x_u8: np.ndarray, *, keep: str = "all",
            hook: Optional[Callable[[int, np.ndarray], None]] = None) -> List[Optional[np.ndarray]]:
        """Every layer's integer output for a uint8 (C,H,W) input."""
        if self._runner is not None:
            return self._runner.run(x_u8, keep=keep, hook=hook)
        return self.qmodel.forward_ref(x_u8, keep=keep, hook=hook)

    def heads(self, x: np.ndarray, thresh: float, stats: Optional[dict] = None) -> List[Raw]:
        """Candidates of every detection head for a float letterboxed input in [0,1].

        With ``stats`` (a dict) the NumPy reference runs instead of the C kernels -- the
        integers are identical -- and accumulates per-layer saturation counts into it."""
        x_u8 = x if x.dtype == np.uint8 else input_to_u8(x)
        if stats is not None:
            outs = self.qmodel.forward_ref(x_u8, keep="needed", stats=stats)
        else:
            outs = self.run(x_u8, keep="needed")
        return [ql.decode_int(outs[ql.index], thresh) for ql in self.qmodel.output_layers()]
