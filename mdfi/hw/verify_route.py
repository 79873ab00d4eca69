"""AlexeyAB's route groups in ``mdfi verify`` (:mod:`mdfi.hw.verify_hints`): a route with
``groups`` / ``group_id`` (docs/fixed-point.md section 5) whose DUT took the channel slice of
another group (from every input or from one) or ignored the groups.  Each is a hypothesis
tested on the whole tensor, like the datapath ones (:func:`mdfi.hw.verify_rules.best`).  The
functions take the :class:`~mdfi.hw.verify_hints.Analyzer` of one dumped file (``an``) and use
its golden set, dump and mismatches."""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .verify_rules import Hyp, best, exact, qrange, round_shift


def groups(an) -> Tuple[int, int]:
    """The route's ``(groups, group_id)``, ``(1, 0)`` when absent or invalid."""
    p = an.L.get("params") or {}
    g, gid = p.get("groups", 1), p.get("group_id", 0)
    return (g, gid) if isinstance(g, int) and isinstance(gid, int) and 0 <= gid < g else (1, 0)


def slices(an) -> Optional[List[Tuple[int, int]]]:
    """Per input, the channels ``[first, end)`` the route takes (docs/fixed-point.md 5)."""
    shapes = an.L.get("in_shapes") or []
    g, gid = groups(an)
    try:
        return [(gid * int(s[0]) // g, (gid + 1) * int(s[0]) // g) for s in shapes]
    except (TypeError, ValueError, IndexError):
        return None


def route_groups(an) -> Optional[str]:
    """A route with groups: the DUT took another group's channel slice (from every input
    or from one), or ignored the groups (the first channels of the whole inputs)."""
    if an.kind != "route" or an.stage != "out" or an.layout != "CHW" or len(an.shape) != 3:
        return None
    G, gid = groups(an)
    p = an.L.get("params") or {}
    shifts = p.get("shifts") or (an.meta.get("shifts") or [])
    shapes = an.L.get("in_shapes") or []
    if G < 2 or len(shifts) != len(shapes):
        return None
    try:
        xs = [an.golden_input(k, int(np.prod(s))) for k, s in enumerate(shapes)]
    except (TypeError, ValueError):          # the manifest is data
        return None
    if any(x is None for x in xs):
        return None
    srcs = an.L.get("inputs") or []
    xs = [x.reshape(s) for x, s in zip(xs, shapes)]
    mode = an.meta.get("rounding") or "half_up"
    lo_q, hi_q = qrange(an.bits, True)

    def aligned(x, k):
        sh = int(shifts[k])
        return x if sh == 0 else np.clip(round_shift(x, np.full(x.shape, sh, np.int64), mode), lo_q, hi_q)

    def slice_of(k, grp):
        c = shapes[k][0]
        return aligned(xs[k][grp * c // G:(grp + 1) * c // G], k)

    def at(full):
        flat = full.reshape(-1)
        return exact(lambda i: flat[an.full(i)] if an.sel is not None else flat[i])

    n = an.mism.size
    hyps: List[Hyp] = []
    nin = len(shapes)
    for grp in range(G):
        if grp == gid:
            continue
        choices = [None] if nin == 1 else [None] + list(range(nin))
        for only in choices:
            parts = [slice_of(k, grp if only in (None, k) else gid) for k in range(nin)]
            full = np.concatenate(parts)
            if full.size != an.total:
                continue
            if only is None:
                who = "of every input"
            else:
                c = shapes[only][0]
                src = srcs[only] if only < len(srcs) else "?"
                who = (f"(channels {grp * c // G}..{(grp + 1) * c // G - 1}) of input {only} (layer {src}), "
                       f"the other inputs right,")
            hyps.append(Hyp("route_group", 1 if only is None else 2, f"group{grp}-{only}", at(full),
                             lambda h, grp=grp, who=who: (
                                 f"route group slice taken from the wrong group: found values equal the channel "
                                 f"slice of group {grp} of {G} {who} where golden takes group_id {gid}: "
                                 f"{h.explained:,} of {n:,} mismatches explained (docs/fixed-point.md section 5)")))
    whole = np.concatenate([aligned(x, k) for k, x in enumerate(xs)])[:an.shape[0]]
    if whole.size == an.total:
        hyps.append(Hyp("route_group", 1, "no-groups", at(whole),
                         lambda h: (f"route groups ignored: found values equal the first {an.shape[0]} channels "
                                    f"of the concatenated inputs, where golden takes the group_id {gid} slice of "
                                    f"{G} from each input, {h.explained:,} of {n:,} mismatches explained "
                                    f"(docs/fixed-point.md section 5)")))
    ok = best(hyps, an.gold, an.dut, an.mism, an.rng)
    return ok[0].text(ok[0]) if ok else None
