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

(and two changes at once for the output step).  A convolution whose input has a zero point
is tested for padding with 0 instead of ``pad_value``: the layer recomputed from its golden
input at the compared positions only (so on sparse, border-only dumps too) must give every
compared value (:mod:`mdfi.hw.verify_padding`).  A table activation (docs/fixed-point.md
4.1) has the same changes in its pre-activation code (``pre`` dumps, and ``out`` dumps seen
through the table) plus the table read at the wrong entry (index off by 1 or 2, or the
code's two's complement used as the index); a route with AlexeyAB's groups is tested for
the channel slice of another group (for all inputs or one) and for groups ignored
(:mod:`mdfi.hw.verify_route`); an average pool for another division rule (C's truncation
toward zero, floor, half away from zero or to even, a shift instead of the division) and
forgotten zero points (:mod:`mdfi.hw.verify_avgpool`).
Files without an earlier golden stage,
and other layers, get the generic hints (scaling, narrow register, saturation, off by
one), addressing and layout hints, isolated values and bit flips, and confinement to a
few channels or to the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..fixedpoint import MAX_SHIFT as _MAX_SHIFT, MIN_SHIFT as _MIN_SHIFT
from . import verify_avgpool, verify_padding, verify_route
from .verify_rules import (_ISOLATED_MAX, _SAMPLE, Hyp, LutPipeline, Pipeline, acc_hyps, act_hyps, best,  # noqa: F401
                           combo_hyps, exact, lut_hyps, out_hyps, qrange, sign_note, wrap,
                           zero_text)

#: Activations computed through a table (docs/fixed-point.md 4.1; mdfi.actlut.LUT_ACTIVATIONS).
_TABLE_ACTS = ("logistic", "mish", "swish", "hard_mish", "relu6")

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
    kind: str      # rounding, shift, wrap, activation, acc_wrap, bias, combined, lut_index, route_group, avgpool,
                   # addressing, layout, narrow, scale, saturation, off_by_one, isolated, bitflip, channels,
                   # border, padding, unknown
    text: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text}


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
        self._pad: object = False
        self.pad_tested: Optional[bool] = None

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
                    target = self.meta.get("pre_fmt") if self.table_act else self.meta["out_fmt"]
                    sh = wf + int(self.meta["in_fmt"]["frac"]) - int(target["frac"])
                    if sh.size == 1:
                        sh = np.repeat(sh, c)
                except (KeyError, TypeError, ValueError, OverflowError):   # the manifest is data
                    return None
            if sh.size != c or not np.all((sh >= _MIN_SHIFT) & (sh <= _MAX_SHIFT)):
                return None
            return np.repeat(sh.astype(np.int64), h * w)
        shift = self.meta.get("shift")
        if self.kind in ("shortcut", "scale_channels") and isinstance(shift, int) and _MIN_SHIFT <= shift <= _MAX_SHIFT:
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

    @property
    def table_act(self) -> bool:
        """A conv/shortcut with a table activation (pre-activation code, then act_lut)."""
        return self.kind in ("convolutional", "shortcut") and self.meta.get("activation") in _TABLE_ACTS

    def _table_pipeline(self) -> Optional[Pipeline]:
        """acc -> pre (-> act_lut) of a table activation, for acc, pre and out files."""
        pre = self.meta.get("pre_fmt") or {}
        pre_bits = pre.get("bits")
        base = self.base_shift()
        acc = self.gold if self.stage == "acc" else self._other("acc")
        bias = self._bias()
        if acc is None and self.stage == "out":
            # no accumulator exported: the golden codes themselves (shift 0) still test the lookup
            acc = self._other("pre")
            base = None if acc is None else np.zeros(acc.size, np.int64)
            bias = None
        if not isinstance(pre_bits, int) or not 2 <= pre_bits <= 16 or base is None or acc is None:
            return None
        mode = self.meta.get("rounding") or self.e.get("rounding") or "half_up"
        if self.stage != "out":
            return Pipeline(acc, None, base, bias, "linear", mode, pre_bits)
        table = self.gs.stage(self.layer, "act_lut")
        if table is None or table.size != 1 << pre_bits:
            return None
        return LutPipeline(acc, base, bias, mode, pre_bits, table)

    def pipeline(self) -> Optional[Pipeline]:
        """The layer's datapath at the compared elements, when this file is one of its
        stages and the golden set has what recomputing it needs."""
        if self._pl is not False:
            return self._pl
        self._pl = None
        if self.stage not in ("acc", "act", "pre", "out") or \
                self.kind not in ("convolutional", "shortcut", "scale_channels") \
                or not self.signed:
            return None
        if self.table_act:
            pl = self._table_pipeline()
            probe = self.mism if self.mism.size <= _SAMPLE else self.mism[:_SAMPLE]
            if pl is None or not np.array_equal(pl.predict(self._as(self.stage), probe), self.gold[probe]):
                return None
            self._pl = pl
            return pl
        activation = self.meta.get("activation", "linear")
        if self.stage == "pre" or activation not in ("linear", "leaky", "relu"):
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
        zero = self.e.get("zero", 0) if self.stage == "out" else 0      # validated by the manifest check
        pl = Pipeline(acc, act, base, self._bias(), activation, mode, out_bits, zero)
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
        if self.stage in ("out", "act") and self.kind in ("convolutional", "shortcut", "scale_channels", "avgpool"):
            acc = st("acc")
            if acc is not None and acc.size == self.total:
                g["acc"] = int(acc[i])
            if self.stage == "out" and self.table_act:
                pre = st("pre")
                bits = (self.meta.get("pre_fmt") or {}).get("bits")
                if pre is not None and pre.size == self.total and isinstance(bits, int):
                    g["pre"] = int(pre[i])
                    g["act_lut index"] = int(pre[i]) + (1 << (bits - 1))
            elif self.stage == "out":
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
                if self.e.get("zero"):            # out = sat(R(act / 2^shift) + zero_out)
                    g["zero_out"] = int(self.e["zero"])
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
            for k, (lo, hi) in enumerate(verify_route.slices(self) or []):
                if ch < start + hi - lo:
                    x = st(f"in{k}")
                    src = (self.L.get("inputs") or [None] * (k + 1))[k]
                    c_in = lo + ch - start
                    if x is not None:
                        j = c_in * hw + i % hw
                        if j < x.size:
                            g[f"in{k}"] = int(x[j])
                    g["note"] = f"from input {k} (layer {src}) channel {c_in}"
                    break
                start += hi - lo
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

    @staticmethod
    def _as(stage: str) -> str:
        """The Pipeline stage a file's stage is: a table activation's ``pre`` is the linear
        requantizer's output."""
        return "out" if stage == "pre" else stage

    def arithmetic(self) -> List[Hint]:
        route = self.route_groups()
        if route:
            return route
        text = verify_avgpool.avgpool_division(self)
        if text:
            return [Hint("avgpool", text)]
        zin = self.shortcut_zero_in()
        if zin:
            return zin
        pad = self.zero_padding()
        if pad:
            return [pad]
        pl = self.pipeline()
        if pl is None:
            return self.zero_forgotten()
        gold, dut, mism, n = self.gold, self.dut, self.mism, self.mism.size
        acc_bits = self.meta.get("acc_bits") if isinstance(self.meta.get("acc_bits"), int) else None
        stage = self._as(self.stage)
        hyps: List[Hyp] = []
        if isinstance(pl, LutPipeline):
            hyps += lut_hyps(pl, n)
        if stage == "out":
            hyps += out_hyps(pl, n, mism)
        if self.stage in ("act", "out") and not self.table_act:
            hyps += act_hyps(pl, stage, n)
        hyps += acc_hyps(pl, stage, n, acc_bits, pl.bias is not None)
        ok = best(hyps, gold, dut, mism, self.rng)
        if not ok and stage == "out":
            ok = best(combo_hyps(pl, n), gold, dut, mism, self.rng)
        if not ok:
            d = dut[mism] - gold[mism]
            if self.stage == "out" and np.all(np.abs(d) == 1):
                return [Hint("off_by_one", f"all {n:,} mismatches are off by one{sign_note(d)}, but no "
                                           f"rounding mode, shift, activation, bias or accumulator change applied to "
                                           f"the whole tensor reproduces them (an offset in the accumulator, or "
                                           f"rounding in an intermediate step?)")]
            return []
        top = ok[0]
        txt = top.text(top)
        if self.table_act and top.kind != "lut_index":
            txt += (" -- in the pre-activation code" + (", seen through the activation table" if self.stage == "out"
                                                        else "") + " (docs/fixed-point.md 4.1)")
        same = [h for h in ok[1:] if h.changes == top.changes and h.explained == top.explained
                and h.covered * max(top.differs, 1) == top.covered * max(h.differs, 1)]
        if same:
            txt += f" (equally consistent with: {', '.join(h.label.replace('_', '-') for h in same[:3])})"
        return [Hint(top.kind, txt)]

    def zero_forgotten(self) -> List[Hint]:
        """Without the earlier stages: an output whose zero point the DUT did not add
        (found = sat(golden - zero) at every mismatch, and exact where nothing saturated)."""
        z = self.e.get("zero", 0)
        if self.stage != "out" or not z or self.kind not in ("convolutional", "route", "shortcut") or not self.signed:
            return []
        lo, hi = qrange(self.bits, True)
        g, d = self.gold[self.mism].astype(np.int64), self.dut[self.mism].astype(np.int64)
        free = (g > lo) & (g < hi)                       # golden not saturated: found = golden - z exactly
        if not np.all(d == np.clip(g - z, lo, hi)) or not np.any(free):
            return []
        n = self.mism.size
        return [Hint("zero_point", zero_text(z, n, n))]

    def shortcut_zero_in(self) -> List[Hint]:
        """A shortcut accumulator whose inputs' zero points the DUT did not subtract (one or
        both): found = golden + zero_a*2^(fm-fa) (+ zero_b*2^(fm-fb) on the first
        added_elements) at every mismatch (docs/fixed-point.md section 6)."""
        p = self.L.get("params") or {}
        za, zb = p.get("zero_a", 0), p.get("zero_b", 0)
        if self.kind != "shortcut" or self.stage != "acc" or not (za or zb):
            return []
        try:
            za, zb = int(za), int(zb)
            fa, fb, fm, added = (int(p[k]) for k in ("fa", "fb", "sum_frac", "added_elements"))
        except (KeyError, TypeError, ValueError):       # the manifest is data
            return []
        if not (0 <= fm - fa <= 16 and 0 <= fm - fb <= 16):
            return []
        idx = np.asarray(self.full(self.mism), dtype=np.int64)
        g, d = self.gold[self.mism].astype(np.int64), self.dut[self.mism].astype(np.int64)
        oa = np.full(idx.shape, za << (fm - fa), dtype=np.int64)
        ob = np.where(idx < added, np.int64(zb << (fm - fb)), np.int64(0))
        n = self.mism.size
        match = [what for what, off in (("zero_a and zero_b", oa + ob), ("zero_a", oa), ("zero_b", ob))
                 if np.all(off != 0) and np.array_equal(d, g + off)]
        if match == ["zero_a", "zero_b"]:             # equal terms: the dump cannot tell which
            match = ["zero_a or zero_b, equal terms here"]
        if not match:
            return []
        return [Hint("zero_point", f"shortcut input zero point not subtracted ({match[0]}; zero_a = {za}, zero_b = "
                                   f"{zb}): found = golden + zero_a·2^{fm - fa} + zero_b·2^{fm - fb} (zero_b on the "
                                   f"first {added:,} elements; docs/fixed-point.md section 6: acc = (a − zero_a)·"
                                   f"2^(fm−fa) + (b − zero_b)·2^(fm−fb)): {n:,} of {n:,} mismatches explained")]

    def golden_input(self, k: int, size: int) -> Optional[np.ndarray]:
        """The layer's ``k``-th input as the golden export has it (flat): its own ``in{k}``
        stage or, when that is not exported, its producer's ``out`` (the same tensor); None
        when neither is there or it does not hold ``size`` values."""
        fmt = self.e.get("format")
        x = self.gs.stage(self.layer, f"in{k}", fmt)
        if x is None:
            srcs = self.L.get("inputs") or []
            src = srcs[k] if k < len(srcs) else None
            x = self.gs.stage(src, "out", fmt) if isinstance(src, int) and not isinstance(src, bool) else None
        return x if x is not None and x.size == size else None

    def zero_padding(self) -> Optional[Hint]:
        """The zero-padding hypothesis (:func:`mdfi.hw.verify_padding.zero_padding`, once per
        file); sets ``pad_tested``."""
        if self._pad is False:
            text = verify_padding.zero_padding(self)
            self._pad = Hint("padding", text) if text else None
        return self._pad

    def route_groups(self) -> List[Hint]:
        """AlexeyAB's route groups (:func:`mdfi.hw.verify_route.route_groups`): another group's
        slice taken, or the groups ignored."""
        text = verify_route.route_groups(self)
        return [Hint("route_group", text)] if text else []

    def generic(self) -> List[Hint]:
        gold, dut, mism, n = self.gold, self.dut, self.mism, self.mism.size
        g, d = gold[mism], dut[mism]
        out: List[Hint] = []
        hyps: List[Hyp] = []
        # a register narrower than the declared width
        for b in range(max(2, self.bits - 24), self.bits):
            blo, bhi = qrange(b, self.signed)
            if np.all(((d - g) & np.int64((1 << b) - 1)) == 0) and np.all((d >= blo) & (d <= bhi)):
                hyps.append(Hyp("narrow", 1, f"wrap{b}", exact(lambda i, b=b: wrap(gold[i], b, self.signed)),
                                 lambda hh, b=b: (f"found values equal the golden ones wrapped to {b} bits (declared "
                                                  f"{self.bits}): a register or bus too narrow? ({hh.explained:,} of "
                                                  f"{n:,} mismatches)")))
        # power-of-two scaling (a shift off by k without act/shift information)
        lo_q, hi_q = qrange(self.bits, self.signed)
        for k in range(1, max(1, min(self.bits, 16, 62 - self.bits))):
            hyps.append(Hyp("scale", 1, f"x2^{k}", exact(lambda i, k=k: np.clip(gold[i] << k, lo_q, hi_q)),
                             lambda hh, k=k: (f"looks like a requantizing shift off by {-k:+d}: found values are "
                                              f"2^{k} times the golden ones (factor {2 ** k}), {hh.explained:,} of "
                                              f"{n:,} mismatches")))
            hyps.append(Hyp("scale", 1, f"/2^{k}",
                             lambda i, k=k: (gold[i] >> k, -((-gold[i]) >> k)),
                             lambda hh, k=k: (f"looks like a requantizing shift off by {k:+d}: found values are the "
                                              f"golden ones divided by 2^{k} (factor {2 ** k}), {hh.explained:,} of "
                                              f"{n:,} mismatches")))
        ok = best(hyps, gold, dut, mism, self.rng)
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
                    pv = verify_padding.pad_value(self)
                    self.zero_padding()
                    if pv and self.pad_tested:       # named by its own hint
                        return out
                    if pv and self.stage in ("acc", "act", "pre", "out") and self.pad_tested is None:
                        why = (f"padding with 0 instead of pad_value = {pv}, the input's zero point "
                               f"(docs/golden-format.md \"Zero points\")?")
                    elif pv and self.pad_tested is False:
                        why = (f"padding or edge handling? (not padding with 0 instead of pad_value = {pv}: "
                               f"recomputing the layer so does not reproduce them)")
                    else:
                        why = "padding or edge handling?"
                    out.append(Hint("border", f"all mismatches are on the tensor border ({', '.join(sides)}): {why}"))
        return out
