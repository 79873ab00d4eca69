"""Darknet's detection post-processing, reproduced exactly.

* :func:`correct_boxes` is ``correct_yolo_boxes`` / ``correct_region_boxes`` (pjreddie):
  undo the letterbox.  Note Darknet pastes the image at an *integer* offset but removes a
  *float* offset ``(net_w - new_w)/2./net_w`` here, so with odd padding its boxes are off
  by half a letterbox pixel.  MDFI reproduces that, to match Darknet's output.
* :func:`do_nms_sort` is Darknet's ``do_nms_sort``: per class, sort candidates by that
  class's probability (descending), and zero the class probability of every later box whose
  IoU with a kept one is ``> nms``.
* :func:`to_detections` emits one :class:`~mdfi.detection.Detection` per (box, class)
  with probability ``> thresh`` (draw_detections prints exactly these).

AlexeyAB's test_detector (src/detector.c:1620-1720) differs:

* boxes are corrected only when the input was letterboxed (``letter_box=1``), with
  ``b.w *= 1/ratiow`` (correct_yolo_boxes, AB src/yolo_layer.c:939-992); without letterbox
  the correction is the identity, so boxes relative to the network input are relative to
  the image;
* the NMS is chosen by the last [yolo] layer's ``nms_kind`` (src/detector.c:1702-1704):
  ``default`` is ``do_nms_sort``; ``greedynms`` and ``diounms`` are ``diounms_sort``
  (src/box.c:896-947), which suppresses a later box when its DIoU with a kept one is
  ``> nms``: ``box_diou = IoU - (d^2/c^2)^0.6`` with a **hard-coded 0.6** for greedynms
  (beta_nms is ignored there, src/box.c:195-212, :916; the exponent is the double literal
  0.6, ``pow(d / c, 0.6)``) and ``IoU - (d^2/c^2)^beta_nms`` for diounms (src/box.c:214-231,
  :920; the float ``beta1`` promoted to double); d = distance of the centres, c = diagonal
  of the enclosing box; ``pow`` in double, the rest in float.
"""

from __future__ import annotations

import warnings
from typing import List, Sequence, Tuple

import numpy as np

from .detection import Detection
from .errors import MDFIWarning
from .limits import Limit
from .preprocess import letterbox_geometry

Raw = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N,4) xywh, objectness (N,), probs (N,K)


CORRECTIONS = ("pjreddie", "alexeyab-letterbox", "none")
NMS_KINDS = ("default", "greedynms", "diounms")


def correct_boxes(boxes: np.ndarray, img_w: int, img_h: int, net_w: int, net_h: int,
                  mode: str = "pjreddie") -> np.ndarray:
    """Map x,y,w,h relative to the network input to x,y,w,h relative to the image.

    ``mode``: ``"pjreddie"`` (pjreddie correct_yolo_boxes, letterboxed input),
    ``"alexeyab-letterbox"`` (AlexeyAB's with letter=1) or ``"none"`` (AlexeyAB's with
    letter=0: the identity, since deltaw = 0 and ratiow = 1)."""
    if mode == "none":
        return boxes.astype(np.float32).copy()
    new_w, new_h = letterbox_geometry(img_w, img_h, net_w, net_h)
    b = boxes.astype(np.float32).copy()
    f32 = np.float32
    if mode == "alexeyab-letterbox":
        # AB src/yolo_layer.c:970-985: deltaw = netw - new_w (float), ratiow = (float)new_w/netw,
        # b.x = (b.x - deltaw/2./netw)/ratiow in double; b.w *= 1/ratiow in float.
        rw, rh = f32(new_w) / f32(net_w), f32(new_h) / f32(net_h)
        b[:, 0] = ((b[:, 0].astype(np.float64) - float(f32(net_w - new_w)) / 2.0 / net_w)
                   / np.float64(rw)).astype(np.float32)
        b[:, 1] = ((b[:, 1].astype(np.float64) - float(f32(net_h - new_h)) / 2.0 / net_h)
                   / np.float64(rh)).astype(np.float32)
        b[:, 2] *= f32(1) / rw
        b[:, 3] *= f32(1) / rh
        return b
    # b.x = (b.x - (netw - new_w)/2./netw) / ((float)new_w/netw): double arithmetic with a
    # float divisor, stored as float.
    b[:, 0] = ((b[:, 0].astype(np.float64) - (net_w - new_w) / 2.0 / net_w)
               / np.float64(f32(new_w) / f32(net_w))).astype(np.float32)
    b[:, 1] = ((b[:, 1].astype(np.float64) - (net_h - new_h) / 2.0 / net_h)
               / np.float64(f32(new_h) / f32(net_h))).astype(np.float32)
    b[:, 2] *= f32(net_w) / f32(new_w)
    b[:, 3] *= f32(net_h) / f32(new_h)
    return b


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Darknet's box_iou (centre/size boxes, float32) between every a and every b."""
    f32 = np.float32
    half = f32(0.5)
    ax, ay, aw, ah = (a[:, i:i + 1] for i in range(4))
    bx, by, bw, bh = (b[None, :, i] for i in range(4))

    def overlap(x1, w1, x2, w2):
        left = np.maximum(x1 - w1 * half, x2 - w2 * half)
        right = np.minimum(x1 + w1 * half, x2 + w2 * half)
        return right - left

    w = overlap(ax, aw, bx, bw)
    h = overlap(ay, ah, by, bh)
    inter = np.where((w < 0) | (h < 0), f32(0), w * h)
    union = aw * ah + bw * bh - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    if not np.isfinite(iou).all():           # (nan_to_num costs more than the rest on few boxes)
        iou = np.nan_to_num(iou, nan=0.0)
    return iou.astype(np.float32, copy=False)


#: greedynms' DIoU exponent: AB box_diou writes ``pow(d / c, 0.6)`` with the *double* literal
#: 0.6 (src/box.c:206), not float32(0.6) as diounms' float ``beta_nms`` would be.
GREEDY_DIOU_BETA = 0.6


def box_diou_matrix(a: np.ndarray, b: np.ndarray, beta: float = 0.6, *, beta_is_float32: bool = True) -> np.ndarray:
    """AlexeyAB's box_diou / box_diounms (src/box.c:195-231) between every a and every b:
    ``IoU - pow(d/c, beta)`` with d the squared centre distance and c the squared diagonal
    of the enclosing box (box_c, src/box.c:101-108) in float, ``pow`` in double; the IoU
    alone where c == 0.  The exponent is ``float32(beta)`` (box_diounms' float ``beta1``),
    or ``beta`` itself with ``beta_is_float32=False`` (box_diou's double literal 0.6)."""
    f32 = np.float32
    two = f32(2)
    ax, ay, aw, ah = (a[:, i:i + 1] for i in range(4))
    bx, by, bw, bh = (b[None, :, i] for i in range(4))
    top = np.minimum(ay - ah / two, by - bh / two)
    bot = np.maximum(ay + ah / two, by + bh / two)
    left = np.minimum(ax - aw / two, bx - bw / two)
    right = np.maximum(ax + aw / two, bx + bw / two)
    w = right - left
    h = bot - top
    c = w * w + h * h
    iou = box_iou_matrix(a, b)
    d = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.power((d / c).astype(np.float64),
                     float(np.float32(beta)) if beta_is_float32 else float(beta)).astype(np.float32)
    return np.where(c == 0, iou, iou - u).astype(np.float32)


#: Most candidates one image's NMS considers (the highest objectness ones; a warning says so
#: when more come).  Above every classic detector's candidate count (YOLOv3-SPP at 608x608
#: has 22,743 anchors in all).  Raise with ``MDFI_MAX_NMS_CANDIDATES``.
MAX_NMS_CANDIDATES = Limit("NMS candidates", "MDFI_MAX_NMS_CANDIDATES", 32768)
#: IoU values computed at once (rows x candidates): bounds the temporary memory to a few
#: tens of MB whatever the candidate count.
_BLOCK_ELEMENTS = 1 << 20


#: Most overlapping pairs kept for the one-pass NMS (16 bytes each); beyond, the per-class
#: greedy pass runs instead (same result, memory linear in the candidates).
_MAX_PAIRS = 1 << 20


def _neighbours(b: np.ndarray, thr: np.float32, block: int = 0, max_pairs: int = _MAX_PAIRS,
                metric=box_iou_matrix):
    """For every box, the indices of the boxes whose IoU (or ``metric``, AlexeyAB's DIoU) with
    it is ``> thr`` (itself excluded), in CSR form (``starts``, ``cols``), or None when there
    are more than ``max_pairs`` such pairs (boxes piled on each other).  Darknet's IoU and
    DIoU are symmetric, so one pass serves every class; memory stays O(block * N + pairs)."""
    n = len(b)
    block = block or max(8, min(512, _BLOCK_ELEMENTS // max(n, 1)))
    rows_all, cols_all = [], []
    total = 0
    for start in range(0, n, block):
        iou = metric(b[start:start + block], b)
        r, c = np.nonzero(iou > thr)
        keep = (r + start) != c
        total += int(keep.sum())
        if total > max_pairs:
            return None
        rows_all.append(r[keep] + start)
        cols_all.append(c[keep])
    rows = np.concatenate(rows_all) if rows_all else np.zeros(0, np.int64)
    cols = np.concatenate(cols_all) if cols_all else np.zeros(0, np.int64)
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.bincount(rows, minlength=n)
    return np.cumsum(starts), cols[np.argsort(rows, kind="stable")]


def _greedy_keep(b: np.ndarray, thr: np.float32, block: int = 0, metric=box_iou_matrix) -> np.ndarray:
    """Darknet's inner NMS loop for boxes ``b`` already in score order: box ``i`` still alive
    suppresses every later box whose IoU with it is ``> thr``.  Returns the alive flags.

    Blocks of ``block`` rows are compared with the boxes still alive after them, so memory is
    linear in the number of boxes, and a block whose rows are all suppressed costs nothing:
    16,128 identical boxes take one block (the first row suppresses everything)."""
    n = len(b)
    block = block or max(8, min(512, _BLOCK_ELEMENTS // max(n, 1)))
    alive = np.ones(n, dtype=bool)
    for s in range(0, n, block):
        rows = s + np.flatnonzero(alive[s:s + block])
        if rows.size == 0:
            continue
        cols = s + np.flatnonzero(alive[s:])
        over = metric(b[rows], b[cols]) > thr                   # (rows, cols) booleans
        for t, r in enumerate(rows.tolist()):
            if not alive[r]:
                continue
            hit = cols[over[t] & (cols > r)]
            alive[hit] = False
    return alive


def do_nms_sort(boxes: np.ndarray, objectness: np.ndarray, probs: np.ndarray, nms: float,
                kind: str = "default", beta_nms: float = 0.6) -> np.ndarray:
    """Return a copy of ``probs`` with suppressed entries set to 0 (Darknet semantics).

    Per class, candidates with a non-zero probability are visited in descending order
    (stable for ties); each one still alive zeroes the class probability of every later
    candidate whose IoU with it is ``> nms``.  Only pairs above the threshold interact: when
    they are few they are found once for all classes (:func:`_neighbours`) and each class
    walks its candidates over those lists; when boxes pile up (more than ``_MAX_PAIRS``
    pairs) each class runs :func:`_greedy_keep` instead.  Both are exact, with memory linear
    in the candidates.  More than :data:`MAX_NMS_CANDIDATES` candidates: only that many, by
    objectness, are kept (with a warning); the others are dropped.

    ``kind`` ``"greedynms"``/``"diounms"``: AlexeyAB's diounms_sort, the same loop with the
    DIoU (exponent: the double 0.6 for greedynms, float32 ``beta_nms`` for diounms) in place
    of the IoU (:func:`box_diou_matrix`).
    """
    if kind == "default":
        metric = box_iou_matrix
    elif kind == "greedynms":
        metric = lambda a, b: box_diou_matrix(a, b, GREEDY_DIOU_BETA, beta_is_float32=False)   # noqa: E731
    elif kind == "diounms":
        metric = lambda a, b: box_diou_matrix(a, b, beta_nms)   # noqa: E731
    else:
        raise ValueError(f"unknown nms kind {kind!r}")
    probs = probs.copy()
    live = objectness != 0          # do_nms_sort first drops objectness == 0 candidates
    if not live.any():
        return probs
    idx = np.flatnonzero(live)
    cap = MAX_NMS_CANDIDATES.value
    if len(idx) > cap:
        order = np.argsort(-objectness[idx], kind="stable")
        dropped = idx[order[cap:]]
        probs[dropped] = 0
        idx = np.sort(idx[order[:cap]])
        warnings.warn(f"{len(order):,} detection candidates above the threshold: NMS keeps the {cap:,} with "
                      f"the highest objectness and drops the rest (set {MAX_NMS_CANDIDATES.env} to raise the "
                      f"limit; a trained model rarely gives more than a few hundred)", MDFIWarning, stacklevel=3)
    if nms <= 0:
        return probs
    sub = probs[idx]
    b = boxes[idx]
    thr = np.float32(nms)
    csr = _neighbours(b, thr, metric=metric)
    rank = np.empty(len(idx), np.int64)
    for k in np.flatnonzero((sub > 0).any(axis=0)):
        col = sub[:, k]
        cand = np.flatnonzero(col > 0)
        order = cand[np.argsort(-col[cand], kind="stable")]
        if csr is None:
            alive = _greedy_keep(b[order], thr, metric=metric)
        else:
            starts, cols = csr
            rank[:] = -1
            rank[order] = np.arange(len(order))
            alive = np.ones(len(order), dtype=bool)
            for r, i in enumerate(order):
                if not alive[r] or starts[i] == starts[i + 1]:
                    continue
                nr = rank[cols[starts[i]:starts[i + 1]]]
                alive[nr[nr > r]] = False
        col[order[~alive]] = 0
        sub[:, k] = col
    probs[idx] = sub
    return probs


def to_detections(boxes: np.ndarray, objectness: np.ndarray, probs: np.ndarray, thresh: float,
                  img_w: int, img_h: int, names: Sequence[str]) -> List[Detection]:
    """(box, class) pairs with probability > thresh, highest confidence first."""
    out: List[Detection] = []
    rows, cls = np.nonzero(probs > np.float32(thresh))
    for r, k in zip(rows.tolist(), cls.tolist()):
        x, y, w, h = (float(v) for v in boxes[r])
        x1 = min(max((x - w / 2) * img_w, 0.0), float(img_w))
        x2 = min(max((x + w / 2) * img_w, 0.0), float(img_w))
        y1 = min(max((y - h / 2) * img_h, 0.0), float(img_h))
        y2 = min(max((y + h / 2) * img_h, 0.0), float(img_h))
        label = names[k] if k < len(names) else f"class{k}"
        out.append(Detection(class_id=int(k), label=label, confidence=float(probs[r, k]),
                             box=(x1, y1, x2, y2), objectness=float(objectness[r]),
                             rel_box=(x, y, w, h)))
    out.sort(key=lambda d: (-d.confidence, d.class_id))
    return out


def settings(network) -> dict:
    """Keyword arguments of :func:`postprocess` for ``network``'s Darknet lineage."""
    kind, beta = network.nms_settings()
    if network.darknet == "alexeyab":
        correct = "alexeyab-letterbox" if network.letter_box else "none"
    else:
        correct = "pjreddie"
    return {"correct": correct, "nms_kind": kind, "beta_nms": beta}


def postprocess_ref(raws: Sequence[Raw], img_w: int, img_h: int, net_w: int, net_h: int,
                    thresh: float, nms: float, names: Sequence[str], *, correct: str = "pjreddie",
                    nms_kind: str = "default", beta_nms: float = 0.6) -> List[Detection]:
    """Concatenate the heads' candidates, undo the letterbox, NMS, and threshold (see
    :func:`settings` for the lineage's ``correct``/``nms_kind``/``beta_nms``).  The
    specification of :func:`postprocess`'s C twin."""
    raws = [r for r in raws if len(r[0])]
    if not raws:
        return []
    boxes = np.concatenate([r[0] for r in raws])
    objectness = np.concatenate([r[1] for r in raws])
    probs = np.concatenate([r[2] for r in raws])
    boxes = correct_boxes(boxes, img_w, img_h, net_w, net_h, correct)
    probs = do_nms_sort(boxes, objectness, probs, nms, nms_kind, beta_nms)
    return to_detections(boxes, objectness, probs, thresh, img_w, img_h, names)


def postprocess(raws: Sequence[Raw], img_w: int, img_h: int, net_w: int, net_h: int,
                thresh: float, nms: float, names: Sequence[str], *, correct: str = "pjreddie",
                nms_kind: str = "default", beta_nms: float = 0.6) -> List[Detection]:
    """:func:`postprocess_ref` with the arithmetic in C (:mod:`mdfi.postprocess_c`): the same
    detections, float for float and in the same order; the cases the C code does not cover
    (more candidates than :data:`MAX_NMS_CANDIDATES`, piled-up boxes, inputs that are not
    float32, ``MDFI_POST=ref``) run :func:`postprocess_ref`."""
    from . import postprocess_c
    dets = postprocess_c.postprocess(raws, img_w, img_h, net_w, net_h, thresh, nms, names, correct=correct,
                                     nms_kind=nms_kind, beta_nms=beta_nms)
    if dets is None:
        return postprocess_ref(raws, img_w, img_h, net_w, net_h, thresh, nms, names, correct=correct,
                               nms_kind=nms_kind, beta_nms=beta_nms)
    return dets
