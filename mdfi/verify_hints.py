"""The hints of ``mdfi verify``: which arithmetic change explains the differences of a file.

A hint about the datapath of a convolution or shortcut is a *hypothesis tested on the
whole tensor*: the golden layer is recomputed from its golden accumulator with one rule
changed, and the change is named only when that reproduces the differing values and the
DUT follows the changed rule at (nearly) every element where it differs from the golden
rule.  Each change is tested at every stage where it is observable:

=====================  ======================================  =================
change                 what is recomputed                      observable in
=====================  ======================================  =================
bias not added / twice ``acc ∓ bias``, then act and out          acc, act, out
accumulator wraps      ``acc`` wrapped to fewer bits, then ...  acc, act, out
activation variant     linear, ReLU, leaky, slope 1/8           act, out
                       slope after the shift, slope 0.1        out
rounding mode          the requantizing shift's rounding        out
shift off by ±k        ``shift ± k``                            out
wrap-around            the output wraps instead of saturating  out
=====================  ======================================  =================

(and two changes at once for the output step).  Files without an earlier golden stage,
and other layers, get the generic hints (scaling, narrow register, saturation, off by
one), addressing and layout hints, isolated values and bit flips, and confinement to a
few channels or to the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .fixedpoint import LEAKY_MULT, LEAKY_SHIFT, MAX_SHIFT as _MAX_SHIFT, MIN_SHIFT as _MIN_SHIFT

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
# coordinates
def coords(idx: int, shape: Sequence[int], layout: Optional[str]) -> Dict[str, int]:
    shape = list(shape)
    if not shape:
        return {"index": idx}
    try:
        pos = [int(v) for v in np.unravel_index(idx, shape)]
    except ValueError:
        return {"index": idx}
    if layout == "CHW" and len(shape) == 3:
        return dict(zip(("channel", "y", "x"), pos))
    if layout == "MCKK" and len(shape) == 4:
        return dict(zip(("m", "c", "ky", "kx"), pos))
    if layout == "M" and len(shape) == 1:
        return {"channel": pos[0]}
    if layout == "TABLE" and len(shape) == 1:
        return {"entry": pos[0]}
    return {"index": idx} if len(shape) == 1 else {f"d{k}": v for k, v in enumerate(pos)}


def coord_text(c: Dict[str, int], idx: int) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) + f"; line {idx + 1}"


def where(layer: int, stage: str, c: Dict[str, int], idx: int) -> str:
    name = "input" if layer == -1 else f"layer {layer} {stage}"
    return f"{name} ({coord_text(c, idx)})"


@dataclass
class Hint:
    kind: str      # rounding, shift, wrap, activation, acc_wrap, bias, combined, addressing, layout, narrow,
                   # scale, saturation, off_by_one, isolated, bitflip, channels, border, unknown
    text: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text}


# ----------------------------------------------------------------------------------------------
# the golden datapath of a convolution or shortcut, recomputed with changed rules
_ACT_VARIANTS = ("linear", "relu", "leaky", "slope8")


class _Pipeline:
    """acc -> act -> out of one conv/shortcut layer at a set of elements (all, or those a
    sparse dump holds), from the golden stages; ``predict`` changes one or two rules."""

    def __init__(self, acc: Optional[np.ndarray], act: Optional[np.ndarray], base_shift: np.ndarray,
                 bias: Optional[np.ndarray], activation: str, mode: str, bits: int):
        self.base = base_shift            # per element, int64 (no leaky extra)
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

    def _finish(self, q, wrap_out):
        return wrap(q, self.bits) if wrap_out else np.clip(q, self.lo, self.hi)

    def out_at(self, idx, acc_mod=None, act_variant=None, mode=None, dshift=0, wrap_out=False) -> np.ndarray:
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
            return self._finish(q, wrap_out)
        a = self.act_at(idx, acc_mod, act_variant)
        s = self.eff_shift(idx, act_variant, a < 0) + dshift
        if wrap_out:
            a = np.where(s < 0, a & np.int64((1 << self.bits) - 1), a)   # wrap is modular: bound left shifts
        else:
            lim = np.int64(1) << np.int64(self.bits)
            a = np.where(s < 0, np.clip(a, -lim, lim), a)
        return self._finish(round_shift(a, s, mode), wrap_out)

    def predict(self, stage: str, idx, **change) -> np.ndarray:
        if stage == "acc":
            return self.acc_at(idx, change.get("acc_mod"))
        if stage == "act":
            return self.act_at(idx, change.get("acc_mod"), change.get("act_variant"))
        return self.out_at(idx, **change)


@dataclass
class _Hyp:
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


def _test(h: _Hyp, gold, dut, mism, sample) -> bool:
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


def _exact(f):
    def pred(idx):
        v = f(idx)
        return v, v
    return pred


def _fraction_clause(pl: _Pipeline, mism: np.ndarray) -> str:
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


def _acc_hyps(pl: _Pipeline, stage: str, n: int, acc_bits: Optional[int], has_bias: bool) -> List[_Hyp]:
    """Changes of the accumulator itself, seen at ``stage`` through the golden later steps."""
    hyps: List[_Hyp] = []
    later = "" if stage == "acc" else ", then activated and requantized by the golden rule"
    if has_bias:
        hyps.append(_Hyp("bias", 1, "no-bias", _exact(lambda i: pl.predict(stage, i, acc_mod=("bias", -1))),
                         lambda hh: (f"found values equal the golden accumulator without the bias{later}: bias "
                                     f"not added ({hh.explained:,} of {n:,} mismatches)")))
        hyps.append(_Hyp("bias", 1, "bias-twice", _exact(lambda i: pl.predict(stage, i, acc_mod=("bias", 1))),
                         lambda hh: (f"found values equal the golden accumulator plus the bias again{later}: "
                                     f"bias added twice ({hh.explained:,} of {n:,} mismatches)")))
    if pl.acc is not None and pl.acc.size:
        need = int(np.abs(pl.acc).max()).bit_length() + 1          # bits these values need (signed)
        top = need - 1 if acc_bits is None else min(need - 1, acc_bits - 1)
        for b in range(top, max(2, need - 8) - 1, -1):
            declared = f"declared acc_bits {acc_bits}, " if acc_bits else ""
            hyps.append(_Hyp("acc_wrap", 1, f"accwrap{b}",
                             _exact(lambda i, b=b: pl.predict(stage, i, acc_mod=("wrap", b))),
                             lambda hh, b=b: (f"accumulator wraps around at {b} bits: found values equal the golden "
                                              f"accumulator wrapped to {b} bits (two's complement){later}; "
                                              f"{declared}these values need {need}: an accumulator register or "
                                              f"adder too narrow? ({hh.explained:,} of {n:,} mismatches)")))
    return hyps


def _act_hyps(pl: _Pipeline, stage: str, n: int) -> List[_Hyp]:
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
        hyps.append(_Hyp("activation", 1, v, _exact(lambda i, v=v: pl.predict(stage, i, act_variant=v)),
                         lambda h, txt=txt: (f"{txt}: {h.explained:,} of {n:,} mismatches explained, at "
                                             f"{h.covered:,} of {h.differs:,} values affected (seen in "
                                             f"{_observed(stage)})")))
    return hyps


def _out_hyps(pl: _Pipeline, n: int, mism: np.ndarray) -> List[_Hyp]:
    hyps: List[_Hyp] = []
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
            hyps.append(_Hyp("rounding", 1, mode, _exact(lambda i, m=mode: pl.out_at(i, mode=m)), mode_text(mode)))
    for k in (1, -1, 2, -2, 3, -3, 4, -4):
        hyps.append(_Hyp("shift", 1, f"shift{k:+d}", _exact(lambda i, k=k: pl.out_at(i, dshift=k)), shift_text(k)))
    hyps.append(_Hyp("wrap", 1, "wrap", _exact(lambda i: pl.out_at(i, wrap_out=True)), wrap_text))
    return hyps


def _combo_hyps(pl: _Pipeline, n: int) -> List[_Hyp]:
    gm = pl.mode
    hyps = []
    for mode in _MODES:
        if mode == gm:
            continue
        for k in (1, -1, 2, -2):
            hyps.append(_Hyp("combined", 2, f"{mode}+shift{k:+d}",
                             _exact(lambda i, m=mode, k=k: pl.out_at(i, mode=m, dshift=k)),
                             lambda h, m=mode, k=k: (f"two differences: requantizing shift off by {k:+d} (factor "
                                                     f"{2 ** abs(k)}) and {_MODES[m][0]} instead of golden's "
                                                     f"{_MODES[gm][0]}: {h.explained:,} of {n:,} mismatches "
                                                     f"explained")))
        hyps.append(_Hyp("combined", 2, f"{mode}+wrap", _exact(lambda i, m=mode: pl.out_at(i, mode=m, wrap_out=True)),
                         lambda h, m=mode: (f"two differences: DUT wraps around instead of saturating (AP_WRAP vs "
                                            f"AP_SAT) and uses {_MODES[m][0]} instead of golden's {_MODES[gm][0]}: "
                                            f"{h.explained:,} of {n:,} mismatches explained")))
    for k in (1, -1, 2, -2):
        hyps.append(_Hyp("combined", 2, f"wrap+shift{k:+d}",
                         _exact(lambda i, k=k: pl.out_at(i, dshift=k, wrap_out=True)),
                         lambda h, k=k: (f"two differences: requantizing shift off by {k:+d} (factor {2 ** abs(k)}) "
                                         f"and wrap-around instead of saturation (AP_WRAP vs AP_SAT): "
                                         f"{h.explained:,} of {n:,} mismatches explained")))
    return hyps


def _sign_note(d: np.ndarray) -> str:
    if np.all(d == 1):
        return " (found = expected + 1 everywhere)"
    if np.all(d == -1):
        return " (found = expected - 1 everywhere)"
    return ""


def _best(hyps: List[_Hyp], gold, dut, mism, rng) -> List[_Hyp]:
    sample = _sample(mism, rng)
    ok = [h for h in hyps if _test(h, gold, dut, mism, sample)]
    ok.sort(key=lambda h: (h.changes, -h.explained, -(h.covered / max(h.differs, 1))))
    return ok


# ----------------------------------------------------------------------------------------------
class Analyzer:
    """Hints for one differing file.

    ``gold``/``dut`` hold the compared values (for a sparse dump: only the elements it
    holds, ``sel`` their flat indices in the tensor); ``mism`` indexes into them.  ``gs``
    gives the golden values of other stages (``gs.stage(layer, stage)``: flat array or
    None) and the manifest's layers (``gs.layers``).
    """

    def __init__(self, gs, entry: dict, gold: np.ndarray, dut: np.ndarray, mism: np.ndarray,
                 sel: Optional[np.ndarray] = None):
        self.gs, self.e = gs, entry
        self.gold, self.dut, self.mism = gold, dut, mism
        self.sel = sel
        self.layer, self.stage = entry["layer"], entry["stage"]
        self.bits, self.signed = entry["bits"], entry["signed"]
        self.shape = list(entry["shape"])
        self.layout = entry.get("layout")
        self.total = int(np.prod(self.shape, dtype=np.int64)) if self.shape else gold.size
        self.L = gs.layers.get(self.layer, {})
        self.meta = self.L.get("meta") or {}
        self.kind = self.L.get("kind")
        self.rng = np.random.default_rng(12345)
        self._pl: object = False

    def full(self, i) -> np.ndarray:
        """Flat tensor indices of compared positions ``i``."""
        return np.asarray(i) if self.sel is None else self.sel[i]

    def _other(self, stage: str) -> Optional[np.ndarray]:
        """Golden values of another stage of this layer at the compared positions."""
        v = self.gs.stage(self.layer, stage, self.e.get("format"))
        if v is None or v.size != self.total:
            return None
        return v if self.sel is None else v[self.sel]

    # -- golden values of earlier stages -----------------------------------------------------
    def base_shift(self, full_tensor: bool = False) -> Optional[np.ndarray]:
        """The requantizing shift of every compared element (no leaky extra), or None."""
        if not hasattr(self, "_base"):
            self._base = self._base_shift()
        if self._base is None or full_tensor or self.sel is None:
            return self._base
        return self._base[self.sel]

    def _base_shift(self) -> Optional[np.ndarray]:
        n = self.total
        if self.kind == "convolutional" and len(self.shape) == 3:
            c, h, w = self.shape
            sh = self.gs.stage(self.layer, "shift")
            if sh is None or sh.size != c:
                try:
                    wf = np.asarray(self.meta["w_frac"], dtype=np.int64)
                    sh = wf + int(self.meta["in_fmt"]["frac"]) - int(self.meta["out_fmt"]["frac"])
                    if sh.size == 1:
                        sh = np.repeat(sh, c)
                except (KeyError, TypeError, ValueError, OverflowError):   # the manifest is data
                    return None
            if sh.size != c or not np.all((sh >= _MIN_SHIFT) & (sh <= _MAX_SHIFT)):
                return None
            return np.repeat(sh.astype(np.int64), h * w)
        shift = self.meta.get("shift")
        if self.kind == "shortcut" and isinstance(shift, int) and _MIN_SHIFT <= shift <= _MAX_SHIFT:
            return np.full(n, shift, dtype=np.int64)
        return None

    def _bias(self) -> Optional[np.ndarray]:
        if self.kind != "convolutional" or len(self.shape) != 3:
            return None
        c, h, w = self.shape
        b = self.gs.stage(self.layer, "bias")
        if b is None or b.size != c:
            return None
        be = np.repeat(b.astype(np.int64), h * w)
        return be if self.sel is None else be[self.sel]

    def pipeline(self) -> Optional[_Pipeline]:
        """The layer's datapath at the compared elements, when this file is one of its
        stages and the golden set has what recomputing it needs."""
        if self._pl is not False:
            return self._pl
        self._pl = None
        if self.stage not in ("acc", "act", "out") or self.kind not in ("convolutional", "shortcut") \
                or not self.signed:
            return None
        activation = self.meta.get("activation", "linear")
        if activation not in ("linear", "leaky", "relu"):
            return None
        base = self.base_shift()
        acc = self.gold if self.stage == "acc" else self._other("acc")
        act = self.gold if self.stage == "act" else self._other("act")
        if base is None or (acc is None and act is None):
            return None
        if acc is None and activation == "relu":
            return None
        out_bits = self.bits if self.stage == "out" else (self.meta.get("out_fmt") or {}).get("bits")
        if not isinstance(out_bits, int) or not 2 <= out_bits <= 32:
            return None
        # The layer's own mode (meta) first: it includes per-layer overrides (--layer-rounding).
        mode = self.meta.get("rounding") or self.e.get("rounding") or "half_up"
        pl = _Pipeline(acc, act, base, self._bias(), activation, mode, out_bits)
        # The golden file must be what the golden rule gives, or no recomputation is meaningful.
        probe = self.mism if self.mism.size <= _SAMPLE else self.mism[:_SAMPLE]
        if pl.acc is None or not np.array_equal(pl.predict(self.stage, probe), self.gold[probe]):
            return None
        self._pl = pl
        return pl

    def golden_context(self, i: int) -> Dict[str, object]:
        """Golden values of the earlier stages at flat tensor index ``i``."""
        g: Dict[str, object] = {}
        st = lambda s: self.gs.stage(self.layer, s, self.e.get("format"))   # noqa: E731
        if self.stage in ("out", "act") and self.kind in ("convolutional", "shortcut"):
            acc = st("acc")
            if acc is not None and acc.size == self.total:
                g["acc"] = int(acc[i])
            if self.stage == "out":
                act = st("act")
                base = self.base_shift(full_tensor=True)
                if act is not None and act.size == self.total:
                    g["act"] = int(act[i])
                    if base is not None:
                        s = int(base[i])
                        leaky = self.meta.get("activation") == "leaky" and act[i] < 0
                        if leaky:
                            g["shift"] = f"{s + 15} = {s} + 15, leaky"
                        else:
                            a = self.meta.get("activation")
                            g["shift"] = f"{s}, {a}" if a not in (None, "linear") else f"{s}"
                        s_eff = s + (15 if leaky else 0)
                        g["exact"] = float(f"{int(act[i]) / 2.0 ** s_eff:.6g}")
        elif (self.stage == "acc" and self.kind == "convolutional"
              and "channel" in coords(i, self.shape, self.layout)):
            bias = self.gs.stage(self.layer, "bias")
            ch = coords(i, self.shape, self.layout)["channel"]
            if bias is not None and ch < bias.size:
                g["bias"] = int(bias[ch])
        elif self.stage == "out" and self.kind in ("yolo", "region"):
            x = st("in0")
            if x is not None and x.size == self.total:
                g["in0"] = int(x[i])
        elif self.stage == "out" and self.kind == "route" and self.layout == "CHW":
            ch = coords(i, self.shape, self.layout)["channel"]
            hw = self.shape[1] * self.shape[2]
            start = 0
            for k, s in enumerate(self.L.get("in_shapes") or []):
                if ch < start + s[0]:
                    x = st(f"in{k}")
                    src = (self.L.get("inputs") or [None] * (k + 1))[k]
                    if x is not None:
                        j = (ch - start) * hw + i % hw
                        if j < x.size:
                            g[f"in{k}"] = int(x[j])
                    g["note"] = f"from input {k} (layer {src}) channel {ch - start}"
                    break
                start += s[0]
        return g

    # -- hints ---------------------------------------------------------------------------------
    def hints(self) -> List[Hint]:
        out: List[Hint] = []
        addr = self.addressing()
        if addr is not None:
            return [addr]
        arithmetic = self.arithmetic()
        out += arithmetic
        if not arithmetic:
            out += self.generic()
        if all(h.kind == "off_by_one" for h in out):
            out += self.isolated()
        if not any(h.kind in ("isolated", "bitflip") for h in out):
            loc = self.localisation()
            # Mismatches confined to a few channels say more than a weak arithmetic guess.
            out = (loc + out) if all(h.kind == "off_by_one" for h in out) else (out + loc)
        if not out:
            d = self.dut[self.mism] - self.gold[self.mism]
            out.append(Hint("unknown", f"no recognised pattern: found - expected ranges {int(d.min()):+,} .. "
                                       f"{int(d.max()):+,} (median |difference| {int(np.median(np.abs(d))):,})"))
        return out

    def addressing(self) -> Optional[Hint]:
        if self.sel is not None:          # a sparse dump: neighbours may be absent
            return None
        gold, dut, n = self.gold, self.dut, self.mism.size
        total = gold.size
        if n < 2 or total < 4:
            return None
        cands = [(1, "1 element"), (-1, "1 element")]
        if self.layout == "CHW" and len(self.shape) == 3:
            c, h, w = self.shape
            if w > 1:
                cands += [(w, f"one row ({w} elements)"), (-w, f"one row ({w} elements)")]
            if h * w > w and c > 1:
                cands += [(h * w, f"one channel ({h * w:,} elements)"), (-h * w, f"one channel ({h * w:,} elements)")]
        cands += [(2, "2 elements"), (-2, "2 elements")]
        best = None
        for d, what in cands:
            if abs(d) >= total:
                continue
            if d > 0:       # DUT[i] = golden[i - d]
                bad = np.count_nonzero(dut[d:] != gold[:-d])
            else:           # DUT[i] = golden[i + |d|]
                bad = np.count_nonzero(dut[:d] != gold[-d:])
            if bad <= max(0.001 * (total - abs(d)), 0) and bad < n / 10 and (best is None or bad < best[0]):
                best = (bad, d, what)
        if best is not None:
            bad, d, what = best
            rel = f"DUT[i] = golden[i{-d:+d}]"
            direction = "later" if d > 0 else "earlier"
            extra = "" if bad == 0 else f", apart from {bad:,} values"
            return Hint("addressing", f"DUT is the golden tensor shifted by {what} ({rel}: each value appears "
                                      f"{abs(d)} position(s) {direction}{extra}): addressing off by one?")
        if self.layout == "CHW" and len(self.shape) == 3 and self.shape[0] > 1 and self.shape[1] * self.shape[2] > 1:
            c, h, w = self.shape
            g3 = gold.reshape(c, h, w)
            for perm, name in (((1, 2, 0), "HWC (channel fastest)"), ((0, 2, 1), "CWH (x and y swapped)"),
                               ((2, 1, 0), "WHC")):
                t = g3.transpose(perm).reshape(-1)
                bad = np.count_nonzero(t != dut)
                if bad <= 0.001 * total and bad < n / 10:
                    return Hint("layout", f"DUT holds the tensor in {name} order instead of CHW "
                                          f"(docs/golden-format.md: planar CHW, x fastest)"
                                          + ("" if bad == 0 else f", apart from {bad:,} values"))
        return None

    def arithmetic(self) -> List[Hint]:
        pl = self.pipeline()
        if pl is None:
            return []
        gold, dut, mism, n = self.gold, self.dut, self.mism, self.mism.size
        acc_bits = self.meta.get("acc_bits") if isinstance(self.meta.get("acc_bits"), int) else None
        hyps: List[_Hyp] = []
        if self.stage == "out":
            hyps += _out_hyps(pl, n, mism)
        if self.stage in ("act", "out"):
            hyps += _act_hyps(pl, self.stage, n)
        hyps += _acc_hyps(pl, self.stage, n, acc_bits, pl.bias is not None)
        ok = _best(hyps, gold, dut, mism, self.rng)
        if not ok and self.stage == "out":
            ok = _best(_combo_hyps(pl, n), gold, dut, mism, self.rng)
        if not ok:
            d = dut[mism] - gold[mism]
            if self.stage == "out" and np.all(np.abs(d) == 1):
                return [Hint("off_by_one", f"all {n:,} mismatches are off by one{_sign_note(d)}, but no "
                                           f"rounding mode, shift, activation, bias or accumulator change applied to "
                                           f"the whole tensor reproduces them (an offset in the accumulator, or "
                                           f"rounding in an intermediate step?)")]
            return []
        top = ok[0]
        txt = top.text(top)
        same = [h for h in ok[1:] if h.changes == top.changes and h.explained == top.explained
                and h.covered * max(top.differs, 1) == top.covered * max(h.differs, 1)]
        if same:
            txt += f" (equally consistent with: {', '.join(h.label.replace('_', '-') for h in same[:3])})"
        return [Hint(top.kind, txt)]

    def generic(self) -> List[Hint]:
        gold, dut, mism, n = self.gold, self.dut, self.mism, self.mism.size
        g, d = gold[mism], dut[mism]
        out: List[Hint] = []
        hyps: List[_Hyp] = []
        # a register narrower than the declared width
        for b in range(max(2, self.bits - 24), self.bits):
            blo, bhi = qrange(b, self.signed)
            if np.all(((d - g) & np.int64((1 << b) - 1)) == 0) and np.all((d >= blo) & (d <= bhi)):
                hyps.append(_Hyp("narrow", 1, f"wrap{b}", _exact(lambda i, b=b: wrap(gold[i], b, self.signed)),
                                 lambda hh, b=b: (f"found values equal the golden ones wrapped to {b} bits (declared "
                                                  f"{self.bits}): a register or bus too narrow? ({hh.explained:,} of "
                                                  f"{n:,} mismatches)")))
        # power-of-two scaling (a shift off by k without act/shift information)
        lo_q, hi_q = qrange(self.bits, self.signed)
        for k in range(1, max(1, min(self.bits, 16, 62 - self.bits))):
            hyps.append(_Hyp("scale", 1, f"x2^{k}", _exact(lambda i, k=k: np.clip(gold[i] << k, lo_q, hi_q)),
                             lambda hh, k=k: (f"looks like a requantizing shift off by {-k:+d}: found values are "
                                              f"2^{k} times the golden ones (factor {2 ** k}), {hh.explained:,} of "
                                              f"{n:,} mismatches")))
            hyps.append(_Hyp("scale", 1, f"/2^{k}",
                             lambda i, k=k: (gold[i] >> k, -((-gold[i]) >> k)),
                             lambda hh, k=k: (f"looks like a requantizing shift off by {k:+d}: found values are the "
                                              f"golden ones divided by 2^{k} (factor {2 ** k}), {hh.explained:,} of "
                                              f"{n:,} mismatches")))
        ok = _best(hyps, gold, dut, mism, self.rng)
        if ok:
            return [Hint(ok[0].kind, ok[0].text(ok[0]))]
        # saturation without act: mismatches only where golden sits at qmin/qmax
        if self.stage == "out" and self.e.get("saturation") == "AP_SAT":
            sat = (gold == lo_q) | (gold == hi_q)
            if np.all(sat[mism]) and n >= 0.5 * np.count_nonzero(sat) and n > 1:
                out.append(Hint("saturation", f"all {n:,} mismatches are where golden saturates (at {lo_q}/{hi_q}): "
                                              f"the DUT probably wraps around instead of saturating "
                                              f"(AP_WRAP vs AP_SAT)"))
                return out
        if np.all(np.abs(d - g) == 1) and n > 1:
            out.append(Hint("off_by_one", f"all {n:,} mismatches are off by one: possibly a rounding-mode "
                                          f"difference (no golden act stage and shift to confirm it)"))
        return out

    def isolated(self) -> List[Hint]:
        n = self.mism.size
        if n > _ISOLATED_MAX:
            return []
        g, d = self.gold[self.mism], self.dut[self.mism]
        mask = np.int64((1 << self.bits) - 1) if self.bits < 64 else np.int64(-1)
        x = (g ^ d) & mask
        single = [int(v).bit_length() - 1 for v in x if v and (int(v) & (int(v) - 1)) == 0]
        full = self.full(self.mism)
        at = "; ".join(f"({coord_text(coords(int(i), self.shape, self.layout), int(i))})" for i in full[:4])
        hints = [Hint("isolated", f"{n} isolated mismatch{'es' if n != 1 else ''} (no arithmetic pattern): data "
                                  f"corruption or addressing? at {at}{', ...' if n > 4 else ''}")]
        if len(single) == n:
            bits = sorted(set(single))
            hints.append(Hint("bitflip", f"{'each differs' if n > 1 else 'it differs'} from golden in a single bit "
                                         f"(bit{'s' if len(bits) > 1 else ''} {', '.join(map(str, bits))}): "
                                         f"a bit flip?"))
        return hints

    def localisation(self) -> List[Hint]:
        n = self.mism.size
        out: List[Hint] = []
        if n < 2:
            return out
        full = self.full(self.mism)
        if self.layout in ("CHW", "MCKK") and len(self.shape) in (3, 4):
            per = int(np.prod(self.shape[1:]))
            nch = self.shape[0]
            ch, cnt = np.unique(full // per, return_counts=True)
            if len(ch) < nch and len(ch) <= 8:
                name = "channels" if self.layout == "CHW" else "filters (output channels m)"
                items = [f"{int(c)}" + (f" (all {per:,} values)" if k == per else f" ({int(k):,} values)")
                         for c, k in zip(ch, cnt)]
                out.append(Hint("channels", f"mismatches confined to {len(ch)} of {nch} {name}: {', '.join(items)}"))
        if self.layout == "CHW" and len(self.shape) == 3:
            c, h, w = self.shape
            if h > 2 and w > 2:
                y = (full // w) % h
                x = full % w
                border = (y == 0) | (y == h - 1) | (x == 0) | (x == w - 1)
                if self.sel is not None:        # a sparse dump: only if it holds values off the border too
                    py, px = (self.sel // w) % h, self.sel % w
                    if np.all((py == 0) | (py == h - 1) | (px == 0) | (px == w - 1)):
                        return out
                if np.all(border):
                    sides = [nm for nm, m in (("top row y 0", y == 0), (f"bottom row y {h - 1}", y == h - 1),
                                              ("left column x 0", x == 0), (f"right column x {w - 1}", x == w - 1))
                             if np.any(m)]
                    out.append(Hint("border", f"all mismatches are on the tensor border ({', '.join(sides)}): "
                                              f"padding or edge handling?"))
        return out
