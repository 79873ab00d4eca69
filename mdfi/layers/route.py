"""``[route]``: Darknet's route_layer.c.

``layers=`` lists one or more layer indices; a negative index is relative to this layer
(parse_route: ``if (index < 0) index = params.index + index``), a non-negative one is
absolute.  The output concatenates the inputs along channels, in the order listed.  All
inputs must have the same height and width.

AlexeyAB adds ``groups``/``group_id`` (AB src/parser.c:1091-1110, src/route_layer.c:80-96):
from every input, only the ``group_id``-th of ``groups`` equal contiguous chunks of its flat
output is copied -- channels ``[gid*C/g, (gid+1)*C/g)`` -- and ``out_c = sum(C)/groups``.
MDFI requires every input's channel count to be divisible by ``groups`` (otherwise the
chunks are not channel slices) and ``0 <= group_id < groups`` (Darknet reads out of bounds
otherwise).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import fixedpoint as fp
from .base import Layer, QLayer


def resolve_index(sec, key: str, raw: int, index: int) -> int:
    """Darknet's relative/absolute layer index, checked to lie in [0, index)."""
    target = index + raw if raw < 0 else raw
    if not 0 <= target < index:
        raise sec.error(f"{key}: layer index {raw} resolves to {target}, "
                        f"but only layers 0..{index - 1} precede layer {index}", key)
    return target


class RouteLayer(Layer):
    kind = "route"

    @classmethod
    def from_section(cls, index, section, net):
        sec = section
        raw = sec.get_int_list("layers", required=True)
        groups, group_id = 1, 0
        if net.darknet == "alexeyab":
            groups = sec.get_int("groups", 1) if sec.has("groups") else 1
            group_id = sec.get_int("group_id", 0) if sec.has("group_id") else 0
            if groups < 1:
                raise sec.error(f"groups={groups}: must be >= 1", "groups")
            if not 0 <= group_id < groups:
                raise sec.error(f"group_id={group_id}: must be in 0..{groups - 1} (Darknet would read "
                                f"outside the input)", "group_id" if sec.has("group_id") else "groups")
        inputs = [resolve_index(sec, "layers", r, index) for r in raw]
        shapes = [net.shape_of(i) for i in inputs]
        h, w = shapes[0][1:]
        for i, s in zip(inputs, shapes):
            if s[1:] != (h, w):
                raise sec.error(f"layers: shape mismatch: layer {inputs[0]} is {h}x{w} but layer {i} "
                                f"is {s[1]}x{s[2]} (route concatenates along channels)", "layers")
            if s[0] % groups:
                raise sec.error(f"groups={groups}: layer {i} has {s[0]} channels, not divisible by {groups} "
                                f"(Darknet's chunks would not be channel slices)", "groups")
        layer = cls(index, section, inputs, shapes)
        layer.groups, layer.group_id = groups, group_id
        layer.out_shape = (sum(s[0] for s in shapes) // groups, h, w)
        return layer

    def slices(self):
        """Per input, the ``(first, end)`` channels the route copies."""
        g, gid = self.groups, self.group_id
        return [(gid * s[0] // g, (gid + 1) * s[0] // g) for s in self.in_shapes]

    def select(self, xs: List[np.ndarray]) -> List[np.ndarray]:
        """The channel slices of the inputs (the inputs themselves without groups)."""
        if self.groups == 1:
            return list(xs)
        return [x[a:b] for x, (a, b) in zip(xs, self.slices())]

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        parts = self.select(xs)
        return np.ascontiguousarray(parts[0]) if len(parts) == 1 else np.concatenate(parts, axis=0)

    def describe(self) -> str:
        g = f" g{self.group_id}/{self.groups}" if self.groups > 1 else ""
        return "route " + " ".join(str(i) for i in self.inputs) + g


class QRoute(QLayer):
    """Integer route (docs/fixed-point.md section 5): the output takes the coarsest input
    format (smallest frac, widest bits) and the zero point of the first input with that frac;
    every input (its channel slice, with AlexeyAB's groups) is aligned to it by an explicit
    rounding right shift ``align(x, f_i, f_out, zero_in=z_i, zero_out=z_out)``.  Inputs
    already in the output's frac and zero point are copied unchanged, so a route of equal
    formats is a pure concatenation (of slices)."""

    kind = "route"

    def __init__(self, layer, in_fmts, rounding):
        f_out = min(f.frac for f in in_fmts)
        z_out = next(f.zero for f in in_fmts if f.frac == f_out)
        out = fp.QFormat(max(f.bits for f in in_fmts), f_out, all(f.signed for f in in_fmts), z_out)
        super().__init__(layer, out, rounding)
        self.in_fmts = list(in_fmts)
        self.shifts = [f.frac - out.frac for f in self.in_fmts]

    def copies(self):
        """Per input: True when it is copied unchanged (same frac and zero point)."""
        return [s == 0 and f.zero == self.out_fmt.zero for f, s in zip(self.in_fmts, self.shifts)]

    def forward_ref(self, xs, stats=None):
        xs = self.layer.select(xs)
        parts = [np.asarray(x, np.int32) if copy else
                 fp.align(x, f.frac, self.out_fmt.frac, self.rounding, self.out_fmt.bits, stats=stats,
                          zero_in=f.zero, zero_out=self.out_fmt.zero)
                 for x, f, copy in zip(xs, self.in_fmts, self.copies())]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    @classmethod
    def quantize(cls, layer, in_fmts, rounding):
        return cls(layer, in_fmts, rounding)

    def meta(self):
        d = super().meta()
        d.update(in_fmts=[f.to_dict() for f in self.in_fmts], shifts=self.shifts)
        return d

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, [fp.QFormat.from_dict(f) for f in meta["in_fmts"]], meta["rounding"])
