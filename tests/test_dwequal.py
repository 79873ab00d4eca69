"""Power-of-two equalization of the depthwise inputs (mdfi/quant/dwequal.py; docs/quantization.md
round 29): which tensors move, by how much, and that the float network and the integer weights do
not change -- only the formats of the equalized tensors do."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.darknet.weights import random_weights
from mdfi.errors import FormatError
from mdfi.quant import dwequal
from mdfi.quant.quantize import input_to_u8, quantize_network

CFG = """[net]
width=24
height=24
channels=3

# 0: read only by the depthwise layer 1 -> eligible
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky

# 1: depthwise
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
groups=8
activation=leaky

# 2: read by the depthwise layer 3 (two filters per channel) -> eligible
[convolutional]
filters=6
size=1
activation=relu

# 3: depthwise with a channel multiplier of 2
[convolutional]
batch_normalize=1
filters=12
size=3
pad=1
groups=6
activation=linear

# 4: read by the depthwise layer 5 and by the route 7 -> not eligible
[convolutional]
batch_normalize=1
filters=12
size=1
activation=leaky

# 5
[convolutional]
batch_normalize=1
filters=12
size=3
pad=1
groups=12
activation=leaky

# 6: mish is not positively homogeneous -> not eligible
[convolutional]
batch_normalize=1
filters=12
size=1
activation=mish

[route]
layers=-1,-3,-4

# 8: read by a grouped layer of two channels per group -> not eligible
[convolutional]
batch_normalize=1
filters=8
size=1
activation=leaky

# 9
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
groups=4
activation=leaky

# 10: the last layer reads 9 (not eligible: no depthwise reader)
[convolutional]
size=1
filters=4
activation=linear
"""


def _net(seed=5, cfg=CFG):
    net = Network(parse_cfg_text(cfg, "dw.cfg"), "dw.cfg")
    random_weights(net, seed)
    return net


def _inputs(n=3, seed=0, shape=(3, 24, 24)):
    rng = np.random.default_rng(seed)
    return [rng.random(shape).astype(np.float32) for _ in range(n)]


def test_eligible_tensors():
    # 6 feeds the route; 6 and the route are read by 8 (not depthwise); 10 is the network output
    assert dwequal.eligible(_net()) == [0, 2]


def test_factors_keep_every_channel_inside_the_tensors_range():
    # channel ranges (largest value, largest negative magnitude); P = 8, N = 2
    r = {3: np.array([[8.0, 1.0, 0.3, 0.0, 2.1, 0.0],
                      [0.0, 0.1, 2.0, 0.5, 0.0, 0.0]])}
    # ch0: the top (k 0); ch1: min(log2 8, log2 20) -> 3; ch2: N bound 0 (log2 26.7 -> 4, log2 1 -> 0);
    # ch3: only the negative side, log2(2/0.5) = 2; ch4: log2(8/2.1) = 1.93 -> 1; ch5: all zero -> 0
    assert dwequal.factors(r)[3].tolist() == [0, 3, 0, 2, 1, 0]
    # at most MAX_SHIFT for a nearly dead channel
    assert dwequal.factors({0: np.array([[1.0, 1e-9], [0.0, 0.0]])})[0].tolist() == [0, dwequal.MAX_SHIFT]


def test_float_network_unchanged_bit_for_bit():
    net = _net()
    xs = _inputs()
    eq = dwequal.prepare(net, xs)
    assert sorted(eq.scales) == [0, 2]
    assert all(np.array_equal(s, np.exp2(np.round(np.log2(s)))) for s in eq.scales.values())
    assert any((s > 1).any() for s in eq.scales.values())
    for x in xs:
        a, b = net.forward_float(x), eq.network.forward_float(x)
        for i, (u, v) in enumerate(zip(a, b)):
            if i in eq.scales:          # the producer's channels are exact power-of-two multiples
                assert np.array_equal(v, u * eq.scales[i].astype(np.float32)[:, None, None]), i
            else:
                assert np.array_equal(u, v), i


@pytest.mark.parametrize("kw", [dict(), dict(zero_points=True, act_method="mse")], ids=["plain", "zero-points"])
def test_integer_weights_unchanged_formats_moved(kw):
    net = _net()
    xs = _inputs()
    base = quantize_network(net, per_channel=True, cfg_text="", calib_inputs=xs, **kw)
    q = quantize_network(net, per_channel=True, cfg_text="", calib_inputs=xs, dw_equalize=True, **kw)
    k = {i: np.round(np.log2(s)).astype(int) for i, s in dwequal.prepare(net, xs).scales.items()}
    for qa, qb in zip(base.layers, q.layers):
        if qa.kind != "convolutional":
            continue
        assert np.array_equal(qa.weights, qb.weights), qa.index          # the same integer weights
        d = np.asarray(qb.w_frac) - np.asarray(qa.w_frac)
        if qa.index in k:                                        # producer: w * 2**k, frac - k
            assert np.array_equal(d, -k[qa.index]), qa.index
            assert qb.method["dw_equalize"] == "pow2/max8"
        elif qa.index - 1 in k:                                  # its depthwise reader: frac + k (of its channel)
            src = k[qa.index - 1]
            assert np.array_equal(d, np.repeat(src, len(d) // len(src))), qa.index
        else:
            assert not d.any(), qa.index
    assert q.options["dw_equalize"]["layers"] == [0, 2]


def test_c_engine_equals_the_reference():
    from mdfi.cengine import CRunner
    net = _net(7)
    xs = _inputs(seed=3)
    q = quantize_network(net, per_channel=True, cfg_text="", calib_inputs=xs, dw_equalize=True, zero_points=True,
                         act_method="mse")
    x = input_to_u8(xs[0])
    ref = q.forward_ref(x)
    for threads in (1, 2):
        assert all(np.array_equal(a, b) for a, b in zip(CRunner(q, threads).run(x), ref))


def test_model_file_keeps_the_record(tmp_path):
    from mdfi.quant import modelfile
    net = _net()
    xs = _inputs()
    q = quantize_network(net, per_channel=True, cfg_text=CFG, calib_inputs=xs, dw_equalize=True)
    modelfile.save(q, tmp_path / "m.mdfi")
    back = modelfile.load(tmp_path / "m.mdfi")
    assert back.options["dw_equalize"] == q.options["dw_equalize"]
    assert [ql.method.get("dw_equalize") for ql in back.layers if ql.kind == "convolutional"][:3] == \
        ["pow2/max8", None, "pow2/max8"]


def test_no_depthwise_tensor_is_a_no_op():
    cfg = "[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n\n" \
          "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
    net = _net(2, cfg)
    xs = _inputs(2, shape=(3, 16, 16))
    a = quantize_network(net, per_channel=True, cfg_text="", calib_inputs=xs)
    b = quantize_network(net, per_channel=True, cfg_text="", calib_inputs=xs, dw_equalize=True)
    assert all(np.array_equal(x, y) for x, y in zip(a.forward_ref(input_to_u8(xs[0])), b.forward_ref(input_to_u8(xs[0]))))


@pytest.mark.parametrize("kw,match", [
    (dict(), "dw_equalize needs calibration inputs"),
    (dict(calib_inputs="x", per_channel=False), "per-channel weight formats"),
    (dict(calib_inputs="x", align="max"), "not both|align are not implemented for grouped"),
])
def test_refusals(kw, match):
    net = _net()
    if kw.get("calib_inputs") == "x":
        kw["calib_inputs"] = _inputs(1)
    kw.setdefault("per_channel", True)
    with pytest.raises(FormatError, match=match):
        quantize_network(net, cfg_text="", dw_equalize=True, **kw)


def test_recipe_default_is_the_xl_model_at_w8a8_without_photos():
    from mdfi.quant import recipes
    w8a8 = recipes.resolve(None)
    w6a8 = recipes.resolve(None, wbits=6)
    d = recipes.default_dw_equalize
    assert d("yolo-fastest-1.1-xl", "sample", w8a8, True)
    assert not d("yolo-fastest-1.1-xl", "photos", w8a8, True)      # rule 29c decided without photos
    assert not d("yolo-fastest-1.1-xl", "sample", w6a8, True)
    assert not d("yolo-fastest-1.1-xl", "sample", w8a8, False)     # ... with zero points
    assert not d("yolo-fastest-1.1", "sample", w8a8, True)          # rule 29 failed
    assert not d(None, "sample", w8a8, True)


@pytest.fixture(scope="module")
def dw_model(tmp_path_factory):
    from mdfi.darknet.weights import write_weights
    d = tmp_path_factory.mktemp("dw")
    (d / "dw.cfg").write_text(CFG)
    write_weights(_net(), d / "dw.weights")
    return d


def test_load_and_quantize_cli_equalize_on_request(dw_model, tmp_path, capsys):
    """mdfi.load(dw_equalize=True) and `mdfi quantize --dw-equalize` build the model quantize_network
    builds from the shipped sample photo and its mirror; without the option a model without a recipe
    is not equalized."""
    import mdfi
    from mdfi.cli import main
    from mdfi.quant import modelfile, recipes
    cfg, weights = dw_model / "dw.cfg", dw_model / "dw.weights"
    # (without the empirical bias correction that is this depthwise model's default: round 31)
    on = mdfi.load(cfg=cfg, weights=weights, dw_equalize=True, empirical_bias=False, cache=False).engine.qmodel
    off = mdfi.load(cfg=cfg, weights=weights, empirical_bias=False, cache=False).engine.qmodel
    assert on.options["dw_equalize"]["layers"] == [0, 2] and "dw_equalize" not in off.options
    assert "round 29" in on.options["formats_source"]
    net = _net()
    want = quantize_network(net, per_channel=True, cfg_text=CFG, calib=recipes.sample_calibration(net),
                            zero_points=True, act_method="mse", **recipes.dw_equalize_kwargs(net, True))
    for a, b in zip(on.layers, want.layers):
        if a.kind == "convolutional":
            assert np.array_equal(a.weights, b.weights) and np.array_equal(a.shift, b.shift) and \
                np.array_equal(a.bias, b.bias)
    assert main(["quantize", "--cfg", str(cfg), "--weights", str(weights), "--dw-equalize", "--bias-correction",
                 "auto", "-o", str(tmp_path / "m.mdfi")]) == 0
    q = modelfile.load(tmp_path / "m.mdfi")
    assert q.options["dw_equalize"] == on.options["dw_equalize"]
    for a, b in zip(on.layers, q.layers):
        if a.kind == "convolutional":
            assert np.array_equal(a.shift, b.shift) and np.array_equal(a.bias, b.bias)


@pytest.mark.parametrize("argv,match", [
    (["--float", "--dw-equalize"], "--dw-equalize applies to the fixed-point engine"),
])
def test_detect_refuses_dw_equalize_with_float(dw_model, tmp_path, capsys, argv, match):
    from mdfi.cli import main
    from PIL import Image
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(img)
    rc = main(["detect", str(img), "--cfg", str(dw_model / "dw.cfg"), "--weights", str(dw_model / "dw.weights"),
               "--out", str(tmp_path / "o.jpg"), *argv])
    err = capsys.readouterr().err
    assert rc != 0 and match in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,match", [
    (["--dw-equalize", "--search", "--calib", "."], "--dw-equalize or --search"),
    (["--dw-equalize", "--per-layer"], "per-channel weight formats"),
    (["--dw-equalize", "--align", "max", "--calib", "."], "--dw-equalize or --align"),
])
def test_quantize_refusals(dw_model, tmp_path, capsys, argv, match):
    from mdfi.cli import main
    rc = main(["quantize", "--cfg", str(dw_model / "dw.cfg"), "--weights", str(dw_model / "dw.weights"), "-o",
               str(tmp_path / "m.mdfi"), *argv])
    err = capsys.readouterr().err
    assert rc != 0 and match in err, err
    assert not (tmp_path / "m.mdfi").exists()
