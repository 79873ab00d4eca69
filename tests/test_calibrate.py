"""Calibration: activation statistics, their JSON files, the data-free estimate and the
choice of per-layer fixed-point formats."""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest
from PIL import Image

from mdfi.quant import calibrate as C
from mdfi import fixedpoint as fp
from mdfi import zoo
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import FormatError, MDFIError, ModelFileError
from mdfi.darknet.network import Network
from mdfi.preprocess import image_to_input
from mdfi.darknet.weights import random_weights

# A small network with every layer kind except [region] (all cheap at 32x32).
TINY_CFG = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=relu

[shortcut]
from=-2
activation=linear

[upsample]
stride=2

[route]
layers=-1,0

[reorg]
stride=2

[convolutional]
filters=6
size=1
stride=1
activation=linear

[yolo]
mask=0
anchors=10,14
classes=1
num=1
"""


def tiny_net(seed=0):
    net = Network(parse_cfg_text(TINY_CFG, "t.cfg"), "t.cfg", warn=False)
    random_weights(net, seed=seed)
    return net


def rand_images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
            rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)]


def stats_of(values):
    return C.TensorStats.from_array(np.asarray(values, dtype=np.float32))


def stats_range(lo, hi):
    """Stats of a tensor holding just ``lo`` and ``hi``."""
    return stats_of([lo, hi])


# -- TensorStats ----------------------------------------------------------------------------------
def test_tensorstats_known_values():
    s = stats_of([0.0, 1.0, -0.5, 3.0])
    assert (s.count, s.min, s.max, s.zeros, s.nonfinite) == (4, -0.5, 3.0, 1, 0)
    # bin = (log2|v| + 32) * 16, floored: 1.0 -> 512; 3.0 -> 512 + floor(16*log2 3) = 537;
    # 0.5 -> (31)*16 = 496
    assert np.flatnonzero(s.pos).tolist() == [512, 537] and s.pos.sum() == 2
    assert np.flatnonzero(s.neg).tolist() == [496] and s.neg.sum() == 1
    assert s.abs_max == 3.0


def test_tensorstats_bins_edges_and_range_ends():
    edges = C.bin_edges()
    assert edges.dtype == np.float32 and edges.size == C.NBINS + 1 and np.isinf(edges[-1])
    k = 300
    below = np.nextafter(edges[k], np.float32(0))
    s = stats_of([edges[k], below, 1e-30, 1e20, -1e20])
    # exactly on an edge: that bin; one ulp below: the previous one
    assert s.pos[k] == 1 and s.pos[k - 1] == 1
    # below 2**-32 -> first bin, above 2**32 -> last bin
    assert s.pos[0] == 1 and s.pos[C.NBINS - 1] == 1 and s.neg[C.NBINS - 1] == 1
    # exact binning: every value lands where the float32 edges say, for float32 and float64
    rng = np.random.default_rng(3)
    v = np.concatenate([np.exp2(rng.uniform(-36, 36, 20000)), edges[:-1],
                        np.nextafter(edges[:-1], np.float32(np.inf))]).astype(np.float32)
    ref = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, C.NBINS - 1)
    assert np.array_equal(C.TensorStats.from_array(v).pos, np.bincount(ref, minlength=C.NBINS))
    assert C.TensorStats.from_array(v.astype(np.float64)) == C.TensorStats.from_array(v)


def test_tensorstats_nonfinite_and_empty():
    s = stats_of([1.0, np.nan, np.inf, -2.0, -0.0])
    assert (s.count, s.nonfinite, s.min, s.max, s.zeros) == (5, 2, -2.0, 1.0, 1)
    e = C.TensorStats.from_array(np.zeros(0, np.float32))
    assert e.count == 0 and e.min is None and e.max is None
    assert C.TensorStats.from_dict(e.to_dict()) == e
    only_nan = stats_of([np.nan])
    assert only_nan.min is None and only_nan.nonfinite == 1


def test_tensorstats_merge_equals_concatenation():
    rng = np.random.default_rng(1)
    parts = [rng.normal(0, 3, n).astype(np.float32) for n in (1000, 1, 0, 5000)]
    parts[1][:] = 0.0
    parts[3][::7] = 0.0
    merged = C.TensorStats()
    for p in parts:
        merged.merge(C.TensorStats.from_array(p))
    whole = C.TensorStats.from_array(np.concatenate(parts))
    assert merged == whole
    step = C.TensorStats()
    for p in parts:
        step.update(p)
    assert step == whole
    assert whole.count == 6001 and whole.zeros == int((np.concatenate(parts) == 0).sum())


def test_tensorstats_json_round_trip_is_exact_and_sparse():
    rng = np.random.default_rng(2)
    s = C.TensorStats.from_array(rng.standard_cauchy(10000).astype(np.float32))
    d = s.to_dict()
    text = json.dumps(d)
    back = C.TensorStats.from_dict(json.loads(text))
    assert back == s and back.min == s.min and back.max == s.max
    assert len(d["pos"]) == np.count_nonzero(s.pos) < C.NBINS       # only non-zero bins


# -- CalibStats files -----------------------------------------------------------------------------
def _calib():
    rng = np.random.default_rng(4)
    layers = {i: C.TensorStats.from_array(rng.normal(i, 1 + i, 500).astype(np.float32)) for i in range(3)}
    return C.CalibStats(layers, source="unit test", num_images=2, input_size=(32, 32), cfg="t.cfg",
                        method="images", layer_kinds=["convolutional", "maxpool", "convolutional"],
                        input=C.TensorStats.from_array(rng.random(100).astype(np.float32)))


def test_calibstats_json_round_trip(tmp_path):
    calib = _calib()
    path = tmp_path / "sub" / "calib.json"
    calib.to_json(path)
    back = C.CalibStats.from_json(path)
    assert back == calib
    assert back.meta["method"] == "images" and back.num_images == 2 and back.input_size == (32, 32)
    d = json.loads(path.read_text())                       # plain JSON
    assert d["format"] == "mdfi-calibration" and d["version"] == C.SCHEMA_VERSION
    assert set(d["layers"]) == {"0", "1", "2"}
    assert [p.name for p in path.parent.iterdir()] == ["calib.json"]   # no temporary left


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t[: len(t) // 2], "truncated"),
    (lambda t: "garbage" + t, "invalid JSON"),
    (lambda t: "", "empty"),
    (lambda t: t.replace('"mdfi-calibration"', '"other"'), "not an MDFI calibration file"),
    (lambda t: t.replace('"version": 1', '"version": 99'), "newer MDFI"),
    (lambda t: t.replace('"count":500', '"count":501', 1), "histograms and zeros hold"),
    (lambda t: t.replace('"pos":[[', '"pos":[[5000,1],[', 1), "outside"),
    (lambda t: t.replace('"min":', '"min":NaN,"x":', 1), "non-finite"),
    (lambda t: t.replace('"method":"images"', '"method":"guess"'), "unknown method"),
    (lambda t: t.replace('"layers": {', '"layers": {"7": {},', 1), "outside the network"),
])
def test_calibstats_corrupt_files(tmp_path, mutate, message):
    good = tmp_path / "good.json"
    _calib().to_json(good)
    bad = tmp_path / "bad.json"
    bad.write_text(mutate(good.read_text()))
    with pytest.raises(ModelFileError) as exc:
        C.CalibStats.from_json(bad)
    assert str(bad) in str(exc.value) and message in str(exc.value)


def test_calibstats_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such calibration file"):
        C.CalibStats.from_json(tmp_path / "nope.json")


def test_calibstats_min_max_must_match_histograms(tmp_path):
    path = tmp_path / "c.json"
    _calib().to_json(path)
    d = json.loads(path.read_text())
    d["layers"]["0"]["max"] = d["layers"]["0"]["max"] / 4       # histogram now exceeds max
    path.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="above max"):
        C.CalibStats.from_json(path)


def test_calibstats_max_far_above_the_histograms_is_refused(tmp_path):
    """An edited max of 1e300 was accepted: every --method max format took its widest range."""
    path = tmp_path / "c.json"
    _calib().to_json(path)
    d = json.loads(path.read_text())
    d["layers"]["1"]["max"] = 1e300
    path.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="max 1e\\+300 lies above every value"):
        C.CalibStats.from_json(path)
    d["layers"]["1"]["max"] = json.loads(json.dumps(_calib().to_dict()))["layers"]["1"]["max"]
    d["layers"]["2"]["min"] = -1e300
    path.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="lies below every value"):
        C.CalibStats.from_json(path)


# -- choose_frac ----------------------------------------------------------------------------------
@pytest.mark.parametrize("lo, hi, bits, expected", [
    (0.0, 3.0, 8, 5),              # 3*32 = 96 <= 127; 3*64 = 192 > 127
    (-4.0, 0.0, 8, 5),             # -4*32 = -128 fits; -4*64 = -256 does not
    (-4.0, 3.0, 8, 5),
    (0.0, 127.5 / 32, 8, 4),       # 127.5 rounds half up to 128: does NOT fit at frac 5
    (0.0, 127.49 / 32, 8, 5),      # 127.49 -> 127 fits
    (-128.5 / 32, 0.0, 8, 5),      # floor(-128.5 + 0.5) = -128 fits
    (-128.51 / 32, 0.0, 8, 4),     # -128.51 -> -129 does not
    (0.0, 3.0, 16, 13),            # 3*8192 = 24576 <= 32767; 3*16384 = 49152 > 32767
    (0.0, 0.5, 2, 1),              # 2 bits: [-2, 1]; 0.5*2 = 1 fits, 0.5*4 = 2 does not
    (0.0, 1e-3, 8, 16),            # 65.5 -> 66 fits; at 17: 131 does not
    (-1000.0, 1000.0, 8, -3),      # 1000/8 = 125
])
def test_choose_frac_max_hand_derived(lo, hi, bits, expected):
    f = C.choose_frac(stats_range(np.float32(lo), np.float32(hi)), bits, "max")
    assert type(f) is int and f == expected
    # cross-check with the fixed-point helpers: fits at f, not at f + 1
    v = np.array([np.float32(lo), np.float32(hi)], dtype=np.float64)
    assert np.array_equal(fp.quantize_float(v, f, bits), fp.round_half_up_float(v * 2.0 ** f))
    assert not np.array_equal(fp.quantize_float(v, f + 1, bits), fp.round_half_up_float(v * 2.0 ** (f + 1)))


def test_choose_frac_special_cases():
    zeros = stats_of(np.zeros(10))
    assert C.choose_frac(zeros, 8, "max") == 7 and C.choose_frac(zeros, 8, "mse") == 7
    assert C.choose_frac(C.TensorStats(), 12, "percentile") == 11
    # unsigned: [0, 255]; 3*64 = 192 fits, 3*128 = 384 does not
    assert C.choose_frac(stats_range(0.0, 3.0), 8, "max", signed=False) == 6


def test_choose_frac_errors():
    s = stats_range(-1.0, 1.0)
    for bits in (1, 17, 0, 8.0, True):
        with pytest.raises(FormatError):
            C.choose_frac(s, bits, "max")
    with pytest.raises(FormatError, match="max, percentile, mse"):
        C.choose_frac(s, 8, "kl")
    with pytest.raises(FormatError, match="no option 'p'"):
        C.choose_frac(s, 8, "max", p=99.0)
    with pytest.raises(FormatError, match="must be in"):
        C.choose_frac(s, 8, "percentile", p=0)


def _uniform_with_outlier(outlier=20.0, n=100_000):
    rng = np.random.default_rng(5)
    v = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    return np.append(v, np.float32(outlier))


def _true_sq_error(values, frac, bits):
    v = values.astype(np.float64)
    return float(((fp.quantize_float(v, frac, bits) * 2.0 ** -frac - v) ** 2).sum())


def test_percentile_ignores_single_outlier():
    v = _uniform_with_outlier()
    s = C.TensorStats.from_array(v)
    assert C.choose_frac(s, 8, "max") == 2                  # 20*4 = 80; 20*8 = 160 > 127
    # 99.99th percentile of |v| is ~1.0: 1*64 = 64 fits, 1*128 does not
    assert C.choose_frac(s, 8, "percentile") == 6
    assert C.choose_frac(s, 8, "percentile", p=100) == 2
    assert s.abs_percentile(50) == pytest.approx(0.5, rel=0.05)


def test_mse_clips_rare_outlier_when_that_helps():
    v = _uniform_with_outlier()
    s = C.TensorStats.from_array(v)
    fmax = C.choose_frac(s, 8, "max")
    f = C.choose_frac(s, 8, "mse")
    assert f > fmax                                          # the outlier clips
    # the real squared error agrees: f is better than fmax and the best of the candidates
    errs = {g: _true_sq_error(v, g, 8) for g in range(fmax - 2, fmax + 5)}
    assert errs[f] < errs[fmax]
    assert errs[f] <= 1.05 * min(errs.values())
    # a huge outlier dominates the error: then mse keeps it (no clipping)
    big = C.TensorStats.from_array(_uniform_with_outlier(1000.0))
    assert C.choose_frac(big, 8, "mse") == C.choose_frac(big, 8, "max")


@pytest.mark.parametrize("lo, hi, bits", [(0.0, 3.0, 8), (-3.0, 3.0, 8), (-5.0, 0.0, 8), (0.0, 2.5, 12)])
def test_mse_equals_max_for_uniform_data(lo, hi, bits):
    rng = np.random.default_rng(6)
    s = C.TensorStats.from_array(rng.uniform(lo, hi, 50_000).astype(np.float32))
    assert C.choose_frac(s, bits, "mse") == C.choose_frac(s, bits, "max")


# -- collect ------------------------------------------------------------------------------------
def _direct_outputs(net, images, flip=False):
    outs = []
    for img in images:
        for im in ([img, img[:, ::-1]] if flip else [img]):
            x = image_to_input(np.ascontiguousarray(im), net.width, net.height)
            outs.append(net.forward_float(x, keep="all"))
    return outs


def test_collect_matches_direct_forward(capsys):
    net = tiny_net()
    images = rand_images()
    calib = C.collect(net, images, progress=False)
    outs = _direct_outputs(net, images)
    assert sorted(calib.layers) == list(range(len(net.layers)))
    for layer in net.layers:
        i = layer.index
        vals = np.concatenate([o[i].reshape(-1) for o in outs])
        s = calib[i]
        assert s.count == int(np.prod(layer.out_shape)) * len(images) == vals.size
        assert s.max == float(vals.max()) and s.min == float(vals.min())
        assert s.zeros == int((vals == 0).sum())
        assert s == C.TensorStats.from_array(vals)
    assert calib.meta["method"] == "images" and calib.num_images == 2
    assert calib.input_size == (32, 32) and calib.cfg == "t.cfg"
    assert calib.input.count == 3 * 32 * 32 * 2
    assert capsys.readouterr().err == ""


def test_collect_augment_adds_flipped_copies():
    net = tiny_net()
    images = rand_images()
    calib = C.collect(net, images, progress=False, augment=True)
    outs = _direct_outputs(net, images, flip=True)
    for i in (0, 5, 8):
        vals = np.concatenate([o[i].reshape(-1) for o in outs])
        assert calib[i] == C.TensorStats.from_array(vals)
    assert calib.num_images == 2 and calib.meta["augment"] is True


def test_collect_from_dir_and_progress(tmp_path, capsys):
    net = tiny_net()
    images = rand_images()
    Image.fromarray(images[0]).save(tmp_path / "b_first.PNG")     # upper-case extension
    Image.fromarray(images[1]).save(tmp_path / "c_second.png")
    (tmp_path / "a_notes.txt").write_text("not an image")
    (tmp_path / "d_dir.png").mkdir()                               # a directory: ignored
    calib = C.collect_from_dir(net, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert err.splitlines() == ["calibrating: 1/2 images, b_first.PNG",
                                "calibrating: 2/2 images, c_second.png"]
    ref = C.collect(net, images, progress=False)
    assert all(calib[i] == ref[i] for i in ref.layers)             # PNG is lossless
    assert calib.source == str(tmp_path) and calib.num_images == 2


def test_collect_progress_in_place_on_a_tty(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    stream = Tty()
    monkeypatch.setattr(sys, "stderr", stream)
    C.collect(tiny_net(), (img for img in rand_images()), progress=True)   # a generator: no total
    out = stream.getvalue()
    assert out.startswith("\rcalibrating: 1 images, image #1") and "\rcalibrating: 2 images, image #2" in out
    assert out.endswith("\n") and out.count("\n") == 1


def test_collect_needs_images(tmp_path):
    net = tiny_net()
    with pytest.raises(MDFIError, match="at least one image"):
        C.collect(net, [], progress=False)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(MDFIError, match="no calibration images"):
        C.collect_from_dir(net, tmp_path)
    with pytest.raises(MDFIError, match="not found"):
        C.collect_from_dir(net, tmp_path / "missing")


def test_choose_formats_covers_every_layer_and_checks_the_network():
    net = tiny_net()
    calib = C.collect(net, rand_images(), progress=False)
    for method in C.FRAC_METHODS:
        fmts = C.choose_formats(calib, net, 8, method)
        assert sorted(fmts) == list(range(len(net.layers)))
        assert all(type(f) is int for f in fmts.values())
        for i, f in fmts.items():
            fp.QFormat(8, f)                                 # inside the accepted range
    fmax = C.choose_formats(calib, net, 8, "max")
    for i, f in fmax.items():                                # max: nothing clips
        s = calib[i]
        assert fp.round_half_up_float(s.max * 2.0 ** f) <= 127
        assert fp.round_half_up_float(s.min * 2.0 ** f) >= -128
    other = Network(parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\n[maxpool]\nsize=2\nstride=2\n",
                                   "o.cfg"), "o.cfg", warn=False)
    with pytest.raises(ModelFileError, match="do not match"):
        C.choose_formats(calib, other, 8, "max")
    with pytest.raises(FormatError):
        C.choose_formats(calib, net, 20, "max")


# -- data-free estimate ---------------------------------------------------------------------------
def test_estimate_single_bn_conv_is_the_expected_normal():
    net = Network(parse_cfg_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nbatch_normalize=1\n"
                                 "filters=1\nsize=1\nactivation=linear\n", "bn.cfg"), "bn.cfg", warn=False)
    random_weights(net)
    conv = net.layers[0]
    conv.biases[:] = 1.0
    conv.scales[:] = -0.5                                      # the sign of the scale is irrelevant
    s = C.estimate_from_batchnorm(net)[0]
    assert s.max == pytest.approx(4.0) and s.min == pytest.approx(-2.0)      # mean +- 6 std
    # fraction of negative values: P(N(1, 0.25) < 0) = Phi(-2) = 0.02275
    assert s.neg.sum() / s.count == pytest.approx(0.02275, rel=1e-3)
    assert C.choose_frac(s, 8, "max") == 4                     # 4*16 = 64; 4*32 = 128 > 127


def test_estimate_from_batchnorm_yolov3_tiny(tmp_path):
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"), warn=False)
    random_weights(net, seed=1)
    calib = C.estimate_from_batchnorm(net)
    assert sorted(calib.layers) == list(range(len(net.layers)))
    assert calib.meta["method"] == "batchnorm-estimate" and calib.num_images == 0
    for i, s in calib.items():
        assert s.count > 0 and math.isfinite(s.min) and math.isfinite(s.max) and s.min <= s.max
    for layer in net.layers:
        if layer.kind == "convolutional" and layer.activation == "leaky":
            assert calib[layer.index].neg.sum() > 0 and calib[layer.index].min > -0.2 * calib[layer.index].max
    for bits in (4, 8, 16):
        for method in C.FRAC_METHODS:
            fmts = C.choose_formats(calib, net, bits, method)
            assert sorted(fmts) == list(range(len(net.layers)))
            assert all(type(f) is int and fp.QFormat.MIN_FRAC <= f <= fp.QFormat.MAX_FRAC
                       for f in fmts.values())
    path = tmp_path / "est.json"
    calib.to_json(path)
    assert C.CalibStats.from_json(path) == calib               # synthetic stats are consistent


def test_estimate_covers_every_layer_kind():
    net = tiny_net()                                           # maxpool, shortcut, upsample, route, reorg, yolo
    est = C.estimate_from_batchnorm(net)
    assert sorted(est.layers) == list(range(len(net.layers)))
    assert est[4] == est[3]                                    # upsample: the same values
    assert est[5].max == max(est[4].max, est[0].max)           # route: union of its inputs
    assert est[5].count == pytest.approx(est[4].count + est[0].count, rel=1e-6)
    assert est[6].count == pytest.approx(4 * est[5].count, rel=1e-6)   # reorg: same values
    assert est[3].min < 0 < est[3].max                         # shortcut of leaky + relu
    assert est[2].min == 0.0 and est[2].zeros > 0              # relu
    region = Network.from_cfg(zoo.cfg_path("yolov2-tiny"), warn=False)
    random_weights(region)
    est = C.estimate_from_batchnorm(region)
    head = est[len(region.layers) - 1]
    assert sorted(est.layers) == list(range(len(region.layers))) and head.count > 0
    assert all(isinstance(f, int) for f in C.choose_formats(est, region, 8, "mse").values())


def test_estimate_is_close_to_images_on_tiny_net():
    """The estimate is approximate, but on a random-weight net it lands within a few
    bits of real statistics."""
    net = tiny_net()
    real = C.collect(net, rand_images(), progress=False)
    est = C.estimate_from_batchnorm(net)
    for i in (0, 2):                                           # the batch-norm convolutions
        assert abs(C.choose_frac(real[i], 8, "max") - C.choose_frac(est[i], 8, "max")) <= 3


def test_calibstats_merge_of_two_runs_equals_one_run():
    net = tiny_net()
    a, b = rand_images()
    both = C.collect(net, [a, b], progress=False)
    merged = C.collect(net, [a], progress=False).merge(C.collect(net, [b], progress=False))
    assert merged.layers == both.layers and merged.input == both.input and merged.num_images == 2
    with pytest.raises(MDFIError, match="different networks"):
        merged.merge(_calib())                                 # other layer kinds
