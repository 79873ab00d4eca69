"""Evaluation of detections: mAP@0.5, fixed-point vs float agreement, label loaders, reports.

Everything here is post-processing on lists of detections; no network is run.

Boxes
    All boxes are ``(x1, y1, x2, y2)`` in pixels of the original image, the convention of
    :class:`~mdfi.detection.Detection`.  Overlap is plain geometry: width ``x2 - x1`` (no
    ``+1`` pixel convention as in the VOC devkit), see :func:`iou_xyxy`.

Per-image lists
    ``predictions`` / ``ground_truth`` arguments are sequences with one entry per image,
    each entry a list of detection-like objects.  A prediction needs ``class_id``,
    ``confidence`` and ``box``; a ground-truth object needs ``class_id`` and ``box`` and may
    carry ``difficult`` (VOC difficult / COCO iscrowd: ignored, neither TP nor FP) and
    ``crowd`` (overlap with it is measured as intersection over the *prediction* area, as
    COCO does for crowd regions).  :class:`Detection` and :class:`GroundTruth` both fit.

Matching (:func:`evaluate_map`, :func:`agreement`)
    Per class, the predictions of all images are sorted by confidence, descending; ties keep
    input order (image order, then order within the image).  Each prediction, in that order,
    is matched to the *unmatched*, non-ignored ground-truth box of the same class in the same
    image with the highest IoU ``>= iou`` (ties: the first such box) -> true positive.  If
    there is none but it overlaps (``>= iou``) an ignored (difficult/crowd) box it is
    ignored: neither TP nor FP; an ignored box can absorb any number of predictions, as in
    the VOC devkit.  Otherwise it is a false positive (this includes a duplicate of an
    already-matched box).  Unlike the VOC devkit (which only looks at the single best-IoU box,
    matched or not, and uses ``> 0.5``) this prefers an unmatched regular box, as COCO does.
    AP is all-point interpolated (:func:`average_precision`); mAP is the mean over the
    classes that have at least one (non-ignored) ground-truth box.  This is VOC2010+ style
    mAP@0.5, not the COCO 101-point mAP@[.5:.95].

Undefined values (no ground truth, no matched pair, division by zero) are ``None`` in the
result objects, "n/a" in tables and ``null`` in JSON.

The label loaders (:class:`GroundTruth`, :func:`load_coco_json`, :func:`load_voc_xml`,
:func:`align_labels`, ...) live in :mod:`mdfi.eval.labels` and are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

# The label loaders (and GroundTruth) live in mdfi.eval.labels; re-exported here.
from .labels import (  # noqa: F401  (re-exported)
    MAX_COCO_JSON, MAX_VOC_XML, NAME_ALIASES, Box, GroundTruth, LabelError, LabelWarning,
    align_labels, class_index_for, load_coco_json, load_voc_xml,
)
from .progress import Progress  # noqa: F401  (re-exported)

__all__ = [
    "iou_xyxy", "average_precision",
    "GroundTruth", "ClassAP", "MapResult", "evaluate_map",
    "MatchCounts", "AgreementResult", "agreement",
    "LabelError", "LabelWarning", "NAME_ALIASES", "class_index_for", "load_coco_json",
    "load_voc_xml", "align_labels",
    "format_agreement_table", "to_json_dict", "Progress",
]


# ============================================================================ geometry


def _boxes2d(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}: expected boxes of shape (4,) or (N, 4), got {np.shape(x)}")
    return arr


def _inter_areas(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection areas (N, M) and box areas (N,), (M,) of (N,4) and (M,4) xyxy boxes."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    return inter, area_a, area_b


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def iou_xyxy(a: Any, b: Any) -> Union[float, np.ndarray]:
    """Intersection over union of pixel boxes ``(x1, y1, x2, y2)``.

    ``a`` has shape ``(4,)`` or ``(N, 4)``, ``b`` shape ``(4,)`` or ``(M, 4)``.  Returns the
    ``(N, M)`` matrix of IoUs; the axis of a 1-D argument is dropped, so two single boxes give
    a Python float.  Plain continuous geometry: a box's width is ``x2 - x1`` (no ``+1``
    pixel convention); negative widths/heights count as 0; IoU is 0 when the union is empty.
    Computed in float64: ``inter / (area_a + area_b - inter)``.
    """
    a2, b2 = _boxes2d(a, "iou_xyxy(a)"), _boxes2d(b, "iou_xyxy(b)")
    inter, area_a, area_b = _inter_areas(a2, b2)
    iou = _safe_div(inter, area_a[:, None] + area_b[None, :] - inter)
    a1, b1 = np.ndim(a) == 1, np.ndim(b) == 1
    if a1 and b1:
        return float(iou[0, 0])
    if a1:
        return iou[0]
    if b1:
        return iou[:, 0]
    return iou


def average_precision(recalls: Sequence[float], precisions: Sequence[float]) -> float:
    """All-point interpolated average precision (PASCAL VOC 2010+ / COCO-style envelope).

    ``recalls`` and ``precisions`` are the values after each prediction of the ranked list
    (recall non-decreasing).  The precision is replaced by its monotone envelope
    ``p_interp(r) = max(p(r') for r' >= r)`` and the area under this step curve is returned::

        AP = sum over recall steps i of (r[i] - r[i-1]) * p_interp(r[i]),  r[-1] = 0

    Recall beyond the last value contributes nothing (precision 0 there).  The sum is taken
    with :func:`math.fsum` (exactly rounded), so the result does not depend on summation
    order.  Empty input gives 0.0.
    """
    rec = np.asarray(recalls, dtype=np.float64).ravel()
    prec = np.asarray(precisions, dtype=np.float64).ravel()
    if rec.shape != prec.shape:
        raise ValueError(f"average_precision: {rec.size} recalls but {prec.size} precisions")
    if rec.size == 0:
        return 0.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]        # monotone envelope from the right
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    terms = (mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]
    return math.fsum(terms.tolist())


# ============================================================================ mAP


@dataclass(frozen=True)
class ClassAP:
    """Per-class outcome of the matching.  ``ap`` is None when the class has no ground truth."""

    class_id: int
    label: str
    ap: Optional[float]
    n_gt: int           # non-ignored ground-truth boxes
    n_pred: int         # all predictions of the class (ranked)
    n_tp: int
    n_fp: int
    n_ignored: int      # predictions on difficult/crowd boxes (neither TP nor FP)


@dataclass(frozen=True)
class MapResult:
    """Result of :func:`evaluate_map`.  ``map`` is None when no class has ground truth."""

    map: Optional[float]
    per_class: Dict[int, ClassAP]
    n_images: int
    iou: float

    @property
    def ap(self) -> Dict[int, float]:
        """AP of every class that has ground truth (the classes averaged into ``map``)."""
        return {c: r.ap for c, r in self.per_class.items() if r.ap is not None}

    @property
    def n_gt(self) -> Dict[int, int]:
        return {c: r.n_gt for c, r in self.per_class.items()}

    @property
    def n_pred(self) -> Dict[int, int]:
        return {c: r.n_pred for c, r in self.per_class.items()}


def _check_iou(iou: float) -> float:
    iou = float(iou)
    if not (0.0 < iou <= 1.0):
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou}")
    return iou


def _check_conf(value: float, what: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{what} must be in [0, 1], got {value}")
    return value


class _Item:
    """A detection or ground-truth box flattened for matching."""

    __slots__ = ("image", "seq", "cls", "label", "conf", "box", "ignore", "crowd", "src")

    def __init__(self, image: int, seq: int, obj: Any, is_pred: bool):
        self.image = image
        self.seq = seq
        self.src = obj
        self.cls = int(obj.class_id)
        self.label = str(getattr(obj, "label", "") or "")
        box = tuple(float(v) for v in obj.box)
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise ValueError(f"image #{image}: box must be 4 finite numbers, got {obj.box!r}")
        self.box = box
        if is_pred:
            self.conf = float(obj.confidence)
            if not math.isfinite(self.conf):
                raise ValueError(f"image #{image}: non-finite confidence {obj.confidence!r}")
            self.ignore = self.crowd = False
        else:
            self.conf = 0.0
            self.crowd = bool(getattr(obj, "crowd", False))
            self.ignore = bool(getattr(obj, "difficult", False)) or self.crowd


_TP, _FP, _IGN = 1, 0, -1


def _group(per_image: Sequence[Iterable[Any]], is_pred: bool
           ) -> Dict[Tuple[int, int], List[_Item]]:
    """{(image, class): items in input order}; ``seq`` is a global running index."""
    groups: Dict[Tuple[int, int], List[_Item]] = {}
    seq = 0
    for i, dets in enumerate(per_image):
        for obj in dets:
            it = _Item(i, seq, obj, is_pred)
            seq += 1
            groups.setdefault((i, it.cls), []).append(it)
    return groups


def _match_group(preds: List[_Item], gts: List[_Item], thr: float
                 ) -> List[Tuple[_Item, int, Optional[_Item]]]:
    """Greedy matching in one image and class.  Returns (pred, status, matched gt) per pred,
    in processing order (confidence descending, stable)."""
    order = sorted(preds, key=lambda p: -p.conf)          # stable: ties keep input order
    if not gts:
        return [(p, _FP, None) for p in order]
    pb = np.array([p.box for p in order], dtype=np.float64)
    gb = np.array([g.box for g in gts], dtype=np.float64)
    inter, area_p, area_g = _inter_areas(pb, gb)
    iou = _safe_div(inter, area_p[:, None] + area_g[None, :] - inter)
    ioa = _safe_div(inter, np.broadcast_to(area_p[:, None], inter.shape))
    ignore = np.array([g.ignore for g in gts], dtype=bool)
    crowd = np.array([g.crowd for g in gts], dtype=bool)
    ign_overlap = np.where(crowd[None, :], ioa, iou) >= thr
    ign_overlap &= ignore[None, :]
    free = ~ignore
    out: List[Tuple[_Item, int, Optional[_Item]]] = []
    for k, p in enumerate(order):
        row = iou[k]
        cand = free & (row >= thr)
        if cand.any():
            j = int(np.argmax(np.where(cand, row, -1.0)))  # first of the best
            free[j] = False
            out.append((p, _TP, gts[j]))
        elif ign_overlap[k].any():
            out.append((p, _IGN, None))
        else:
            out.append((p, _FP, None))
    return out


def _match_all(predictions: Sequence[Iterable[Any]], ground_truth: Sequence[Iterable[Any]],
               thr: float):
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} images of predictions but "
                         f"{len(ground_truth)} images of ground truth; expected one list per image")
    pg = _group(predictions, True)
    gg = _group(ground_truth, False)
    matches: List[Tuple[_Item, int, Optional[_Item]]] = []
    for key, preds in pg.items():
        matches.extend(_match_group(preds, gg.get(key, []), thr))
    return matches, pg, gg


def _map_from_matches(matches, gg, n_images: int, thr: float) -> MapResult:
    labels: Dict[int, str] = {}
    n_gt: Dict[int, int] = {}
    for (_, c), items in gg.items():
        n_gt[c] = n_gt.get(c, 0) + sum(1 for g in items if not g.ignore)
        for g in items:
            if g.label and c not in labels:
                labels[c] = g.label
    by_class: Dict[int, List[Tuple[_Item, int]]] = {}
    for p, status, _ in matches:
        by_class.setdefault(p.cls, []).append((p, status))
        if p.label and p.cls not in labels:
            labels[p.cls] = p.label
    per_class: Dict[int, ClassAP] = {}
    for c in sorted(set(n_gt) | set(by_class)):
        ranked = sorted(by_class.get(c, []), key=lambda ps: (-ps[0].conf, ps[0].seq))
        flags = np.array([s for _, s in ranked if s != _IGN], dtype=np.int64)
        npos = n_gt.get(c, 0)
        n_tp = int(flags.sum())
        n_fp = int(flags.size - n_tp)
        ap: Optional[float] = None
        if npos > 0:
            tp = np.cumsum(flags)
            precision = tp / np.arange(1, flags.size + 1, dtype=np.float64)
            recall = tp / float(npos)
            ap = average_precision(recall, precision)
        per_class[c] = ClassAP(c, labels.get(c, ""), ap, npos, len(ranked), n_tp, n_fp,
                               len(ranked) - int(flags.size))
    aps = [r.ap for r in per_class.values() if r.ap is not None]
    m = math.fsum(aps) / len(aps) if aps else None
    return MapResult(m, per_class, n_images, thr)


def evaluate_map(predictions: Sequence[Iterable[Any]], ground_truth: Sequence[Iterable[Any]],
                 *, iou: float = 0.5) -> MapResult:
    """mAP@``iou`` of per-image ``predictions`` against per-image ``ground_truth``.

    Both are sequences with one list per image (same length).  See the module docstring for
    the matching rule.  Per class: AP (all-point), number of (non-ignored) ground-truth boxes
    and of predictions; mAP = mean AP over the classes with at least one ground-truth box
    (None if there is none).  Classes with predictions but no ground truth are listed with
    ``ap=None`` and do not enter the mean.
    """
    thr = _check_iou(iou)
    matches, _, gg = _match_all(predictions, ground_truth, thr)
    return _map_from_matches(matches, gg, len(predictions), thr)


# ============================================================================ agreement


@dataclass(frozen=True)
class MatchCounts:
    """One-to-one matching counts at the ``gt_conf`` threshold."""

    matched: int = 0
    missed: int = 0     # float detections without a fixed-point partner
    extra: int = 0      # fixed-point detections without a float partner


@dataclass(frozen=True)
class AgreementResult:
    """Agreement of the fixed-point detections with the float detections (the reference).

    ``map`` is the agreement mAP@``iou`` (None when the float path detected nothing at
    ``gt_conf``).  ``n_float`` / ``n_fixed`` count detections with confidence >= ``gt_conf``;
    ``n_fixed_ranked`` those >= ``min_conf`` (the AP ranking).  Fractions are relative to
    ``n_float`` (None if it is 0); the confidence changes are ``fixed - float`` over matched
    pairs (None if there is none).
    """

    map: Optional[float]
    per_class: Dict[int, ClassAP]
    counts_per_class: Dict[int, MatchCounts]
    n_images: int
    n_float: int
    n_fixed: int
    n_fixed_ranked: int
    matched: int
    missed: int
    extra: int
    kept_fraction: Optional[float]
    extra_fraction: Optional[float]
    mean_dconf: Optional[float]
    mean_abs_dconf: Optional[float]
    down_fraction: Optional[float]          # matched pairs whose confidence went down
    n_pairs_ranked: int                     # float detections found at >= min_conf
    mean_dconf_ranked: Optional[float]      # mean change over those (the bias)
    down_fraction_ranked: Optional[float]   # fraction of those that went down
    gt_conf: float
    min_conf: float
    iou: float

    @property
    def ap(self) -> Dict[int, float]:
        return {c: r.ap for c, r in self.per_class.items() if r.ap is not None}


def agreement(float_dets: Sequence[Iterable[Any]], fixed_dets: Sequence[Iterable[Any]], *,
              gt_conf: float = 0.25, min_conf: float = 0.005, iou: float = 0.5
              ) -> AgreementResult:
    """How well the fixed-point detections reproduce the float ones, image by image.

    * Ground truth: float detections with confidence >= ``gt_conf``.
    * Agreement mAP@``iou``: fixed-point detections with confidence >= ``min_conf`` ranked by
      confidence and matched as in :func:`evaluate_map`; AP per class (all-point), averaged
      over the classes present in the ground truth.
    * At ``gt_conf``: fixed-point detections with confidence >= ``gt_conf`` matched one to
      one (same class, IoU >= ``iou``, greedy by fixed-point confidence) to the ground truth:
      matched / missed (float without partner) / extra (fixed without partner), kept and
      extra fractions (over the number of float detections) and the mean and mean absolute
      confidence change ``fixed - float`` over matched pairs.

    Detections with ``min_conf <= confidence < gt_conf`` thus count for the AP but not for
    kept/extra.  Requires ``0 <= min_conf <= gt_conf <= 1``.
    """
    thr = _check_iou(iou)
    gt_conf = _check_conf(gt_conf, "gt_conf")
    min_conf = _check_conf(min_conf, "min_conf")
    if min_conf > gt_conf:
        raise ValueError(f"min_conf ({min_conf}) must not exceed gt_conf ({gt_conf})")
    if len(float_dets) != len(fixed_dets):
        raise ValueError(f"{len(float_dets)} images of float detections but {len(fixed_dets)} "
                         f"of fixed-point detections; expected one list per image")
    gt = [[d for d in dets if float(d.confidence) >= gt_conf] for dets in float_dets]
    ranked = [[d for d in dets if float(d.confidence) >= min_conf] for dets in fixed_dets]
    hi = [[d for d in dets if float(d.confidence) >= gt_conf] for dets in fixed_dets]

    matches, _, gg = _match_all(ranked, gt, thr)
    res_map = _map_from_matches(matches, gg, len(gt), thr)

    hi_matches, pg_hi, _ = _match_all(hi, gt, thr)
    n_float = sum(len(x) for x in gt)
    n_fixed = sum(len(x) for x in hi)
    counts: Dict[int, List[int]] = {}
    for (_, c), items in gg.items():
        counts.setdefault(c, [0, 0, 0])[1] += len(items)
    for (_, c), items in pg_hi.items():
        counts.setdefault(c, [0, 0, 0])[2] += len(items)
    deltas: List[float] = []
    for p, status, g in hi_matches:
        if status == _TP:
            assert g is not None
            deltas.append(p.conf - float(g.src.confidence))
            cnt = counts[p.cls]
            cnt[0] += 1
            cnt[1] -= 1
            cnt[2] -= 1
    matched = len(deltas)
    per_counts = {c: MatchCounts(*counts[c]) for c in sorted(counts)}
    # The bias over every float detection the fixed point found at all (>= min_conf): the
    # AP matching's true positives.  Unlike mean_dconf it includes the detections whose
    # confidence fell below gt_conf, so it is not flattered by the ones that were lost.
    ranked_deltas = [p.conf - float(g.src.confidence) for p, status, g in matches if status == _TP]
    nr = len(ranked_deltas)
    return AgreementResult(
        map=res_map.map, per_class=res_map.per_class, counts_per_class=per_counts,
        n_images=len(gt), n_float=n_float, n_fixed=n_fixed,
        n_fixed_ranked=sum(len(x) for x in ranked),
        matched=matched, missed=n_float - matched, extra=n_fixed - matched,
        kept_fraction=(matched / n_float) if n_float else None,
        extra_fraction=((n_fixed - matched) / n_float) if n_float else None,
        mean_dconf=(math.fsum(deltas) / matched) if matched else None,
        mean_abs_dconf=(math.fsum(abs(d) for d in deltas) / matched) if matched else None,
        down_fraction=(sum(1 for d in deltas if d < 0) / matched) if matched else None,
        n_pairs_ranked=nr,
        mean_dconf_ranked=(math.fsum(ranked_deltas) / nr) if nr else None,
        down_fraction_ranked=(sum(1 for d in ranked_deltas if d < 0) / nr) if nr else None,
        gt_conf=gt_conf, min_conf=min_conf, iou=thr)


# ============================================================================ reports


def _fmt(v: Optional[float], spec: str, scale: float = 1.0) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return format(v * scale, spec)


def format_agreement_table(results: Mapping[str, AgreementResult]) -> str:
    """Plain-text table, one row per configuration label (e.g. "w8a8", "w4a8").

    Columns: agreement mAP@IoU, kept %, extra %, matched, missed, extra, mean |dconf| and
    mean dconf (fixed - float) of the pairs matched at gt_conf; *bias* and *lower %*: the
    mean confidence change and the percentage of confidences that went down over every
    float detection the fixed point found at ``min_conf`` or above (an unbiased quantizer
    gives about 0 and 50 %).  Undefined values print as "n/a".  The footer gives the
    number of images and of float detections (confidence >= gt_conf), and the thresholds.
    """
    if not results:
        return "(no agreement results)\n"
    first = next(iter(results.values()))
    map_head = f"mAP@{first.iou:g}"
    head = ["config", map_head, "kept %", "extra %", "matched", "missed", "extra",
            "mean |dconf|", "mean dconf", "bias", "lower %"]
    rows = [head]
    for label, r in results.items():
        rows.append([str(label), _fmt(r.map, ".4f"), _fmt(r.kept_fraction, ".1f", 100.0),
                     _fmt(r.extra_fraction, ".1f", 100.0), str(r.matched), str(r.missed),
                     str(r.extra), _fmt(r.mean_abs_dconf, ".4f"), _fmt(r.mean_dconf, "+.4f"),
                     _fmt(r.mean_dconf_ranked, "+.4f"), _fmt(r.down_fraction_ranked, ".0f", 100.0)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]

    def line(row: List[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    sep = "  ".join("-" * w for w in widths)
    lines = [line(rows[0]), sep] + [line(r) for r in rows[1:]] + [sep]
    bases = {(r.n_images, r.n_float, r.gt_conf, r.min_conf, r.iou) for r in results.values()}
    if len(bases) == 1:
        lines.append(f"images: {first.n_images}, float detections (conf >= {first.gt_conf:g}): "
                     f"{first.n_float}; AP ranking from conf >= {first.min_conf:g}, "
                     f"IoU >= {first.iou:g}")
    else:
        for label, r in results.items():
            lines.append(f"{label}: images: {r.n_images}, float detections "
                         f"(conf >= {r.gt_conf:g}): {r.n_float}; AP ranking from conf >= "
                         f"{r.min_conf:g}, IoU >= {r.iou:g}")
    return "\n".join(lines) + "\n"


def _json_float(v: Any) -> Optional[float]:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _class_ap_json(r: ClassAP) -> Dict[str, Any]:
    return {"class_id": r.class_id, "label": r.label, "ap": _json_float(r.ap), "n_gt": r.n_gt,
            "n_pred": r.n_pred, "n_tp": r.n_tp, "n_fp": r.n_fp, "n_ignored": r.n_ignored}


def to_json_dict(result: Union[MapResult, AgreementResult, Mapping[str, Any]]) -> Dict[str, Any]:
    """A JSON-serialisable dict of a :class:`MapResult`, an :class:`AgreementResult` or a
    ``{label: result}`` mapping of them.  Undefined or non-finite floats become ``None``
    (JSON ``null``); per-class entries are a list sorted by class id.  Output passes
    ``json.dumps(..., allow_nan=False)``."""
    if isinstance(result, MapResult):
        return {"kind": "map", "map": _json_float(result.map), "iou": result.iou,
                "n_images": result.n_images,
                "per_class": [_class_ap_json(r) for _, r in sorted(result.per_class.items())]}
    if isinstance(result, AgreementResult):
        r = result
        per_class = []
        for c in sorted(set(r.per_class) | set(r.counts_per_class)):
            entry: Dict[str, Any] = (_class_ap_json(r.per_class[c]) if c in r.per_class
                                     else {"class_id": c, "label": "", "ap": None})
            cnt = r.counts_per_class.get(c, MatchCounts())
            entry.update(matched=cnt.matched, missed=cnt.missed, extra=cnt.extra)
            per_class.append(entry)
        return {"kind": "agreement", "map": _json_float(r.map), "iou": r.iou,
                "gt_conf": r.gt_conf, "min_conf": r.min_conf, "n_images": r.n_images,
                "n_float": r.n_float, "n_fixed": r.n_fixed, "n_fixed_ranked": r.n_fixed_ranked,
                "matched": r.matched, "missed": r.missed, "extra": r.extra,
                "kept_fraction": _json_float(r.kept_fraction),
                "extra_fraction": _json_float(r.extra_fraction),
                "mean_dconf": _json_float(r.mean_dconf),
                "mean_abs_dconf": _json_float(r.mean_abs_dconf),
                "down_fraction": _json_float(r.down_fraction),
                "n_pairs_ranked": r.n_pairs_ranked,
                "mean_dconf_ranked": _json_float(r.mean_dconf_ranked),
                "down_fraction_ranked": _json_float(r.down_fraction_ranked),
                "per_class": per_class}
    if isinstance(result, Mapping):
        return {str(k): to_json_dict(v) for k, v in result.items()}
    raise TypeError(f"to_json_dict: expected MapResult, AgreementResult or a mapping of them, "
                    f"got {type(result).__name__}")

