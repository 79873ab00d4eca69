"""Zero-point activation formats (docs/fixed-point.md section 1.1, docs/quantization.md
"Round 13"): per tensor a power-of-two step and an integer zero point, value
``(q - zero) * 2**-frac``, chosen from the calibration statistics, and their assignment over a
network (which tensors may carry one, and one shared format per route's inputs).

A leaky activation's output is nearly one-sided (its negative part is a tenth of the
positive one): a signed format centred on 0 spends almost half of its codes on a range it
hardly uses.  A zero point moves the codes to the range the tensor occupies -- one more bit
of resolution for most of them -- at the cost of a padding value and a bias term in the
next convolution and one add in the epilogue, no multiplier (round 12's diagnostic measured
the gain; round 13 builds it)."""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from .. import fixedpoint as fp
from ..layers import OWN_FORMAT_KINDS
from .calib_stats import TensorStats
from .calibrate import _clamp, choose_frac, hist_points


def choose_frac_zero(stats: TensorStats, bits: int, clip_budget: Optional[float] = 0.01) -> Tuple[int, int]:
    """``(frac, zero)`` of a signed ``bits``-wide format with a zero point (docs/fixed-point.md
    1.1: value ``(q - zero) * 2**-frac``), by the ``mse`` criterion of :func:`choose_frac`
    with an asymmetric range: among the fracs ``fmax - 2 .. fmax + 5`` (``fmax`` the largest
    at which the observed range spans the ``2**bits`` codes) and every zero point, the pair
    of least expected squared error over the histograms (a value inside the range costs
    ``min(step**2/12, v**2)``, one outside the squared distance to the range's end), among
    the pairs whose range holds ``[max(min, -t), min(max, t)]`` with ``t`` the
    ``100 - clip_budget`` percentile of ``|v|`` (within half a step): at most
    ``clip_budget`` % of the values clip.  Ties go to the smaller frac, then the smaller
    zero.  A tensor without non-zero values gets ``(bits - 1, 0)``."""
    bits = fp.check_bits(bits, "activation width")
    if stats.min is None or stats.nonzero == 0:
        return _clamp(bits - 1), 0
    levels = (1 << bits) - 1
    vals, cnts = hist_points(stats)
    lo_obs, hi_obs = min(stats.min, 0.0), max(stats.max, 0.0)
    t = stats.abs_percentile(100.0 - float(clip_budget)) if clip_budget is not None else np.inf
    need_lo, need_hi = max(lo_obs, -t), min(hi_obs, t)
    fmax = int(np.floor(np.log2(levels / max(hi_obs - lo_obs, 1e-30))))
    zu = np.arange(levels + 1, dtype=np.float64)[:, None]       # zero point of the unsigned codes
    best = None
    for f in range(fmax - 2, fmax + 6):
        if f != _clamp(f):
            continue
        step = 2.0 ** -f
        lo, hi = -zu * step, (levels - zu) * step
        ok = ((lo - step / 2 <= need_lo) & (hi + step / 2 >= need_hi)).ravel()
        if not ok.any():
            continue
        inside = np.minimum(step * step / 12.0, vals * vals)[None, :]
        err = np.where(vals > hi, (vals - hi) ** 2, np.where(vals < lo, (vals - lo) ** 2, inside))
        tot = np.where(ok, (err * cnts).sum(axis=1), np.inf)
        z = int(np.argmin(tot))
        if best is None or tot[z] < best[0] * (1 - 1e-12):
            best = (tot[z], f, z)
    if best is None:                          # cannot happen for a finite range; be safe
        return choose_frac(stats, bits, "max"), 0
    return int(best[1]), int(best[2]) + fp.qmin(bits)


def choose_formats_zero(calib, network, bits: int, layer_abits: Optional[Mapping[int, int]] = None,
                        clip_budget: Optional[float] = 0.01) -> Tuple[Dict[int, int], Dict[int, int]]:
    """``({layer: frac}, {layer: zero})`` for every convolution with statistics in ``calib``.

    The producers of a route's inputs (followed back through maxpool / upsample / reorg,
    transitively over routes of routes) that have one width form a group; the group gets
    one format chosen from the merged statistics of its members, so the route stays a pure
    concatenation.  Every tensor may carry a zero point: the shortcut subtracts its inputs'
    and adds its output's (docs/fixed-point.md section 6)."""
    layer_abits = {int(k): int(v) for k, v in (layer_abits or {}).items()}
    calib.check_network(network)
    layers = network.layers
    parent = {i: i for i in calib.layers}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def producers(i, seen=None):
        seen = set() if seen is None else seen
        if i < 0 or i in seen:
            return []
        seen.add(i)
        l = layers[i]
        if l.kind in ("maxpool", "upsample", "reorg"):
            return producers(l.inputs[0], seen)
        if l.kind == "route":
            return [p for j in l.inputs for p in producers(j, seen)]
        return [i] if l.kind in OWN_FORMAT_KINDS and i in parent else []

    for l in layers:
        if l.kind == "route":
            ps = producers(l.index)
            for p in ps[1:]:
                if layer_abits.get(p, bits) == layer_abits.get(ps[0], bits):
                    parent[find(p)] = find(ps[0])
    groups: Dict[int, list] = {}
    for i in calib.layers:
        if layers[i].kind in OWN_FORMAT_KINDS:
            groups.setdefault(find(i), []).append(i)
    fracs: Dict[int, int] = {}
    zeros: Dict[int, int] = {}
    for members in groups.values():
        b = layer_abits.get(members[0], bits)
        st = TensorStats()
        for i in members:
            st.merge(calib.layers[i])
        f, z = choose_frac_zero(st, b, clip_budget)
        for i in members:
            fracs[i], zeros[i] = f, z
    return fracs, zeros
