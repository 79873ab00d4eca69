"""The C twin of :func:`mdfi.postprocess.postprocess_ref` and of ``QYolo.decode_int``
(csrc/mdfi_post.c through :mod:`mdfi._ext._post`): the same detections, float for float and
in the same order, tested ``array_equal`` against the Python code (tests/test_post_c.py).

Each function returns None where the C code does not reproduce the reference (the caller
then runs the Python code): the extension missing or built where float expressions are not
evaluated in float, inputs that are not float32 / int32, more NMS candidates than
``MAX_NMS_CANDIDATES`` (the reference warns and drops some), more overlapping pairs than
``_MAX_PAIRS``, or ``MDFI_POST=ref`` in the environment.  AlexeyAB's DIoU NMS keeps its
``pow`` in NumPy (NumPy's float64 power is SVML, not libm's pow, on AVX-512 CPUs): C finds
the pairs whose IoU is above the threshold (a DIoU above it needs that) with their ``d/c``,
NumPy computes ``IoU - (d/c)^beta`` for those exactly as ``box_diou_matrix`` does, and C
walks the classes over the pairs that pass.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np

from . import postprocess as ref
from .detection import Detection

_F32 = np.dtype(np.float32)
_CORRECT = {"pjreddie": 0, "alexeyab-letterbox": 1, "none": 2}


def _ext():
    """mdfi._ext._post when it can be used, else None."""
    global _POST
    if _POST is False:
        try:
            from ._ext import _post
            _POST = _post if _post.EXACT else None
        except ImportError:   # pragma: no cover - extension not built
            _POST = None
    if _POST is None or os.environ.get("MDFI_POST", "") == "ref":
        return None
    return _POST


_POST = False


def decode_yolo_q(qlayer, out: np.ndarray, thresh: float):
    """``QYolo.decode_int`` in C, or None."""
    ext = _ext()
    if ext is None or not isinstance(out, np.ndarray) or out.dtype != np.int32:
        return None
    from .layers import heads
    l = qlayer.layer
    _, lh, lw = l.out_shape
    t_obj, t_prob = heads.thresholds(thresh)
    anchors = np.ascontiguousarray(l.anchors[np.asarray(l.mask)], dtype=np.float64)   # read each call, as the reference
    p = np.ascontiguousarray(out).reshape(l.n, l.entries, lh * lw)
    return ext.yolo_q_decode(p, l.classes, lh, lw, anchors, l.net_w, l.net_h, t_obj, t_prob)


def postprocess(raws, img_w: int, img_h: int, net_w: int, net_h: int, thresh: float, nms: float,
                names: Sequence[str], *, correct: str = "pjreddie", nms_kind: str = "default",
                beta_nms: float = 0.6) -> Optional[List[Detection]]:
    """:func:`mdfi.postprocess.postprocess_ref` in C, or None (see the module docstring)."""
    ext = _ext()
    if ext is None or correct not in _CORRECT or nms_kind not in ref.NMS_KINDS:
        return None
    raws = [r for r in raws if len(r[0])]
    if not raws:
        return []
    for b, o, p in raws:
        if b.dtype != _F32 or o.dtype != _F32 or p.dtype != _F32 or b.ndim != 2 or p.ndim != 2:
            return None
    if len(raws) == 1:
        boxes, obj, probs = (np.array(a, _F32, order="C") for a in raws[0])
    else:
        boxes = np.concatenate([r[0] for r in raws])
        obj = np.concatenate([r[1] for r in raws])
        probs = np.concatenate([r[2] for r in raws])
    if boxes.shape[1] != 4 or len(obj) != len(boxes) or len(probs) != len(boxes):
        return None
    mode = _CORRECT[correct]
    new_w = new_h = 0
    if mode != 2:
        new_w, new_h = ref.letterbox_geometry(img_w, img_h, net_w, net_h)
    ext.correct_boxes(boxes, mode, net_w, net_h, new_w, new_h)
    live = ext.nms_live(obj)
    if len(live) > ref.MAX_NMS_CANDIDATES.value:
        return None                            # the reference warns and keeps the top ones
    if nms > 0 and len(live) > 1:
        thr = np.float32(nms)
        diou = nms_kind != "default"
        cap = min(max(64, 4 * len(live)), ref._MAX_PAIRS)
        count, pairs, iou, ratio, czero = ext.nms_pairs(boxes, live, thr, diou, cap)
        if count > cap:
            if count > ref._MAX_PAIRS:
                return None                    # boxes piled up: the reference's greedy pass
            count, pairs, iou, ratio, czero = ext.nms_pairs(boxes, live, thr, diou, count)
        keep = None
        if diou and count:
            # box_diou_matrix's last lines, on the pairs whose IoU is > thr (a DIoU <= IoU)
            beta = (float(ref.GREEDY_DIOU_BETA) if nms_kind == "greedynms" else float(np.float32(beta_nms)))
            iou, ratio, czero = iou[:count], ratio[:count], czero[:count]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                u = np.power(ratio.astype(np.float64), beta).astype(np.float32)
                keep = np.where(czero != 0, iou, iou - u) > thr
        ext.nms_walk(probs, live, pairs, count, keep)
    rows, cls, xyxy = ext.extract(boxes, probs, np.float32(thresh), img_w, img_h)
    if not len(rows):
        return []
    conf = probs[rows, cls].tolist()
    objs = obj[rows].tolist()
    rel = boxes[rows].tolist()
    n_names = len(names)
    return [Detection(class_id=k, label=names[k] if k < n_names else f"class{k}", confidence=c,
                      box=tuple(bx), objectness=ob, rel_box=tuple(rb))
            for k, c, bx, ob, rb in zip(cls.tolist(), conf, xyxy.tolist(), objs, rel)]
