"""Integer detection heads shared by ``[yolo]`` and ``[region]`` (docs/fixed-point.md section 7).

The head's input is the linear output of the last convolution, ``Q(bits, frac)``.  Every
entry goes through a lookup table indexed by the input code (``2**bits`` entries, built
at quantize time in float64 and stored in the model file, so inference never computes a
transcendental function):

* logistic table: ``round_half_up(1/(1+exp(-g*t)) * 2**15)``, unsigned Q1.15 (1.0 == 32768),
  with ``g`` the head's logit gain (1 unless the quantizer chose one: a ``[yolo]`` head's
  ``logit_gain``, docs/fixed-point.md section 7);
* exp table: ``min(round_half_up(exp(t) * 2**16), 2**31-1)``, unsigned Q15.16;

with ``t = (q - zero) * 2**-frac`` the value of the code ``q`` (``zero`` the input's zero
point, 0 without one: :func:`code_values`).

The integer datapath ends with the score threshold applied in integers:
``objectness_q > floor(thresh * 2**15)`` and ``objectness_q * class_q > floor(thresh * 2**30)``
(exactly "value > thresh" for the fixed-point values).  Box decoding to image pixels and NMS
then run on the host in float: they touch only the few surviving candidates, need the
original image size that an accelerator does not know, and NMS is sort-and-branch work.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..errors import ShapeError
from .base import QLayer, meta_format


def code_values(in_fmt: "fp.QFormat") -> np.ndarray:
    """The real value of every code of the input format, in table order (index ``q - qmin``):
    ``(q - zero) * 2**-frac`` in float64 (a zero point is folded into the tables' contents;
    the lookup itself never sees it)."""
    return (np.arange(in_fmt.min, in_fmt.max + 1, dtype=np.float64) - in_fmt.zero) * 2.0 ** -in_fmt.frac


def logistic_table(in_fmt: "fp.QFormat", gain: float = 1.0) -> np.ndarray:
    """uint16 table of 2**bits entries, index ``q - qmin``: ``sigmoid(gain * t)`` (``gain * t``
    one float64 product; gain 1 leaves ``t`` as it is)."""
    t = code_values(in_fmt)
    if gain != 1.0:
        t = float(gain) * t
    with np.errstate(over="ignore"):                      # exp(+large) = inf -> v = 0
        v = 1.0 / (1.0 + np.exp(-t))
    return np.clip(fp.round_half_up_float(v * fp.PROB_ONE), 0, fp.PROB_ONE).astype(np.uint16)


def exp_table(in_fmt: "fp.QFormat") -> np.ndarray:
    """int32 table of 2**bits entries, index ``q - qmin``: exp in unsigned Q15.16, saturated."""
    with np.errstate(over="ignore"):
        v = np.exp(code_values(in_fmt)) * 2.0 ** fp.EXP_FRAC
    v = np.minimum(v, float(fp.EXP_MAX))            # saturate (also maps +inf)
    return fp.round_half_up_float(v).astype(np.int32)


def identity_prob_table(in_fmt: "fp.QFormat") -> np.ndarray:
    """``new_coords`` objectness/classes (already a logistic from the conv before):
    ``clip(round_half_up(q*2**-frac * 2**15), 0, 2**15)``, uint16 Q1.15."""
    return np.clip(fp.round_half_up_float(code_values(in_fmt) * 2.0 ** fp.PROB_FRAC), 0,
                   fp.PROB_ONE).astype(np.uint16)


def square_table(in_fmt: "fp.QFormat") -> np.ndarray:
    """``new_coords`` w/h: ``min(round_half_up((2*t)**2 * 2**16), 2**31-1)`` with
    ``t = q*2**-frac``: int32 Q15.16 (AB get_yolo_box: ``tw*tw*4``, src/yolo_layer.c:140)."""
    t = code_values(in_fmt)
    v = np.minimum(4.0 * t * t * 2.0 ** fp.EXP_FRAC, float(fp.EXP_MAX))
    return fp.round_half_up_float(v).astype(np.int32)


#: x/y tables hold signed Q.15 values in int32 (|v| < 2**16 for any sensible scale_x_y).
XY_MAX = (1 << 31) - 1


def xy_table(in_fmt: "fp.QFormat", scale: float, new_coords: bool) -> np.ndarray:
    """x/y with AlexeyAB's ``scale_x_y`` (src/yolo_layer.c:680):
    ``round_half_up((g(q)*s - (s-1)/2) * 2**15)`` with ``g`` the logistic (or, with
    ``new_coords``, the identity ``q*2**-frac``), int32 signed Q.15, saturated."""
    t = code_values(in_fmt)
    if not new_coords:
        with np.errstate(over="ignore"):
            t = 1.0 / (1.0 + np.exp(-t))
    s = float(np.float32(scale))
    v = (t * s - 0.5 * (s - 1.0)) * 2.0 ** fp.PROB_FRAC
    return np.clip(fp.round_half_up_float(v), -XY_MAX, XY_MAX).astype(np.int32)


def expneg_table(in_fmt: "fp.QFormat") -> np.ndarray:
    """Softmax table: ``round_half_up(exp(-d*2**-frac) * 2**16)`` for d = 0 .. 2**bits-1 (int32)."""
    d = np.arange(0, 1 << in_fmt.bits, dtype=np.float64)
    return fp.round_half_up_float(np.exp(-d * 2.0 ** -in_fmt.frac) * 2.0 ** fp.EXP_FRAC).astype(np.int32)


def check_table(name: str, table: np.ndarray, n: int, lo: int, hi: int, first=None) -> np.ndarray:
    """A lookup table read from a file: ``n`` integer entries in ``[lo, hi]`` (the range
    :func:`logistic_table`/:func:`exp_table`/:func:`expneg_table` produce), else ShapeError."""
    t = np.asarray(table)
    if t.shape != (n,) or t.dtype.kind not in "iu":
        raise ShapeError(f"{name} must have {n} integer entries, got shape {t.shape} of {t.dtype}")
    if n and (int(t.min()) < lo or int(t.max()) > hi or (first is not None and int(t[0]) != first)):
        raise ShapeError(f"{name} holds values outside {lo}..{hi}" +
                         (f" or does not start with {first}" if first is not None else ""))
    return t


def lookup(table: np.ndarray, x: np.ndarray, in_fmt: "fp.QFormat") -> np.ndarray:
    """table[x - qmin] as int32."""
    return table[np.asarray(x, np.int64) - in_fmt.min].astype(np.int32)


def softmax_int(x: np.ndarray, table: np.ndarray, axis: int) -> np.ndarray:
    """Integer softmax along ``axis``: ``e = table[max - x]``, ``p = round_half_up(e * 2**15 / sum(e))``
    computed as ``(e * 2**16 + sum) // (2 * sum)`` (all terms non-negative)."""
    x = np.asarray(x, np.int64)
    d = x.max(axis=axis, keepdims=True) - x
    e = table[d].astype(np.int64)
    total = e.sum(axis=axis, keepdims=True)
    return ((e << (fp.PROB_FRAC + 1)) + total) // (2 * total)


def thresholds(thresh: float):
    """(objectness threshold in Q1.15, probability threshold in Q2.30)."""
    t = float(thresh)
    return int(np.floor(t * 2.0 ** fp.PROB_FRAC)), int(np.floor(t * 2.0 ** (2 * fp.PROB_FRAC)))


def to_float_prob(q: np.ndarray, frac: int = fp.PROB_FRAC) -> np.ndarray:
    return (np.asarray(q, np.float64) * 2.0 ** -frac).astype(np.float32)


class QHead(QLayer):
    """What ``[yolo]`` and ``[region]`` share: the input format and the logistic and exp
    tables (built at quantize time, or taken from a model file and range-checked)."""

    TABLES = ("logistic_lut", "exp_lut")

    def __init__(self, layer, in_fmt, rounding, logistic=None, exp=None):
        super().__init__(layer, None, rounding)
        self.in_fmt = in_fmt
        self.n_entries = 1 << in_fmt.bits
        self.logistic = logistic_table(in_fmt) if logistic is None else np.asarray(logistic)
        self.exp = exp_table(in_fmt) if exp is None else np.asarray(exp)
        self._check("logistic table", self.logistic, fp.PROB_ONE)
        self._check("exp table", self.exp, fp.EXP_MAX)

    def _check(self, what: str, table: np.ndarray, hi: int, first=None) -> None:
        if table.shape != (self.n_entries,):
            raise ShapeError(f"layer {self.index}: lookup tables must have {self.n_entries} entries")
        check_table(f"layer {self.index}: {what}", table, self.n_entries, 0, hi, first=first)

    @classmethod
    def quantize(cls, layer, in_fmt, rounding):
        return cls(layer, in_fmt, rounding)

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, meta_format(meta, "in_fmt"), meta["rounding"], *(arrays[t] for t in cls.TABLES))

    def meta(self):
        d = super().meta()
        d.update(in_fmt=self.in_fmt.to_dict(), prob_frac=fp.PROB_FRAC, exp_frac=fp.EXP_FRAC)
        return d

    def arrays(self):
        return {"logistic_lut": self.logistic, "exp_lut": self.exp}

    def param_bits(self) -> int:
        return sum(a.size * (16 if k == "logistic_lut" else 32) for k, a in self.arrays().items())

    def describe_formats(self) -> str:
        return f"in {self.in_fmt.ap_type()} -> prob UQ1.15, exp UQ15.16"
