"""AlexeyAB's ``[avgpool]``, ``[scale_channels]`` and ``[sam]`` (mdfi/layers/avgpool.py,
mdfi/layers/scale_channels.py), and ``cfg/enet-coco.cfg`` (EfficientNet-B0 + YOLOv3 head) that
needs them.

* float path = AlexeyAB's Darknet itself (tests/fixtures/darknet-alexeyab/enet-random/, README
  there): a mini network with every case (SE block, scale_wh=1, [sam], depthwise, swish,
  logistic, dropout, shortcut, [yolo]), every layer and its detections; enet-coco.cfg at
  128x128 one layer at a time and its detections end to end;
* the integer specification (docs/fixed-point.md section 9) against independent statements of
  it: a constant map averages to itself, the division rounds half up as a float64 oracle says,
  a scale of 1.0 is the requantized identity; the C kernels equal the reference on random and
  edge-heavy inputs (tests/test_paths_alexeyab.py runs the networks on every path);
* the golden model rebuilt by the standalone runner, and every refusal in one line.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from alexeyab_data import ENET, detection_mismatches, load_json, match_detections, random_network, rel_err
from alexeyab_data import random_weights_file as random_weights
from mdfi.darknet.network import Network
from mdfi.darknet.weights import load_weights
from mdfi.errors import CfgError, FormatError
from mdfi.postprocess import postprocess, settings

TOL = 1e-4
MINI = "mini-enet.cfg"
ENET128 = "enet-coco-128.cfg"


def mini_network():
    return random_network(ENET, MINI)


def test_mini_weights_are_the_ones_darknet_ran(tmp_path):
    out = random_weights(ENET, MINI, tmp_path / "w.weights")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "78b86c9995b4915bf6ce91759d023d82414fef1c7937754fab4901555449b880"
    net = Network.from_cfg(ENET / MINI, warn=False)
    assert out.stat().st_size == 10_952 == 20 + 4 * net.num_params()
    load_weights(net, out)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(net.layers, mini_network().layers)
               if a.kind == "convolutional")


def test_mini_is_parsed_as_darknet_parsed_it():
    net = mini_network()
    assert net.darknet == "alexeyab"
    assert [l.out_shape for l in net.layers if l.kind == "avgpool"] == [(16, 1, 1), (16, 1, 1)]
    sc = [l for l in net.layers if l.kind == "scale_channels"]
    assert [(l.inputs, l.mode, l.out_shape) for l in sc] == [
        ([4, 1], "channels", (16, 24, 24)), ([9, 8], "spatial", (16, 24, 24)),
        ([11, 10], "elementwise", (16, 24, 24)), ([15, 13], "channels", (16, 12, 12))]


def test_mini_every_layer_equals_alexeyab_darknet():
    """End to end from Darknet's input, and each layer from Darknet's own inputs: [avgpool]
    (float sum in index order, then /h*w) and the products are bit-identical."""
    net = mini_network()
    z = np.load(ENET / "mini-enet_astronaut_layers.npz")
    outs = net.forward_float(z["input"])
    end = {l.index: rel_err(outs[l.index], z["layer%03d" % l.index]) for l in net.layers}
    for l in net.layers:
        xs = [z["input"] if i == -1 else z["layer%03d" % i] for i in l.inputs]
        got = l.forward_float(xs)
        if l.kind in ("avgpool", "scale_channels", "route", "shortcut"):
            assert np.array_equal(got, z["layer%03d" % l.index]), l
        else:
            assert rel_err(got, z["layer%03d" % l.index]) <= TOL, l
    print("mini-enet end to end", {k: f"{v:.1e}" for k, v in end.items()})
    assert max(end.values()) <= TOL, end


def test_mini_detections_equal_alexeyab_darknet():
    want, problems = detection_mismatches(mini_network(), ENET, "mini-enet_astronaut")
    assert len(want) == 2 and not problems, problems[:5]


def test_enet_coco_layers_equal_alexeyab_darknet():
    """AlexeyAB's enet-coco.cfg at 128x128 (seeded random weights), each selected layer fed
    Darknet's stored inputs: [avgpool] over 64x64, 32x32 and 4x4, [scale_channels] from=-4,
    a [dropout] and its shortcut, the shortcut from a wider layer (576 -> 128 channels, AB's
    flat-index add), both heads."""
    z = np.load(ENET / "enet-coco-128_astronaut_selected_layers.npz")
    targets = [3, 10, 13, 22, 23, 92, 95, 129, 135, 136, 140, 143, 144, 145]
    net = random_network(ENET, ENET128, layers=[135, 144])
    assert net.darknet == "alexeyab"
    assert sum(l.kind == "avgpool" for l in net.layers) == 16
    assert sum(l.kind == "scale_channels" for l in net.layers) == 16
    worst = {}
    for t in targets:
        l = net.layers[t]
        got = l.forward_float([z["layer%03d" % i] for i in l.inputs])
        worst[t] = rel_err(got, z["layer%03d" % t])
        if l.kind != "convolutional" and l.kind != "yolo":
            assert np.array_equal(got, z["layer%03d" % t]), l
    print("enet-coco-128", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= TOL, worst


def test_enet_coco_detections_equal_alexeyab_darknet():
    """End to end from Darknet's input tensor: the 146 layers, then decoding and NMS."""
    net = random_network(ENET, ENET128)
    z = np.load(ENET / "enet-coco-128_astronaut_selected_layers.npz")
    rec = load_json(ENET / "enet-coco-128_astronaut_detections.json")
    outs = net.forward_float(z["input"])
    heads = {t: rel_err(outs[t], z["layer%03d" % t]) for t in (136, 145)}
    print("enet-coco-128 heads end to end", heads)
    assert max(heads.values()) <= 1e-3, heads
    raws = [l.decode(outs[l.index], rec["thresh"]) for l in net.output_layers()]
    dets = postprocess(raws, rec["image_w"], rec["image_h"], net.width, net.height, rec["thresh"], rec["nms"],
                       [str(i) for i in range(80)], **settings(net))
    assert len(rec["detections_test_detector"]) == 74
    problems = match_detections(dets, rec["detections_test_detector"], rec["image_w"], rec["image_h"])
    assert not problems, problems[:5]


# -- refusals ------------------------------------------------------------------------------
HEAD = "[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"


@pytest.mark.parametrize("body,match", [
    ("[avgpool]\n\n[convolutional]\nfilters=8\nsize=1\nactivation=logistic\n\n[scale_channels]\nfrom=-4\n",
     "resolves to -1"),
    ("[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n\n[scale_channels]\nfrom=-2\n",
     r"must be 8x1x1 .*scale_channels_layer.c:18, :24"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2\nscale_wh=1\n", r"must be 1x16x16 .*scale_channels_layer.c:19, :25"),
    ("[avgpool]\n\n[scale_channels]\n", r"from= is required .*parser.c:992"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2,-1\n", r"from: 2 layers.*parser.c:993"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2\nactivation=swish\n", r"activate\(\).*activations.c:112"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2\nactivation=tanh\n", "not supported on"),
    ("[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n\n[sam]\nfrom=-2\n", r"sam_layer.c:21-22"),
    ("[local_avgpool]\n", "Darknet layer MDFI does not support"),
])
def test_cfgs_darknet_cannot_run_are_refused_with_file_line(tmp_path, body, match):
    cfg = tmp_path / "x.cfg"
    cfg.write_text(HEAD + body)
    with pytest.raises(CfgError, match=match) as e:
        Network.from_cfg(cfg, warn=False)
    assert "x.cfg:" in str(e.value) and "\n" not in str(e.value)


def test_scale_channels_is_alexeyab_only(tmp_path):
    cfg = tmp_path / "x.cfg"
    cfg.write_text(HEAD + "[avgpool]\n\n[scale_channels]\nfrom=-2\n")
    with pytest.raises(CfgError, match="AlexeyAB's Darknet only"):
        Network.from_cfg(cfg, warn=False, darknet="pjreddie")
    assert Network.from_cfg(cfg, warn=False).darknet == "alexeyab"


def test_avgpool_alias_and_float_activations(tmp_path):
    """[avg] is [avgpool] (AB src/parser.c:87-88); leaky on a scale layer is leaky_activate's
    float .1f (activate_array, AB src/activations.c:119-123), logistic the float one."""
    cfg = tmp_path / "x.cfg"
    cfg.write_text(HEAD + "[avg]\n\n[scale_channels]\nfrom=-2\nactivation=leaky\n")
    net = Network.from_cfg(cfg, warn=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 16)).astype(np.float32)
    s = rng.standard_normal((8, 1, 1)).astype(np.float32)
    p = (s * x).astype(np.float32)
    assert rel_err(net.layers[1].forward_float([x]), x.astype(np.float64).mean(axis=(1, 2)).reshape(8, 1, 1)) < 1e-6
    assert np.array_equal(net.layers[2].forward_float([s, x]), np.where(p > 0, p, np.float32(0.1) * p))


# -- the integer specification (docs/fixed-point.md section 9) -------------------------------
from fractions import Fraction  # noqa: E402
import math  # noqa: E402

from mdfi import fixedpoint as fp  # noqa: E402
from mdfi.fixedpoint import QFormat  # noqa: E402
from mdfi.layers.avgpool import QAvgpool  # noqa: E402
from mdfi.layers.scale_channels import QScaleChannels  # noqa: E402


def _net(tmp_path, body, w=16, h=16):
    cfg = tmp_path / "n.cfg"
    cfg.write_text(HEAD.replace("width=16\nheight=16", f"width={w}\nheight={h}") + body)
    return Network.from_cfg(cfg, warn=False)


def _oracle_round(v: Fraction, mode: str) -> int:
    """floor(v + 1/2) (half_up) or floor(v) (truncate), exactly (Fractions)."""
    return math.floor(v + Fraction(1, 2)) if mode == "half_up" else math.floor(v)


def test_div_round_is_floor_half_up_for_every_sign():
    """7/2 -> 4, -7/2 -> -3 (ties toward +infinity, as every shift), -7/3 -> -2; truncate is
    floor (-7/2 -> -4), not C's truncation toward zero (-3); den = 2**s is shift_round."""
    assert fp.div_round(np.array([7, -7, -7, 5, -5, 0]), np.array([2, 2, 3, 3, 3, 9]), "half_up").tolist() == \
        [4, -3, -2, 2, -2, 0]
    assert fp.div_round(np.array([7, -7, -7, -1]), np.array([2, 2, 3, 9]), "truncate").tolist() == [3, -4, -3, -1]
    x = np.random.default_rng(1).integers(-2 ** 40, 2 ** 40, 5000)
    for s in (1, 5, 17):
        for mode in ("half_up", "truncate"):
            assert np.array_equal(fp.div_round(x, np.int64(1 << s), mode), fp.shift_round(x, s, mode))


@pytest.mark.parametrize("d", [-3, 0, 2])
@pytest.mark.parametrize("mode", ["half_up", "truncate"])
def test_avgpool_reference_against_exact_fractions(tmp_path, d, mode):
    net = _net(tmp_path, "[avgpool]\n", 5, 3)           # n = 15: not a power of two
    rng = np.random.default_rng(d + 7)
    fin = QFormat(8, 4, zero=-5)
    q = QAvgpool(net.layers[1], fin, QFormat(8, 4 + d, zero=3), mode)
    x = rng.integers(-128, 128, (8, 3, 5)).astype(np.int32)
    x[0] = 127
    x[1] = -128
    got = q.forward_ref([x]).reshape(-1)
    for c in range(8):
        mean = Fraction(int((x[c].astype(np.int64) - fin.zero).sum()), 15)      # in input steps
        want = _oracle_round(mean * 2 ** d, mode) + 3
        assert got[c] == max(-128, min(127, want)), (c, got[c], want)


@pytest.mark.parametrize("value", [-128, -37, 0, 1, 126, 127])
def test_avgpool_of_a_constant_map_is_the_constant(tmp_path, value):
    net = _net(tmp_path, "[avgpool]\n", 7, 9)
    q = QAvgpool(net.layers[1], QFormat(8, 3), QFormat(8, 3), "half_up")
    x = np.full((8, 9, 7), value, np.int32)
    assert np.array_equal(q.forward_ref([x]), np.full((8, 1, 1), value))
    q16 = QAvgpool(net.layers[1], QFormat(8, 3), QFormat(16, 7), "truncate")    # finer output: exact * 16
    assert np.array_equal(q16.forward_ref([x]), np.full((8, 1, 1), value * 16))


@pytest.mark.parametrize("mode", ["half_up", "truncate"])
@pytest.mark.parametrize("sec,shape", [("[scale_channels]\nfrom=-2\n", (8, 1, 1)),
                                       ("[scale_channels]\nfrom=-2\nscale_wh=1\n", (1, 16, 16)),
                                       ("[sam]\nfrom=-2\n", (8, 16, 16))])
def test_scale_reference_against_exact_fractions(tmp_path, mode, sec, shape):
    scale = {(8, 1, 1): "[avgpool]\n\n", (1, 16, 16): "[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n\n",
             (8, 16, 16): "[convolutional]\nfilters=8\nsize=1\nactivation=logistic\n\n"}[shape]
    net = _net(tmp_path, scale + sec)
    l = net.layers[2]
    fa, fb, fo = QFormat(8, 7, zero=-128), QFormat(8, 4, zero=6), QFormat(8, 5, zero=-2)
    q = QScaleChannels(l, [fa, fb], fo, mode)
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, shape).astype(np.int32)
    b = rng.integers(-128, 128, (8, 16, 16)).astype(np.int32)
    got = q.forward_ref([a, b])
    ab = np.broadcast_to(a, b.shape)
    for idx in [(0, 0, 0), (3, 5, 7), (7, 15, 15), (2, 9, 1)] + [tuple(rng.integers(0, [8, 16, 16])) for _ in range(40)]:
        real = Fraction(int(ab[idx]) - fa.zero, 2 ** fa.frac) * Fraction(int(b[idx]) - fb.zero, 2 ** fb.frac)
        want = _oracle_round(real * 2 ** fo.frac, mode) + fo.zero
        assert got[idx] == max(-128, min(127, want)), idx


def test_scale_by_one_is_the_requantized_identity(tmp_path):
    """A scale of exactly 1.0 (code 2**fa) gives the input re-expressed in the output format:
    fp.align's shift of (fb - fo) with the same rounding and saturation."""
    net = _net(tmp_path, "[avgpool]\n\n[scale_channels]\nfrom=-2\n")
    for fo in (2, 4, 9):
        q = QScaleChannels(net.layers[2], [QFormat(8, 6), QFormat(8, 4)], QFormat(8, fo), "half_up")
        b = np.arange(-128, 128, dtype=np.int32).reshape(1, 16, 16).repeat(8, axis=0)
        got = q.forward_ref([np.full((8, 1, 1), 64, np.int32), b])
        assert np.array_equal(got, fp.align(b, 4, fo, "half_up", 8))


def _edge_ints(rng, shape, bits):
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    x = rng.integers(lo, hi + 1, shape)
    flat = x.reshape(-1)
    k = flat.size // 4
    flat[rng.integers(0, flat.size, k)] = rng.choice([lo, hi, 0, -1, 1], k)
    return x.astype(np.int8 if bits <= 8 else np.int16)


@pytest.mark.parametrize("bits", [8, 16, 5])
@pytest.mark.parametrize("mode", ["half_up", "truncate"])
def test_c_kernels_equal_the_reference_on_edge_inputs(tmp_path, bits, mode):
    """csrc/mdfi_kernels_scale.c == the NumPy reference (array_equal) over random and extreme
    codes, zero points at their extremes, output formats finer and coarser, every activation,
    planes of 1 to 4096 positions."""
    from mdfi._ext import _kernels
    from mdfi.cengine import ACT_CODES
    rng = np.random.default_rng(bits)
    dt = np.int8 if bits <= 8 else np.int16
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    for (w, h) in ((1, 1), (3, 5), (64, 64), (7, 4)):
        net = _net(tmp_path, "[avgpool]\n", w, h)
        for d in (-24, -3, 0, 1, 7, 20):
            for zi, zo in ((0, 0), (lo, hi), (hi, lo), (3, -2)):
                fin = QFormat(bits, 5, zero=zi)
                q = QAvgpool(net.layers[1], fin, QFormat(bits, 5 + d, zero=zo), mode)
                x = _edge_ints(rng, (8, h, w), bits)
                out = np.zeros((8, 1, 1), dt)
                _kernels.avgpool(x, zi, q.d, fp.rounding_code(mode), bits, zo, out)
                assert np.array_equal(out, q.forward_ref([x])), (w, h, d, zi, zo)
    ran = 0
    for sec, mode_name in (("[avgpool]\n\n[scale_channels]\nfrom=-2\n", "channels"),
                           ("[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n\n[scale_channels]\nfrom=-2\n"
                            "scale_wh=1\n", "spatial"),
                           ("[convolutional]\nfilters=8\nsize=1\nactivation=logistic\n\n[sam]\nfrom=-2\n", "elementwise")):
        for act in ("linear", "leaky", "relu"):
            net = _net(tmp_path, sec.replace("from=-2\n", f"from=-2\nactivation={act}\n"))
            l = net.layers[2]
            for fa, fb, fo in ((7, 4, 5), (0, 0, 9), (12, 10, -8), (3, 2, 5 - 31 + 5), (15, 15, 0)):
                for za, zb, zo in ((0, 0, 0), (lo, hi, lo), (hi, lo, hi), (-1, 2, 1)):
                    try:
                        q = QScaleChannels(l, [QFormat(bits, fa, zero=za), QFormat(bits, fb, zero=zb)],
                                           QFormat(bits, fo, zero=zo), mode)
                    except FormatError:
                        continue            # a shift outside [-31, 47]
                    ran += 1
                    a = _edge_ints(rng, l.scale_view(np.zeros(l.in_shapes[0])).shape, bits)
                    b = _edge_ints(rng, l.out_shape, bits)
                    out = np.zeros(l.out_shape, dt)
                    _kernels.scale_channels(a, za, b, zb, l.mode, q.shift, fp.rounding_code(mode), bits,
                                            ACT_CODES[act], zo, out)
                    assert np.array_equal(out, q.forward_ref([a, b])), (mode_name, act, fa, fb, fo, za, zb, zo)
    assert ran >= 150, ran


# -- golden model and the standalone runner -----------------------------------------------------
from test_c_runner import c_build, runner  # noqa: E402,F401 (fixtures)
from mdfi.quant.quantize import quantize_network  # noqa: E402


@pytest.mark.parametrize("kw", [dict(), dict(act_method="mse", zero_points=True), dict(wbits=16, abits=16),
                                dict(wbits=5, abits=5, rounding="truncate")],
                         ids=["w8a8", "w8a8-zero-points", "w16a16", "w5a5-truncate"])
def test_golden_export_and_the_standalone_runner(runner, tmp_path, kw):
    """model.txt's ``avgpool`` and ``scale_channels`` lines (docs/golden-format.md) rebuilt by the
    standalone C runner byte for byte, every layer of mini-enet."""
    from test_c_runner import _export, _fixed_model, _photo, assert_identical
    net = mini_network()
    gold = _export(_fixed_model(net, quantize_network(net, per_channel=True, cfg_text="", **kw)), _photo(),
                   tmp_path / "gold")
    txt = (gold / "model.txt").read_text()
    assert txt.count(" avgpool in=") == 2 and txt.count(" scale_channels in=") == 4
    assert " mode=spatial " in txt and " mode=elementwise " in txt
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == 19      # every layer


@pytest.mark.parametrize("edit,msg", [
    (lambda t: t.replace(" mode=spatial", " mode=channels", 1), "mode=channels needs a 16x1x1 scale"),
    (lambda t: t.replace(" d=", " d=99 x=", 1), "unknown key 'x'"),
    (lambda t: t.replace(" avgpool in=1 ", " avgpool in=1,0 ", 1), "takes 1 input"),
])
def test_runner_refuses_inconsistent_lines(runner, tmp_path, edit, msg):
    from test_c_runner import _export, _fixed_model, _photo, _run
    net = mini_network()
    gold = _export(_fixed_model(net, quantize_network(net, per_channel=True, cfg_text="")), _photo(), tmp_path / "g")
    (gold / "model.txt").write_text(edit((gold / "model.txt").read_text()))
    proc = _run(runner, gold, tmp_path / "out")
    assert proc.returncode != 0 and msg in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


# -- mdfi verify ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gold_enet(tmp_path_factory):
    from mdfi.hw import golden
    from mdfi.hw import golden_reader as gr
    from test_c_runner import _fixed_model, _photo
    net = mini_network()
    d = tmp_path_factory.mktemp("gold_enet")
    golden.export(_fixed_model(net, quantize_network(net, per_channel=True, cfg_text="", zero_points=True,
                                                     act_method="mse")), _photo(), str(d), formats=["hex"],
                  thresh=1.0)
    return gr.GoldenSet(str(d))


def _verify_one(g, dut, layer, stage, values):
    from mdfi.hw import golden_reader as gr
    from mdfi.hw import verify
    e = g.entry(layer, stage)
    dut.mkdir(exist_ok=True)
    gr.write_hex(str(dut / e["path"]), np.asarray(values).reshape(-1), e["bits"])
    rep = verify.verify(g.folder, str(dut))
    assert len(rep.files) == 1
    return rep.files[0]


AVG_NET = """[net]
width=12
height=12
channels=3

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=linear

[avgpool]

[convolutional]
filters=24
size=1
stride=1
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=3
num=3
"""


@pytest.mark.parametrize("zero_points", [False, True])
def test_verify_names_the_division_rule_of_an_average_pool(tmp_path, zero_points):
    """A device that divides with C's ``/`` (toward zero) or a shift instead of the division
    by h*w is named (mdfi/hw/verify_avgpool.py), tested on the whole tensor; a linear layer
    before the pool gives negative sums, where the rules differ."""
    from mdfi.hw import golden
    from mdfi.hw import golden_reader as gr
    from test_c_runner import _fixed_model, _photo, _random_net
    net = _random_net(AVG_NET, "avg.cfg", 3)
    kw = dict(zero_points=True, act_method="mse") if zero_points else {}
    golden.export(_fixed_model(net, quantize_network(net, per_channel=True, cfg_text="", **kw)), _photo(),
                  str(tmp_path / "g"), formats=["hex"], thresh=1.0)
    g = gr.GoldenSet(str(tmp_path / "g"))
    assert _verify_one(g, tmp_path / "ok", 1, "out", g.read(1, "out")).status == "ok"
    P = g.layer(1)["params"]
    s = g.read(1, "acc").astype(np.int64)
    num, den = (s << P["d"], P["divisor"]) if P["d"] >= 0 else (s, P["divisor"])
    assert np.any((num < 0) & (num % den != 0)) and den == 144
    zo = P.get("zero_out", 0)
    good = g.read(1, "out")
    c_div = np.clip(np.trunc(num / den).astype(np.int64) + zo, -128, 127)     # exact: |num| < 2^40
    assert np.count_nonzero(c_div != good) > 0
    res = _verify_one(g, tmp_path / "dut", 1, "out", c_div)
    assert res.status == "mismatch"
    assert res.hints[0].kind == "avgpool" and "'toward zero (C's / operator)'" in res.hints[0].text, res.hints
    k = int(np.ceil(np.log2(den)))
    shifted = np.clip((2 * num + (1 << k)) // (2 << k) + zo, -128, 127)
    res = _verify_one(g, tmp_path / "dut2", 1, "out", shifted)
    assert res.hints[0].kind == "avgpool" and f"divided by 2^{k} = {1 << k} (a shift)" in res.hints[0].text, res.hints


def test_verify_names_a_shift_error_in_a_scale_layer(gold_enet, tmp_path):
    """The conv/shortcut datapath hints apply to [scale_channels] (acc = the exact product)."""
    g = gold_enet
    line = [r for r in g.model_lines() if r["record"] == "layer" and r["index"] == 5][0]
    acc = g.read(5, "acc").astype(np.int64)
    s, zo = int(line["shift"]) + 1, int(line.get("zero_out", 0))
    dut = np.clip(((acc + (1 << (s - 1))) >> s) + zo, -128, 127)
    res = _verify_one(g, tmp_path / "dut", 5, "out", dut)
    assert res.status == "mismatch" and res.hints[0].kind == "shift", res.hints


@pytest.mark.parametrize("bits", [8, 16])
def test_fixed_point_layers_stay_within_their_rounding_of_darknet(bits):
    """Each [avgpool] / [scale_channels] layer of enet-coco at 128x128, fed Darknet's stored
    inputs rounded to formats that hold them, against Darknet's own float output: the error is
    at most what the roundings allow (docs/fixed-point.md 9: one output rounding, plus the
    inputs' roundings carried through the mean / the product), at 8 and 16 bits."""
    z = np.load(ENET / "enet-coco-128_astronaut_selected_layers.npz")
    net = Network.from_cfg(ENET / ENET128, warn=False)

    def fmt(v):
        return QFormat(bits, fp.max_frac(float(v.min()), float(v.max()), bits))

    def q(v, f):
        return fp.quantize_float(v, f.frac, bits).astype(np.int32)
    for t in (3, 10, 92, 13, 95, 129):
        l = net.layers[t]
        xs = [z["layer%03d" % i] for i in l.inputs]
        ref = z["layer%03d" % t].astype(np.float64)
        fin = [fmt(x) for x in xs]
        fo = fmt(ref)
        ql = (QAvgpool(l, fin[0], fo, "half_up") if l.kind == "avgpool"
              else QScaleChannels(l, fin, fo, "half_up"))
        got = ql.forward_ref([q(x, f) for x, f in zip(xs, fin)]) * 2.0 ** -fo.frac
        so, s0 = 2.0 ** -fo.frac, 2.0 ** -fin[0].frac
        if l.kind == "avgpool":
            bound = so / 2 + s0 / 2
        else:
            s1 = 2.0 ** -fin[1].frac
            a = np.abs(l.scale_view(xs[0].astype(np.float64)))
            bound = so / 2 + a * s1 / 2 + np.abs(xs[1]) * s0 / 2 + s0 * s1 / 4
        err = np.abs(got - ref)
        assert np.all(err <= bound * (1 + 1e-6) + 1e-7), (t, float(err.max()), float(np.max(bound)))
