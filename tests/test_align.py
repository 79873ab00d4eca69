"""Mantissa alignment (mdfi/quant/align.py): the rescaled float network computes the same
function, an aligned channel's weight error is the one of its real-valued step, the method
is recorded in the model file, the C engine equals the reference, bad settings are refused."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi import zoo
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.darknet.weights import random_weights
from mdfi.errors import FormatError
from mdfi.quant import align, modelfile
from mdfi.quant.quantize import input_to_u8, quantize_network

HEAD = "[net]\nwidth=32\nheight=32\nchannels=3\n"
# conv -> maxpool -> conv -> route(3, 1) -> conv -> upsample -> conv -> yolo: every kind of
# consumer that commutes with per-channel factors, and a head whose input must keep its scale.
GRAPH = ("[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
         "[maxpool]\nsize=2\nstride=2\n"
         "[convolutional]\nbatch_normalize=1\nfilters=12\nsize=3\npad=1\nactivation=leaky\n"
         "[route]\nlayers=-1,-2\n"
         "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=1\nactivation=leaky\n"
         "[upsample]\nstride=2\n"
         "[convolutional]\nsize=1\nfilters=21\nactivation=linear\n"
         "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=2\nnum=3\n")


def _net(text, seed=3):
    net = Network(parse_cfg_text(text, "a.cfg"), "a.cfg", warn=False)
    random_weights(net, seed)
    return net


def _inputs(n=3, size=32, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.random((3, size, size)).astype(np.float32) for _ in range(n)]


def _same_function(net, al_net, xs):
    worst = 0.0
    for x in xs:
        a, b = net.forward_float(x), al_net.forward_float(x)
        for l in net.output_layers():
            i = l.inputs[0]                      # the head's input (the yolo output is decoded from it)
            worst = max(worst, float(np.abs(a[i] - b[i]).max() / np.abs(a[i]).max()))
    return worst


@pytest.mark.parametrize("step,direction", [("max", "fit"), ("mse", "nearest"), ("output", "down"),
                                                    ("mse", "keep")])
def test_rescaled_network_computes_the_same_function(step, direction):
    net = _net(HEAD + GRAPH)
    xs = _inputs()
    al = align.prepare(net, step, direction=direction, wbits=4, inputs=xs)
    assert sorted(al.scales) == [0, 2, 4]                # layer 6 feeds the head: it keeps its scale
    s = np.concatenate(list(al.scales.values()))
    assert np.all((s > 0.5) & (s <= 2.0)) and np.any(np.abs(s - 1) > 0.05)
    if direction == "nearest":
        assert np.all(np.abs(np.log2(s)) <= 0.5 + 1e-12)
    if direction == "down":
        assert np.all(s <= 1.0)
    assert _same_function(net, al.network, _inputs(2, seed=9)) < 1e-5


def test_yolov3_tiny_structure_keeps_its_function():
    text = open(zoo.cfg_path("yolov3-tiny.cfg"), encoding="utf-8").read()
    text = re.sub(r"(?m)^(width|height)\s*=\s*\d+", r"\1=64", text)
    net = _net(text, seed=11)
    xs = _inputs(2, size=64)
    al = align.prepare(net, "mse", direction="fit", wbits=6, layer_wbits={0: 8}, inputs=xs)
    # every convolution except the two that feed the heads (15, 22) is rescaled
    convs = [l.index for l in net.layers if l.kind == "convolutional"]
    assert sorted(al.scales) == [i for i in convs if i not in (15, 22)]
    assert _same_function(net, al.network, _inputs(1, size=64, seed=5)) < 1e-5


# A chain of 1x1 linear convolutions without batch norm: layer 0's steps are already powers
# of two (so it is not rescaled and layer 1's inputs keep their scale), layer 1's channel 0
# has its largest weight 1.1 = 1.1 * 2**0, i.e. a 4-bit power-of-two step of 0.25 (1.1 * 4
# = 4.4 <= 7, 1.1 * 8 = 8.8 > 7) where 1.1 / 7 would do.
CHAIN = HEAD + "".join(f"[convolutional]\nfilters={m}\nsize=1\nactivation=linear\n" for m in (2, 2, 2))
ROW = np.array([1.1, -0.52])


def _chain():
    net = _net(CHAIN)
    l0, l1 = net.layers[0], net.layers[1]
    w0 = np.zeros((2, 3, 1, 1), np.float32)
    w0[0, :, 0, 0] = np.array([7 / 32, -0.1, 0.05]) * 255         # folded x 1/255: max 7/32, step 2**-5
    w0[1, :, 0, 0] = np.array([-0.03, 7 / 64, 0.02]) * 255        # step 2**-6
    l0.weights, l0.biases = w0, np.zeros(2, np.float32)
    w1 = np.zeros((2, 2, 1, 1), np.float32)
    w1[0, :, 0, 0] = ROW
    w1[1, :, 0, 0] = [0.4375, -0.25]                               # 0.4375 = 7/16: aligned already
    l1.weights, l1.biases = w1, np.zeros(2, np.float32)
    return net


def _error_in_original_units(qm, s_out):
    ql = qm.layers[1]
    deq = ql.weights.reshape(2, -1) * np.exp2(-ql.w_frac.astype(np.float64))[:, None]
    return deq / s_out[:, None] - _chain().layers[1].weights.reshape(2, -1).astype(np.float64)


def test_aligned_channel_has_the_error_of_its_real_step():
    net = _chain()
    kw = dict(wbits=4, abits=8, per_channel=True, weight_method="max", act_fracs={0: 4, 1: 4, 2: 4},
              cfg_text=CHAIN, bias_correction=False)
    plain = quantize_network(net, **kw)
    al = quantize_network(net, align="max", align_direction="down", calib_inputs=_inputs(2), **kw)
    w = ROW.astype(np.float32).astype(np.float64)
    # expectations derived here: power-of-two step 1/4, real step max|w|/7 (aligned down to 1/8)
    e_pow2 = np.sum((np.round(w / 0.25) * 0.25 - w) ** 2)
    t = w.max() / 7
    e_real = np.sum((np.round(w / t) * t - w) ** 2)
    assert plain.layers[1].w_frac[0] == 2 and al.layers[1].w_frac[0] == 3
    e_plain = np.sum(_error_in_original_units(plain, np.ones(2))[0] ** 2)
    s = np.array([0.125 / t, 1.0])
    e_al = np.sum(_error_in_original_units(al, s)[0] ** 2)
    assert e_plain == pytest.approx(e_pow2, rel=1e-9)
    assert e_al == pytest.approx(e_real, rel=1e-6)
    assert e_al < 0.5 * e_plain                                   # 0.0003 vs 0.0029
    # layer 0's steps were powers of two already: factors 1, the same integers
    assert np.array_equal(al.layers[0].weights, plain.layers[0].weights)
    assert al.layers[0].method["align"] == "max/down"
    assert al.layers[1].method["align"] == "max/down"
    assert "align" not in (al.layers[2].method or {})             # the output layer keeps its scale


def test_method_record_survives_save_load_and_c_equals_reference(tmp_path):
    net = _net(HEAD + GRAPH, seed=4)
    xs = _inputs(2)
    qm = quantize_network(net, wbits=4, abits=8, per_channel=True, align="mse", calib_inputs=xs,
                          cfg_text=HEAD + GRAPH, layer_wbits={0: 8})
    want = {0: "mse/fit", 2: "mse/fit", 4: "mse/fit"}
    assert {i: ql.method["align"] for i, ql in enumerate(qm.layers) if (getattr(ql, "method", None) or {}).get("align")} == want
    modelfile.save(qm, tmp_path / "a.mdfi")
    back = modelfile.load(tmp_path / "a.mdfi")
    assert [getattr(ql, "method", None) for ql in back.layers] == [getattr(ql, "method", None) for ql in qm.layers]
    assert back.options["align"]["step"] == "mse" and back.options["align"]["layers"] == [0, 2, 4]
    from mdfi.cli.info import info_table
    assert "align mse/fit" in info_table(back)
    assert_c_equals_reference(qm, back)


def assert_c_equals_reference(qm, back, x=None):
    """The C engine on ``back`` (``qm`` saved and loaded) gives every layer of ``qm``'s NumPy
    reference exactly, on ``x`` (8-bit input; default one random photo-like 32x32 input)."""
    if x is None:
        x = input_to_u8(_inputs(1, seed=7)[0])
    ref = qm.forward_ref(x)
    from mdfi.engine import FixedEngine
    try:
        eng = FixedEngine(back, "c", threads=1)
    except Exception as e:                                    # pragma: no cover - extension not built
        pytest.skip(f"C engine not available: {e}")
    out = eng.run(x)
    for i in range(len(qm.layers)):
        if out[i] is not None and qm.layers[i].kind != "yolo":
            assert np.array_equal(out[i], ref[i]), i


def test_bad_settings_are_refused():
    net = _net(HEAD + GRAPH)
    xs = _inputs(1)
    kw = dict(wbits=4, cfg_text="x", calib_inputs=xs)
    with pytest.raises(FormatError, match="align='median'"):
        quantize_network(net, per_channel=True, align="median", **kw)
    with pytest.raises(FormatError, match="align_direction='up'"):
        quantize_network(net, per_channel=True, align="max", align_direction="up", **kw)
    with pytest.raises(FormatError, match="per-channel"):
        quantize_network(net, per_channel=False, align="max", **kw)
    with pytest.raises(FormatError, match="calibration images"):
        quantize_network(net, wbits=4, per_channel=True, align="max", cfg_text="x")
    al = align.prepare(net, "max", direction="down", wbits=4, inputs=xs)
    with pytest.raises(FormatError, match="other weight widths"):
        quantize_network(net, per_channel=True, align=al, **dict(kw, wbits=6))
    with pytest.raises(FormatError, match="another network"):
        quantize_network(_net(HEAD + GRAPH), per_channel=True, align=al, **kw)
    from mdfi.layers.convolutional import check_method
    with pytest.raises(FormatError, match="unknown align method"):
        check_method({"align": "max/sideways"}, 3)


def test_real_steps_mse_is_never_worse_than_max():
    rng = np.random.default_rng(0)
    v = rng.standard_t(3, size=(20, 64))
    for bits in (4, 6):
        def err(t):
            q = np.clip(np.round(v / t[:, None]), fp.qmin(bits), fp.qmax(bits))
            return ((q * t[:, None] - v) ** 2).sum(axis=1)
        assert np.all(err(align.real_steps(v, bits, "mse")) <= err(align.real_steps(v, bits, "max")) + 1e-12)
    assert np.array_equal(align.real_steps(v, 4, "output", col_weight=np.full(64, 3.0)), align.real_steps(v, 4, "mse"))
    # all the output weight on column 0: its error is the least of all candidate steps
    cw = np.zeros(64)
    cw[0] = 1.0
    t = align.real_steps(v, 4, "output", col_weight=cw)
    cand = align.MSE_RATIOS[None, :] * align.real_steps(v, 4, "max")[:, None]
    e0 = np.abs(np.clip(np.round(v[:, :1] / cand), -8, 7) * cand - v[:, :1])
    got = np.abs(np.clip(np.round(v[:, 0] / t), -8, 7) * t - v[:, 0])
    assert np.allclose(got, e0.min(axis=1))


def test_cli_refuses_align_without_calibration_images(tmp_path, capsys):
    from mdfi.cli import main
    out = tmp_path / "m.mdfi"
    rc = main(["quantize", "--model", "yolov3-tiny", "--align", "mse", "-o", str(out)])
    assert rc == 2 and "--align needs calibration images (--calib DIR)" in capsys.readouterr().err
    rc = main(["quantize", "--model", "yolov3-tiny", "--align", "max", "--calib", str(tmp_path), "--per-layer",
               "-o", str(out)])
    assert rc == 2 and "--align needs per-channel weight formats" in capsys.readouterr().err
    assert not out.exists()
