"""The C post-processing (csrc/mdfi_post.c, mdfi.postprocess_c) against its Python
specification: ``QYolo.decode_int_ref`` and ``postprocess_ref`` must give identical
detections -- every float equal to the bit, the same order -- on random and edge-heavy
heads (ties in scores, duplicate and zero-area boxes, boxes at and beyond the borders,
NaN/inf boxes, NMS thresholds 0 and 1, one to 80 classes, over a thousand detections, both
lineages' box corrections and NMS kinds) and on a real model's heads."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest

from mdfi import postprocess as pp
from mdfi import postprocess_c
from mdfi.layers.yolo import QYolo

pytestmark = [pytest.mark.skipif(postprocess_c._ext() is None, reason="mdfi._ext._post not built / not exact here"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]   # the reference's NaN/inf boxes


def _bits(x: float) -> str:
    return float(x).hex()


def _key(dets):
    """Every field of every detection, floats by their bits (NaN, -0.0 included)."""
    return [(d.class_id, d.label, _bits(d.confidence), tuple(map(_bits, d.box)), _bits(d.objectness),
             tuple(map(_bits, d.rel_box))) for d in dets]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))


# --------------------------------------------------------------------------------------
# QYolo.decode_int

def _fake_qyolo(rng, n, classes, lh, lw, net=(416, 416)):
    anchors = rng.choice([1.0, 10.0, 23.5, 81.0, 344.0, 0.3], size=(n + 2, 2)).astype(np.float32)
    mask = sorted(rng.choice(n + 2, size=n, replace=False).tolist())
    layer = types.SimpleNamespace(n=n, classes=classes, entries=classes + 5, out_shape=(n * (classes + 5), lh, lw),
                                  anchors=anchors, mask=mask, net_w=net[0], net_h=net[1])
    return types.SimpleNamespace(layer=layer)


@pytest.mark.parametrize("seed", range(6))
def test_decode_int_equals_reference_on_random_heads(seed):
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(60):
        n, classes = int(rng.integers(1, 4)), int(rng.choice([1, 2, 3, 20, 80]))
        lh, lw = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        q = _fake_qyolo(rng, n, classes, lh, lw, net=(int(rng.choice([32, 416, 608, 1000])), int(rng.choice([32, 416]))))
        kind = rng.integers(0, 3)
        if kind == 0:      # codes of the tables: UQ1.15 probabilities, UQ15.16 exp, with ties
            out = rng.choice([0, 1, 8192, 16384, 16385, 32767, 32768], size=q.layer.out_shape).astype(np.int32)
        elif kind == 1:    # signed Q.15 x/y (scale_x_y), wide exp values
            out = rng.integers(-40000, 1 << 20, size=q.layer.out_shape, dtype=np.int32)
        else:              # anything an int32 holds
            out = rng.integers(-2**31, 2**31 - 1, size=q.layer.out_shape, dtype=np.int64).astype(np.int32)
        for thresh in (0.0, 0.25, float(rng.random()), 0.5, 1.0):
            want = QYolo.decode_int_ref(q, out, thresh)
            got = postprocess_c.decode_yolo_q(q, out, thresh)
            assert got is not None and _same(got, want), (seed, n, classes, lh, lw, kind, thresh)
            checked += len(want[0])
    assert checked > 1000


# --------------------------------------------------------------------------------------
# postprocess

def _random_raws(rng, k):
    """One to three heads of candidates, edge-heavy."""
    raws = []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.choice([0, 1, 2, 5, 30, 200]))
        style = rng.integers(0, 4)
        if style == 0:     # a coarse grid of positions and sizes: exact duplicates, shared edges
            boxes = rng.choice([0.0, 0.1, 0.25, 0.5, 0.75, 1.0], size=(n, 4))
        elif style == 1:   # piled up near one spot
            boxes = np.array([0.5, 0.5, 0.2, 0.2]) + rng.normal(0, 0.01, size=(n, 4))
        elif style == 2:   # anywhere, at and beyond the borders, zero and negative sizes
            boxes = rng.uniform(-0.5, 1.5, size=(n, 4))
            boxes[rng.random((n, 4)) < 0.1] = 0.0
        else:              # a few non-finite values
            boxes = rng.uniform(0, 1, size=(n, 4))
            boxes[rng.random((n, 4)) < 0.05] = rng.choice([np.nan, np.inf, -np.inf, 1e30, 1e-30])
        boxes = boxes.astype(np.float32)
        obj = rng.choice([0.0, 0.3, 0.5, 0.9, 1.0], size=n).astype(np.float32)
        probs = rng.choice([0.0, 0.0, 0.2, 0.25, 0.5, 0.5, 0.7, 0.99], size=(n, k)).astype(np.float32)
        probs[rng.random((n, k)) < 0.3] = rng.random() if n else 0
        raws.append((boxes, obj, probs))
    return raws


CASES = [("pjreddie", "default"), ("alexeyab-letterbox", "default"), ("none", "default"),
         ("alexeyab-letterbox", "greedynms"), ("none", "diounms"), ("alexeyab-letterbox", "diounms")]


@pytest.mark.parametrize("seed", range(5))
def test_postprocess_equals_reference_on_random_heads(seed):
    rng = np.random.default_rng(100 + seed)
    names = [f"n{i}" for i in range(50)]            # fewer names than classes: "class57" labels
    total = 0
    for it in range(90):
        k = int(rng.choice([1, 2, 3, 80]))
        raws = _random_raws(rng, k)
        correct, kind = CASES[it % len(CASES)]
        beta = float(rng.choice([0.6, 0.8, 1.0, 0.3]))
        img_w, img_h = int(rng.choice([1, 7, 416, 741, 1920])), int(rng.choice([1, 5, 416, 500, 1080]))
        thresh = float(rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]))
        nms = float(rng.choice([0.0, 0.45, 1.0, rng.random()]))
        args = (raws, img_w, img_h, 416, 416, thresh, nms, names)
        kw = dict(correct=correct, nms_kind=kind, beta_nms=beta)
        want = pp.postprocess_ref(*args, **kw)
        got = postprocess_c.postprocess(*args, **kw)
        assert got is not None and _key(got) == _key(want), (seed, it, correct, kind, thresh, nms)
        total += len(want)
    assert total > 1000


def test_postprocess_many_detections_and_ties():
    """Over a thousand detections, every score tied, boxes in a grid (many exact IoU ties)."""
    rng = np.random.default_rng(5)
    n, k = 1089, 3
    g = np.stack(np.meshgrid(np.arange(33), np.arange(33)), -1).reshape(-1, 2) / 33.0
    boxes = np.concatenate([g, np.full((n, 2), 1 / 25)], axis=1).astype(np.float32)
    obj = np.full(n, 0.9, np.float32)
    probs = np.full((n, k), 0.5, np.float32)
    probs[rng.random((n, k)) < 0.2] = 0.75
    for nms in (0.0, 0.45, 1.0):
        for correct, kind in CASES:
            args = ([(boxes, obj, probs)], 741, 500, 416, 416, 0.25, nms, ["a", "b", "c"])
            want = pp.postprocess_ref(*args, correct=correct, nms_kind=kind)
            got = postprocess_c.postprocess(*args, correct=correct, nms_kind=kind)
            assert _key(got) == _key(want)
            assert len(want) > 1000 or nms != 0.0


def test_fallbacks_give_the_reference(monkeypatch):
    """More candidates than MAX_NMS_CANDIDATES, more pairs than _MAX_PAIRS, float64 inputs,
    MDFI_POST=ref: the C path declines and postprocess() is the reference (warning included)."""
    rng = np.random.default_rng(9)
    boxes = (np.array([0.5, 0.5, 0.3, 0.3]) + rng.normal(0, 0.002, (300, 4))).astype(np.float32)
    obj = rng.random(300).astype(np.float32)
    probs = rng.random((300, 2)).astype(np.float32)
    args = ([(boxes, obj, probs)], 640, 480, 416, 416, 0.25, 0.45, ["a", "b"])
    want = pp.postprocess_ref(*args)
    monkeypatch.setattr(pp, "_MAX_PAIRS", 1000)     # 300 piled-up boxes: ~45,000 pairs
    assert postprocess_c.postprocess(*args) is None
    assert _key(pp.postprocess(*args)) == _key(want)
    monkeypatch.setenv("MDFI_MAX_NMS_CANDIDATES", "100")
    assert postprocess_c.postprocess(*args) is None
    with pytest.warns(Warning, match="NMS keeps the 100"):
        capped = pp.postprocess(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _key(capped) == _key(pp.postprocess_ref(*args))
    monkeypatch.delenv("MDFI_MAX_NMS_CANDIDATES")
    as64 = [(boxes.astype(np.float64), obj, probs)]
    assert postprocess_c.postprocess(as64, *args[1:]) is None
    monkeypatch.setenv("MDFI_POST", "ref")
    assert postprocess_c.postprocess(*args) is None


def test_real_model_heads_equal():
    """yolov3-tiny's integer heads on photos at thresholds down to 0.005 (hundreds of
    candidates): decode and post-processing equal the reference."""
    import mdfi
    from conftest import SKIMAGE_FILES, skimage_image
    from mdfi.postprocess import settings
    m = mdfi.load("yolov3-tiny", threads=1)
    eng, net = m.engine, m.network
    total = 0
    for name in SKIMAGE_FILES[:4]:
        rgb = skimage_image(name)
        x = m.prepare(rgb).tensor
        from mdfi.quant.quantize import input_to_u8
        outs = eng.run(input_to_u8(x), keep="needed")
        for thresh in (0.005, 0.25):
            raws, raws_ref = [], []
            for ql in eng.qmodel.output_layers():
                raws.append(ql.decode_int(outs[ql.index], thresh))
                raws_ref.append(ql.decode_int_ref(outs[ql.index], thresh))
                assert _same(raws[-1], raws_ref[-1])
            args = (raws_ref, rgb.shape[1], rgb.shape[0], net.width, net.height, thresh, 0.45, m.names)
            want = pp.postprocess_ref(*args, **settings(net))
            assert _key(pp.postprocess(*args, **settings(net))) == _key(want)
            for correct, kind in CASES:
                got = postprocess_c.postprocess(*args, correct=correct, nms_kind=kind)
                assert _key(got) == _key(pp.postprocess_ref(*args, correct=correct, nms_kind=kind))
            total += sum(len(r[0]) for r in raws)
    assert total > 150


def test_alexeyab_models_heads_equal():
    """AlexeyAB's integer heads -- yolov4-tiny (scale_x_y: signed x/y codes) and yolov7-tiny
    (new_coords) with the fixtures' weights -- decoded and post-processed with each model's
    own settings (greedynms / letter_box) and the other NMS kinds: C equals the reference."""
    from alexeyab_data import V7, astronaut_input, random_network, tiny_network
    from mdfi.cengine import CRunner
    from mdfi.postprocess import settings
    from mdfi.quant.quantize import input_to_u8, quantize_network
    v7 = random_network(V7, "yolov7-tiny-192.cfg")
    total = 0
    # yolov4-tiny: ~30 candidates at 0.005, every case; yolov7-tiny's random heads: ~1,100
    # candidates at 0.5, its own settings and two more cases (the reference is slow there)
    for net, threshes, cases in ((tiny_network(), (0.005, 0.25), CASES), (v7, (0.5,), CASES[::3])):
        qm = quantize_network(net, cfg_text="")
        outs = CRunner(qm, 1).run(input_to_u8(astronaut_input(net)), keep="needed")
        for thresh in threshes:
            raws = []
            for ql in qm.output_layers():
                got, want = ql.decode_int(outs[ql.index], thresh), ql.decode_int_ref(outs[ql.index], thresh)
                assert _same(got, want)
                raws.append(want)
            args = (raws, 512, 512, net.width, net.height, thresh, 0.45, [f"c{i}" for i in range(80)])
            kw = settings(net)
            assert _key(pp.postprocess(*args, **kw)) == _key(pp.postprocess_ref(*args, **kw))
            for correct, kind in cases:
                got = postprocess_c.postprocess(*args, correct=correct, nms_kind=kind, beta_nms=0.6)
                assert _key(got) == _key(pp.postprocess_ref(*args, correct=correct, nms_kind=kind, beta_nms=0.6))
            total += sum(len(r[0]) for r in raws)
    assert total > 100
