"""Gain correction (mdfi/quant/gaincorr.py): the asymmetric target undoes a known input
scale, the per-channel slope moves towards 1 on the calibration data, the record survives the
model file, the C engine equals the reference, bad values are refused."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.errors import FormatError
from mdfi.quant import gaincorr, modelfile
from mdfi.quant.quantize import input_to_u8, quantize_network

from test_align import assert_c_equals_reference

# the toy network and inputs of the AdaRound tests (three convolutions, 16x16x3)
from test_adaround import FRACS, HEAD, TOY, _inputs, _net


class _Run:
    """The two lists a gain correction reads from a calibration run: the float network's and
    the quantized network's input of one layer."""

    def __init__(self, xf, xq):
        self.xf, self.xq = xf, xq

    def inputs(self, layer, which):
        return [[x] for x in (self.xf if which == "float" else self.xq)]


def _conv_same(x, w):
    """Direct 'same' convolution (C,H,W) * (M,C,k,k), tap by tap (not im2col), no bias."""
    m, c, k, _ = w.shape
    p = k // 2
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p)))
    hh, ww = x.shape[1:]
    out = np.zeros((m, hh, ww))
    for ky in range(k):
        for kx in range(k):
            out += np.einsum("mc,chw->mhw", w[:, :, ky, kx].astype(np.float64), xp[:, ky:ky + hh, kx:kx + ww])
    return out


def test_asym_target_undoes_a_known_input_scale():
    """If the quantized network feeds layer 1 exactly s times the float input, the weights
    that reproduce the float output are w/s (derived by hand: (w/s)(s X) = w X)."""
    net = _net()
    layer = net.layers[1]
    rng = np.random.default_rng(5)
    w = rng.normal(size=(16, layer.kernel_volume))
    in_frac, s = 4, 2.0
    xf = [rng.integers(-16, 17, size=(8, 16, 16)) / 16.0 for _ in range(3)]       # exact at frac 4
    xq = [(x * s * 2 ** in_frac).astype(np.int64) for x in xf]                     # dequantized: s * xf
    h, c = gaincorr.layer_moments(layer, _Run(xf, xq), in_frac)
    np.testing.assert_allclose(gaincorr.asym_target(w, h, c, damp=0.0), w / s, rtol=1e-9, atol=1e-12)
    # equal inputs: the target is w itself, damping or not
    h2, c2 = gaincorr.layer_moments(layer, _Run(xf, [(x * 2 ** in_frac).astype(np.int64) for x in xf]), in_frac)
    np.testing.assert_allclose(gaincorr.asym_target(w, h2, c2, damp=0.01), w, rtol=0, atol=1e-12)
    # and the integers of the corrected layer are round-to-nearest of w/s at its formats
    w_frac = np.full(16, 3)
    q = gaincorr.correct_layer("asym", layer, _Run(xf, xq), w, w_frac, in_frac, 1.0,
                               lambda t, hh: gaincorr.nearest_round(t, w_frac, 8), damp=0.0)
    assert np.array_equal(q, np.clip(np.floor(w / s * 8 + 0.5), -128, 127))


def test_asym_on_pixel_exact_inputs_changes_nothing_at_layer_0():
    """Pixels k/255 reach layer 0 as exactly k in both networks (the float input is 255 times
    smaller): no upstream error, so the asym integers are round-to-nearest's."""
    net = _net()
    rng = np.random.default_rng(2)
    xs = [(rng.integers(0, 256, size=(3, 16, 16)) / 255.0).astype(np.float32) for _ in range(3)]
    kw = dict(wbits=4, abits=8, per_channel=True, act_fracs=FRACS, cfg_text="x", calib_inputs=xs,
              bias_correction=False)
    plain = quantize_network(net, **kw)
    asym = quantize_network(net, gain_correction="asym", **kw)
    assert np.array_equal(asym.layers[0].weights, plain.layers[0].weights)
    assert asym.layers[0].method["gain"] == "asym"


def _slopes(net, qm, xs, i):
    """Per output channel of conv ``i``: least-squares slope of the quantized pre-activation
    output on the float one over all positions of ``xs`` (centred), computed directly."""
    w, _ = net.layers[i].folded_float_params()
    ql = qm.layers[i]
    step = np.exp2(-np.asarray(ql.w_frac, np.float64))[:, None, None, None]
    zf, zq = [], []
    for x in xs:
        flt = net.forward_float(x)
        if i == 0:
            xin_f, xin_q = x, input_to_u8(x).astype(np.float64) / 255.0
        else:
            xin_f = flt[i - 1]
            xin_q = qm.forward_ref(input_to_u8(x))[i - 1] * 2.0 ** -qm.layers[i - 1].out_fmt.frac
        zf.append(_conv_same(xin_f, w).reshape(w.shape[0], -1))
        scale = 255.0 if i == 0 else 1.0                 # layer 0's integer weights multiply 8-bit pixels
        zq.append(_conv_same(xin_q * scale, ql.weights * step).reshape(w.shape[0], -1))
    zf, zq = np.concatenate(zf, 1), np.concatenate(zq, 1)
    zf = zf - zf.mean(1, keepdims=True)
    zq = zq - zq.mean(1, keepdims=True)
    return (zq * zf).sum(1) / (zf * zf).sum(1)


@pytest.mark.parametrize("rounding", ["nearest", "gptq"])
def test_gain_correction_moves_the_slopes_towards_one(rounding):
    """Layer 0 reads the same pixels in both models, so its slopes compare directly: per
    channel the corrected one is at least as close to 1 (the uncorrected integers are among
    the candidates), and on average closer."""
    net = _net(seed=4)
    xs = _inputs(4)
    kw = dict(wbits=4, abits=8, per_channel=True, act_fracs=FRACS, cfg_text="x", calib_inputs=xs,
              bias_correction="empirical", weight_rounding=rounding)
    plain = quantize_network(net, **kw)
    gain = quantize_network(net, gain_correction="gain", **kw)
    before = np.abs(_slopes(net, plain, xs, 0) - 1)
    after = np.abs(_slopes(net, gain, xs, 0) - 1)
    assert np.all(after <= before + 1e-9), (before, after)
    assert np.mean(after) < 0.75 * np.mean(before), (before, after)


def test_record_round_trip_info_and_c_equals_reference(tmp_path):
    net = _net(seed=4)
    xs = _inputs(3)
    for kind in ("asym", "gain"):
        qm = quantize_network(net, wbits=4, abits=8, per_channel=True, weight_rounding="gptq",
                              bias_correction="empirical", calib_inputs=xs, cfg_text=HEAD + TOY,
                              gain_correction=kind, layer_wbits={0: 8})
        assert [ql.method for ql in qm.layers] == \
            [{"weights": "gptq", "weight_format": "mse", "bias": "empirical", "gain": kind}] * 3
        modelfile.save(qm, tmp_path / f"{kind}.mdfi")
        back = modelfile.load(tmp_path / f"{kind}.mdfi")
        assert [ql.method for ql in back.layers] == [ql.method for ql in qm.layers]
        assert back.options["gain_correction"] == kind
        from mdfi.cli.info import info_table
        text = info_table(back)
        assert f"gptq/empirical gain {kind}" in text
        assert any(ln.startswith(f"gain correction: {kind}") for ln in text.splitlines())
        assert_c_equals_reference(qm, back, input_to_u8(_inputs(1, seed=7)[0]))
        for layer in back.layers:                   # the loaded integers are the built ones
            assert np.array_equal(layer.weights, qm.layers[layer.index].weights)


def test_bad_values_are_refused(tmp_path):
    net = _net()
    kw = dict(act_fracs=FRACS, cfg_text="x", calib_inputs=_inputs(1))
    with pytest.raises(FormatError, match="gain_correction='slope'"):
        quantize_network(net, gain_correction="slope", **kw)
    with pytest.raises(FormatError, match="AdaRound already targets"):
        quantize_network(net, gain_correction="gain", weight_rounding="adaround", **kw)
    with pytest.raises(FormatError, match="need calibration images"):
        quantize_network(net, gain_correction="asym", act_fracs=FRACS, cfg_text="x")
    from mdfi.layers.convolutional import check_method
    with pytest.raises(FormatError, match="unknown gain method"):
        check_method({"gain": "more"}, 3)
    # hostile records in a file: one line naming the file
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, cfg_text=HEAD + TOY)
    qm.options["gain_correction"] = "x\x1b[2J"
    modelfile.save(qm, tmp_path / "h.mdfi")
    with pytest.raises(modelfile.ModelFileError, match=r"h\.mdfi.*options: gain_correction .* is not one of"):
        modelfile.load(tmp_path / "h.mdfi")
    del qm.options["gain_correction"]
    qm.layers[1].method = dict(qm.layers[1].method, gain="sideways")
    modelfile.save(qm, tmp_path / "h2.mdfi")
    with pytest.raises(modelfile.ModelFileError, match=r"h2\.mdfi.*unknown gain method 'sideways'"):
        modelfile.load(tmp_path / "h2.mdfi")


def test_cli_refuses_gain_correction_before_heavy_work(tmp_path, capsys):
    from mdfi.cli import main
    out = tmp_path / "m.mdfi"
    rc = main(["quantize", "--model", "yolov3-tiny", "--gain-correction", "asym", "-o", str(out)])
    assert rc == 2 and "--gain-correction needs calibration images (--calib DIR)" in capsys.readouterr().err
    rc = main(["quantize", "--model", "yolov3-tiny", "--gain-correction", "gain", "--weight-rounding", "adaround",
               "--calib", str(tmp_path), "-o", str(out)])
    assert rc == 2 and "AdaRound already targets" in capsys.readouterr().err
    assert not out.exists()


def test_cli_writes_and_records_the_correction(tmp_path, capsys):
    """`mdfi quantize --gain-correction` on the mini-yolov3 fixture, plain and with --search:
    every convolution of the file says which correction chose its integers."""
    from pathlib import Path
    from PIL import Image
    from skimage import data
    from mdfi.cli import main
    dk = Path(__file__).parent / "fixtures" / "darknet" / "mini-yolov3"
    model = ["--cfg", str(dk / "mini-yolov3.cfg"), "--weights", str(dk / "mini-yolov3.weights")]
    cal = tmp_path / "cal"
    cal.mkdir()
    Image.fromarray(data.coffee()[::3, ::3]).save(cal / "coffee.png")
    for kind, extra in (("gain", []), ("asym", ["--search"])):
        out = tmp_path / f"{kind}.mdfi"
        assert main(["quantize", *model, "--calib", str(cal), "--weight-rounding", "gptq", "--gain-correction", kind,
                     *extra, "-o", str(out)]) == 0
        qm = modelfile.load(out)
        convs = [ql for ql in qm.layers if ql.kind == "convolutional"]
        assert convs and all(ql.method.get("gain") == kind for ql in convs)
        assert qm.options["gain_correction"] == kind
    assert "gain correction: layer" in capsys.readouterr().err
