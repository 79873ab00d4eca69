"""The arithmetic hypotheses of ``mdfi verify`` (used by :mod:`mdfi.hw.verify_hints`).

:class:`Pipeline` recomputes a convolution's or shortcut's ``acc -> act -> out`` from the
golden stages with one or two rules changed (bias, accumulator width, activation, rounding
mode, shift, saturation); the ``*_hyps`` functions turn each change into a :class:`Hyp`
(a prediction and a sentence), and :func:`best` keeps the ones the DUT follows: those that
reproduce (nearly) every differing value *and* are followed at (nearly) every element
where the changed rule differs from the golden one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ..fixedpoint import LEAKY_MULT, LEAKY_SHIFT

#: Mismatches used to screen hypotheses before they are tested on every mismatch.
_SAMPLE = 4096
#: Mismatch counts up to which "isolated values" is a meaningful diagnosis.
_ISOLATED_MAX = 16
#: A hypothesis must be followed by the DUT at this fraction of the elements where it
#: differs from the golden rule, and explain this fraction of the mismatches.
_COVERAGE = 0.9

# ----------------------------------------------------------------------------------------------
# rounding modes (docs/fixed-point.md section 2, plus the ones a device might use by mistake)
#: mode -> (noun phrase for the DUT, verb phrase for golden)
_MODES = {
    "half_up": ("rounding half up (AP_RND)", "rounds half up (AP_RND)"),
    "truncate": ("truncation (floor, AP_TRN)", "truncates (floor, AP_TRN)"),
    "trn_zero": ("truncation toward zero (AP_TRN_ZERO, C integer division)",
                 "truncates toward zero (AP_TRN_ZERO)"),
    "half_even": ("rounding half to even (AP_RND_CONV, numpy.rint)", "rounds half to even (AP_RND_CONV)"),
    "half_away": ("rounding half away from zero (AP_RND_INF, C round())", "rounds half away from zero (AP_RND_INF)"),
    "half_zero": ("rounding half toward zero (AP_RND_ZERO)", "rounds half toward zero (AP_RND_ZERO)"),
    "half_down": ("rounding half down (AP_RND_MIN_INF)", "rounds half down (AP_RND_MIN_INF)"),
}

_SHORT = {"half_up": "half-up rounding", "truncate": "truncation", "trn_zero": "truncation toward zero",
          "half_even": "half-to-even rounding", "half_away": "half-away-from-zero rounding",
          "half_zero": "half-toward-zero rounding", "half_down": "half-down rounding"}


def round_shift(x: np.ndarray, s: np.ndarray, mode: str) -> np.ndarray:
    """``R(x / 2**s)`` for int64 ``x`` in any of the modes above (``s <= 0``: exact ``x * 2**-s``).

    No saturation, no overflow protection for left shifts (callers bound ``x``).
    """
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    right = np.clip(s, 0, 62)
    left = np.clip(-s, 0, 62)
    q = np.right_shift(x, right)
    if mode != "truncate":
        r = x - np.left_shift(q, right)
        inexact = r != 0
        h = np.left_shift(np.int64(1), np.maximum(right - 1, 0))
        above, tie = (r > h) & (right > 0), (r == h) & (right > 0)
        if mode == "half_up":
            up = above | tie
        elif mode == "trn_zero":
            up = inexact & (x < 0)
        elif mode == "half_even":
            up = above | (tie & ((q & 1) == 1))
        elif mode == "half_away":
            up = above | (tie & (x >= 0))
        elif mode == "half_zero":
            up = above | (tie & (x < 0))
        elif mode == "half_down":
            up = above
        else:  # pragma: no cover - internal
            raise ValueError(mode)
        q = q + up
    return np.left_shift(q, left)


def wrap(v: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    """Two's-complement wrap-around to ``bits`` (AP_WRAP)."""
    mask = np.int64((1 << bits) - 1)
    u = np.asarray(v, dtype=np.int64) & mask
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u


def qrange(bits: int, signed: bool) -> Tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# ----------------------------------------------------------------------------------------------
# the golden datapath of a convolution or shortcut, recomputed with changed rules
_ACT_VARIANTS = ("linear", "relu", "leaky", "slope8")


class Pipeline:
    """acc -> act -> out of one conv/shortcut layer at a set of elements (all, or those a
    sparse dump holds), from the golden stages; ``predict`` changes one or two rules."""

    def __init__(self, acc: Optional[np.ndarray], act: Optional[np.ndarray], base_shift: np.ndarray,
                 bias: Optional[np.ndarray], activation: str, mode: str, bits: int, zero: int = 0):
        self.base = base_shift            # per element, int64 (no leaky extra)
        self.zero = int(zero)             # the output's zero point, added before the saturation
        self.bias = bias                  # per element, or None (shortcut, not exported)
        self.activation = activation
        self.mode = mode if isinstance(mode, str) and mode in _MODES else "half_up"
        self.bits = bits
        self.lo, self.hi = qrange(bits, True)
        if acc is None and act is not None and activation in ("leaky", "linear"):
            acc = np.where(act < 0, act // LEAKY_MULT, act) if activation == "leaky" else act
        self.acc = acc
        if act is None and acc is not None:
            act = self._act(acc, activation)
        self.act = act

    @staticmethod
    def _act(a: np.ndarray, variant: str) -> np.ndarray:
        """The activation applied to the accumulator before the shift (docs/fixed-point.md s.4);
        ``slope8`` is a slope of 1/8 written as ``acc * 4096`` at the leaky scale 2^-15."""
        if variant == "linear":
            return a
        if variant == "relu":
            return np.maximum(a, 0)
        if variant == "leaky":
            return np.where(a < 0, a * LEAKY_MULT, a)
        if variant == "slope8":
            return np.where(a < 0, a * 4096, a)
        raise ValueError(variant)  # pragma: no cover

    def acc_at(self, idx, acc_mod=None) -> np.ndarray:
        a = self.acc[idx]
        if acc_mod is None:
            return a
        kind, v = acc_mod
        if kind == "bias":
            return a + v * self.bias[idx]
        if kind == "wrap":
            return wrap(a, v)
        raise ValueError(kind)  # pragma: no cover

    def act_at(self, idx, acc_mod=None, act_variant=None) -> np.ndarray:
        if acc_mod is None and act_variant is None:
            return self.act[idx]
        return self._act(self.acc_at(idx, acc_mod), act_variant or self.activation)

    def eff_shift(self, idx, act_variant=None, neg=None):
        s = self.base[idx]
        variant = act_variant or self.activation
        if variant in ("leaky", "slope8"):
            if neg is None:
                neg = self.act[idx] < 0
            s = s + np.where(neg, LEAKY_SHIFT, 0)
        return s

    def _finish(self, q, wrap_out, zero=None):
        q = q + np.int64(self.zero if zero is None else zero)
        return wrap(q, self.bits) if wrap_out else np.clip(q, self.lo, self.hi)

    def out_at(self, idx, acc_mod=None, act_variant=None, mode=None, dshift=0, wrap_out=False,
               zero=None) -> np.ndarray:
        """``zero``: the output zero point added (None: the golden one)."""
        mode = mode or self.mode
        if act_variant in ("after", "float"):
            acc = self.acc_at(idx, acc_mod)
            s0 = self.base[idx] + dshift
            neg = acc < 0
            if act_variant == "after":
                q1 = round_shift(acc, s0, self.mode)
                q = np.where(neg, round_shift(q1 * LEAKY_MULT, np.full_like(q1, LEAKY_SHIFT), self.mode), q1)
            else:
                v = np.floor(acc * 0.1 / np.exp2(s0.astype(np.float64)) + 0.5).astype(np.int64)
                q = np.where(neg, v, round_shift(acc, s0, self.mode))
            return self._finish(q, wrap_out, zero)
        a = self.act_at(idx, acc_mod, act_variant)
        s = self.eff_shift(idx, act_variant, a < 0) + dshift
        if wrap_out:
            a = np.where(s < 0, a & np.int64((1 << self.bits) - 1), a)   # wrap is modular: bound left shifts
        else:
            lim = np.int64(1) << np.int64(self.bits)
            a = np.where(s < 0, np.clip(a, -lim, lim), a)
        return self._finish(round_shift(a, s, mode), wrap_out, zero)

    def predict(self, stage: str, idx, **change) -> np.ndarray:
        if stage == "acc":
            return self.acc_at(idx, change.get("acc_mod"))
        if stage == "act":
            return self.act_at(idx, change.get("acc_mod"), change.get("act_variant"))
        return self.out_at(idx, **change)


class LutPipeline(Pipeline):
    """A table activation (docs/fixed-point.md 4.1): the pre-activation code is the linear
    requantization of the accumulator (``Pipeline`` with ``bits`` = P), the output is
    ``table[pre - qmin(P)]``; every change of the code's rule is seen through the table."""

    def __init__(self, acc, base_shift, bias, mode: str, pre_bits: int, table: np.ndarray):
        super().__init__(acc, None, base_shift, bias, "linear", mode, pre_bits)
        self.table = np.asarray(table, dtype=np.int64)
        self.qmin = -(1 << (pre_bits - 1))

    def pre_at(self, idx, **change) -> np.ndarray:
        return Pipeline.out_at(self, idx, **change)

    def out_at(self, idx, **change) -> np.ndarray:
        return self.table[self.pre_at(idx, **change) - self.qmin]

    def lookup_at(self, idx, dindex: int = 0, unsigned_index: bool = False) -> np.ndarray:
        """The golden codes looked up at ``index + dindex`` (clamped to the table), or with
        the code's P-bit two's complement taken as the index (``- qmin`` forgotten)."""
        i = self.pre_at(idx) - self.qmin
        if unsigned_index:
            i = (i + self.qmin) & ((1 << self.bits) - 1)
        return self.table[np.clip(i + dindex, 0, self.table.size - 1)]


def lut_hyps(pl: LutPipeline, n: int) -> List[Hyp]:
    """A table activation's output read at the wrong entry."""
    hyps = []
    for k in (1, -1, 2, -2):
        hyps.append(Hyp("lut_index", 1, f"lut{k:+d}", exact(lambda i, k=k: pl.lookup_at(i, dindex=k)),
                         lambda h, k=k: (f"activation table read {abs(k)} entr{'y' if abs(k) == 1 else 'ies'} "
                                         f"{'too far' if k > 0 else 'too early'}: found values equal act_lut[pre - qmin "
                                         f"{k:+d}] (the lookup index off by {k:+d}; docs/fixed-point.md 4.1), "
                                         f"{h.explained:,} of {n:,} mismatches explained")))
    hyps.append(Hyp("lut_index", 1, "lut-unsigned", exact(lambda i: pl.lookup_at(i, unsigned_index=True)),
                     lambda h: (f"activation table indexed by the pre-activation code's {pl.bits}-bit two's "
                                f"complement instead of pre - qmin = pre + {-pl.qmin} (sign bit not inverted; "
                                f"docs/fixed-point.md 4.1): {h.explained:,} of {n:,} mismatches explained")))
    return hyps


@dataclass
class Hyp:
    kind: str
    changes: int                      # how many rules differ from golden
    label: str
    pred: object                      # callable(idx) -> (lo, hi) arrays
    text: object = None               # callable(stats) -> str
    explained: int = 0
    covered: int = 0
    differs: int = 0


def _sample(mism: np.ndarray, rng) -> np.ndarray:
    return mism if mism.size <= _SAMPLE else np.sort(mism[rng.integers(0, mism.size, _SAMPLE)])


def _test(h: Hyp, gold, dut, mism, sample) -> bool:
    """Does the DUT follow hypothesis ``h`` (screened on a sample of the mismatches, then
    tested on every mismatch and on every element)?"""
    n = mism.size
    lo, hi = h.pred(sample)
    d = dut[sample]
    if np.count_nonzero((d >= lo) & (d <= hi)) < _COVERAGE * sample.size:
        return False
    if sample is not mism:
        lo, hi = h.pred(mism)
        d = dut[mism]
    h.explained = int(np.count_nonzero((d >= lo) & (d <= hi)))
    if h.explained < _COVERAGE * n:
        return False
    lo, hi = h.pred(slice(None))
    differs = (gold < lo) | (gold > hi)                     # where the changed rule gives other values
    h.differs = int(np.count_nonzero(differs))
    h.covered = int(np.count_nonzero(differs & (dut >= lo) & (dut <= hi)))
    return h.differs > 0 and h.covered >= _COVERAGE * h.differs


def exact(f):
    def pred(idx):
        v = f(idx)
        return v, v
    return pred


def _fraction_clause(pl: Pipeline, mism: np.ndarray) -> str:
    a = pl.act[mism]
    s = pl.eff_shift(mism)
    if np.any(s <= 0):
        return ""
    q = np.right_shift(a, s)
    r = a - np.left_shift(q, s)
    h = np.left_shift(np.int64(1), s - 1)
    if np.all(r == h):
        return " at exact ties (fraction = 1/2)"
    if np.all(r >= h):
        return " where the fraction x - floor(x) is >= 1/2"
    if np.all((r > 0) & (r < h)):
        return " where the fraction x - floor(x) is < 1/2"
    if np.all(r != 0):
        return " where the quotient is inexact"
    return ""


def _observed(stage: str) -> str:
    return {"acc": "the accumulator", "act": "the activation before the shift", "out": "the output"}[stage]


def acc_hyps(pl: Pipeline, stage: str, n: int, acc_bits: Optional[int], has_bias: bool) -> List[Hyp]:
    """Changes of the accumulator itself, seen at ``stage`` through the golden later steps."""
    hyps: List[Hyp] = []
    later = "" if stage == "acc" else ", then activated and requantized by the golden rule"
    if has_bias:
        hyps.append(Hyp("bias", 1, "no-bias", exact(lambda i: pl.predict(stage, i, acc_mod=("bias", -1))),
                         lambda hh: (f"found values equal the golden accumulator without the bias{later}: bias "
                                     f"not added ({hh.explained:,} of {n:,} mismatches)")))
        hyps.append(Hyp("bias", 1, "bias-twice", exact(lambda i: pl.predict(stage, i, acc_mod=("bias", 1))),
                         lambda hh: (f"found values equal the golden accumulator plus the bias again{later}: "
                                     f"bias added twice ({hh.explained:,} of {n:,} mismatches)")))
    if pl.acc is not None and pl.acc.size:
        need = int(np.abs(pl.acc).max()).bit_length() + 1          # bits these values need (signed)
        top = need - 1 if acc_bits is None else min(need - 1, acc_bits - 1)
        for b in range(top, max(2, need - 8) - 1, -1):
            declared = f"declared acc_bits {acc_bits}, " if acc_bits else ""
            hyps.append(Hyp("acc_wrap", 1, f"accwrap{b}",
                             exact(lambda i, b=b: pl.predict(stage, i, acc_mod=("wrap", b))),
                             lambda hh, b=b: (f"accumulator wraps around at {b} bits: found values equal the golden "
                                              f"accumulator wrapped to {b} bits (two's complement){later}; "
                                              f"{declared}these values need {need}: an accumulator register or "
                                              f"adder too narrow? ({hh.explained:,} of {n:,} mismatches)")))
    return hyps


def act_hyps(pl: Pipeline, stage: str, n: int) -> List[Hyp]:
    if pl.acc is None:
        return []
    texts = {
        "linear": "negative values are not multiplied by the activation slope: the DUT is linear (activation "
                  "missing)",
        "relu": "negative values become 0: the DUT applies ReLU",
        "leaky": "the DUT applies the leaky slope 3277/2^15 to negative values",
        "slope8": "the DUT uses the leaky slope 1/8 (a shift by 3) instead of 3277/2^15",
    }
    variants = [v for v in _ACT_VARIANTS if v != pl.activation and not (v == "slope8" and pl.activation != "leaky")]
    if stage == "out" and pl.activation == "leaky":
        texts["after"] = ("DUT applies the leaky slope after the requantizing shift (two roundings) instead of to "
                          "the accumulator before it (docs/fixed-point.md section 4)")
        texts["float"] = "the DUT uses the leaky slope 0.1 exactly (float) instead of 3277/2^15 = 0.100006"
        variants += ["after", "float"]
    hyps = []
    for v in variants:
        txt = texts[v] + ("" if v in ("after", "float") else f" instead of {pl.activation}")
        hyps.append(Hyp("activation", 1, v, exact(lambda i, v=v: pl.predict(stage, i, act_variant=v)),
                         lambda h, txt=txt: (f"{txt}: {h.explained:,} of {n:,} mismatches explained, at "
                                             f"{h.covered:,} of {h.differs:,} values affected (seen in "
                                             f"{_observed(stage)})")))
    return hyps


def out_hyps(pl: Pipeline, n: int, mism: np.ndarray) -> List[Hyp]:
    hyps: List[Hyp] = []
    gm = pl.mode

    def mode_text(mode):
        def t(h):
            s = (f"rounding-mode difference: found values equal {_MODES[mode][0]} where golden "
                 f"{_MODES[gm][1]}: {h.explained:,} of {n:,} mismatches are off by one"
                 f"{_fraction_clause(pl, mism) if h.explained == n else ''}")
            if h.covered == h.differs:
                return s + f"; the DUT follows {_SHORT[mode]} at all {h.differs:,} values where the modes differ"
            return (s + f"; the DUT follows {_SHORT[mode]} at {h.covered:,} of {h.differs:,} values where the "
                        f"modes differ")
        return t

    def shift_text(k):
        def t(h):
            how = f"1/{2 ** k} of" if k > 0 else f"{2 ** -k} times"
            return (f"looks like a requantizing shift off by {k:+d} (DUT shifts by shift{k:+d}): found values "
                    f"are {how} the golden ones (factor {2 ** abs(k)}), saturated; {h.explained:,} of {n:,} "
                    f"mismatches explained")
        return t

    def wrap_text(h):
        return (f"DUT wraps around instead of saturating (AP_WRAP vs AP_SAT): {h.explained:,} of {n:,} "
                f"mismatches are where golden saturates at {pl.lo}/{pl.hi} and the found value is the "
                f"unsaturated result wrapped to {pl.bits} bits")

    for mode in _MODES:
        if mode != gm:
            hyps.append(Hyp("rounding", 1, mode, exact(lambda i, m=mode: pl.out_at(i, mode=m)), mode_text(mode)))
    for k in (1, -1, 2, -2, 3, -3, 4, -4):
        hyps.append(Hyp("shift", 1, f"shift{k:+d}", exact(lambda i, k=k: pl.out_at(i, dshift=k)), shift_text(k)))
    hyps.append(Hyp("wrap", 1, "wrap", exact(lambda i: pl.out_at(i, wrap_out=True)), wrap_text))
    if pl.zero:
        hyps.append(Hyp("zero_point", 1, "no-zero-out", exact(lambda i: pl.out_at(i, zero=0)),
                         lambda h: zero_text(pl.zero, h.explained, n)))
    return hyps


def zero_text(z: int, explained: int, n: int) -> str:
    return (f"output zero point not added: found values equal the golden output without zero_out = {z} "
            f"(found = golden {-z:+d} before the saturation; docs/golden-format.md \"Zero points\": out = "
            f"sat(R(act/2^s) + zero_out)): {explained:,} of {n:,} mismatches explained")


def combo_hyps(pl: Pipeline, n: int) -> List[Hyp]:
    gm = pl.mode
    hyps = []
    for mode in _MODES:
        if mode == gm:
            continue
        for k in (1, -1, 2, -2):
            hyps.append(Hyp("combined", 2, f"{mode}+shift{k:+d}",
                             exact(lambda i, m=mode, k=k: pl.out_at(i, mode=m, dshift=k)),
                             lambda h, m=mode, k=k: (f"two differences: requantizing shift off by {k:+d} (factor "
                                                     f"{2 ** abs(k)}) and {_MODES[m][0]} instead of golden's "
                                                     f"{_MODES[gm][0]}: {h.explained:,} of {n:,} mismatches "
                                                     f"explained")))
        hyps.append(Hyp("combined", 2, f"{mode}+wrap", exact(lambda i, m=mode: pl.out_at(i, mode=m, wrap_out=True)),
                         lambda h, m=mode: (f"two differences: DUT wraps around instead of saturating (AP_WRAP vs "
                                            f"AP_SAT) and uses {_MODES[m][0]} instead of golden's {_MODES[gm][0]}: "
                                            f"{h.explained:,} of {n:,} mismatches explained")))
    for k in (1, -1, 2, -2):
        hyps.append(Hyp("combined", 2, f"wrap+shift{k:+d}",
                         exact(lambda i, k=k: pl.out_at(i, dshift=k, wrap_out=True)),
                         lambda h, k=k: (f"two differences: requantizing shift off by {k:+d} (factor {2 ** abs(k)}) "
                                         f"and wrap-around instead of saturation (AP_WRAP vs AP_SAT): "
                                         f"{h.explained:,} of {n:,} mismatches explained")))
    return hyps


def sign_note(d: np.ndarray) -> str:
    if np.all(d == 1):
        return " (found = expected + 1 everywhere)"
    if np.all(d == -1):
        return " (found = expected - 1 everywhere)"
    return ""


def best(hyps: List[Hyp], gold, dut, mism, rng) -> List[Hyp]:
    sample = _sample(mism, rng)
    ok = [h for h in hyps if _test(h, gold, dut, mism, sample)]
    ok.sort(key=lambda h: (h.changes, -h.explained, -(h.covered / max(h.differs, 1))))
    return ok


