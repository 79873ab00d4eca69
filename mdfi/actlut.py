"""Non-linear activations in fixed point: a linear pre-activation code and a lookup table
(docs/fixed-point.md section 4.1).

``leaky``, ``relu`` and ``linear`` are fused into the requantizing shift (section 4).  The
others -- ``logistic``, ``mish``, ``swish``, ``hard_mish``, ``relu6`` -- are computed in two
exactly specified integer steps:

1. the layer requantizes its accumulator **linearly** to a pre-activation code
   ``p = sat(R(acc / 2^s_pre))`` of format ``Q(P, f_pre)`` (``P = min(16, bits + 4)``);
2. the output code is ``out = T[p - qmin(P)]``, a table of ``2^P`` output codes built when
   the model is quantized (float64) and stored in the model file:
   ``T[i] = sat(R(f((qmin + i) * 2^-f_pre) * 2^f_out))`` with the layer's rounding mode ``R``
   (half up: ``floor(v + 1/2)``, truncate: ``floor(v)``) and saturation to the output width.

The pre-activation format follows from the output format and the function alone, so no
extra calibration is needed: its range must reach ``x_hi``, where ``f`` reaches the output's
largest value (beyond it the output saturates anyway), and ``x_lo``, the most negative input
at which ``f`` still differs from its limit ``f(-inf)`` by half an output step or more
(below it every input maps to the same code).  ``f_pre`` is the largest fraction at which
``Q(P, f_pre)`` covers ``[-R, R)`` with ``R = 2^ceil(log2(max(-x_lo, x_hi)))``.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from . import fixedpoint as fp
from .darknet.activations import reference_float64
from .errors import FormatError, ShapeError

#: Activations computed through a table (the others are fused into the shift).
LUT_ACTIVATIONS = ("logistic", "mish", "swish", "hard_mish", "relu6")
#: Extra bits of the pre-activation code over the output width (capped at 16 bits).
PRE_EXTRA_BITS = 4

#: f(-inf) of every table activation.
_NEG_LIMIT = {"logistic": 0.0, "mish": 0.0, "swish": 0.0, "hard_mish": 0.0, "relu6": 0.0}


def pre_bits(out_bits: int) -> int:
    return min(fp.MAX_BITS, out_bits + PRE_EXTRA_BITS)


def _x_lo(act: str, half_step: float) -> float:
    """Most negative x with |f(x) - f(-inf)| >= half_step (0 when f is already at its limit
    for every x <= 0)."""
    if act in ("relu6",):
        return 0.0
    if act == "hard_mish":
        return -2.0
    lim = _NEG_LIMIT[act]
    xs = -np.arange(0.0, 256.0, 1.0 / 256.0)
    dev = np.abs(reference_float64(act, xs) - lim) >= half_step
    idx = np.flatnonzero(dev)
    return float(xs[idx[-1]]) if idx.size else 0.0


def _x_hi(act: str, out_max: float, half_step: float) -> float:
    """Smallest x >= 0 from which f(x) is within half a step of the output's largest value
    or above it (the output saturates there)."""
    if act == "relu6":
        return min(6.0, out_max)
    if act == "logistic":
        target = min(out_max, 1.0 - half_step)
        if target <= 0.5:
            return 0.0
        return math.log(target / (1.0 - target))
    return max(out_max, 0.0)       # mish, swish, hard_mish: f(x) <= x, ~x for large x


def pre_format(act: str, out_fmt: "fp.QFormat") -> "fp.QFormat":
    """The pre-activation format ``Q(P, f_pre)`` of a table activation (module docstring)."""
    if act not in LUT_ACTIVATIONS:
        raise FormatError(f"activation {act!r} is not computed through a table")
    step = 2.0 ** -out_fmt.frac
    r = max(-_x_lo(act, step / 2), _x_hi(act, out_fmt.max * step, step / 2), 2.0 ** -24)
    bits = pre_bits(out_fmt.bits)
    frac = bits - 1 - int(math.ceil(math.log2(r)))
    frac = int(min(max(frac, fp.QFormat.MIN_FRAC), fp.QFormat.MAX_FRAC))
    return fp.QFormat(bits, frac)


def build_table(act: str, pre_fmt: "fp.QFormat", out_fmt: "fp.QFormat", rounding: str) -> np.ndarray:
    """``T[i] = sat(R(f((qmin + i) * 2^-f_pre) * 2^f_out) + z_out)`` (``2^P`` entries, int8 or
    int16; ``z_out`` the output's zero point, 0 without one; the pre code has none)."""
    q = np.arange(pre_fmt.min, pre_fmt.max + 1, dtype=np.float64)
    v = reference_float64(act, q * 2.0 ** -pre_fmt.frac) * 2.0 ** out_fmt.frac
    r = np.floor(v + 0.5) if fp.rounding_code(rounding) == fp.ROUND_HALF_UP else np.floor(v)
    return np.clip(r + out_fmt.zero, out_fmt.min, out_fmt.max).astype(fp.storage_dtype(out_fmt.bits))


def check_table(table: np.ndarray, pre_fmt: "fp.QFormat", out_fmt: "fp.QFormat", where: str) -> np.ndarray:
    """A table read from a model file: ``2^P`` integers inside the output format."""
    t = np.asarray(table)
    n = 1 << pre_fmt.bits
    if t.shape != (n,) or t.dtype.kind not in "iu":
        raise ShapeError(f"{where}: activation table must have {n} integer entries, got {t.shape} of {t.dtype}")
    if int(t.min()) < out_fmt.min or int(t.max()) > out_fmt.max:
        raise ShapeError(f"{where}: activation table holds values outside the {out_fmt.bits}-bit output")
    return t.astype(fp.storage_dtype(out_fmt.bits))


def lookup(table: np.ndarray, codes: np.ndarray, pre_fmt: "fp.QFormat") -> np.ndarray:
    """``T[p - qmin]`` as int32 (the codes lie in the pre format by construction)."""
    return table[np.asarray(codes, np.int64) - pre_fmt.min].astype(np.int32)


def worst_error(act: str, out_fmt: "fp.QFormat", rounding: str = "half_up", points: int = 1 << 18) -> Tuple[float, float]:
    """(worst |T[code(x)] * 2^-f_out - f(x)| over x, in output steps; the same in absolute
    units), over inputs x whose f(x) lies inside the output range, with ``code(x)`` the
    pre-activation code a rounding requantization of x gives (docs/fixed-point.md 4.1)."""
    pre = pre_format(act, out_fmt)
    t = build_table(act, pre, out_fmt, rounding)
    step = 2.0 ** -out_fmt.frac
    lo = min(pre.min * 2.0 ** -pre.frac * 2, -8.0)
    hi = max(pre.max * 2.0 ** -pre.frac * 1.5, 8.0)
    x = np.linspace(lo, hi, points)
    fx = reference_float64(act, x)
    inside = (fx >= out_fmt.min * step) & (fx <= out_fmt.max * step)
    v = x * 2.0 ** pre.frac
    code = np.floor(v + 0.5) if rounding == "half_up" else np.floor(v)
    code = np.clip(code, pre.min, pre.max).astype(np.int64)
    err = np.abs(t[code - pre.min] * step - fx)[inside]
    worst = float(err.max()) if err.size else 0.0
    return worst / step, worst
