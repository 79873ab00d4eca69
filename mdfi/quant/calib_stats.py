"""Statistics of one tensor for calibration: the log2-histogram geometry and :class:`TensorStats`.

:class:`TensorStats` accumulates, over images, the exact count, min, max, zeros and two
log2-histograms of ``|v|`` (positive and negative values apart) of one tensor, plus optional
exact per-channel sums; statistics merge exactly.  :mod:`mdfi.quant.calibrate` builds the
per-network :class:`~mdfi.quant.calibrate.CalibStats` from them and re-exports every public name
of this module.

Histogram bins
--------------
``|v|`` is binned on a log2 scale with :data:`BINS_PER_OCTAVE` = 16 bins per octave from
``2**LOG2_MIN`` = 2**-32 to ``2**LOG2_MAX`` = 2**32 (:data:`NBINS` = 1024 bins).  Bin ``k``
holds ``E[k] <= |v| < E[k+1]`` with the float32 edges ``E[k] = float32(2**(-32 + k/16))``;
values below ``E[1]`` (but non-zero) fall in bin 0, values at or above ``E[NBINS-1]`` in the
last bin.  Zeros are counted apart.  The binning is exact (float comparisons against the
edges), so it does not depend on the platform's ``log2``.  NaN and +-Inf are counted in
``nonfinite`` and are not part of min, max or the histograms.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import ShapeError

__all__ = ["BINS_PER_OCTAVE", "LOG2_MIN", "LOG2_MAX", "NBINS", "TensorStats", "bin_edges",
           "bin_centres"]

# -- histogram geometry ---------------------------------------------------------------------------
BINS_PER_OCTAVE = 16
LOG2_MIN, LOG2_MAX = -32, 32
NBINS = (LOG2_MAX - LOG2_MIN) * BINS_PER_OCTAVE       # 1024

#: Lower edges E[0..NBINS-1] as float32, plus E[NBINS] = +inf; E[0] is taken as 0 when
#: binning (everything below E[1] is bin 0).
_EDGES32 = np.exp2(LOG2_MIN + np.arange(NBINS + 1, dtype=np.float64) / BINS_PER_OCTAVE).astype(np.float32)
_EDGES32[NBINS] = np.float32(np.inf)
_BIN_LO = _EDGES32.copy()
_BIN_LO[0] = np.float32(0.0)                     # effective lower edge of bin 0


def bin_edges() -> np.ndarray:
    """The NBINS+1 float32 bin edges ``2**(-32 + k/16)`` (the last one is +inf)."""
    return _EDGES32.copy()


def bin_centres() -> np.ndarray:
    """Geometric centre of every bin, ``2**(-32 + (k + 1/2)/16)``, float64 (NBINS values)."""
    return np.exp2(LOG2_MIN + (np.arange(NBINS, dtype=np.float64) + 0.5) / BINS_PER_OCTAVE)


#: Values whose scaled log2 lies within this distance of a bin edge are re-binned by exact
#: comparison with the edges (float32 log2 is accurate to ~5e-4 here, including rounding).
_EDGE_EPS = 4e-3


def _bin_index(a: np.ndarray) -> np.ndarray:
    """Bin of every ``|v|`` in ``a`` (non-negative, finite; zeros land in bin 0), exactly.

    A log2 gives the bin; the few values whose log2 lies within :data:`_EDGE_EPS` of a bin
    edge are checked against the exact float32 edges, so the result does not depend on the
    accuracy of the platform's log2.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if a.dtype == np.float32:
            lg = np.log2(a)
            lg += np.float32(-LOG2_MIN)
            lg *= np.float32(BINS_PER_OCTAVE)
        else:
            lg = (np.log2(a) - LOG2_MIN) * BINS_PER_OCTAVE
        np.clip(lg, 0, NBINS - 1, out=lg)          # -inf (zeros) -> 0
        fl = np.floor(lg)
        k = fl.astype(np.int32)
        lg -= fl                                   # position inside the bin, [0, 1)
        lg -= lg.dtype.type(0.5)
        np.abs(lg, out=lg)
    near = np.flatnonzero(lg > lg.dtype.type(0.5 - _EDGE_EPS))
    if near.size:
        an, kn = a[near], k[near]
        kn += an >= _EDGES32[kn + 1]
        kn -= an < _BIN_LO[kn]
        k[near] = kn
    return k


#: Per-channel sums are kept as exact integers in units of 2**-1074 (the smallest float64
#: step): every float64 is such an integer, and integer sums do not depend on the order or
#: grouping of the additions.  Values are rounded to float64 once, when read.
_EXACT_BITS = 1074
_EXACT_ONE = 1 << _EXACT_BITS


def _exact_sums(values: Any) -> List[int]:
    """Finite float64 values as exact integers in units of 2**-1074."""
    out = []
    for v in np.asarray(values, dtype=np.float64).reshape(-1).tolist():
        if not math.isfinite(v):
            raise ShapeError(f"channel statistics: non-finite sum {v}")
        num, den = v.as_integer_ratio()                 # den is a power of two <= 2**1074
        out.append(num << (_EXACT_BITS + 1 - den.bit_length()))
    return out


def _exact_to_text(a: int) -> str:
    """An exact sum as ``MANTISSAp EXP`` (hex odd mantissa, binary exponent): ``"3p-2"`` is 0.75."""
    if a == 0:
        return "0"
    tz = (a & -a).bit_length() - 1
    return f"{a >> tz:x}p{tz - _EXACT_BITS}"


def _exact_from_text(t: Any, where: str) -> int:
    """Inverse of :func:`_exact_to_text`; ``ValueError`` for anything else (bounded sizes)."""
    if not isinstance(t, str) or len(t) > 700:
        raise ValueError(f"{where}: expected an exact sum like \"3p-2\", found {t!r:.40}")
    if t == "0":
        return 0
    m, _, e = t.partition("p")
    try:
        mant, exp = int(m, 16), int(e)
    except ValueError:
        raise ValueError(f"{where}: expected an exact sum like \"3p-2\", found {t!r:.40}") from None
    if not -_EXACT_BITS <= exp <= 1100 or mant == 0:
        raise ValueError(f"{where}: exact sum {t!r:.40} out of range")
    return mant << (exp + _EXACT_BITS)


class TensorStats:
    """Statistics of one tensor (a layer output) accumulated over images.

    Attributes: ``count`` (all values seen, non-finite included), ``min``/``max`` (exact,
    over finite values; ``None`` while there are none), ``zeros``, ``nonfinite``, and the
    int64 histograms ``pos`` / ``neg`` of log2|v| for positive and negative values
    (:data:`NBINS` bins, see the module docstring).  ``update`` and ``merge`` make it
    mergeable: stats of a concatenation equal the merge of the stats of its parts, and the
    merge is exact (integers, exact min/max with -0.0 taken as 0.0, per-channel sums kept as
    exact rationals), hence associative and commutative: statistics gathered image by image
    on any number of workers and merged in any order are identical.
    """

    __slots__ = ("count", "min", "max", "zeros", "nonfinite", "pos", "neg", "_csum", "channel_n")

    def __init__(self) -> None:
        # Optional per-channel sums of a (C,H,W) tensor over images (for bias correction),
        # kept exactly (see _exact_sums), and the number of values summed per channel.
        self._csum: Optional[List[int]] = None
        self.channel_n = 0
        self.count = 0
        self.min: Optional[float] = None
        self.max: Optional[float] = None
        self.zeros = 0
        self.nonfinite = 0
        self.pos = np.zeros(NBINS, dtype=np.int64)
        self.neg = np.zeros(NBINS, dtype=np.int64)

    # -- accumulation --------------------------------------------------------------------------
    @classmethod
    def from_array(cls, x: np.ndarray) -> "TensorStats":
        return cls().update(x)

    def update(self, x: np.ndarray) -> "TensorStats":
        """Add the values of ``x`` (any shape; float32 is the fast path).  Returns self."""
        x = np.asarray(x)
        if x.dtype != np.float32:
            x = x.astype(np.float64)
        x = x.reshape(-1)
        n = x.size
        self.count += n
        if n == 0:
            return self
        mn, mx = x.min(), x.max()
        if not (np.isfinite(mn) and np.isfinite(mx)):
            finite = np.isfinite(x)
            self.nonfinite += int(n - np.count_nonzero(finite))
            x = x[finite]
            if x.size == 0:
                return self
            mn, mx = x.min(), x.max()
        mn, mx = float(mn) + 0.0, float(mx) + 0.0              # + 0.0: -0.0 -> 0.0
        self.min = mn if self.min is None else min(self.min, mn)
        self.max = mx if self.max is None else max(self.max, mx)
        k = _bin_index(np.abs(x))
        k += (x < 0).view(np.int8) * np.int32(NBINS)          # negatives: bins NBINS..2*NBINS-1
        counts = np.bincount(k, minlength=2 * NBINS)
        zeros = x.size - int(np.count_nonzero(x))              # zeros (and -0.0) are in bin 0
        counts[0] -= zeros
        self.pos += counts[:NBINS]
        self.neg += counts[NBINS:]
        self.zeros += zeros
        return self

    def update_channels(self, x: np.ndarray) -> "TensorStats":
        """Accumulate per-channel sums of a (C,H,W) tensor (finite values assumed).

        The sum over one tensor is NumPy's float64 sum (a deterministic function of the
        tensor); sums over tensors are added exactly."""
        x = np.asarray(x)
        sums = _exact_sums(x.reshape(x.shape[0], -1).sum(axis=1, dtype=np.float64))
        if self._csum is None:
            self._csum = sums
        elif len(self._csum) == len(sums):
            self._csum = [a + b for a, b in zip(self._csum, sums)]
        else:
            raise ShapeError(f"channel statistics: {len(sums)} channels after {len(self._csum)}")
        self.channel_n += int(x[0].size)
        return self

    @property
    def channel_sum(self) -> Optional[np.ndarray]:
        """Per-channel sums (float64, (C,): the exact sums rounded once), or None."""
        if self._csum is None:
            return None
        return np.array([a / _EXACT_ONE for a in self._csum], dtype=np.float64)

    @channel_sum.setter
    def channel_sum(self, values: Optional[np.ndarray]) -> None:
        self._csum = None if values is None else _exact_sums(values)

    @property
    def channel_mean(self) -> Optional[np.ndarray]:
        """Per-channel mean (float64, (C,)): the exact sum over the count, rounded once; or
        None when not recorded."""
        if self._csum is None or self.channel_n == 0:
            return None
        den = self.channel_n * _EXACT_ONE
        return np.array([a / den for a in self._csum], dtype=np.float64)

    def merge(self, other: "TensorStats") -> "TensorStats":
        """Add ``other``'s values to this one (in place).  Returns self.  Exact: merging is
        associative and commutative (see the class docstring)."""
        if self.count == 0 and self._csum is None:
            self._csum = None if other._csum is None else list(other._csum)
            self.channel_n = other.channel_n
        elif (self._csum is not None and other._csum is not None
              and len(self._csum) == len(other._csum)):
            self._csum = [a + b for a, b in zip(self._csum, other._csum)]
            self.channel_n += other.channel_n
        elif other.count:
            self._csum, self.channel_n = None, 0            # one side lacks them: drop
        self.count += other.count
        self.zeros += other.zeros
        self.nonfinite += other.nonfinite
        self.pos += other.pos
        self.neg += other.neg
        if other.min is not None:
            self.min = (other.min if self.min is None else min(self.min, other.min)) + 0.0
            self.max = (other.max if self.max is None else max(self.max, other.max)) + 0.0
        return self

    def copy(self) -> "TensorStats":
        return TensorStats().merge(self)

    # -- derived quantities ----------------------------------------------------------------------
    @property
    def finite_count(self) -> int:
        return self.count - self.nonfinite

    @property
    def nonzero(self) -> int:
        return int(self.pos.sum() + self.neg.sum())

    @property
    def abs_max(self) -> float:
        if self.min is None:
            return 0.0
        return max(abs(self.min), abs(self.max))

    def abs_hist(self) -> np.ndarray:
        """Histogram of ``|v|`` over non-zero values (pos + neg)."""
        return self.pos + self.neg

    def abs_percentile(self, p: float) -> float:
        """An upper bound of the ``p``-th percentile of ``|v|`` (finite values, zeros included).

        The upper edge of the bin where the cumulative count reaches ``p`` %, capped at the
        exact ``max|v|``: at most ``100 - p`` % of the values exceed it.  If the percentile is
        a zero, the first non-zero bin is used instead (so the result is 0 only for an
        all-zero tensor).
        """
        n = self.finite_count
        if n == 0 or self.nonzero == 0:
            return 0.0
        target = max(1, math.ceil(p / 100.0 * n - 1e-9))
        cum = self.zeros + np.cumsum(self.abs_hist())
        k = int(np.searchsorted(cum, target, side="left"))
        first = int(np.flatnonzero(self.abs_hist())[0])
        k = min(max(k, first), NBINS - 1)
        return min(float(_EDGES32[k + 1]), self.abs_max)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self, *, exact: bool = False) -> Dict[str, Any]:
        """Compact JSON-able form: only the non-zero bins, as ``[bin, count]`` pairs.

        Per-channel statistics are written as ``channel_mean`` (float64, rounded once), or
        with ``exact=True`` as the exact sums ``channel_sum`` (strings, see
        :func:`_exact_to_text`): that form merges without any rounding (per-image records of
        distributed calibration, :mod:`mdfi.scale.imagejobs`)."""
        def sparse(h):
            nz = np.flatnonzero(h)
            return [[int(k), int(h[k])] for k in nz]
        d = {"count": int(self.count), "min": self.min, "max": self.max, "zeros": int(self.zeros),
             "nonfinite": int(self.nonfinite), "pos": sparse(self.pos), "neg": sparse(self.neg)}
        if self._csum is not None and self.channel_n:
            if exact:
                d["channel_sum"] = [_exact_to_text(a) for a in self._csum]
            else:
                d["channel_mean"] = [float(v) for v in self.channel_mean]
            d["channel_n"] = int(self.channel_n)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "tensor stats") -> "TensorStats":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` describing what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, found {type(d).__name__}")
        need = ("count", "min", "max", "zeros", "nonfinite", "pos", "neg")
        missing = [k for k in need if k not in d]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        extra = sorted(set(d) - set(need) - {"channel_mean", "channel_sum", "channel_n"})
        if extra:
            raise ValueError(f"{where}: unknown field(s) {', '.join(extra)}")
        s = cls()
        for key in ("count", "zeros", "nonfinite"):
            setattr(s, key, _nonneg_int(d[key], f"{where}: {key}"))
        if "channel_mean" in d and "channel_sum" in d:
            raise ValueError(f"{where}: give channel_mean or channel_sum, not both")
        per_channel = "channel_mean" if "channel_mean" in d else "channel_sum" if "channel_sum" in d else None
        if (per_channel is not None) != ("channel_n" in d):
            raise ValueError(f"{where}: {per_channel or 'channel_mean'} and channel_n go together")
        if per_channel is not None:
            cm = d[per_channel]
            if not isinstance(cm, list) or not cm:
                raise ValueError(f"{where}: {per_channel} must be a non-empty list")
            if len(cm) > 1 << 20:
                raise ValueError(f"{where}: {per_channel} has {len(cm)} channels")
            s.channel_n = _nonneg_int(d["channel_n"], f"{where}: channel_n")
            if s.channel_n == 0:
                raise ValueError(f"{where}: channel_n must be positive")
            if per_channel == "channel_sum":
                s._csum = [_exact_from_text(v, f"{where}: channel_sum") for v in cm]
            else:
                means = [_finite_float(v, f"{where}: channel_mean") for v in cm]
                s._csum = [a * s.channel_n for a in _exact_sums(means)]     # exact: means read back as written
        for key in ("pos", "neg"):
            h = getattr(s, key)
            pairs = d[key]
            if not isinstance(pairs, list):
                raise ValueError(f"{where}: {key} must be a list of [bin, count] pairs")
            last = -1
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError(f"{where}: {key}: expected [bin, count] pairs, found {pair!r:.40}")
                k = _nonneg_int(pair[0], f"{where}: {key} bin")
                c = _nonneg_int(pair[1], f"{where}: {key} count")
                if k >= NBINS:
                    raise ValueError(f"{where}: {key}: bin {k} outside 0..{NBINS - 1}")
                if k <= last:
                    raise ValueError(f"{where}: {key}: bins must be increasing ({k} after {last})")
                if c == 0:
                    raise ValueError(f"{where}: {key}: bin {k} has count 0 (only non-zero bins are stored)")
                last = k
                h[k] = c
        finite = s.count - s.nonfinite
        if finite < 0:
            raise ValueError(f"{where}: nonfinite {s.nonfinite} exceeds count {s.count}")
        total = int(s.pos.sum() + s.neg.sum()) + s.zeros
        if total != finite:
            raise ValueError(f"{where}: histograms and zeros hold {total} values but count - nonfinite "
                             f"is {finite}")
        lo, hi = d["min"], d["max"]
        if finite == 0:
            if lo is not None or hi is not None:
                raise ValueError(f"{where}: min/max must be null when there are no finite values")
            return s
        lo = _finite_float(lo, f"{where}: min")
        hi = _finite_float(hi, f"{where}: max")
        if lo > hi:
            raise ValueError(f"{where}: min {lo!r} > max {hi!r}")
        # min/max must agree with the histograms (catches edited files).
        if (s.pos.any() != (hi > 0)) or (s.neg.any() != (lo < 0)) or \
                (s.zeros > 0 and not lo <= 0 <= hi) or (s.zeros == 0 and 0.0 in (lo, hi)):
            raise ValueError(f"{where}: min {lo!r} / max {hi!r} disagree with the histograms")
        if hi > 0 and int(np.flatnonzero(s.pos)[-1]) > int(_bin_index(np.array([hi]))[0]):
            raise ValueError(f"{where}: the positive histogram has values above max {hi!r}")
        if lo < 0 and int(np.flatnonzero(s.neg)[-1]) > int(_bin_index(np.array([-lo]))[0]):
            raise ValueError(f"{where}: the negative histogram has values below min {lo!r}")
        s.min, s.max = lo, hi
        return s

    def check_extremes(self, where: str = "statistics") -> None:
        """Statistics gathered from values (not estimated): max (min) lies in, or next to, the
        last non-empty bin of the histogram (an edited max of 1e300 gave every format of the
        --method max model its widest range, silently).  Raises ValueError."""
        if self.max is not None and self.max > 0 and \
                int(_bin_index(np.array([self.max]))[0]) > int(np.flatnonzero(self.pos)[-1]) + 1:
            raise ValueError(f"{where}: max {self.max!r} lies above every value of the positive histogram")
        if self.min is not None and self.min < 0 and \
                int(_bin_index(np.array([-self.min]))[0]) > int(np.flatnonzero(self.neg)[-1]) + 1:
            raise ValueError(f"{where}: min {self.min!r} lies below every value of the negative histogram")

    # -- comparison --------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorStats):
            return NotImplemented
        return (self.count, self.min, self.max, self.zeros, self.nonfinite) == \
            (other.count, other.min, other.max, other.zeros, other.nonfinite) and \
            np.array_equal(self.pos, other.pos) and np.array_equal(self.neg, other.neg)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"TensorStats(count={self.count}, min={self.min}, max={self.max}, zeros={self.zeros}, "
                f"nonfinite={self.nonfinite}, bins={np.count_nonzero(self.pos) + np.count_nonzero(self.neg)})")


def _nonneg_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what}: expected a non-negative integer, found {v!r:.40}")
    if v >= 1 << 62:
        raise ValueError(f"{what}: {v} is too large")
    return v


def _finite_float(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what}: expected a finite number, found {v!r:.40}")
    return float(v)
