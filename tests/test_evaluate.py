"""Tests of mdfi.eval.evaluate: IoU, AP, mAP matching, fixed/float agreement, label loaders, reports.

Expected values are derived by hand in the comments (precision p_k = TP_k / k and recall
r_k = TP_k / npos after the k-th ranked prediction; AP = sum over recall steps of
(r_k - r_{k-1}) * max(p_j, j >= k)), not by running the code.
"""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest

from mdfi.detection import Detection
from mdfi.errors import MDFIError
from mdfi.eval.evaluate import (GroundTruth, LabelError, LabelWarning, Progress, agreement,
                                align_labels, average_precision, class_index_for, evaluate_map,
                                format_agreement_table, iou_xyxy, load_coco_json, load_voc_xml,
                                to_json_dict)

A = (0.0, 0.0, 10.0, 10.0)
B = (20.0, 20.0, 40.0, 40.0)
C = (50.0, 0.0, 60.0, 30.0)


def det(cls, conf, box, label=None):
    return Detection(cls, label or f"c{cls}", conf, tuple(float(v) for v in box))


def gt(cls, box, difficult=False, crowd=False):
    return GroundTruth(cls, f"c{cls}", tuple(float(v) for v in box), difficult, crowd)


# ----------------------------------------------------------------------------- geometry


def test_iou_xyxy_values_and_shapes():
    assert iou_xyxy(A, A) == 1.0
    assert iou_xyxy(A, B) == 0.0
    # (0,0,10,10) vs (5,0,15,10): inter 5*10 = 50, union 100 + 100 - 50 = 150 -> 1/3
    assert iou_xyxy(A, (5, 0, 15, 10)) == pytest.approx(1 / 3)
    # touching edges: zero-width intersection
    assert iou_xyxy(A, (10, 0, 20, 10)) == 0.0
    # plain geometry, no +1: (0,0,1,1) vs (0,0,2,1): inter 1, union 2 -> 0.5 exactly
    assert iou_xyxy((0, 0, 1, 1), (0, 0, 2, 1)) == 0.5
    # degenerate boxes: empty union -> 0, not NaN
    assert iou_xyxy((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0
    m = iou_xyxy([A, B], [A, B, C])
    assert m.shape == (2, 3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 0]])
    assert iou_xyxy(A, [A, B]).shape == (2,)
    assert iou_xyxy([A, B, C], B).shape == (3,)
    with pytest.raises(ValueError):
        iou_xyxy((0, 0, 1), A)


def test_average_precision_all_point():
    assert average_precision([], []) == 0.0
    # perfect ranking of 2 positives: r = 1/2, 1 with p = 1, 1 -> AP = 1
    assert average_precision([0.5, 1.0], [1.0, 1.0]) == 1.0
    # ranks FP, TP (npos 1): r = 0, 1; p = 0, 1/2 -> AP = 1 * 1/2
    assert average_precision([0.0, 1.0], [0.0, 0.5]) == 0.5
    # ranks TP, FP, TP (npos 3): r = 1/3, 1/3, 2/3; p = 1, 1/2, 2/3
    # envelope at r=1/3 is max(1, 1/2, 2/3) = 1, at r=2/3: 2/3; recall 2/3..1 has p = 0
    # AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert average_precision([1 / 3, 1 / 3, 2 / 3], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 9)
    # the envelope raises an earlier dip: ranks TP, FP, TP, TP (npos 3):
    # r = 1/3, 1/3, 2/3, 1; p = 1, 1/2, 2/3, 3/4 -> envelope 1, 3/4, 3/4
    # AP = 1/3 + 1/3 * 3/4 + 1/3 * 3/4 = 1/3 + 1/2 = 5/6
    assert average_precision([1 / 3, 1 / 3, 2 / 3, 1.0],
                             [1.0, 0.5, 2 / 3, 0.75]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        average_precision([0.5], [1.0, 1.0])


# ----------------------------------------------------------------------------- agreement


def test_perfect_agreement():
    f = [[det(0, 0.9, A), det(1, 0.8, B)], [det(0, 0.7, C), det(2, 0.3, A)]]
    r = agreement(f, f)
    # every float detection is found by itself at IoU 1, ranked TP only -> AP 1 per class
    assert r.map == 1.0
    assert r.ap == {0: 1.0, 1: 1.0, 2: 1.0}
    assert (r.n_images, r.n_float, r.n_fixed) == (2, 4, 4)
    assert (r.matched, r.missed, r.extra) == (4, 0, 0)
    assert r.kept_fraction == 1.0 and r.extra_fraction == 0.0
    assert r.mean_dconf == 0.0 and r.mean_abs_dconf == 0.0


def test_one_missed_of_two_gives_ap_half():
    f = [[det(0, 0.9, A), det(0, 0.8, B)]]
    x = [[det(0, 0.85, A)]]
    r = agreement(f, x)
    # one TP, npos 2: r = 1/2 at p = 1, nothing beyond -> AP = 1/2 * 1 = 0.5
    assert r.ap == {0: 0.5}
    assert r.map == 0.5
    assert (r.matched, r.missed, r.extra) == (1, 1, 0)
    assert r.kept_fraction == 0.5 and r.extra_fraction == 0.0
    # one pair: 0.85 - 0.9 = -0.05
    assert r.mean_dconf == pytest.approx(-0.05)
    assert r.mean_abs_dconf == pytest.approx(0.05)


def test_false_positive_ranked_last_or_first():
    f = [[det(0, 0.9, A), det(0, 0.8, B)]]
    # FP (box C) ranked after both TPs: TP, TP, FP -> p = 1, 1, 2/3; r = 1/2, 1, 1
    # envelope at r = 1/2 and 1 is 1 -> AP = 1 (the FP at recall 1 does not lower it)
    last = [[det(0, 0.9, A), det(0, 0.8, B), det(0, 0.1, C)]]
    assert agreement(f, last).map == 1.0
    # FP ranked first: FP, TP, TP -> p = 0, 1/2, 2/3; r = 0, 1/2, 1
    # envelope at r = 1/2: max(1/2, 2/3) = 2/3; at r = 1: 2/3 -> AP = 1/2*2/3 + 1/2*2/3 = 2/3
    first = [[det(0, 0.95, C), det(0, 0.9, A), det(0, 0.8, B)]]
    r = agreement(f, first)
    assert r.map == pytest.approx(2 / 3)
    assert (r.matched, r.missed, r.extra) == (2, 0, 1)
    assert r.extra_fraction == 0.5
    # single positive, FP first: p = 0, 1/2; r = 0, 1 -> envelope 1/2 at recall 1 -> AP = 1/2
    one = agreement([[det(0, 0.9, A)]], [[det(0, 0.95, C), det(0, 0.9, A)]])
    assert one.map == 0.5


def test_class_confusion_is_missed_plus_extra():
    f = [[det(0, 0.9, A)]]
    x = [[det(1, 0.9, A)]]
    r = agreement(f, x)
    # class 0 has its only GT unmatched and no prediction -> AP 0; class 1 has no GT, so
    # it is not averaged; the mAP over the GT classes {0} is 0
    assert r.map == 0.0
    assert r.per_class[0].ap == 0.0 and r.per_class[1].ap is None
    assert r.per_class[1].n_fp == 1 and r.per_class[1].n_gt == 0
    assert (r.matched, r.missed, r.extra) == (0, 1, 1)
    assert r.kept_fraction == 0.0 and r.extra_fraction == 1.0
    assert r.mean_dconf is None and r.mean_abs_dconf is None
    assert r.counts_per_class[0].missed == 1 and r.counts_per_class[1].extra == 1


@pytest.mark.parametrize("y2, hit", [(5.0, True), (4.99, False), (5.01, True)])
def test_iou_threshold_boundary(y2, hit):
    # GT A = (0,0,10,10), pred (0,0,10,y2) inside it: IoU = 10*y2 / 100
    # y2 = 5 -> 0.5 exactly (>= 0.5 matches), 4.99 -> 0.499 (no), 5.01 -> 0.501 (yes)
    r = agreement([[det(0, 0.9, A)]], [[det(0, 0.9, (0, 0, 10, y2))]])
    if hit:
        assert r.map == 1.0 and (r.matched, r.missed, r.extra) == (1, 0, 0)
    else:
        assert r.map == 0.0 and (r.matched, r.missed, r.extra) == (0, 1, 1)


def test_duplicate_prediction_is_false_positive():
    f = [[det(0, 0.9, A)]]
    x = [[det(0, 0.9, A), det(0, 0.8, (0, 0, 10, 9))]]
    r = agreement(f, x)
    # TP then duplicate FP: p = 1, 1/2; r = 1, 1 -> AP = 1 (envelope 1 at recall 1)
    assert r.map == 1.0
    assert r.per_class[0].n_tp == 1 and r.per_class[0].n_fp == 1
    assert (r.matched, r.missed, r.extra) == (1, 0, 1)
    assert r.extra_fraction == 1.0
    # the higher-confidence one took the match: dconf = 0.9 - 0.9 = 0
    assert r.mean_dconf == 0.0


def test_detections_between_min_conf_and_gt_conf():
    f = [[det(0, 0.9, A), det(0, 0.8, B),
          det(0, 0.2, C)]]                       # below gt_conf: not ground truth
    x = [[det(0, 0.7, A),                        # TP, counted at gt_conf
          det(0, 0.1, B),                        # TP for AP only (0.005 <= 0.1 < 0.25)
          det(0, 0.3, C),                        # no GT (float C is 0.2): FP, an extra
          det(0, 0.001, (100, 100, 110, 110))]]  # below min_conf: ignored entirely
    r = agreement(f, x)
    # ranked (>= 0.005): 0.7 TP, 0.3 FP, 0.1 TP; npos 2
    # p = 1, 1/2, 2/3; r = 1/2, 1/2, 1 -> envelope at 1/2: 1, at 1: 2/3
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert r.map == pytest.approx(5 / 6)
    assert r.n_fixed_ranked == 3 and r.n_fixed == 2 and r.n_float == 2
    # at gt_conf: fixed {0.7 A, 0.3 C} vs float {A, B}: A matched, B missed, C extra
    assert (r.matched, r.missed, r.extra) == (1, 1, 1)
    assert r.kept_fraction == 0.5 and r.extra_fraction == 0.5
    assert r.mean_dconf == pytest.approx(0.7 - 0.9)


def test_multiple_images():
    f = [[det(0, 0.9, A)], [det(0, 0.8, B)], []]
    x = [[det(0, 0.6, A)],
         [det(0, 0.9, A),                        # box of image 0's GT, but in image 1: FP
          det(0, 0.5, B)],
         [det(1, 0.4, C)]]                       # image without float detections: extra
    r = agreement(f, x)
    # class 0 ranked over images: 0.9 FP (img 1), 0.6 TP (img 0), 0.5 TP (img 1); npos 2
    # p = 0, 1/2, 2/3; r = 0, 1/2, 1 -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3; class 1 has no GT
    assert r.map == pytest.approx(2 / 3)
    assert set(r.ap) == {0}
    assert (r.n_images, r.n_float, r.n_fixed) == (3, 2, 4)
    assert (r.matched, r.missed, r.extra) == (2, 0, 2)
    # pairs: 0.6 - 0.9 = -0.3, 0.5 - 0.8 = -0.3 -> mean -0.3, mean abs 0.3
    assert r.mean_dconf == pytest.approx(-0.3)
    assert r.mean_abs_dconf == pytest.approx(0.3)


def test_mean_confidence_change_signs():
    f = [[det(0, 0.8, A), det(1, 0.6, B)]]
    x = [[det(0, 0.7, A), det(1, 0.9, B)]]
    r = agreement(f, x)
    # dconf = 0.7 - 0.8 = -0.1 and 0.9 - 0.6 = +0.3 -> mean 0.1, mean |.| 0.2
    assert r.mean_dconf == pytest.approx(0.1)
    assert r.mean_abs_dconf == pytest.approx(0.2)


def test_empty_cases():
    for f, x in (([], []), ([[]], [[]]), ([[], []], [[], []])):
        r = agreement(f, x)
        assert r.map is None and r.per_class == {}
        assert r.kept_fraction is None and r.extra_fraction is None
        assert r.mean_dconf is None and (r.matched, r.missed, r.extra) == (0, 0, 0)
        assert r.n_images == len(f)
    # no float detections at all but fixed ones: mAP undefined, extras counted
    r = agreement([[det(0, 0.1, A)]], [[det(0, 0.9, A)]])   # float 0.1 < gt_conf
    assert r.map is None and r.n_float == 0 and r.extra == 1 and r.extra_fraction is None
    assert r.per_class[0].ap is None
    # float detections, nothing from fixed point: AP 0, all missed
    r = agreement([[det(0, 0.9, A)]], [[]])
    assert r.map == 0.0 and r.missed == 1 and r.kept_fraction == 0.0
    assert r.mean_dconf is None
    # reports survive undefined values
    table = format_agreement_table({"empty": agreement([], [])})
    assert "empty" in table and "n/a" in table
    assert json.loads(json.dumps(to_json_dict(agreement([], [])), allow_nan=False))["map"] is None
    assert evaluate_map([], []).map is None


def test_argument_checks():
    with pytest.raises(ValueError, match="one list per image"):
        agreement([[]], [])
    with pytest.raises(ValueError, match="one list per image"):
        evaluate_map([[]], [[], []])
    with pytest.raises(ValueError, match="min_conf"):
        agreement([], [], gt_conf=0.1, min_conf=0.2)
    with pytest.raises(ValueError):
        evaluate_map([], [], iou=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_map([[det(0, float("nan"), A)]], [[]])


def test_agreement_ap_equals_evaluate_map_on_filtered_lists():
    f = [[det(0, 0.9, A), det(1, 0.5, B), det(0, 0.1, C)], [det(2, 0.4, C)]]
    x = [[det(0, 0.8, A), det(0, 0.01, C), det(1, 0.3, (20, 20, 35, 40))],
         [det(2, 0.2, C), det(2, 0.3, A)]]
    r = agreement(f, x, gt_conf=0.25, min_conf=0.005)
    m = evaluate_map([[d for d in i if d.confidence >= 0.005] for i in x],
                     [[d for d in i if d.confidence >= 0.25] for i in f])
    assert r.map == m.map and r.per_class == m.per_class


# ----------------------------------------------------------------------------- evaluate_map


def test_map_difficult_and_crowd_are_ignored():
    g = [[gt(0, A), gt(0, B, difficult=True), gt(1, (0, 0, 100, 100), difficult=True, crowd=True)]]
    p = [[det(0, 0.9, B),                   # on the difficult box: neither TP nor FP
          det(0, 0.8, A),                   # TP
          det(1, 0.7, (10, 10, 20, 20))]]   # IoU 0.01 with the crowd box, but 100 % inside
    m = evaluate_map(p, g)
    # class 0: npos 1 (difficult not counted); ranked without the ignored one: TP -> AP 1
    # (if the difficult hit counted as FP it would be FP, TP -> AP 1/2)
    assert m.per_class[0].ap == 1.0
    assert m.per_class[0].n_gt == 1 and m.per_class[0].n_ignored == 1
    assert m.per_class[0].n_pred == 2 and m.per_class[0].n_fp == 0
    # class 1 has only a crowd box: no positives -> not averaged; its prediction is ignored
    assert m.per_class[1].ap is None and m.per_class[1].n_ignored == 1
    assert m.map == 1.0
    assert m.ap == {0: 1.0} and m.n_gt == {0: 1, 1: 0}


def test_map_prefers_unmatched_box():
    # GT A and A' = (0,1,10,11): IoU(A, A') = 90 / 110 = 0.82
    g = [[gt(0, A), gt(0, (0, 1, 10, 11))]]
    # both predictions are exactly A; the second finds A taken and matches A' (IoU 0.82)
    m = evaluate_map([[det(0, 0.9, A), det(0, 0.8, A)]], g)
    assert m.per_class[0].n_tp == 2 and m.map == 1.0


def test_map_ties_keep_input_order():
    g = [[gt(0, A)]]
    # equal confidence: input order decides the ranking
    # FP first: p = 0, 1/2; r = 0, 1 -> AP 1/2.  TP first: p = 1, 1/2; r = 1, 1 -> AP 1
    assert evaluate_map([[det(0, 0.5, C), det(0, 0.5, A)]], g).map == 0.5
    assert evaluate_map([[det(0, 0.5, A), det(0, 0.5, C)]], g).map == 1.0
    # across images: image order decides
    g2 = [[], [gt(0, A)]]
    assert evaluate_map([[det(0, 0.5, C)], [det(0, 0.5, A)]], g2).map == 0.5


def _py_overlap(p, g):
    iw = min(p[2], g[2]) - max(p[0], g[0])
    ih = min(p[3], g[3]) - max(p[1], g[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    ap = max(p[2] - p[0], 0.0) * max(p[3] - p[1], 0.0)
    ag = max(g[2] - g[0], 0.0) * max(g[3] - g[1], 0.0)
    union = ap + ag - inter
    iou = inter / union if union > 0 else 0.0
    ioa = inter / ap if ap > 0 else 0.0
    return iou, ioa


def _brute_force_map(preds, gts, thr):
    """Independent reference: explicit loops, per class, over the globally ranked list."""
    classes = sorted({d.class_id for img in preds for d in img}
                     | {g.class_id for img in gts for g in img})
    out = {}
    for c in classes:
        ranked = [(d.confidence, i, d) for i, img in enumerate(preds) for d in img
                  if d.class_id == c]
        ranked.sort(key=lambda t: -t[0])                  # stable
        npos = sum(1 for img in gts for g in img if g.class_id == c and not g.difficult)
        used = set()
        flags = []
        for _, i, d in ranked:
            best, best_j = -1.0, None
            for j, g in enumerate(gts[i]):
                if g.class_id != c or g.difficult or (i, j) in used:
                    continue
                o = _py_overlap(d.box, g.box)[0]
                if o >= thr and o > best:
                    best, best_j = o, j
            if best_j is not None:
                used.add((i, best_j))
                flags.append(1)
                continue
            ignored = False
            for g in gts[i]:
                if g.class_id == c and g.difficult:
                    iou, ioa = _py_overlap(d.box, g.box)
                    if (ioa if g.crowd else iou) >= thr:
                        ignored = True
            if not ignored:
                flags.append(0)
        ap = None
        if npos:
            prec, rec, tp = [], [], 0
            for k, f in enumerate(flags, start=1):
                tp += f
                prec.append(tp / k)
                rec.append(tp / npos)
            terms, prev = [], 0.0
            for k in range(len(flags)):
                if rec[k] != prev:
                    terms.append((rec[k] - prev) * max(prec[k:]))
                    prev = rec[k]
            ap = math.fsum(terms)
        out[c] = (ap, npos, len(flags), sum(flags))
    aps = [v[0] for v in out.values() if v[0] is not None]
    return out, (math.fsum(aps) / len(aps) if aps else None)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thr", [0.5, 0.3])
def test_evaluate_map_matches_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    n_cls = 4
    gts, preds = [], []
    for _ in range(int(rng.integers(1, 8))):
        g_img, p_img = [], []
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 80, 2).round(1)
            w, h = rng.uniform(4, 40, 2).round(1)
            c = int(rng.integers(n_cls))
            crowd = bool(rng.random() < 0.08)
            g_img.append(gt(c, (x, y, x + w, y + h), difficult=crowd or rng.random() < 0.12,
                            crowd=crowd))
            for _ in range(int(rng.integers(0, 3))):          # 0-2 noisy copies
                jx, jy, jw, jh = (rng.uniform(-0.3, 0.3, 4) * (w, h, w, h)).round(1)
                pc = c if rng.random() < 0.85 else int(rng.integers(n_cls))
                p_img.append(det(pc, round(float(rng.uniform(0, 1)), 1),   # rounding: ties
                                 (x + jx, y + jy, x + w + jw, y + h + jh)))
        for _ in range(int(rng.integers(0, 4))):              # random false positives
            x, y = rng.uniform(0, 80, 2).round(1)
            w, h = rng.uniform(4, 40, 2).round(1)
            p_img.append(det(int(rng.integers(n_cls)), round(float(rng.uniform(0, 1)), 2),
                             (x, y, x + w, y + h)))
        rng.shuffle(p_img)
        gts.append(g_img)
        preds.append(p_img)
    per_class, expected_map = _brute_force_map(preds, gts, thr)
    m = evaluate_map(preds, gts, iou=thr)
    assert sorted(m.per_class) == sorted(per_class)
    for c, (ap, npos, n_ranked, n_tp) in per_class.items():
        r = m.per_class[c]
        assert (r.n_gt, r.n_tp + r.n_fp, r.n_tp) == (npos, n_ranked, n_tp)
        assert r.ap == ap                                     # exact equality
    assert m.map == expected_map


# ----------------------------------------------------------------------------- COCO loader

NAMES = ["person", "bicycle", "car", "motorbike", "aeroplane", "traffic light",
         "pottedplant", "tvmonitor", "sofa", "diningtable"]


def _coco(tmp_path, data, name="instances.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return p


def _coco_data():
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
                   {"id": 2, "file_name": "b.jpg", "width": 640, "height": 480},
                   {"id": 3, "file_name": "empty.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "person"}, {"id": 4, "name": "motorcycle"},
                       {"id": 5, "name": "airplane"}, {"id": 10, "name": "traffic light"},
                       {"id": 64, "name": "potted plant"}, {"id": 72, "name": "tv"},
                       {"id": 63, "name": "couch"}, {"id": 67, "name": "dining table"},
                       {"id": 99, "name": "unicorn"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5], "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 72, "bbox": [0, 0, 100, 100], "iscrowd": 1},
            {"id": 14, "image_id": 2, "category_id": 99, "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": 15, "image_id": 2, "category_id": 5, "bbox": [1.5, 2.5, 3, 4]},
            {"id": 16, "image_id": 2, "category_id": 63, "bbox": [0, 0, 1, 1], "iscrowd": 0},
            {"id": 17, "image_id": 2, "category_id": 64, "bbox": [0, 0, 1, 1], "iscrowd": 0},
            {"id": 18, "image_id": 2, "category_id": 67, "bbox": [0, 0, 1, 1], "iscrowd": 0},
            {"id": 19, "image_id": 1, "category_id": 10, "bbox": [0, 0, 1, 1], "iscrowd": 0},
        ]}


def test_coco_loader_aliases_crowd_and_unknown(tmp_path):
    path = _coco(tmp_path, _coco_data())
    with pytest.warns(LabelWarning, match="unicorn"):
        labels = load_coco_json(path, NAMES)
    assert set(labels) == {"a.jpg", "b.jpg", "empty.jpg"}
    assert labels["empty.jpg"] == []
    a = labels["a.jpg"]
    # person bbox [10,20,30,40] -> (10, 20, 40, 60); motorcycle -> Darknet "motorbike" (3)
    assert a[0] == GroundTruth(0, "person", (10.0, 20.0, 40.0, 60.0), False, False)
    assert (a[1].class_id, a[1].label) == (3, "motorbike")
    assert a[2].class_id == 5                                  # "traffic light" as is
    b = {g.label: g for g in labels["b.jpg"]}
    assert b["tvmonitor"].class_id == 7 and b["tvmonitor"].difficult and b["tvmonitor"].crowd
    assert b["aeroplane"].box == (1.5, 2.5, 4.5, 6.5) and not b["aeroplane"].difficult
    assert (b["sofa"].class_id, b["pottedplant"].class_id, b["diningtable"].class_id) == (8, 6, 9)
    assert len(labels["b.jpg"]) == 5                           # unicorn skipped
    with pytest.raises(LabelError, match="unicorn"):
        load_coco_json(path, NAMES, on_unknown="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_coco_json(path, NAMES, on_unknown="skip")
    # crowd box ignored when evaluating: a detection inside it is neither TP nor FP
    m = evaluate_map([[det(7, 0.9, (10, 10, 20, 20))]], [labels["b.jpg"]])
    assert m.per_class[7].n_ignored == 1 and m.per_class[7].ap is None


def test_name_aliases_both_directions():
    idx = class_index_for(["person", "motorcycle", "TV", "Potted Plant"])
    # COCO-spelled list: Darknet/VOC spellings map onto it, case and spaces ignored
    assert idx["motorbike"] == 1 and idx["motorcycle"] == 1
    assert idx["tvmonitor"] == 2 and idx["pottedplant"] == 3
    assert "sofa" not in idx


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "bbox"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "bbox"),
    (lambda d: d["annotations"][0].update(image_id=42), "image_id 42"),
    (lambda d: d["annotations"][0].update(category_id=1234), "category_id 1234"),
    (lambda d: d.pop("images"), "images"),
    (lambda d: d["images"].append({"id": 7, "file_name": "a.jpg"}), "duplicate file_name"),
])
def test_coco_loader_malformed(tmp_path, mutate, match):
    data = _coco_data()
    mutate(data)
    path = _coco(tmp_path, data)
    with pytest.raises(LabelError, match=match) as info:
        load_coco_json(path, NAMES, on_unknown="skip")
    assert str(path) in str(info.value)


def test_coco_loader_invalid_json_and_missing_file(tmp_path):
    path = _coco(tmp_path, '{"images": [}')
    with pytest.raises(LabelError, match="invalid JSON at line 1") as info:
        load_coco_json(path, NAMES)
    assert str(path) in str(info.value)
    with pytest.raises(MDFIError, match="cannot read"):
        load_coco_json(tmp_path / "nope.json", NAMES)


# ----------------------------------------------------------------------------- VOC loader


def voc_xml(filename, objects, decl='<?xml version="1.0"?>'):
    objs = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, d, b in objects)
    return (f"{decl}<annotation><folder>VOC2007</folder><filename>{filename}</filename>"
            f"<size><width>353</width><height>500</height><depth>3</depth></size>"
            f"{objs}</annotation>")


def test_voc_loader_folder(tmp_path):
    (tmp_path / "000001.xml").write_text(voc_xml("000001.jpg", [
        ("aeroplane", 0, (48, 240, 195, 371)), ("motorbike", 1, (8, 12, 352, 498))]))
    (tmp_path / "000002.xml").write_text(voc_xml("000002.jpg", [
        ("person", 0, (1, 1, 11, 21)), ("cow", 0, (5, 5, 9, 9))]))
    (tmp_path / "readme.txt").write_text("not an annotation")
    with pytest.warns(LabelWarning, match="'cow'"):
        labels = load_voc_xml(tmp_path, NAMES)
    assert set(labels) == {"000001.jpg", "000002.jpg"}
    # 1-based VOC pixel indices -> minus 1 (Darknet voc_label.py)
    assert labels["000001.jpg"][0] == GroundTruth(4, "aeroplane", (47.0, 239.0, 194.0, 370.0))
    assert labels["000001.jpg"][1].class_id == 3 and labels["000001.jpg"][1].difficult
    assert labels["000002.jpg"] == [GroundTruth(0, "person", (0.0, 0.0, 10.0, 20.0))]
    # explicit file list, no shift, COCO-spelled class list: aliases the other way
    one = load_voc_xml([tmp_path / "000001.xml"], ["person", "airplane", "motorcycle"],
                       one_based=False)
    assert one["000001.jpg"][0] == GroundTruth(1, "airplane", (48.0, 240.0, 195.0, 371.0))
    assert one["000001.jpg"][1].class_id == 2
    with pytest.raises(LabelError, match="cow"):
        load_voc_xml(tmp_path / "000002.xml", NAMES, on_unknown="error")


def test_voc_loader_declared_latin1(tmp_path):
    p = tmp_path / "x.xml"
    p.write_bytes(voc_xml("b\u00fccher.jpg", [("car", 0, (1, 2, 3, 4))],
                          decl='<?xml version="1.0" encoding="ISO-8859-1"?>').encode("latin-1"))
    labels = load_voc_xml(p, NAMES)
    assert labels["b\u00fccher.jpg"][0].class_id == 2


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotation><filename>&lol3;</filename></annotation>"""


@pytest.mark.parametrize("content, match", [
    (voc_xml("a.jpg", [("car", 0, (1, 2, 3, 4))]).replace("<bndbox>", "<bb>")
     .replace("</bndbox>", "</bb>"), "missing <bndbox>"),
    (voc_xml("a.jpg", [("car", 0, ("abc", 2, 3, 4))]), "<xmin> must be a number"),
    (voc_xml("a.jpg", [("car", 0, (5, 2, 3, 4))]), "xmax < xmin"),
    (voc_xml("a.jpg", [("car", 2, (1, 2, 3, 4))]), "<difficult> must be 0 or 1"),
    (voc_xml("a.jpg", [("", 0, (1, 2, 3, 4))]), "<name>"),
    (voc_xml("", []), "<filename>"),
    ("<annotation><filename>a.jpg</filename>", "malformed XML"),
    ("<root><filename>a.jpg</filename></root>", "expected <annotation>"),
    (BILLION_LAUGHS, "DOCTYPE"),
    ('<?xml version="1.0"?><!ENTITY x "y"><annotation/>', "ENTITY"),
    ('<!doctype annotation><annotation/>', "DOCTYPE"),
])
def test_voc_loader_malformed(tmp_path, content, match):
    p = tmp_path / "bad.xml"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(LabelError, match=match) as info:
        load_voc_xml(p, NAMES)
    assert str(p) in str(info.value)


def test_voc_loader_rejects_dtd_in_other_encodings(tmp_path):
    # A UTF-16 file has no ASCII "<!DOCTYPE" bytes; the check runs on the decoded text.
    p = tmp_path / "u16.xml"
    p.write_bytes(BILLION_LAUGHS.replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
                  .encode("utf-16"))
    with pytest.raises(LabelError, match="DOCTYPE"):
        load_voc_xml(p, NAMES)
    # UTF-16 without BOM (NUL bytes in UTF-8 terms) is refused too
    q = tmp_path / "u16le.xml"
    q.write_bytes(BILLION_LAUGHS.encode("utf-16-le"))
    with pytest.raises(LabelError):
        load_voc_xml(q, NAMES)


def test_voc_loader_size_cap_duplicates_and_empty_folder(tmp_path, monkeypatch):
    big = tmp_path / "big.xml"
    big.write_text(voc_xml("a.jpg", []) + " " * (3 << 19))          # 1.5 MB
    monkeypatch.setenv("MDFI_MAX_VOC_XML_MB", "1")
    with pytest.raises(MDFIError, match="big.xml"):
        load_voc_xml(big, NAMES)
    monkeypatch.delenv("MDFI_MAX_VOC_XML_MB")
    assert load_voc_xml(big, NAMES) == {"a.jpg": []}
    (tmp_path / "dup.xml").write_text(voc_xml("a.jpg", []))
    with pytest.raises(LabelError, match="also described by"):
        load_voc_xml([big, tmp_path / "dup.xml"], NAMES)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LabelError, match="no .xml"):
        load_voc_xml(empty, NAMES)


def test_align_labels(tmp_path):
    labels = {"a.jpg": [gt(0, A)], "b.jpg": [], "c.jpg": [gt(1, B)]}
    out = align_labels(["/data/a.jpg", "b.jpg", "x/c.png"], labels)
    assert out == [[gt(0, A)], [], [gt(1, B)]]
    with pytest.raises(LabelError, match="no ground truth for 1 image"):
        align_labels(["a.jpg", "zzz.jpg"], labels)


# ----------------------------------------------------------------------------- reports


def test_format_agreement_table_and_json():
    f = [[det(0, 0.9, A), det(0, 0.8, B)], [det(1, 0.7, C)]]
    perfect = agreement(f, f)
    half = agreement(f, [[det(0, 0.85, A), det(0, 0.6, C)], [det(1, 0.5, C)]])
    # half: class 0 ranked TP, FP, npos 2 -> AP 1/2; class 1 TP -> AP 1; mAP 0.75
    # at 0.25: matched A and C(cls 1) = 2, missed B = 1, extra C(cls 0) = 1; kept 2/3
    assert half.map == pytest.approx(0.75)
    table = format_agreement_table({"w8a8": perfect, "w4a8": half})
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["config", "mAP@0.5", "kept"]
    row8 = next(ln for ln in lines if ln.startswith("w8a8")).split()
    row4 = next(ln for ln in lines if ln.startswith("w4a8")).split()
    assert row8[1:7] == ["1.0000", "100.0", "0.0", "3", "0", "0"]
    assert row4[1:7] == ["0.7500", "66.7", "33.3", "2", "1", "1"]
    # |dconf| = (0.05 + 0.2) / 2 = 0.125
    assert row4[7] == "0.1250" and row4[8] == "-0.1250"
    assert "images: 2" in table and "float detections (conf >= 0.25): 3" in table
    d = to_json_dict({"w4a8": half})
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)["w4a8"]
    assert back["kind"] == "agreement" and back["map"] == pytest.approx(0.75)
    assert (back["matched"], back["missed"], back["extra"]) == (2, 1, 1)
    assert [c["class_id"] for c in back["per_class"]] == [0, 1]
    assert back["per_class"][0]["ap"] == 0.5 and back["per_class"][0]["missed"] == 1
    mj = to_json_dict(evaluate_map([[det(0, 0.9, C)]], [[gt(1, A)]]))
    assert mj["kind"] == "map" and mj["map"] == 0.0
    assert {c["class_id"]: c["ap"] for c in mj["per_class"]} == {0: None, 1: 0.0}
    with pytest.raises(TypeError):
        to_json_dict(42)


# ----------------------------------------------------------------------------- progress


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines_on_a_file():
    s, clock = io.StringIO(), FakeClock()
    p = Progress(3, "float", s, clock=clock)
    for name in ("a.jpg", "b.jpg", "c\nd.jpg"):
        clock.t += 1.0
        p.step(name)
    p.done()
    p.done()                                     # idempotent
    lines = s.getvalue().splitlines()
    assert lines[:3] == ["float: 1/3 a.jpg", "float: 2/3 b.jpg", "float: 3/3 c d.jpg"]
    assert lines[3].startswith("float: done, 3 item(s)") and len(lines) == 4


def test_progress_throttled():
    s, clock = io.StringIO(), FakeClock()
    p = Progress(100, "eval", s, clock=clock)    # clock never advances: everything throttled
    for i in range(100):
        p.step(f"img{i}")
    p.done()
    # first step, last step (always) and the done line
    assert s.getvalue().splitlines()[:2] == ["eval: 1/100 img0", "eval: 100/100 img99"]
    assert len(s.getvalue().splitlines()) == 3
    s2 = io.StringIO()
    with Progress(None, "x", s2, clock=FakeClock()) as q:   # unknown total
        q.step("a")
        q.step("b")
    # "b" was throttled and is written by done()
    assert s2.getvalue().splitlines()[:2] == ["x: 1/? a", "x: 2/? b"]


def test_progress_tty_rewrites_one_line():
    s, clock = TTY(), FakeClock()
    p = Progress(2, "fixed", s, clock=clock)
    clock.t = 1.0
    p.step("long_name.jpg")
    clock.t = 2.0
    p.step("b.jpg")
    p.done()
    out = s.getvalue()
    assert out.startswith("\rfixed: 1/2 long_name.jpg\rfixed: 2/2 b.jpg ")
    assert out.count("\n") == 1 and out.endswith("\n")


def test_progress_default_stream_is_stderr(capsys):
    p = Progress(1, "job")
    p.step("only")
    p.done()
    err = capsys.readouterr().err
    assert "job: 1/1 only" in err
