"""MDFI's integer arithmetic, written once.

Every shift, rounding and saturation the fixed-point engine performs is one of the
functions below; every other module calls them instead of shifting or casting by hand.
The C twin is ``csrc/mdfi_fixedpoint.h`` (same names, same formulas, tested equal).
The formulas and their proofs are in ``docs/fixed-point.md``; section numbers below
refer to it.

Notation: a tensor of format ``Q(bits, frac)`` holds integers ``q`` meaning ``q * 2**-frac``.
Signed formats span ``[-2**(bits-1), 2**(bits-1) - 1]`` (hls4ml: ``ap_fixed<bits, bits-frac>``);
unsigned ones ``[0, 2**bits - 1]`` (``ap_ufixed<bits, bits-frac>``).

Rounding modes (doc section 2):

* ``half_up`` (default; hls4ml ``AP_RND``): ``round(v) = floor(v + 1/2)``. Ties go toward
  +infinity for every sign: 2.5 -> 3, -2.5 -> -2, -3.5 -> -3.  As integers:
  ``(x + 2**(s-1)) >> s`` with an arithmetic (flooring) right shift.
* ``truncate`` (hls4ml ``AP_TRN``): ``floor(v)``, toward -infinity: -2.5 -> -3.  As
  integers: ``x >> s``.

NumPy's ``round``/``rint`` round half to even and are never used for these.

Saturation (``AP_SAT``): values beyond the format's range become its minimum or maximum.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from .errors import FormatError

IntArray = np.ndarray
ShiftLike = Union[int, np.ndarray]

# -- constants shared with csrc/mdfi_fixedpoint.h --------------------------------------------
ROUNDING_MODES = ("half_up", "truncate")
ROUND_HALF_UP = 0          # C: MDFI_ROUND_HALF_UP
ROUND_TRUNCATE = 1         # C: MDFI_ROUND_TRUNCATE

MIN_BITS, MAX_BITS = 2, 16  # supported widths of weights and activations

#: Leaky ReLU slope 0.1 as ``LEAKY_MULT / 2**LEAKY_SHIFT`` = 3277/32768 = 0.100006103515625
#: (relative error 6.1e-5; doc section 4).
LEAKY_MULT = 3277
LEAKY_SHIFT = 15

#: Range of every requantizing shift (doc section 3).  With the leaky shift added a right
#: shift is at most 62; left shifts beyond 31 could only saturate.
MIN_SHIFT, MAX_SHIFT = -31, 47
#: Widest accumulator (doc section 3.2): |acc| < 2**47, so acc*3277 + 2**61 < 2**63.
MAX_ACC_BITS = 48

#: Probabilities from the logistic table: unsigned Q1.15 (``ap_ufixed<16,1>``), 1.0 == 32768.
PROB_FRAC = 15
PROB_ONE = 1 << PROB_FRAC
#: exp() table outputs: unsigned Q15.16 (``ap_ufixed<31,15>``, held in int32), saturating at
#: 2**31 - 1 (exp(x) >= 32768 only for x > 10.4: boxes thousands of times the image).
EXP_FRAC = 16
EXP_MAX = (1 << 31) - 1


def rounding_code(mode: str) -> int:
    """``"half_up"`` -> 0, ``"truncate"`` -> 1 (the codes the C kernels take)."""
    try:
        return ROUNDING_MODES.index(mode)
    except ValueError:
        raise FormatError(f"unknown rounding mode {mode!r} (expected one of: "
                          f"{', '.join(ROUNDING_MODES)})") from None


def check_bits(bits: int, what: str = "bit width") -> int:
    """Widths outside 2..16 are an error (doc section 1)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise FormatError(f"{what} {bits!r} is not supported: MDFI's fixed point uses "
                          f"{MIN_BITS} to {MAX_BITS} bits")
    return int(bits)


def parse_bits_list(text: str):
    """'16,12,8,w4a8' -> [(16,16), (12,12), (8,8), (4,8)]."""
    import re
    out = []
    for tok in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"(?:w(\d+)a(\d+)|(\d+))", tok)
        if not m:
            raise FormatError(f"--bits: {tok!r} is not a width (8) or a pair (w4a8)")
        w, a = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(3)),) * 2
        out.append((check_bits(w, "weight width"), check_bits(a, "activation width")))
    if not out:
        raise FormatError("--bits: empty list")
    return out


def parse_width(text: str) -> Tuple[int, int]:
    """One width as ``mdfi eval --bits`` writes it: '8' -> (8, 8), 'w4a8' -> (4, 8)
    (weight bits, activation bits)."""
    out = parse_bits_list(text) if isinstance(text, str) and "," not in text else None
    if not out or len(out) != 1:
        raise FormatError(f"{text!r} is not a width (8) or a pair (w4a8)")
    return out[0]


def qmin(bits: int, signed: bool = True) -> int:
    return -(1 << (bits - 1)) if signed else 0


def qmax(bits: int, signed: bool = True) -> int:
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


def saturate(x: IntArray, bits: int, signed: bool = True) -> IntArray:
    """Clamp to the range of a ``bits``-wide (signed) integer (AP_SAT)."""
    return np.clip(x, qmin(bits, signed), qmax(bits, signed))


def shift_round(x: IntArray, shift: ShiftLike, mode: str) -> IntArray:
    """``R(x / 2**shift)`` for int64 ``x`` (doc section 2).

    ``shift > 0``: divide with the rounding mode; ``shift <= 0``: multiply by
    ``2**-shift`` (exact; callers saturate afterwards and bound ``x`` first, see
    :func:`requantize`).  ``shift`` may be an array broadcasting against ``x``
    (per-channel shifts).
    """
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any(s < MIN_SHIFT) or np.any(s > MAX_SHIFT + LEAKY_SHIFT):
        raise FormatError(f"shift outside [{MIN_SHIFT}, {MAX_SHIFT + LEAKY_SHIFT}]")
    right = np.maximum(s, 0)
    left = np.maximum(-s, 0)
    if rounding_code(mode) == ROUND_HALF_UP:
        # bias = 2**(s-1) for s >= 1, 0 for s <= 0
        bias = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
        y = np.right_shift(x + bias, right)
    else:
        y = np.right_shift(x, right)
    return np.left_shift(y, left)


def requantize(acc: IntArray, shift: ShiftLike, mode: str, bits: int, activation: str = "linear",
               signed: bool = True, stats: Optional[dict] = None, zero: int = 0) -> IntArray:
    """The fused requantize/activate/saturate step of a convolution or shortcut (sections 3-4).

    * ``linear``: ``sat(R(acc / 2**s))``
    * ``relu``:   ``sat(R(max(acc, 0) / 2**s))``
    * ``leaky``:  ``sat(R(acc / 2**s))`` for ``acc >= 0``, and
      ``sat(R(acc * LEAKY_MULT / 2**(s + LEAKY_SHIFT)))`` for ``acc < 0``: the slope is
      applied to the wide accumulator *before* the single rounding shift.

    Returns int32.  Left shifts (``s < 0``) first clamp ``acc`` to ``+-2**bits`` (any
    larger magnitude saturates anyway), so no intermediate can overflow int64.
    ``stats`` (a dict) accumulates ``saturated`` (results the saturation clamped) and
    ``total``.  ``zero``: the output's zero point (section 1.1), added after the activation
    and before the saturation: ``sat(R(...) + zero)``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    acc, extra = pre_shift_activation(acc, activation)
    s = np.asarray(shift, dtype=np.int64) + extra
    if np.any(s < 0):
        lim = np.int64(1) << np.int64(bits)
        acc = np.where(s < 0, np.clip(acc, -lim, lim), acc)
    unsat = shift_round(acc, s, mode)
    if zero:
        unsat = unsat + np.int64(zero)
    return saturate_counted(unsat, bits, signed, stats)


def saturate_counted(unsat: IntArray, bits: int, signed: bool = True, stats: Optional[dict] = None) -> IntArray:
    """``saturate(unsat, bits)`` as int32; ``stats`` (a dict), if given, accumulates
    ``saturated`` (results the saturation clamped: overflow visibility, docs section 2) and
    ``total``."""
    if stats is not None:
        stats["saturated"] = stats.get("saturated", 0) + int(np.count_nonzero(
            (unsat < qmin(bits, signed)) | (unsat > qmax(bits, signed))))
        stats["total"] = stats.get("total", 0) + int(np.size(unsat))
    return saturate(unsat, bits, signed).astype(np.int32)


def pre_shift_activation(acc: IntArray, activation: str):
    """The activation as applied to the accumulator, before the requantizing shift (section 4).

    Returns ``(value, extra_shift)``: linear ``(acc, 0)``; relu ``(max(acc, 0), 0)``; leaky
    ``(acc, 0)`` where ``acc >= 0`` and ``(acc * LEAKY_MULT, LEAKY_SHIFT)`` where ``acc < 0``.
    The output is then ``sat(R(value / 2**(shift + extra_shift)))``.  ``value`` is the
    golden model's ``act`` stage.
    """
    acc = np.asarray(acc, dtype=np.int64)
    if activation == "linear":
        return acc, np.zeros_like(acc)
    if activation == "relu":
        return np.maximum(acc, 0), np.zeros_like(acc)
    if activation == "leaky":
        neg = acc < 0
        # |acc| < 2**47 by the accumulator bound, so acc*3277 < 2**59.
        return np.where(neg, acc * LEAKY_MULT, acc), np.where(neg, LEAKY_SHIFT, 0)
    raise FormatError(f"activation {activation!r} has no integer implementation")


def div_round(num: IntArray, den: IntArray, mode: str) -> IntArray:
    """``R(num / den)`` for int64 ``num`` and a positive integer ``den`` (the average pool's
    division, doc section 9.1), with the rounding mode's tie rule:

    * ``half_up``: ``floor((2*num + den) / (2*den))`` = ``floor(num/den + 1/2)``: ties toward
      +infinity for every sign (7/2 -> 4, -7/2 -> -3), as :func:`shift_round`;
    * ``truncate``: ``floor(num / den)`` (toward -infinity: -7/2 -> -4), as ``x >> s``.

    Floor division is the mathematical one (Python's ``//``), not C's truncation toward 0;
    callers bound ``|2*num + den| < 2**63``.  ``den = 2**s`` gives :func:`shift_round`.
    """
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if np.any(den <= 0):
        raise FormatError("div_round: the divisor must be positive")
    if rounding_code(mode) == ROUND_HALF_UP:
        return np.floor_divide(2 * num + den, 2 * den)
    return np.floor_divide(num, den)


def align(x: IntArray, from_frac: int, to_frac: int, mode: str, bits: int,
          stats: Optional[dict] = None, zero_in: int = 0, zero_out: int = 0) -> IntArray:
    """Re-express ``Q(*, from_frac)`` values at ``to_frac`` (route inputs; section 5):
    ``sat(R((x - zero_in) / 2**(from_frac - to_frac)) + zero_out)``."""
    return requantize(np.asarray(x, dtype=np.int64) - np.int64(zero_in), from_frac - to_frac, mode, bits,
                      stats=stats, zero=zero_out)


def add_aligned(a: IntArray, fa: int, b: IntArray, fb: int) -> (IntArray, int):
    """Exact sum of two fixed-point tensors at the finer format ``max(fa, fb)`` (shortcut)."""
    fm = max(fa, fb)
    sa = np.left_shift(np.asarray(a, dtype=np.int64), fm - fa)
    sb = np.left_shift(np.asarray(b, dtype=np.int64), fm - fb)
    return sa + sb, fm


# -- quantize-time helpers (float -> integer; never used at inference) ------------------------
def round_half_up_float(v: np.ndarray) -> np.ndarray:
    """floor(v + 1/2) in float64, the same tie rule as the integer shifts."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5)


def quantize_float(v: np.ndarray, frac: Union[int, np.ndarray], bits: int, signed: bool = True) -> np.ndarray:
    """``sat(round_half_up(v * 2**frac))`` as int64 (weights, biases, tables)."""
    scaled = np.asarray(v, dtype=np.float64) * np.exp2(np.asarray(frac, dtype=np.float64))
    return np.clip(round_half_up_float(scaled), qmin(bits, signed), qmax(bits, signed)).astype(np.int64)


def dequantize(q: np.ndarray, frac: Union[int, np.ndarray]) -> np.ndarray:
    """``q * 2**-frac`` as float32 (for reports and comparisons only)."""
    return (np.asarray(q, dtype=np.float64) * np.exp2(-np.asarray(frac, dtype=np.float64))).astype(np.float32)


def accumulator_bits(wbits: int, in_bits: int, kernel_volume: int, in_signed: bool = True) -> int:
    """Declared accumulator width of a convolution (doc section 3.2)::

        acc_bits = wbits + in_bits' + ceil(log2(K))

    with ``in_bits' = in_bits`` for signed inputs and ``in_bits + 1`` for unsigned ones
    (the 8-bit pixel input).  With biases clamped to ``2**(acc_bits-1) - 1 - Pmax``, every
    partial sum fits in a signed ``acc_bits`` integer.
    """
    eff = in_bits if in_signed else in_bits + 1
    return wbits + eff + max(int(np.ceil(np.log2(kernel_volume))), 0)


def product_bound(wbits: int, in_bits: int, kernel_volume: int, in_signed: bool = True) -> int:
    """Pmax = K * max|w| * max|x|: the largest |sum of products| a convolution can reach."""
    return kernel_volume * (1 << (wbits - 1)) * (-qmin(in_bits) if in_signed else qmax(in_bits, False))


class QFormat:
    """A fixed-point tensor format: ``bits`` wide, ``frac`` fractional bits, signed or not.

    Value of an integer ``q``: ``(q - zero) * 2**-frac``.  ``frac`` may be negative (coarser
    than integers) or larger than ``bits`` (all fraction).  ``zero`` (the zero point, 0 unless
    chosen, docs/fixed-point.md section 1.1) is an integer code of the format: the code of
    the real value 0, which padding writes.
    """

    __slots__ = ("bits", "frac", "signed", "zero")

    #: Fractional bits MDFI accepts for activations (doc section 1).
    MIN_FRAC, MAX_FRAC = -24, 40

    def __init__(self, bits: int, frac: int, signed: bool = True, zero: int = 0):
        self.bits = check_bits(bits)
        if not isinstance(frac, (int, np.integer)) or not self.MIN_FRAC <= frac <= self.MAX_FRAC:
            raise FormatError(f"fractional bits {frac!r} outside [{self.MIN_FRAC}, {self.MAX_FRAC}]")
        self.frac = int(frac)
        self.signed = bool(signed)
        if not isinstance(zero, (int, np.integer)) or not qmin(self.bits, self.signed) <= zero <= qmax(self.bits, self.signed):
            raise FormatError(f"zero point {zero!r} is not a code of a {self.bits}-bit "
                              f"{'signed' if self.signed else 'unsigned'} format")
        self.zero = int(zero)

    def with_zero(self, zero: int) -> "QFormat":
        """The same format with zero point ``zero``."""
        return QFormat(self.bits, self.frac, self.signed, zero)

    @property
    def min(self) -> int:
        return qmin(self.bits, self.signed)

    @property
    def max(self) -> int:
        return qmax(self.bits, self.signed)

    @property
    def step(self) -> float:
        return float(2.0 ** -self.frac)

    def ap_type(self) -> str:
        """hls4ml / Vivado HLS spelling, e.g. ``ap_fixed<8,3>`` (3 integer bits incl. sign);
        a zero point is appended as ``-z``/``+z`` (``ap_fixed<8,3>-100``: value (q+100)*step)."""
        z = "" if not self.zero else f"{-self.zero:+d}"
        return f"ap_{'' if self.signed else 'u'}fixed<{self.bits},{self.bits - self.frac}>{z}"

    def q_notation(self) -> str:
        """TI-style ``Qm.n`` (m integer bits excluding the sign), ``UQm.n`` if unsigned."""
        m = self.bits - self.frac - (1 if self.signed else 0)
        return f"{'' if self.signed else 'U'}Q{m}.{self.frac}"

    def to_dict(self) -> dict:
        d = {"bits": self.bits, "frac": self.frac, "signed": self.signed}
        if self.zero:                 # files of zero-free models stay as before round 13
            d["zero"] = self.zero
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QFormat":
        return cls(int(d["bits"]), int(d["frac"]), bool(d.get("signed", True)), int(d.get("zero", 0)))

    def _key(self):
        return (self.bits, self.frac, self.signed, self.zero)

    def __eq__(self, other) -> bool:
        return isinstance(other, QFormat) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        z = f", zero={self.zero}" if self.zero else ""
        return f"QFormat({self.bits}, {self.frac}{'' if self.signed else ', unsigned'}{z})"

    def __str__(self) -> str:
        return f"{self.ap_type()} {self.q_notation()}"


#: The network input: 8-bit pixels, unsigned, integer (``ap_ufixed<8,8>``); Darknet's /255
#: is folded into the first convolution's weights.
INPUT_FORMAT = QFormat(8, 0, signed=False)


def storage_dtype(bits: int, signed: bool = True) -> np.dtype:
    """Smallest NumPy dtype holding the format (int8/int16, uint8 for the pixel input)."""
    if not signed:
        return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


def max_frac(lo, hi, bits: int, signed: bool = True):
    """Largest ``frac`` with ``round_half_up(v * 2**frac)`` inside the format for v in [lo, hi].

    Vectorised over ``lo``/``hi`` (per-channel ranges).  An all-zero range gets ``None``
    (scalar) or ``MAX_FRAC_SEARCH`` (array): any format represents 0.
    """
    lo_a = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi_a = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    mag = np.maximum(hi_a, -lo_a)
    zero = mag == 0
    # Start one above the estimate and walk down until both ends fit (at most ~3 steps).
    with np.errstate(divide="ignore"):
        f = np.floor(np.log2((qmax(bits, signed) + 0.5) / np.where(zero, 1.0, mag))).astype(np.int64) + 1
    for _ in range(8):
        hi_q = round_half_up_float(hi_a * np.exp2(f.astype(np.float64)))
        lo_q = round_half_up_float(lo_a * np.exp2(f.astype(np.float64)))
        bad = ((hi_q > qmax(bits, signed)) | (lo_q < qmin(bits, signed))) & ~zero
        if not bad.any():
            break
        f = np.where(bad, f - 1, f)
    f = np.where(zero, MAX_FRAC_SEARCH, f)
    if np.ndim(f) == 0:
        return None if bool(zero) else int(f)
    return f


#: Fraction assigned to an all-zero weight channel (any format represents 0).
MAX_FRAC_SEARCH = 24


def mse_frac(values: np.ndarray, bits: int, start, candidates: int = 3, axis=None) -> np.ndarray:
    """Among ``start, start+1, ...`` (``candidates`` values), the frac minimising the squared
    quantization error of ``values`` (clipping included).  With ``axis=1`` each row of a
    2-D array (per output channel) gets its own frac; ``start`` is then an array.
    """
    v = np.asarray(values, dtype=np.float64)
    start = np.asarray(start, dtype=np.int64)
    best_f, best_err = start.copy(), None
    for d in range(candidates):
        f = start + d
        scale = np.exp2(f.astype(np.float64))
        if axis is not None:
            scale = scale[:, None]
        q = np.clip(round_half_up_float(v * scale), qmin(bits), qmax(bits))
        err = ((q / scale - v) ** 2).sum(axis=axis)
        if best_err is None:
            best_err = err
        else:
            better = err < best_err
            best_f = np.where(better, f, best_f)
            best_err = np.where(better, err, best_err)
    return best_f
