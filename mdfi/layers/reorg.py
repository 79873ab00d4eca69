"""``[reorg]``: Darknet's reorg_layer.c (YOLOv2 pass-through layer).

Default stride=1 (parse_reorg: ``option_find_int(options, "stride", 1)``), reverse=0.
Output (make_reorg_layer): ``(c*stride*stride, h/stride, w/stride)``.

Darknet computes the forward as ``reorg_cpu(input, w, h, c, batch, stride, 0, output)``
with the *input* dimensions, i.e. the "backward" branch ``out[i1] = in[i2]`` with
``i1 = x + w*(y + h*k)`` (k < c) and ``i2 = x2 + w*stride*(y2 + h*stride*c2)`` where
``c2 = k % (c/stride^2)``, ``offset = k / (c/stride^2)``, ``x2 = x*stride + offset%stride``,
``y2 = y*stride + offset/stride``.  This is famously not a plain space-to-depth; MDFI
reproduces it index for index (it is a pure permutation, so it is exact on integers too).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .base import Layer, QLayer, meta_format


class ReorgLayer(Layer):
    kind = "reorg"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        layer.stride = sec.get_int("stride", 1, minimum=1)
        if sec.get_int("reverse", 0) or sec.get_int("flatten", 0) or sec.get_int("extra", 0):
            raise sec.error("reorg reverse/flatten/extra modes are not supported")
        c, h, w = layer.in_shape
        s = layer.stride
        if h % s or w % s or c % (s * s):
            raise sec.error(f"stride={s} does not divide the input {layer.in_shape} (C divisible by "
                            f"stride^2, H and W by stride)", "stride")
        layer.out_shape = (c * s * s, h // s, w // s)
        layer._perm = None
        return layer

    def permutation(self) -> np.ndarray:
        """Flat source index for every flat output index (Darknet's reorg_cpu, forward=0)."""
        if self._perm is None:
            c, h, w = self.in_shape
            s = self.stride
            out_c = c // (s * s)
            k, j, i = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
            c2 = k % out_c
            offset = k // out_c
            w2 = i * s + offset % s
            h2 = j * s + offset // s
            in_index = i + w * (j + h * k)                      # written (out[in_index])
            out_index = w2 + w * s * (h2 + h * s * c2)          # read    (x[out_index])
            perm = np.empty(c * h * w, dtype=np.int64)
            perm[in_index.ravel()] = out_index.ravel()
            self._perm = perm
        return self._perm

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        return self.reorg(xs[0])

    def reorg(self, x: np.ndarray) -> np.ndarray:
        """Apply the permutation to any dtype."""
        return x.reshape(-1)[self.permutation()].reshape(self.out_shape)

    def describe(self) -> str:
        return f"reorg /{self.stride}"


class QReorg(QLayer):
    """Integer reorg: the same permutation as the float layer; format unchanged."""

    kind = "reorg"

    def forward_ref(self, xs, stats=None):
        return self.layer.reorg(np.asarray(xs[0], np.int32))

    @classmethod
    def quantize(cls, layer, in_fmt, rounding):
        return cls(layer, in_fmt, rounding)

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, meta_format(meta), meta["rounding"])
