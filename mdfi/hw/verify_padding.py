"""The zero-padding hypothesis of ``mdfi verify`` (:mod:`mdfi.hw.verify_hints`): a convolution
whose input has a zero point (``pad_value`` ≠ 0, docs/golden-format.md "Zero points") padded
with 0 by the device.  Tested on the compared positions only, so sparse and border-only dumps
(the RTL benches' border rows) are covered.  The functions take the :class:`~mdfi.hw.
verify_hints.Analyzer` of one dumped file (``an``) and use its golden set, dump and
mismatches."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import actlut, fixedpoint as fp
from ..errors import MDFIError
from ..fixedpoint import MAX_SHIFT as _MAX_SHIFT, MIN_SHIFT as _MIN_SHIFT
from ..layers.convolutional import conv_out_size, group_matmul, im2col, int_matmul


def pad_value(an) -> int:
    """The convolution's padding value (``params.pad_value``, the input's zero point; 0 without)."""
    pv = (an.L.get("params") or {}).get("pad_value", 0) if an.kind == "convolutional" else 0
    return pv if isinstance(pv, int) and not isinstance(pv, bool) and abs(pv) < 1 << 16 else 0


def zero_padding(an) -> Optional[str]:
    """A convolution whose input has a zero point (``pad_value`` ≠ 0) padded with 0 by the DUT.

    The layer is recomputed at the compared positions only (every value of a dense dump,
    the dumped ones of a sparse dump, wherever they lie: border rows only included) from
    its golden input, weights, bias and shifts with the reference's own functions (im2col,
    int_matmul, requantize), once with ``pad_value`` -- which must give the golden values,
    or the recomputation is not the golden rule here -- and once with 0, which must give
    the DUT's value at *every* compared position: each mismatch reproduced, no matching
    value changed.  Returns the hint's text, and sets ``an.pad_tested``: None (not testable:
    no zero point, no golden input, ...), False (tested, refuted) or True (named)."""
    an.pad_tested = None
    pv = pad_value(an)
    if (not pv or an.stage not in ("acc", "act", "pre", "out") or an.layout != "CHW"
            or len(an.shape) != 3 or not an.signed):
        return None
    p = an.L.get("params") or {}
    size, stride, pad = (p.get(k) for k in ("size", "stride", "pad"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, stride, pad)) \
            or not (1 <= size <= 64 and 1 <= stride <= 64 and 1 <= pad <= 64):
        return None
    m, oh, ow = an.shape
    try:
        c, h, w = (int(v) for v in (an.L.get("in_shapes") or [[]])[0])
    except (TypeError, ValueError):          # the manifest is data
        return None
    if min(c, h, w) < 1 or conv_out_size(h, size, stride, pad) != oh or conv_out_size(w, size, stride, pad) != ow:
        return None
    pos = np.asarray(an.full(np.arange(an.gold.size)), dtype=np.int64)
    ch, sp = pos // (oh * ow), pos % (oh * ow)

    def reads_padding(o, n):                 # output rows/columns whose window reaches the padding
        return (o * stride - pad < 0) | (o * stride - pad + size > n)

    # Elsewhere 0 and pad_value give the same values: a mismatch there refutes it at once.
    if not np.all((reads_padding(sp // ow, h) | reads_padding(sp % ow, w))[an.mism]):
        an.pad_tested = False
        return None
    g = p.get("groups", 1)                   # grouped convolution (docs/fixed-point.md 3.6)
    if not isinstance(g, int) or isinstance(g, bool) or g < 1 or c % g or m % g:
        return None
    wt, bias, shift = (an.gs.stage(an.layer, k) for k in ("weights", "bias", "shift"))
    if (wt is None or wt.size != m * (c // g) * size * size or bias is None or bias.size != m or shift is None
            or shift.size != m or not np.all((shift >= _MIN_SHIFT) & (shift <= _MAX_SHIFT))):
        return None
    x = an.golden_input(0, c * h * w)
    if x is None:
        return None
    uniq, inv = np.unique(sp, return_inverse=True)
    wm, x3, s = wt.reshape(m, -1), x.reshape(c, h, w), shift.astype(np.int64)[ch]

    def recomputed(pad_value: int) -> Optional[np.ndarray]:
        cols = im2col(x3, size, stride, pad, pad_value=pad_value)[:, uniq]
        acc = (group_matmul(wm, cols, g, int_matmul) + bias.astype(np.int64)[:, None])[ch, inv]
        return requantized(an, acc, s)

    try:
        ref = recomputed(pv)
        if ref is None or not np.array_equal(ref, an.gold):
            return None
        alt = recomputed(0)
    except (MDFIError, ValueError, TypeError, IndexError, OverflowError):   # the manifest is data
        return None
    an.pad_tested = bool(np.array_equal(alt, an.dut))
    if not an.pad_tested:
        return None
    n, k = an.mism.size, an.gold.size
    at = f"the {k:,} dumped values (sparse dump)" if an.sel is not None else f"all {k:,} values"
    return (f"padding with 0 instead of pad_value = {pv}, the input's zero point (docs/golden-format.md "
            f"\"Zero points\"): the layer recomputed from its golden input padded with 0 gives the found value "
            f"at {at}: {n:,} of {n:,} mismatches explained, no matching value changed")


def requantized(an, acc: np.ndarray, shift: np.ndarray) -> Optional[np.ndarray]:
    """This file's stage computed from accumulators ``acc`` (shifts ``shift``) by the golden
    rule (fixedpoint.requantize, actlut.lookup); None when the stage is not one of these."""
    if an.stage == "acc":
        return acc
    mode = an.meta.get("rounding") or an.e.get("rounding") or "half_up"
    if an.table_act:
        pre_fmt = an.meta.get("pre_fmt") or {}
        bits, frac = pre_fmt.get("bits"), pre_fmt.get("frac", 0)
        if not isinstance(bits, int) or not 2 <= bits <= 16 or an.stage not in ("pre", "out"):
            return None
        pre = fp.requantize(acc, shift, mode, bits)
        if an.stage == "pre":
            return pre
        table = an.gs.stage(an.layer, "act_lut")
        if table is None or table.size != 1 << bits:
            return None
        return actlut.lookup(table, pre, fp.QFormat(bits, frac))
    activation = an.meta.get("activation", "linear")
    if activation not in ("linear", "leaky", "relu"):
        return None
    if an.stage == "act":
        return fp.pre_shift_activation(acc, activation)[0]
    if an.stage != "out" or not 2 <= an.bits <= 32:
        return None
    return fp.requantize(acc, shift, mode, an.bits, activation, zero=int(an.e.get("zero", 0)))
