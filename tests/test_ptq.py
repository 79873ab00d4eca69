"""Post-training quantization methods (mdfi/quant): route formats, empirical bias
correction, GPTQ rounding, the per-layer method record, the eval bias columns."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi import modelfile
from mdfi.cfgfile import parse_cfg_text
from mdfi.errors import FormatError, ModelFileError
from mdfi.evaluate import agreement
from mdfi.detection import Detection
from mdfi.network import Network
from mdfi.quant.gptq import gptq_round
from mdfi.quantize import quantize_network, unify_route_formats
from mdfi.weights import random_weights

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
    from mdfi.quantize import input_to_u8
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
        quantize_network(net, weight_rounding="adaround", act_fracs={0: 3, 1: 3, 2: 3}, cfg_text="x")


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
    from mdfi import recipes, zoo
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
