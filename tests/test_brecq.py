"""Block reconstruction (mdfi/quant/brecq.py): on calibration data the block's output, with
its inner activations quantized as the integer network quantizes them, is closer to the
float block's than with round-to-nearest or per-layer AdaRound integers (computed here by
direct convolution, tap by tap); every integer is the floor or the ceiling of w/step inside
the format; the method is recorded in the file and shown by ``mdfi info``; the C engine
equals the NumPy reference; bad settings are refused with one line."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.darknet.weights import random_weights
from mdfi.errors import FormatError
from mdfi.quant import modelfile
from mdfi.quant.brecq import blocks
from mdfi.quant.quantize import input_to_u8, quantize_network
from test_adaround import _conv_same, _inputs, _leaky
from test_align import assert_c_equals_reference

HEAD = "[net]\nwidth=16\nheight=16\nchannels=3\n"
TOY = ("[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
       "[maxpool]\nsize=2\nstride=2\n"
       "[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n")
FRACS = {0: 4, 2: 4, 3: 4}
KW = dict(wbits=4, abits=8, per_channel=True, act_fracs=FRACS, bias_correction=False)


def _net(seed=3):
    net = Network(parse_cfg_text(HEAD + TOY, "b.cfg"), "b.cfg", warn=False)
    random_weights(net, seed)
    return net


def _step(ql):
    return np.exp2(-np.asarray(ql.w_frac, np.float64))[:, None, None, None]


def _units(net, ql):
    w, _ = net.layers[ql.index].folded_float_params()
    scale = 1.0 / 255.0 if ql.index == 0 else 1.0
    return w.astype(np.float64) * scale / _step(ql)


def _pool2(x):
    """2x2/2 max pool of (C, H, W), H and W even (Darknet's size=2 stride=2)."""
    c, h, w = x.shape
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def _block_error(net, qm, w0, w2, xs):
    """Squared error of the block 0-2's output (the second convolution after leaky) with
    integer weights ``w0``, ``w2`` and the first convolution's output quantized to its
    format, against the float network's, summed over the inputs."""
    f0 = qm.layers[0].out_fmt
    b0 = net.layers[0].folded_float_params()[1]
    b2 = net.layers[2].folded_float_params()[1]
    e = 0.0
    for x in xs:
        target = net.forward_float(x)[2].astype(np.float64)
        a0 = _leaky(_conv_same(input_to_u8(x).astype(np.float64), w0 * _step(qm.layers[0]), b0))
        q0 = np.clip(np.floor(a0 * 2.0 ** f0.frac + 0.5), fp.qmin(f0.bits), fp.qmax(f0.bits)) * 2.0 ** -f0.frac
        out = _leaky(_conv_same(_pool2(q0), w2 * _step(qm.layers[2]), b2))
        e += float(np.sum((out - target) ** 2))
    return e


def test_blocks_of_a_chain_and_of_yolov3_tiny_shapes():
    assert blocks(_net()) == [[0, 1, 2], [3]]
    assert blocks(_net(), convs=1) == [[0], [2], [3]]
    assert blocks(_net(), convs=3) == [[0, 1, 2, 3]]


def test_block_reconstruction_beats_nearest_and_per_layer_adaround():
    net = _net()
    xs = _inputs(6)
    br = quantize_network(net, weight_rounding="brecq", calib_inputs=xs, cfg_text="x",
                          brecq={"iters": 200, "crop": 16}, **KW)
    ada = quantize_network(net, weight_rounding="adaround", calib_inputs=xs, cfg_text="x",
                           adaround={"iters": 200}, **KW)
    near = [np.clip(fp.round_half_up_float(_units(net, br.layers[i])), -8, 7) for i in (0, 2)]   # derived here
    assert np.array_equal(br.layers[0].w_frac, ada.layers[0].w_frac)
    e_near = _block_error(net, br, *near, xs)
    e_ada = _block_error(net, br, ada.layers[0].weights, ada.layers[2].weights, xs)
    e_br = _block_error(net, br, br.layers[0].weights, br.layers[2].weights, xs)
    assert e_br < 0.3 * e_near, (e_br / e_near, e_ada / e_near)
    assert e_br < 0.85 * e_ada, (e_br / e_near, e_ada / e_near)


def test_integers_are_floor_or_ceil_inside_the_format():
    net = _net(seed=5)
    qm = quantize_network(net, weight_rounding="brecq", calib_inputs=_inputs(3), cfg_text="x",
                          brecq={"iters": 60, "crop": 8, "batch": 4}, **dict(KW, wbits=3))
    changed = 0
    for i in (0, 2, 3):
        ql = qm.layers[i]
        r = _units(net, ql)
        q = ql.weights.astype(np.int64)
        lo, hi = fp.qmin(3), fp.qmax(3)
        assert q.min() >= lo and q.max() <= hi
        assert np.all((q == np.clip(np.floor(r), lo, hi)) | (q == np.clip(np.floor(r) + 1, lo, hi)))
        changed += int(np.sum(q != np.clip(fp.round_half_up_float(r), lo, hi)))
    assert changed > 0


def test_method_record_info_and_c_equals_reference(tmp_path):
    net = _net(seed=4)
    xs = _inputs(3)
    qm = quantize_network(net, wbits=6, abits=8, per_channel=True, weight_rounding="brecq",
                          bias_correction="empirical", calib_inputs=xs, cfg_text=HEAD + TOY,
                          brecq={"iters": 40, "p_drop": 0.25})
    convs = [ql for ql in qm.layers if ql.kind == "convolutional"]
    assert [ql.method for ql in convs] == [{"weights": "brecq", "weight_format": "mse", "bias": "empirical"}] * 3
    modelfile.save(qm, tmp_path / "m.mdfi")
    back = modelfile.load(tmp_path / "m.mdfi")
    assert [ql.method for ql in back.layers if ql.kind == "convolutional"] == [ql.method for ql in convs]
    assert back.options["weight_rounding"] == "brecq"
    assert back.options["brecq"]["p_drop"] == 0.25 and back.options["brecq"]["blocks"] == [[0, 1, 2], [3]]
    from mdfi.cli.info import info_table
    text = info_table(back)
    assert "brecq/empirical" in text
    assert "block reconstruction (brecq): blocks 0-1-2, 3; QDrop p=0.25, 40 steps per block" in text
    for layer in back.layers:
        if layer.kind == "convolutional":
            assert np.array_equal(layer.weights, qm.layers[layer.index].weights)
    assert_c_equals_reference(qm, back, input_to_u8(_inputs(1, seed=7)[0]))


def test_bad_settings_are_refused(tmp_path, capsys):
    net = _net()
    kw = dict(act_fracs=FRACS, cfg_text="x", calib_inputs=_inputs(1))
    for bad, what in (({"steps": 5}, "unknown steps"), ({"p_drop": 1.5}, "out of range"),
                      ({"convs": 0}, "out of range"), ({"crop": 2}, "out of range")):
        with pytest.raises(FormatError, match=what) as ei:
            quantize_network(net, weight_rounding="brecq", brecq=bad, **kw)
        assert "\n" not in str(ei.value)
    with pytest.raises(FormatError, match="not 'brecq'"):
        quantize_network(net, weight_rounding="adaround", brecq={"iters": 5}, **kw)
    with pytest.raises(FormatError, match="block reconstruction already targets"):
        quantize_network(net, weight_rounding="brecq", gain_correction="gain", **kw)
    with pytest.raises(FormatError, match="need calibration images"):
        quantize_network(net, weight_rounding="brecq", act_fracs=FRACS, cfg_text="x")
    odd = Network(parse_cfg_text(HEAD + TOY.replace("linear", "logistic"), "odd.cfg"), "odd.cfg", warn=False)
    random_weights(odd, 1)
    with pytest.raises(FormatError, match=r"odd\.cfg: layer 3: weight_rounding='brecq' supports"):
        quantize_network(odd, weight_rounding="brecq", **kw)
    from mdfi.cli import main
    out = tmp_path / "m.mdfi"
    rc = main(["quantize", "--model", "yolov3-tiny", "--gain-correction", "gain", "--weight-rounding", "brecq",
               "--calib", str(tmp_path), "-o", str(out)])
    assert rc == 2 and "block reconstruction already targets" in capsys.readouterr().err
    assert not out.exists()


def test_cli_quantize_and_info(tmp_path, capsys):
    """``mdfi quantize --weight-rounding brecq`` on a small network and photos; ``mdfi info``
    names the method per layer and the blocks."""
    from PIL import Image
    from mdfi.cli import main
    from mdfi.darknet.weights import write_weights
    cfg = tmp_path / "b.cfg"
    cfg.write_text(HEAD + TOY)
    write_weights(_net(seed=6), tmp_path / "b.weights")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(2)
    for n in range(2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(photos / f"p{n}.png")
    out = tmp_path / "b.mdfi"
    assert main(["quantize", "--cfg", str(cfg), "--weights", str(tmp_path / "b.weights"), "--calib", str(photos),
                 "--wbits", "4", "--weight-rounding", "brecq", "--bias-correction", "empirical", "-o", str(out)]) == 0
    assert "brecq: block 0-1-2" in capsys.readouterr().err            # progress on stderr
    qm = modelfile.load(out)
    assert [ql.method["weights"] for ql in qm.layers if ql.kind == "convolutional"] == ["brecq"] * 3
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "brecq/empirical" in text and "block reconstruction (brecq): blocks 0-1-2, 3" in text
