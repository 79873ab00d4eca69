"""``[route]``: Darknet's route_layer.c.

``layers=`` lists one or more layer indices; a negative index is relative to this layer
(parse_route: ``if (index < 0) index = params.index + index``), a non-negative one is
absolute.  The output concatenates the inputs along channels, in the order listed.  All
inputs must have the same height and width.
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
        if sec.has("groups") and sec.get_int("groups", 1) != 1:
            raise sec.error("groups: route groups (a later Darknet fork's feature) are not supported", "groups")
        inputs = [resolve_index(sec, "layers", r, index) for r in raw]
        shapes = [net.shape_of(i) for i in inputs]
        h, w = shapes[0][1:]
        for i, s in zip(inputs, shapes):
            if s[1:] != (h, w):
                raise sec.error(f"layers: shape mismatch: layer {inputs[0]} is {h}x{w} but layer {i} "
                                f"is {s[1]}x{s[2]} (route concatenates along channels)", "layers")
        layer = cls(index, section, inputs, shapes)
        layer.out_shape = (sum(s[0] for s in shapes), h, w)
        return layer

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        return xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0)

    def describe(self) -> str:
        return "route " + " ".join(str(i) for i in self.inputs)


class QRoute(QLayer):
    """Integer route (docs/fixed-point.md section 5): the output takes the coarsest input
    format (smallest frac, widest bits); every input is aligned to it by an explicit
    rounding right shift ``align(x, f_i, f_out)``.  Inputs already in the output format
    are copied unchanged, so a route of equal formats is a pure concatenation."""

    kind = "route"

    def __init__(self, layer, in_fmts, rounding):
        out = fp.QFormat(max(f.bits for f in in_fmts), min(f.frac for f in in_fmts),
                         all(f.signed for f in in_fmts))
        super().__init__(layer, out, rounding)
        self.in_fmts = list(in_fmts)
        self.shifts = [f.frac - out.frac for f in self.in_fmts]

    def forward_ref(self, xs, stats=None):
        parts = [np.asarray(x, np.int32) if s == 0 else fp.align(x, f.frac, self.out_fmt.frac, self.rounding,
                                                                 self.out_fmt.bits, stats=stats)
                 for x, f, s in zip(xs, self.in_fmts, self.shifts)]
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
