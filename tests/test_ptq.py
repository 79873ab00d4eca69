"""Post-training quantization methods (mdfi/quant): route formats, empirical bias
correction, GPTQ rounding, the per-layer method record, the eval bias columns."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.quant import modelfile
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import FormatError, ModelFileError
from mdfi.eval.evaluate import agreement
from mdfi.detection import Detection
from mdfi.darknet.network import Network
from mdfi.quant.gptq import gptq_round
from mdfi.quant.quantize import input_to_u8, quantize_network, unify_route_formats
from mdfi.darknet.weights import random_weights

HEAD = "[net]\nwidth=16\nheight=16\nchannels=3\n"


def small(text, seed=0):
    net = Network(parse_cfg_text(HEAD + text, "s.cfg"), "s.cfg", warn=False)
    random_weights(net, seed)
    return net


def test_one_bit_alignment_ties_bias_upward():
    # Independent derivation: R(x/2) half up is x/2 for even x and x/2 + 1/2 for odd x, so
    # over all 8-bit codes the mean error is +1/4 of the output step.
    x = np.arange(-128, 128)
    err = fp.align(x, 1, 0, "half_up", 8) - x / 2.0
    assert err.mean() == pytest.approx(0.25)


def test_unified_routes_are_plain_concatenations():
    net = small("[convolutional]\nfilters=2\nactivation=leaky\n[maxpool]\nsize=2\nstride=2\n"
                "[convolutional]\nfilters=2\nactivation=leaky\n[upsample]\nstride=2\n[route]\nlayers=-1,0\n")
    fr = unify_route_formats(net, {0: 5, 1: 5, 2: 3, 3: 3, 4: 3}, {}, 8)
    assert fr[0] == fr[2] == 3
    qm = quantize_network(net, act_fracs=fr, cfg_text="x")
    assert qm.layers[4].shifts == [0, 0]
    # without unification the route shifts layer 0's values by two bits
    assert quantize_network(net, act_fracs={0: 5, 2: 3}, cfg_text="x").layers[4].shifts == [0, 2]


def _inputs(n, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.random((3, 16, 16)).astype(np.float32) for _ in range(n)]


def _mean_error(net, qm, xs, layer):
    from mdfi.quant.quantize import input_to_u8
    errs = []
    for x in xs:
        f = net.forward_float(x)[layer]
        q = qm.forward_ref(input_to_u8(x))[layer] * 2.0 ** -qm.layers[layer].out_fmt.frac
        errs.append((q - f).reshape(f.shape[0], -1).mean(axis=1))
    return np.mean(errs, axis=0)


TOY = ("[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n")


def test_empirical_bias_correction_cancels_the_measured_mean_error():
    net = small(TOY, seed=3)
    xs = _inputs(6)
    kw = dict(wbits=4, abits=5, per_channel=True, act_fracs={0: 3, 1: 3, 2: 3}, cfg_text="x")
    plain = quantize_network(net, bias_correction=False, **kw)
    corr = quantize_network(net, bias_correction="empirical", calib_inputs=xs, **kw)
    before = np.abs(_mean_error(net, plain, xs, 2))
    after = np.abs(_mean_error(net, corr, xs, 2))
    # the linear last layer's mean error is cancelled up to the output rounding (1/16)
    assert before.max() > 0.05
    assert after.mean() < 0.5 * before.mean() and after.max() < 0.04
    assert corr.layers[2].method["bias"] == "empirical"


def test_gptq_never_worse_than_nearest_on_the_calibration_hessian():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 40)) @ rng.normal(size=(40, 400)) * 0.3    # correlated inputs
    x[:, ::7] += 1.0
    h = x @ x.T / x.shape[1]
    w = rng.normal(size=(16, 40)) * 0.2
    frac = fp.max_frac(w.min(axis=1), w.max(axis=1), 4)
    q = gptq_round(w, frac, 4, h)
    near = np.clip(fp.round_half_up_float(w * np.exp2(frac)[:, None]), -8, 7)
    assert q.min() >= -8 and q.max() <= 7 and q.dtype == np.int64

    def err(qq):
        d = w - qq * np.exp2(-frac)[:, None]
        return ((d @ h) * d).sum(axis=1)
    assert np.all(err(q) <= err(near) + 1e-12)
    assert err(q).sum() < 0.8 * err(near).sum()


def test_method_is_recorded_and_round_trips(tmp_path):
    net = small(TOY, seed=4)
    qm = quantize_network(net, wbits=6, abits=8, per_channel=True, weight_rounding="gptq",
                          bias_correction="empirical", calib_inputs=_inputs(3), cfg_text=HEAD + TOY)
    assert [ql.method for ql in qm.layers] == [{"weights": "gptq", "weight_format": "mse", "bias": "empirical"}] * 3
    modelfile.save(qm, tmp_path / "m.mdfi")
    back = modelfile.load(tmp_path / "m.mdfi")
    assert [ql.method for ql in back.layers] == [ql.method for ql in qm.layers]
    assert back.options["weight_rounding"] == "gptq"
    # a file without the record (older MDFI) loads, with the method unknown
    from mdfi.layers.convolutional import QConvolutional
    meta = dict(qm.layers[0].meta())
    meta.pop("method")
    assert QConvolutional.from_saved(net.layers[0], meta, qm.layers[0].arrays()).method is None
    meta["method"] = {"weights": "magic"}
    with pytest.raises(FormatError, match="unknown weights method"):
        QConvolutional.from_saved(net.layers[0], meta, qm.layers[0].arrays())


def test_data_methods_need_images():
    net = small(TOY)
    with pytest.raises(FormatError, match="need calibration images"):
        quantize_network(net, weight_rounding="gptq", act_fracs={0: 3, 1: 3, 2: 3}, cfg_text="x")
    with pytest.raises(FormatError, match="weight_rounding"):
        quantize_network(net, weight_rounding="magic", act_fracs={0: 3, 1: 3, 2: 3}, cfg_text="x")


def _d(conf, x=0.0):
    return Detection(class_id=0, label="a", confidence=conf, box=(x, 0.0, x + 10.0, 10.0))


def test_agreement_reports_the_bias_including_lost_detections():
    flt = [[_d(0.5), _d(0.6, 50)], [_d(0.3, 100)]]
    fix = [[_d(0.4), _d(0.7, 50)], [_d(0.1, 100)]]          # the last one fell below 0.25
    r = agreement(flt, fix)
    assert r.matched == 2 and r.mean_dconf == pytest.approx(0.0) and r.down_fraction == 0.5
    assert r.n_pairs_ranked == 3
    assert r.mean_dconf_ranked == pytest.approx((-0.1 + 0.1 - 0.2) / 3)
    assert r.down_fraction_ranked == pytest.approx(2 / 3)


def test_shipped_decisions_fit_yolov3_tiny():
    from mdfi.quant import recipes
    from mdfi import zoo
    from mdfi.quant.formats import decisions_to_kwargs
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"))
    kw = recipes.shipped_decisions("yolov3-tiny", net, recipes.resolve("yolov3-tiny"))
    convs = [l.index for l in net.layers if l.kind == "convolutional"]
    assert sorted(kw["act_fracs"]) == convs and sorted(kw["bias_shifts"]) == [15, 22]
    # the recipe's formats make the route of the second head a concatenation
    assert kw["act_fracs"][8] == kw["act_fracs"][18]
    assert recipes.shipped_decisions("yolov3-tiny", net, recipes.resolve("yolov3-tiny", wbits=5)) == {}
    with pytest.raises(FormatError):
        decisions_to_kwargs(net, {"act_fracs": {"0": 1}})



def test_quantize_data_methods_need_calib_before_loading(tmp_path, capsys):
    from mdfi.cli import main
    rc = main(["quantize", "--model", "yolov3-tiny", "--weight-rounding", "gptq", "-o", str(tmp_path / "m.mdfi")])
    assert rc == 2 and "need calibration images (--calib DIR)" in capsys.readouterr().err
    assert not (tmp_path / "m.mdfi").exists()


def test_wide_activation_decisions_are_shipped_and_derived():
    from mdfi.quant import calibrate, recipes
    from mdfi import zoo
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"))
    calib = recipes.shipped_calibration("yolov3-tiny")
    opts = recipes.resolve("yolov3-tiny")
    uni = recipes.shipped_decisions("yolov3-tiny", net, opts)
    assert "layer_abits" not in uni
    wide = {0: 16, 10: 16, 14: 16, 21: 16}
    kw = recipes.shipped_decisions("yolov3-tiny", net, opts, layer_abits=wide)      # the shipped entry
    assert kw["layer_abits"] == wide
    for i, f in uni["act_fracs"].items():
        # 8-bit layers keep the searched formats; wide ones get the histogram choice at 16 bits
        assert kw["act_fracs"][i] == (calibrate.choose_frac(calib[i], 16, "mse") if i in wide else f)
    assert kw["act_fracs"][0] > uni["act_fracs"][0] + 5
    # its head shifts were measured on the wide model (not the 8-bit one's)
    assert not np.allclose(kw["bias_shifts"][15], uni["bias_shifts"][15])
    # widths without an entry: derived from the uniform entry when the statistics are given
    assert recipes.shipped_decisions("yolov3-tiny", net, opts, layer_abits={14: 12}) == {}
    kw = recipes.shipped_decisions("yolov3-tiny", net, opts, layer_abits={14: 12}, calib=calib)
    assert kw["layer_abits"] == {14: 12}
    assert kw["act_fracs"][14] == calibrate.choose_frac(calib[14], 12, "mse")
    assert {i: f for i, f in kw["act_fracs"].items() if i != 14} == \
        {i: f for i, f in uni["act_fracs"].items() if i != 14}
    assert all(np.array_equal(kw["bias_shifts"][i], uni["bias_shifts"][i]) for i in (15, 22))
    with pytest.raises(FormatError, match="layer_abits"):
        from mdfi.quant.formats import decision_layer_abits
        decision_layer_abits({"layer_abits": {"x": 16}})


def test_wide_activations_are_named_and_round_trip(tmp_path):
    from mdfi.cli.info import info_table
    net = small(TOY, seed=5)
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, layer_abits={1: 16},
                          act_fracs={0: 3, 1: 11, 2: 3}, cfg_text=HEAD + TOY)
    assert [ql.out_fmt.bits for ql in qm.layers] == [8, 16, 8]
    assert qm.describe().startswith("w8a8 mixed a16@1 ")
    text = info_table(qm)
    assert "activation widths 1:16 (the other layers 8 bits" in text
    modelfile.save(qm, tmp_path / "m.mdfi")
    back = modelfile.load(tmp_path / "m.mdfi")
    assert [ql.out_fmt for ql in back.layers] == [ql.out_fmt for ql in qm.layers]
    assert back.describe() == qm.describe()
    x = input_to_u8(_inputs(1)[0])
    assert all(np.array_equal(a, b) for a, b in zip(qm.forward_ref(x), back.forward_ref(x)))


def test_layer_abits_argument():
    import argparse
    from mdfi.cli.common import layer_bits_arg
    assert layer_bits_arg("0=16,10=12") == {0: 16, 10: 12}
    for bad in ("0=17", "x=8", "3", "", "-1=16"):
        with pytest.raises(argparse.ArgumentTypeError, match="layer-abits"):
            layer_bits_arg(bad)


def test_quantize_wide_activation_variant_with_shipped_decisions(tmp_path, capsys, tiny_weights_path):
    from mdfi.cli import main
    out = tmp_path / "wide.mdfi"
    assert main(["quantize", "--model", "yolov3-tiny", "--layer-abits", "0=16,10=16,14=16,21=16",
                 "-o", str(out)]) == 0
    assert "w8a8 mixed a16@0,10,14,21 per-channel" in capsys.readouterr().err
    qm = modelfile.load(out)
    assert {ql.index for ql in qm.layers if ql.kind == "convolutional" and ql.out_fmt.bits == 16} == {0, 10, 14, 21}
    assert all(ql.wbits == 8 for ql in qm.layers if ql.kind == "convolutional")
    assert qm.layers[15].method["bias"] == "empirical"          # the wide entry's head shifts
    assert main(["info", str(out)]) == 0
    assert "activation widths 0:16, 10:16, 14:16, 21:16 (the other layers 8 bits" in capsys.readouterr().out


def test_quantize_layer_wbits(tmp_path, capsys, tiny_weights_path):
    from mdfi.cli import main
    out = tmp_path / "w4.mdfi"
    assert main(["quantize", "--model", "yolov3-tiny", "--wbits", "4", "--layer-wbits", "0=8", "-o", str(out)]) == 0
    assert "w4a8 mixed w8@0 per-channel" in capsys.readouterr().err
    qm = modelfile.load(out)
    assert [ql.wbits for ql in qm.layers if ql.kind == "convolutional"][:2] == [8, 4]
    rc = main(["quantize", "--model", "yolov3-tiny", "--layer-wbits", "0=8", "--size-budget", "20%", "--calib",
               str(tmp_path), "-o", str(tmp_path / "x.mdfi")])
    assert rc == 2 and "not both" in capsys.readouterr().err


def test_empirical_bias_mode_pre_matches_pre_activation_means():
    """bias_mode="pre" (round 17c): the empirical correction matches pre-activation means;
    for a linear layer that is the same as "post", for a leaky one it is not; recorded in the
    options; unknown modes refused."""
    net = small(TOY, seed=3)
    xs = _inputs(6)
    kw = dict(wbits=4, abits=5, per_channel=True, act_fracs={0: 3, 1: 3, 2: 3}, cfg_text="x",
              bias_correction="empirical", calib_inputs=xs)
    post = quantize_network(net, **kw)
    pre = quantize_network(net, bias_mode="pre", **kw)
    assert pre.options["bias_mode"] == "pre" and "bias_mode" not in post.options
    assert not np.array_equal(pre.layers[0].bias, post.layers[0].bias)        # leaky: differs
    solo = small("[convolutional]\nfilters=4\nsize=1\nactivation=linear\n", seed=3)   # one linear layer
    kw1 = dict(kw, act_fracs={0: 3})
    assert np.array_equal(quantize_network(solo, bias_mode="pre", **kw1).layers[0].bias,
                          quantize_network(solo, **kw1).layers[0].bias)
    with pytest.raises(FormatError, match="bias_mode"):
        quantize_network(net, bias_mode="mid", **kw)
