"""AdaRound weight rounding (mdfi/quant/adaround.py): on calibration data it reconstructs a
layer's output at least as well as round-to-nearest, every integer is the floor or the
ceiling of w/step inside the format, and the model file records the method."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.quant import modelfile
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import FormatError
from mdfi.darknet.network import Network
from mdfi.quant.quantize import input_to_u8, quantize_network
from mdfi.darknet.weights import random_weights

HEAD = "[net]\nwidth=16\nheight=16\nchannels=3\n"
TOY = ("[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n")
FRACS = {0: 4, 1: 4, 2: 4}
FAST = {"iters": 200}


def _net(seed=3):
    net = Network(parse_cfg_text(HEAD + TOY, "s.cfg"), "s.cfg", warn=False)
    random_weights(net, seed)
    return net


def _inputs(n=6, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.random((3, 16, 16)).astype(np.float32) for _ in range(n)]


def _conv_same(x, w, b):
    """Direct 'same' convolution (C,H,W) * (M,C,k,k) + b, written out tap by tap (not im2col)."""
    m, c, k, _ = w.shape
    p = k // 2
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
    hh, ww = x.shape[1:]
    out = np.zeros((m, hh, ww)) + np.asarray(b, np.float64)[:, None, None]
    for ky in range(k):
        for kx in range(k):
            out += np.einsum("mc,chw->mhw", w[:, :, ky, kx].astype(np.float64), xp[:, ky:ky + hh, kx:kx + ww])
    return out


def _leaky(z):
    return np.where(z >= 0, z, 0.1 * z)


def _step_units(net, ql):
    """The layer's float weights in units of each output channel's step (M, C, k, k)."""
    w, _ = net.layers[ql.index].folded_float_params()
    scale = 1.0 / 255.0 if ql.index == 0 else 1.0         # the first layer multiplies 8-bit pixels
    return w.astype(np.float64) * scale * np.exp2(np.asarray(ql.w_frac, np.float64))[:, None, None, None]


def test_adaround_reconstructs_each_layer_better_than_nearest():
    net = _net()
    xs = _inputs()
    kw = dict(wbits=4, abits=8, per_channel=True, act_fracs=FRACS, cfg_text="x", bias_correction=False)
    ada = quantize_network(net, weight_rounding="adaround", calib_inputs=xs, adaround=FAST, **kw)
    for i in (0, 1):
        ql = ada.layers[i]
        _, b = net.layers[i].folded_float_params()
        near = np.clip(fp.round_half_up_float(_step_units(net, ql)), -8, 7)        # derived here
        step = np.exp2(-np.asarray(ql.w_frac, np.float64))[:, None, None, None]
        e_ada = e_near = 0.0
        for x in xs:
            flt = net.forward_float(x)
            target = _leaky(_conv_same(x if i == 0 else flt[i - 1], net.layers[i].folded_float_params()[0], b))
            np.testing.assert_allclose(target, flt[i], atol=1e-3)           # the float network's output
            if i == 0:      # the 8-bit pixels: the steps of layer 0 are per pixel unit (1/255)
                xin = input_to_u8(x).astype(np.float64)
            else:           # what the quantized network feeds layer 1 (the AdaRound model's layer 0)
                xin = ada.forward_ref(input_to_u8(x))[0] * 2.0 ** -ada.layers[0].out_fmt.frac
            e_ada += np.sum((_leaky(_conv_same(xin, ql.weights * step, b)) - target) ** 2)
            e_near += np.sum((_leaky(_conv_same(xin, near * step, b)) - target) ** 2)
        assert e_ada <= e_near * (1 + 1e-9)
        assert e_ada < 0.8 * e_near, (i, e_ada / e_near)          # it does choose, and it helps


def test_adaround_integers_are_floor_or_ceil_inside_the_format():
    net = _net(seed=5)
    qm = quantize_network(net, wbits=3, abits=8, per_channel=True, act_fracs=FRACS, cfg_text="x",
                          weight_rounding="adaround", calib_inputs=_inputs(3), adaround=FAST)
    changed = 0
    for ql in qm.layers:
        r = _step_units(net, ql)
        lo, hi = fp.qmin(3), fp.qmax(3)
        q = ql.weights.astype(np.int64)
        assert q.min() >= lo and q.max() <= hi
        fl = np.clip(np.floor(r), lo, hi)
        ce = np.clip(np.floor(r) + 1, lo, hi)
        assert np.all((q == fl) | (q == ce))
        changed += int(np.sum(q != np.clip(fp.round_half_up_float(r), lo, hi)))
    assert changed > 0                                         # not round-to-nearest in disguise


def test_adaround_method_is_recorded_and_runs_bit_exact(tmp_path):
    net = _net(seed=4)
    xs = _inputs(3)
    qm = quantize_network(net, wbits=6, abits=8, per_channel=True, weight_rounding="adaround",
                          bias_correction="empirical", calib_inputs=xs, cfg_text=HEAD + TOY,
                          adaround=dict(FAST, reg=0.05))
    assert [ql.method for ql in qm.layers] == \
        [{"weights": "adaround", "weight_format": "mse", "bias": "empirical"}] * 3
    modelfile.save(qm, tmp_path / "m.mdfi")
    back = modelfile.load(tmp_path / "m.mdfi")
    assert [ql.method for ql in back.layers] == [ql.method for ql in qm.layers]
    assert back.options["weight_rounding"] == "adaround"
    assert back.options["adaround"]["iters"] == 200 and back.options["adaround"]["reg"] == 0.05
    x = input_to_u8(xs[0])
    ref = qm.forward_ref(x)
    assert all(np.array_equal(a, b) for a, b in zip(ref, back.forward_ref(x)))
    from mdfi.engine import FixedEngine
    try:
        eng = FixedEngine(back, "c", threads=1)
    except Exception as e:                                    # pragma: no cover - extension not built
        pytest.skip(f"C engine not available: {e}")
    out = eng.run(x)
    assert all(np.array_equal(out[i], ref[i]) for i in range(3))


def test_adaround_settings_are_checked():
    net = _net()
    kw = dict(act_fracs=FRACS, cfg_text="x", calib_inputs=_inputs(1))
    with pytest.raises(FormatError, match="unknown"):
        quantize_network(net, weight_rounding="adaround", adaround={"iterations": 5}, **kw)
    with pytest.raises(FormatError, match="out of range"):
        quantize_network(net, weight_rounding="adaround", adaround={"mode": "sideways"}, **kw)
    with pytest.raises(FormatError, match="not 'adaround'"):
        quantize_network(net, weight_rounding="gptq", adaround={"iters": 5}, **kw)
    with pytest.raises(FormatError, match="need calibration images"):
        quantize_network(net, weight_rounding="adaround", act_fracs=FRACS, cfg_text="x")


def test_adaround_inputs_float_feeds_the_float_networks_input(monkeypatch):
    """inputs="float" (round 17b): every layer's rounding is learned on the float network's
    input of the layer; by default ("quantized") on what the quantized network feeds it, which
    differs from the float input after the first layer."""
    from mdfi.quant import adaround
    seen = {}
    real = adaround.adaround_round

    def spy(w_float, w_frac, wbits, x_q, x_f, *a, **k):
        seen.setdefault(k.get("label"), []).append((np.array(x_q, copy=True), np.array(x_f, copy=True)))
        return real(w_float, w_frac, wbits, x_q, x_f, *a, **k)

    monkeypatch.setattr(adaround, "adaround_round", spy)
    kw = dict(act_fracs=FRACS, cfg_text="x", calib_inputs=_inputs(2), weight_rounding="adaround")
    quantize_network(_net(), adaround=dict(FAST, inputs="float"), **kw)
    assert len(seen) == 3 and all(np.array_equal(q, f) for v in seen.values() for q, f in v)
    seen.clear()
    quantize_network(_net(), adaround=FAST, **kw)
    assert len(seen) == 3 and not np.array_equal(*seen["layer 1 "][0])
    with pytest.raises(FormatError, match="out of range"):
        quantize_network(_net(), adaround={"inputs": "both"}, **kw)
