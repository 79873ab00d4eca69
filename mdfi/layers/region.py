"""``[region]``: Darknet's region_layer.c (YOLOv2 detection head).

Defaults (parse_region): coords=4, classes=20, num=1, softmax=0, background=0, anchors
0.5 (make_region_layer).  MDFI supports coords=4, background=0, no softmax tree.
Layout ``[anchor n][entry][h][w]`` with entries ``x, y, w, h, objectness, classes``.

Forward (forward_region_layer, CPU): logistic on x, y and objectness; classes through a
softmax over the classes of each anchor and cell (softmax_cpu, temperature 1) when
``softmax=1``, else logistic.

Detections (get_region_detections, get_region_box): every cell/anchor is a candidate;
``box.x = (col + x)/lw``, ``box.w = exp(w)*anchor_w/lw`` (anchors are in grid cells);
``objectness = scale if scale > thresh else 0``; ``prob[j] = scale*class_j`` if ``> thresh``.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..darknet import activations
from . import heads
from .. import fixedpoint as fp
from ..limits import MAX_DIM
from .base import Layer


def softmax_darknet(x: np.ndarray, axis: int) -> np.ndarray:
    """Darknet's softmax(): e = exp(x - largest); out = e/sum(e), float32."""
    largest = x.max(axis=axis, keepdims=True)
    e = np.exp((x - largest).astype(np.float32))
    return (e / e.sum(axis=axis, keepdims=True, dtype=np.float32)).astype(np.float32)


class RegionLayer(Layer):
    kind = "region"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        if net.darknet == "alexeyab":
            raise sec.error("[region] under AlexeyAB's Darknet is not supported: its forward_region_layer and "
                            "get_region_detections (AB src/region_layer.c) differ from pjreddie's, which MDFI "
                            "implements; pass --darknet pjreddie for a pjreddie YOLOv2 model")
        layer.coords = sec.get_int("coords", 4)
        if layer.coords != 4:
            raise sec.error(f"coords={layer.coords}: only coords=4 is supported", "coords")
        layer.classes = sec.get_int("classes", 20, minimum=1)
        layer.n = sec.get_int("num", 1, minimum=1)
        MAX_DIM.check(layer.n, f"{sec.path}:{sec.line}: [region] num")   # before lists of num entries
        layer.softmax = bool(sec.get_int("softmax", 0))
        if sec.get_int("background", 0):
            raise sec.error("background=1 is not supported", "background")
        if sec.has("tree"):
            sec.get_str("tree")
            raise sec.error("softmax trees (tree=, YOLO9000) are not supported", "tree")
        anchors = sec.get_float_list("anchors")
        if anchors is None:
            anchors = [0.5] * (2 * layer.n)
        if len(anchors) < 2 * layer.n:
            raise sec.error(f"anchors: {len(anchors)} values given, num={layer.n} needs {2 * layer.n}",
                            "anchors")
        layer.anchors = np.asarray(anchors[: 2 * layer.n], dtype=np.float32).reshape(-1, 2)
        c, h, w = layer.in_shape
        need = layer.n * (layer.classes + layer.coords + 1)
        if c != need:
            raise sec.error(f"input has {c} channels, but {layer.n} anchors x ({layer.classes} classes + 5) "
                            f"needs {need} (check filters= of the layer before)")
        layer.out_shape = layer.in_shape
        return layer

    @property
    def entries(self) -> int:
        return self.classes + 5

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        _, h, w = self.in_shape
        out = xs[0].reshape(self.n, self.entries, h, w).copy()
        out[:, 0:2] = activations.logistic(out[:, 0:2], "pjreddie")
        out[:, 4] = activations.logistic(out[:, 4], "pjreddie")
        if self.softmax:
            out[:, 5:] = softmax_darknet(out[:, 5:], axis=1)
        else:
            out[:, 5:] = activations.logistic(out[:, 5:], "pjreddie")
        return out.reshape(self.out_shape)

    def decode(self, out: np.ndarray, thresh: float):
        """Darknet's get_region_detections before correct_region_boxes (all cells)."""
        _, lh, lw = self.out_shape
        # Darknet stores candidate n*lw*lh + cell: anchor-major order.
        p = out.reshape(self.n, self.entries, lh, lw).transpose(0, 2, 3, 1)  # (n, row, col, e)
        p = p.reshape(self.n * lh * lw, self.entries)
        idx = np.arange(self.n * lh * lw)
        n, cell = idx // (lh * lw), idx % (lh * lw)
        row, col = cell // lw, cell % lw
        x = (np.float32(col) + p[:, 0]) / np.float32(lw)
        y = (np.float32(row) + p[:, 1]) / np.float32(lh)
        bw = np.exp(p[:, 2]) * self.anchors[n, 0] / np.float32(lw)
        bh = np.exp(p[:, 3]) * self.anchors[n, 1] / np.float32(lh)
        scale = p[:, 4]
        t = np.float32(thresh)
        objectness = np.where(scale > t, scale, np.float32(0))
        probs = scale[:, None] * p[:, 5:]
        probs = np.where((probs > t) & (objectness[:, None] > 0), probs, np.float32(0))
        return np.stack([x, y, bw, bh], axis=1).astype(np.float32), objectness, probs.astype(np.float32)

    def describe(self) -> str:
        return f"region {self.n} anchors"


class QRegion(heads.QHead):
    """Integer ``[region]``: logistic/exp tables for x, y, objectness, w, h and an integer
    softmax over the classes (:func:`.heads.softmax_int`), probabilities in unsigned Q1.15."""

    kind = "region"

    TABLES = ("logistic_lut", "exp_lut", "expneg_lut")

    def __init__(self, layer, in_fmt, rounding, logistic=None, exp=None, expneg=None):
        super().__init__(layer, in_fmt, rounding, logistic, exp)
        self.expneg = heads.expneg_table(in_fmt) if expneg is None else np.asarray(expneg)
        # expneg[0] = exp(0) = 1.0 keeps every softmax denominator positive.
        self._check("softmax table", self.expneg, 1 << fp.EXP_FRAC, first=1 << fp.EXP_FRAC)

    def forward_ref(self, xs, stats=None):
        l = self.layer
        _, h, w = l.in_shape
        x = np.asarray(xs[0]).reshape(l.n, l.entries, h, w)
        out = np.empty(x.shape, np.int32)
        for e in (0, 1, 4):
            out[:, e] = heads.lookup(self.logistic, x[:, e], self.in_fmt)
        for e in (2, 3):
            out[:, e] = heads.lookup(self.exp, x[:, e], self.in_fmt)
        if l.softmax:
            out[:, 5:] = heads.softmax_int(x[:, 5:], self.expneg, axis=1)
        else:
            out[:, 5:] = heads.lookup(self.logistic, x[:, 5:], self.in_fmt)
        return out.reshape(l.out_shape)

    def decode_int(self, out: np.ndarray, thresh: float):
        l = self.layer
        _, lh, lw = l.out_shape
        p = np.asarray(out).reshape(l.n, l.entries, lh, lw).transpose(0, 2, 3, 1).reshape(-1, l.entries)
        idx = np.arange(len(p))
        n, cell = idx // (lh * lw), idx % (lh * lw)
        row, col = cell // lw, cell % lw
        t_obj, t_prob = heads.thresholds(thresh)
        x = (col + p[:, 0] * 2.0 ** -fp.PROB_FRAC) / lw
        y = (row + p[:, 1] * 2.0 ** -fp.PROB_FRAC) / lh
        bw = p[:, 2] * 2.0 ** -fp.EXP_FRAC * l.anchors[n, 0].astype(np.float64) / lw
        bh = p[:, 3] * 2.0 ** -fp.EXP_FRAC * l.anchors[n, 1].astype(np.float64) / lh
        scale = p[:, 4].astype(np.int64)
        obj_q = np.where(scale > t_obj, scale, 0)
        prob_q = scale[:, None] * p[:, 5:].astype(np.int64)
        prob_q = np.where((prob_q > t_prob) & (obj_q[:, None] > 0), prob_q, 0)
        boxes = np.stack([x, y, bw, bh], axis=1).astype(np.float32)
        return boxes, heads.to_float_prob(obj_q), heads.to_float_prob(prob_q, 2 * fp.PROB_FRAC)

    def arrays(self):
        return {**super().arrays(), "expneg_lut": self.expneg}
