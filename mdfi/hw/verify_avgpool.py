"""The average pool's division in ``mdfi verify`` (:mod:`mdfi.hw.verify_hints`): an
``[avgpool]`` output (docs/fixed-point.md 9.1: ``sat(div_round(N, D) + zero_out)``) whose DUT
divided with another rule -- C's truncating ``/`` (toward zero), the floor (``truncate``), round
half away from zero, round half to even, the other rounding mode -- or by a power of two
instead of ``h*w`` (a shift), or forgot the zero points.  Each rule is a hypothesis recomputed
from the golden sums ``S`` (the ``acc`` stage, or the golden input) and tested on the whole
tensor like the datapath hints (:func:`mdfi.hw.verify_rules.best`)."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from .verify_rules import Hyp, best, exact, qrange


def _rules(num: np.ndarray, den: int) -> Dict[str, np.ndarray]:
    """The quotient of num / den (den > 0) under several rules, exactly (int64)."""
    q, r = np.floor_divide(num, den), np.remainder(num, den)          # floor, 0 <= r < den
    twice = 2 * r
    out = {"half_up": np.floor_divide(2 * num + den, 2 * den),
           "truncate": q,
           "toward zero (C's / operator)": np.where((r != 0) & (num < 0), q + 1, q),
           "half away from zero": np.where(twice > den, q + 1, np.where(twice < den, q, np.where(num >= 0, q + 1, q))),
           "half to even": np.where(twice > den, q + 1, np.where(twice < den, q, q + (q & 1)))}
    return out


def avgpool_division(an) -> Optional[str]:
    if an.kind != "avgpool" or an.stage != "out" or len(an.shape) != 3:
        return None
    p = an.L.get("params") or {}
    try:
        c, n, d = int(an.shape[0]), int(p["plane"]), int(p["d"])
        zi, zo = int(p.get("zero_in", 0)), int(p.get("zero_out", 0))
        mode = str(an.meta.get("rounding") or "half_up")
    except (KeyError, TypeError, ValueError):         # the manifest is data
        return None
    if not (1 <= n <= (1 << 24) and -24 <= d <= 20):
        return None
    s = an._other("acc")
    if s is None:
        x = an.golden_input(0, c * n)
        if x is None:
            return None
        s = (x.astype(np.int64) - zi).reshape(c, n).sum(axis=1)
        s = s if an.sel is None else s[an.sel]
    s = s.astype(np.int64)
    lo, hi = qrange(an.bits, True)
    num, den = (s << d, n) if d >= 0 else (s, n << -d)
    nmis = an.mism.size
    hyps: List[Hyp] = []

    def add(label, q, text, changes=1):
        v = np.clip(q, lo, hi)
        hyps.append(Hyp("avgpool", changes, label, exact(lambda i, v=v: v[i]),
                        lambda h, text=text: f"{text}: {h.explained:,} of {nmis:,} mismatches explained "
                                             f"(docs/fixed-point.md section 9.1)"))

    for rule, q in _rules(num, den).items():
        if rule != mode:
            add(rule, q + zo, f"average pool divided with the rule '{rule}' where golden rounds {mode} "
                              f"(div_round: floor((2N + D)/(2D)) for half_up, floor(N/D) for truncate)")
    for k in sorted({max(int(np.floor(np.log2(den))), 0), int(np.ceil(np.log2(den)))}):
        if (1 << k) != den:
            q = _rules(num, 1 << k)[mode]
            add(f"pow2-{k}", q + zo, f"average pool divided by 2^{k} = {1 << k} (a shift) instead of D = {den}")
    if zi or zo:
        s0 = s + zi * n                                  # the input's zero point not subtracted
        for label, q, what in (("no-zero-in", _rules(s0 << d if d >= 0 else s0, den)[mode] + zo, "zero_in"),
                               ("no-zero-out", _rules(num, den)[mode], "zero_out")):
            add(label, q, f"average pool {what} not {'subtracted' if what == 'zero_in' else 'added'} "
                          f"(zero_in = {zi}, zero_out = {zo})")
    ok = best(hyps, an.gold, an.dut, an.mism, an.rng)
    if not ok:
        return None
    same = [h.label for h in ok[1:] if h.changes == ok[0].changes and h.explained == ok[0].explained and
            np.array_equal(h.pred(np.arange(an.gold.size))[0], ok[0].pred(np.arange(an.gold.size))[0])]
    names = "', '".join(same)
    tail = f" (equally '{names}': this tensor cannot tell them apart)" if same else ""
    return ok[0].text(ok[0]) + tail
