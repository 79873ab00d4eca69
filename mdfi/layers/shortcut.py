"""``[shortcut]``: Darknet's shortcut_layer.c.

``from=`` one layer index (relative if negative).  Output = ``alpha*prev + beta*from``
(pjreddie's defaults alpha=1, beta=1), then ``activation`` (default linear).  MDFI requires
both inputs to have the same shape (Darknet's strided variant for mismatched shapes is
not used by the YOLO networks).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import activations
from .convolutional import parse_activation
from .route import resolve_index
from .base import Layer


class ShortcutLayer(Layer):
    kind = "shortcut"

    @classmethod
    def from_section(cls, index, section, net):
        sec = section
        raw = sec.get_int_list("from", required=True)
        if len(raw) != 1:
            raise sec.error(f"from: exactly one layer expected, got {len(raw)}", "from")
        if index == 0:
            raise sec.error("[shortcut] cannot be the first layer")
        src = resolve_index(sec, "from", raw[0], index)
        prev = index - 1
        shapes = [net.shape_of(prev), net.shape_of(src)]
        if shapes[0] != shapes[1]:
            raise sec.error(f"from: shape mismatch: previous layer {prev} is {shapes[0]} but layer "
                            f"{src} is {shapes[1]} (C,H,W)", "from")
        layer = cls(index, section, [prev, src], shapes)
        layer.alpha = sec.get_float("alpha", 1.0)
        layer.beta = sec.get_float("beta", 1.0)
        layer.activation = parse_activation(sec, "linear")
        layer.out_shape = shapes[0]
        return layer

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        a, b = xs
        if self.alpha == 1.0 and self.beta == 1.0:
            out = a + b
        else:
            out = np.float32(self.alpha) * a + np.float32(self.beta) * b
        return activations.apply_float(self.activation, out.astype(np.float32, copy=False))

    def describe(self) -> str:
        return f"shortcut {self.inputs[1]}"
