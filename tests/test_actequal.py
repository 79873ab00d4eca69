"""Activation-range equalization (mdfi/quant/actequal.py): the rescaled float network
computes the same function, the factors respect their bounds, the method is recorded in
the model file, the C engine equals the reference on the result, bad settings are refused.
Small random networks only (no photos)."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.errors import FormatError
from mdfi.quant import actequal, align, modelfile
from mdfi.quant.quantize import quantize_network

from test_align import GRAPH, HEAD, _inputs, _net, _same_function, assert_c_equals_reference


@pytest.mark.parametrize("settings", ["", "bound=max,headroom=2,max_scale=16"])
def test_equalized_network_computes_the_same_function(settings):
    net = _net(HEAD + GRAPH)
    xs = _inputs()
    eq = actequal.prepare(net, settings, wbits=6, abits=6, inputs=xs)
    assert sorted(eq.scales) == [0, 2, 4]                # layer 6 feeds the head: it keeps its scale
    s = np.concatenate(list(eq.scales.values()))
    st = eq.settings
    assert np.all((s >= st.min_scale * (1 - 1e-9)) & (s <= st.max_scale * (1 + 1e-9)))
    assert np.any(s > 1.05)                              # something was enlarged
    assert _same_function(net, eq.network, _inputs(2, seed=9)) < 1e-5


@pytest.mark.parametrize("bound", ["max", "mse"])
def test_enlarged_channels_stay_inside_the_bound(bound):
    from mdfi.quant.calibrate import choose_frac
    net = _net(HEAD + GRAPH, seed=5)
    xs = _inputs(3, seed=2)
    stats = align.collect_inputs(net, xs)
    for headroom in (1.0, 2.0):
        eq = actequal.prepare(net, {"bound": bound, "headroom": headroom, "max_scale": 64}, wbits=6, abits=6,
                              inputs=xs)
        absmax = align.channel_absmax(net, xs)
        for i, s in eq.scales.items():
            r = absmax[i]
            # the top of the 6-bit format holding the tensor's largest calibration value (max), or
            # of the format the mse calibration chose for the original tensor (mse)
            f = fp.max_frac(0.0, float(r.max()), 6) if bound == "max" else choose_frac(stats[i], 6, "mse")
            top = fp.qmax(6) * 2.0 ** -f
            up = s > 1.0
            assert np.all(s[up] * r[up] <= top / headroom * (1 + 1e-9)), i
        # the rescaled network's calibration maxima are the original ones times the factors
        after = align.channel_absmax(eq.network, xs)
        for i, s in eq.scales.items():
            assert np.allclose(after[i], absmax[i] * s, rtol=1e-4), i


def test_record_in_the_model_file_and_c_equals_reference(tmp_path):
    net = _net(HEAD + GRAPH, seed=4)
    xs = _inputs(2)
    qm = quantize_network(net, wbits=6, abits=6, per_channel=True, act_equalize=True, calib_inputs=xs,
                          cfg_text=HEAD + GRAPH, layer_wbits={0: 8})
    recs = {i: ql.method["actequal"] for i, ql in enumerate(qm.layers)
            if (getattr(ql, "method", None) or {}).get("actequal")}
    assert recs == {0: "mse", 2: "mse", 4: "mse"}
    modelfile.save(qm, tmp_path / "a.mdfi")
    back = modelfile.load(tmp_path / "a.mdfi")
    assert [getattr(ql, "method", None) for ql in back.layers] == [getattr(ql, "method", None) for ql in qm.layers]
    opt = back.options["actequal"]
    assert opt["bound"] == "mse" and opt["layers"] == [0, 2, 4] and opt["abits"] == 6
    assert "align" not in back.options
    from mdfi.cli.info import info_table
    text = info_table(back)
    assert "actequal mse" in text
    line = [ln for ln in text.splitlines() if ln.startswith("cross-layer rescaling:")]
    assert len(line) == 1 and "activation-range equalization (bound mse, headroom 1, max_scale 4" in line[0]
    assert f"{opt['channels']} channels of 3 layers, {opt['channels_up']} enlarged" in line[0]
    assert_c_equals_reference(qm, back)


def test_bad_settings_are_refused():
    net = _net(HEAD + GRAPH)
    xs = _inputs(1)
    kw = dict(wbits=6, abits=6, cfg_text="x", calib_inputs=xs)
    with pytest.raises(FormatError, match="unknown settings"):
        quantize_network(net, per_channel=True, act_equalize="headroom=2,colour=red", **kw)
    with pytest.raises(FormatError, match="bound='median'"):
        quantize_network(net, per_channel=True, act_equalize={"bound": "median"}, **kw)
    with pytest.raises(FormatError, match="headroom >= 1"):
        quantize_network(net, per_channel=True, act_equalize="headroom=0.5", **kw)
    with pytest.raises(FormatError, match="not a number"):
        quantize_network(net, per_channel=True, act_equalize="max_scale=big", **kw)
    with pytest.raises(FormatError, match="bound is given twice"):       # the last one silently won
        actequal.settings_from("bound=mse,bound=max")
    with pytest.raises(FormatError, match="per-channel"):
        quantize_network(net, per_channel=False, act_equalize=True, **kw)
    with pytest.raises(FormatError, match="calibration images"):
        quantize_network(net, wbits=6, per_channel=True, act_equalize=True, cfg_text="x")
    with pytest.raises(FormatError, match="not both"):
        quantize_network(net, per_channel=True, act_equalize=True, align="mse", **kw)
    eq = actequal.prepare(net, None, wbits=6, abits=6, inputs=xs)
    with pytest.raises(FormatError, match="other weight widths"):
        quantize_network(net, per_channel=True, act_equalize=eq, **dict(kw, wbits=4))
    from mdfi.layers.convolutional import check_method
    with pytest.raises(FormatError, match="unknown actequal method"):
        check_method({"actequal": "fit"}, 3)


def test_cli_refuses_bad_act_equalize_before_heavy_work(tmp_path, capsys):
    from mdfi.cli import main
    out = tmp_path / "m.mdfi"
    rc = main(["quantize", "--model", "yolov3-tiny", "--act-equalize", "-o", str(out)])
    assert rc == 2 and "--act-equalize needs calibration images (--calib DIR)" in capsys.readouterr().err
    rc = main(["quantize", "--model", "yolov3-tiny", "--act-equalize", "headroom=x", "--calib", str(tmp_path),
               "-o", str(out)])
    assert rc == 2 and "act_equalize: headroom='x' is not a number" in capsys.readouterr().err
    rc = main(["quantize", "--model", "yolov3-tiny", "--act-equalize", "--align", "mse", "--calib", str(tmp_path),
               "-o", str(out)])
    assert rc == 2 and "not both" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("bad", [[1, 2], {"bound": ["x"]}, {"bound": "a\x1b[2J"}, {"bad key": 1},
                                 {"scale_max": float("nan")}, {"layers": [0, "1"]}])
def test_hostile_rescaling_summary_is_a_load_error(tmp_path, bad):
    """`mdfi info` prints options.actequal / options.align / options.search: a header whose summary is not
    names to numbers, printable texts or layer lists is refused at load with one line."""
    net = _net(HEAD + GRAPH, seed=4)
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, cfg_text=HEAD + GRAPH)
    for key in ("actequal", "align", "search"):
        qm.options[key] = bad
        modelfile.save(qm, tmp_path / "h.mdfi")
        with pytest.raises(modelfile.ModelFileError, match=f"h.mdfi.*options: {key} is not a summary"):
            modelfile.load(tmp_path / "h.mdfi")
        del qm.options[key]


def test_the_mse_bound_uses_the_models_clip_budget(tmp_path):
    """With a clip budget (mdfi quantize --clip-budget), bound=mse keeps the format chosen with
    that budget: a channel is never enlarged past the top of the finer format the model's
    activations get, and the budget is recorded.  Without one, the calibrate default."""
    from mdfi.quant.calibrate import choose_frac
    net = _net(HEAD + GRAPH, seed=5)
    xs = _inputs(3, seed=2)
    stats = align.collect_inputs(net, xs)
    absmax = align.channel_absmax(net, xs)
    budget = 5.0                                      # percent: finer formats than the default 0.01 %
    finer = [i for i in (0, 2, 4) if choose_frac(stats[i], 6, "mse", clip_budget=budget) > choose_frac(stats[i], 6)]
    assert finer, "the budget must change a format for this test to mean anything"
    st = {"max_scale": 64}
    plain = actequal.prepare(net, st, wbits=6, abits=6, inputs=xs)
    eq = actequal.prepare(net, st, wbits=6, abits=6, inputs=xs, clip_budget=budget)
    for i, s in eq.scales.items():
        top = fp.qmax(6) * 2.0 ** -choose_frac(stats[i], 6, "mse", clip_budget=budget)
        up = s > 1.0
        assert np.all(s[up] * absmax[i][up] <= top * (1 + 1e-9)), i
    # where the budgeted format is finer, some channel the default bound enlarged past its top
    assert any(np.any(plain.scales[i] * absmax[i] > fp.qmax(6) * 2.0 ** -choose_frac(stats[i], 6, "mse",
                                                                                     clip_budget=budget) * (1 + 1e-9))
               for i in finer)
    assert eq.summary()["clip_budget"] == budget and "clip_budget" not in plain.summary()
    # quantize_network passes act_options' budget on (the model records it)
    qm = quantize_network(net, wbits=6, abits=6, per_channel=True, act_equalize=st, calib_inputs=xs,
                          cfg_text=HEAD + GRAPH, act_options={"clip_budget": budget})
    assert qm.options["actequal"]["clip_budget"] == budget
    assert qm.options["actequal"]["scale_max"] == eq.summary()["scale_max"]
    modelfile.save(qm, tmp_path / "b.mdfi")
    assert modelfile.load(tmp_path / "b.mdfi").options["actequal"]["clip_budget"] == budget
