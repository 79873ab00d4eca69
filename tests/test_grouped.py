"""Grouped convolutions (``[convolutional] groups=G``; pj src/convolutional_layer.c:458-469, AB
src/convolutional_layer.c:1222-1235, 1364-1380): filter group j reads input channels
[j*C/G, (j+1)*C/G) only.

* float path = AlexeyAB's Darknet itself (tests/fixtures/darknet-alexeyab/grouped-random/,
  README there): a small network with ResNeXt-style, depthwise (groups = channels), strided and
  1x1 grouped layers, every layer and its detections; csresnext50-panet-spp (AlexeyAB's cfg at
  96x96, seeded random weights) one layer at a time, the grouped layers of every stage and the
  three heads;
* integer reference: a grouped convolution equals the dense convolution whose weights are zero
  outside the groups (an independent statement of the same sum), on random and edge shapes;
* the C engine equals the reference on every path: tests/test_paths_alexeyab.py (mini-grouped);
* the golden export (``groups=`` in model.txt) rebuilt byte for byte by the standalone runner (and
  under qemu on NEON: tests/test_aarch64.py);
* what is not implemented for grouped layers is refused in one line (the opt-in weight roundings),
  and a cfg whose groups do not divide its channels is refused with file:line.
"""

from __future__ import annotations

import numpy as np
import pytest

from alexeyab_data import GROUPED, detection_mismatches, load_json, random_network, rel_err
from alexeyab_data import random_weights_file as random_weights
from test_c_runner import c_build, runner  # noqa: F401 (fixtures)
from mdfi import fixedpoint as fp
from mdfi.darknet.network import Network
from mdfi.darknet.weights import load_weights
from mdfi.errors import CfgError, FormatError
from mdfi.layers.conv_arith import conv2d_int_ref
from mdfi.quant.quantize import input_to_u8, quantize_network

TOL = 1e-4
MINI = GROUPED / "mini-grouped.cfg"
CSX = "csresnext50-panet-spp-96.cfg"


def mini_network(darknet=None):
    """The mini network with the fixture's seeded random weights (regenerated, as Darknet ran them)."""
    return random_network(GROUPED, MINI.name, darknet=darknet)


def test_mini_weights_are_the_ones_darknet_ran(tmp_path):
    """The generator reproduces the weights file Darknet ran (sha256 in the fixture README), of
    the size the cfg needs: n * c/groups * k*k weights per layer (pj :195, AB :543)."""
    import hashlib
    out = random_weights(GROUPED, MINI.name, tmp_path / "w.weights")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "7ec21502598558c4bc2493460860bd4274d51ccda70d89e889510fc7b91b173f"
    net = Network.from_cfg(MINI, warn=False)
    assert out.stat().st_size == 46_324 == 20 + 4 * net.num_params()
    load_weights(net, out)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(net.layers, mini_network().layers)
               if a.kind == "convolutional")


def test_mini_is_grouped_as_darknet_parsed_it():
    net = mini_network()
    meta = load_json(GROUPED / "mini-grouped_astronaut_detections.json")
    assert net.darknet == "alexeyab"          # scale_x_y, swish, mish: AlexeyAB's
    assert [getattr(l, "groups", 1) for l in net.layers if l.kind == "convolutional"] == [1, 8, 64, 4, 32, 1]
    assert (net.width, net.height) == (meta["net_w"], meta["net_h"])


def test_mini_every_layer_equals_alexeyab_darknet():
    """End to end from Darknet's input tensor, and each layer from Darknet's own inputs."""
    net = mini_network()
    z = np.load(GROUPED / "mini-grouped_astronaut_layers.npz")
    outs = net.forward_float(z["input"])
    end = {l.index: rel_err(outs[l.index], z["layer%03d" % l.index]) for l in net.layers}
    one = {}
    for l in net.layers:
        xs = [z["input"] if i == -1 else z["layer%03d" % i] for i in l.inputs]
        one[l.index] = rel_err(l.forward_float(xs), z["layer%03d" % l.index])
    print("mini-grouped end to end", {k: f"{v:.1e}" for k, v in end.items()})
    assert max(one.values()) <= TOL and max(end.values()) <= TOL, (one, end)


def test_mini_detections_equal_alexeyab_darknet():
    want, problems = detection_mismatches(mini_network(), GROUPED, "mini-grouped_astronaut")
    assert len(want) == 16 and not problems, problems[:5]


def test_csresnext50_panet_spp_layers_equal_alexeyab_darknet():
    """AlexeyAB's csresnext50-panet-spp.cfg (width/height 96; 16 grouped 3x3 layers, groups=32):
    the seeded random weights regenerated from the fixture's generator and BN statistics, each
    selected layer fed Darknet's stored input: grouped layers at stride 1 and 2 in every stage,
    the three head convolutions and [yolo] layers."""
    z = np.load(GROUPED / "csresnext50-panet-spp-96_astronaut_selected_layers.npz")
    targets = [39, 44, 66, 75, 114, 115, 125, 126, 136, 137]
    net = random_network(GROUPED, CSX, layers=[t for t in targets if t not in (115, 126, 137)], darknet="alexeyab")
    assert sum(getattr(l, "groups", 1) == 32 for l in net.layers) == 16
    worst = {}
    for t in targets:
        l = net.layers[t]
        worst[t] = rel_err(l.forward_float([z["layer%03d" % i] for i in l.inputs]), z["layer%03d" % t])
    print("csresnext50-panet-spp", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= TOL, worst


def test_yolo_fastest_layers_equal_alexeyab_darknet():
    """Yolo-Fastest 1.1 (dog-qiuqiu/Yolo-Fastest, the edge model of the AlexeyAB lineage: depthwise
    3x3 and 5x5 layers, [dropout] before every shortcut) at 160x160 with seeded random weights, one
    layer at a time from Darknet's stored inputs: depthwise layers of stride 1 and 2, a dropout
    (the identity at inference: bit-exact), a shortcut, both heads."""
    z = np.load(GROUPED / "yolo-fastest-1.1-160_astronaut_selected_layers.npz")
    targets = [5, 6, 7, 8, 10, 11, 126, 127, 120, 121, 129, 130]
    net = random_network(GROUPED, "yolo-fastest-1.1-160.cfg")
    assert net.darknet == "alexeyab" and net.layers[7].describe().startswith("dropout")
    assert [net.layers[t].groups for t in (5, 10, 127)] == [8, 24, 120]
    worst = {}
    for t in targets:
        l = net.layers[t]
        worst[t] = rel_err(l.forward_float([z["layer%03d" % i] for i in l.inputs]), z["layer%03d" % t])
    print("yolo-fastest-1.1", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= TOL and worst[7] == 0.0, worst


def test_dropout_first_is_refused(tmp_path):
    cfg = tmp_path / "d.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n\n[dropout]\nprobability=.2\n\n[convolutional]\n"
                   "filters=4\nsize=1\nactivation=linear\n")
    with pytest.raises(CfgError, match=r"\[dropout\]: the first layer: .* does not exist") as exc:
        Network.from_cfg(cfg)
    assert f"{cfg}:6" in str(exc.value)


def test_dropout_is_the_identity_in_every_engine():
    """[dropout] between a convolution and its readers: float output = its input, and the fixed
    model's integers equal those of the same network with the dropout removed (indices shifted)."""
    from mdfi.cengine import CRunner
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.weights import random_weights as fill
    base = ("[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\n"
            "pad=1\nactivation=leaky\n\n")
    tail = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\ngroups=8\nactivation=leaky\n\n" \
           "[shortcut]\nfrom={}\nactivation=linear\n"
    with_d = Network(parse_cfg_text(base + "[dropout]\nprobability=.5\n\n" + tail.format(-2), "d.cfg"), "d.cfg")
    without = Network(parse_cfg_text(base + tail.format(-2), "n.cfg"), "n.cfg")
    fill(without, 3)
    with_d.layers[0].set_params(np.concatenate([without.layers[0].biases, without.layers[0].scales,
                                                without.layers[0].rolling_mean, without.layers[0].rolling_variance,
                                                without.layers[0].weights.ravel()]))
    w1 = without.layers[1]
    with_d.layers[2].set_params(np.concatenate([w1.biases, w1.scales, w1.rolling_mean, w1.rolling_variance,
                                                w1.weights.ravel()]))
    x = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    fd, fn = with_d.forward_float(x), without.forward_float(x)
    assert np.array_equal(fd[1], fd[0]) and np.array_equal(fd[3], fn[2])
    calib = [x]
    qd = quantize_network(with_d, cfg_text="", calib_inputs=calib, per_channel=True)
    qn = quantize_network(without, cfg_text="", calib_inputs=calib, per_channel=True)
    xu = input_to_u8(x)
    rd, rn = qd.forward_ref(xu), qn.forward_ref(xu)
    assert np.array_equal(rd[1], rd[0]) and np.array_equal(rd[3], rn[2])
    cd = CRunner(qd, 2).run(xu)
    assert all(np.array_equal(a, b) for a, b in zip(cd, rd))


def _dense(w, groups):
    """The block-diagonal dense weights of a grouped convolution (M, C, k, k)."""
    m, cg, k, _ = w.shape
    dense = np.zeros((m, cg * groups, k, k), w.dtype)
    mg = m // groups
    for j in range(groups):
        dense[j * mg:(j + 1) * mg, j * cg:(j + 1) * cg] = w[j * mg:(j + 1) * mg]
    return dense


@pytest.mark.parametrize("c,m,g,k,stride,pad,bits,pad_value", [
    (8, 8, 8, 3, 1, 1, 8, 0),         # depthwise
    (16, 32, 8, 3, 2, 1, 8, -3),      # 2 channels -> 4 filters per group, strided, a zero point
    (12, 6, 3, 1, 1, 0, 16, 0),       # 1x1, 16 bits
    (6, 12, 2, 5, 1, 2, 5, 0),
    (4, 4, 4, 3, 1, 1, 8, -128),      # extremes of the input and weight range (below)
])
def test_int_reference_is_the_block_diagonal_dense_convolution(c, m, g, k, stride, pad, bits, pad_value):
    rng = np.random.default_rng(c * 100 + m + g)
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    x = rng.integers(lo, hi + 1, (c, 9, 7))
    w = rng.integers(lo, hi + 1, (m, c // g, k, k))
    if pad_value == -128:
        x[:] = lo
        w[::2] = lo
    bias = rng.integers(-1000, 1000, m)
    shift = rng.integers(2, 12, m)
    kw = dict(size=k, stride=stride, padding=pad, rounding="half_up", bits=bits, activation="leaky",
              pad_value=pad_value)
    got = conv2d_int_ref(x, w, bias, shift, groups=g, **kw)
    want = conv2d_int_ref(x, _dense(w, g), bias, shift, **kw)
    exact = conv2d_int_ref(x, w, bias, shift, groups=g, exact_int64=True, **kw)
    assert np.array_equal(got, want) and np.array_equal(exact, want)
    if pad_value != -128:       # the grouping matters (the saturated extreme case is all-equal anyway)
        assert not np.array_equal(got, conv2d_int_ref(x, np.tile(w, (1, g, 1, 1)), bias, shift, **kw))


def test_fixed_point_runs_and_opt_in_methods_refuse():
    net = mini_network()
    x = np.load(GROUPED / "mini-grouped_astronaut_layers.npz")["input"]
    qm = quantize_network(net, per_channel=True, cfg_text="", bias_correction="empirical", calib_inputs=[x])
    assert {ql.method["bias"] for ql in qm.layers if ql.kind == "convolutional"} == {"empirical"}
    assert np.array_equal(qm.forward_ref(input_to_u8(x))[-2].shape, net.layers[-2].out_shape)
    for kw in (dict(weight_rounding="gptq"), dict(weight_rounding="adaround"), dict(gain_correction="gain")):
        with pytest.raises(FormatError, match=r"layer 1 is a grouped convolution \(groups=8\)"):
            quantize_network(net, per_channel=True, cfg_text="", calib_inputs=[x], **kw)


@pytest.mark.parametrize("kw", [dict(), dict(act_method="mse", zero_points=True), dict(wbits=16, abits=16)],
                         ids=["w8a8", "w8a8-zero-points", "w16a16"])
def test_golden_export_and_the_standalone_runner(runner, tmp_path, kw):
    """The golden model of a grouped network (model.txt ``groups=G`` on conv lines, weights
    (M, C/G, k, k); docs/golden-format.md) rebuilt by the standalone C runner byte for byte."""
    from test_c_runner import _export, _fixed_model, _photo, assert_identical
    net = mini_network()
    gold = _export(_fixed_model(net, quantize_network(net, per_channel=True, cfg_text="", **kw)), _photo(),
                   tmp_path / "gold")
    txt = (gold / "model.txt").read_text()
    assert [int(t[7:]) for t in txt.split() if t.startswith("groups=")] == [8, 64, 4, 32]
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == 9


def test_runner_refuses_groups_that_do_not_divide(runner, tmp_path):
    from test_c_runner import _export, _fixed_model, _photo, _run
    net = mini_network()
    gold = _export(_fixed_model(net, quantize_network(net, per_channel=True, cfg_text="")), _photo(), tmp_path / "g")
    txt = (gold / "model.txt").read_text()
    (gold / "model.txt").write_text(txt.replace(" groups=8", " groups=5", 1))
    proc = _run(runner, gold, tmp_path / "out")
    assert proc.returncode != 0 and "groups=5 must divide c=32 and m=64" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_verify_names_zero_padding_in_a_grouped_layer(tmp_path):
    """`mdfi verify` recomputes a grouped layer from its golden files (group by group) to name a
    device that pads with 0 instead of the input's zero point."""
    from test_verify_zeropoint import _dump, _entry, _read, _recomputed
    from test_c_runner import _fixed_model, _photo
    from mdfi.hw import golden, verify
    net = mini_network()
    qm = quantize_network(net, per_channel=True, cfg_text="", act_method="mse", zero_points=True)
    assert qm.layers[1].in_fmt.zero and qm.layers[1].layer.groups == 8
    man = golden.export(_fixed_model(net, qm), _photo(), str(tmp_path / "all"), layers=[0, 1])
    name = "l001.out.hex"
    e = _entry(man, name)
    assert man["layers"][1]["params"]["groups"] == 8
    assert np.array_equal(_recomputed(tmp_path, man, 1), _read(tmp_path / "all", name, e))
    bad = _recomputed(tmp_path, man, 1, pad_value=0)
    _dump(tmp_path / "dut", name, e, bad, np.arange(bad.size))
    res = verify.verify(str(tmp_path / "all"), str(tmp_path / "dut")).files[0]
    assert res.status == "mismatch" and res.hints[0].kind == "padding", [h.text for h in res.hints]
    assert f"{res.mismatches:,} of {res.mismatches:,} mismatches explained" in res.hints[0].text


@pytest.mark.parametrize("text,darknet,match", [
    ("groups=3", None, r"groups=3 does not divide the 8 input channels and 8 filters"),
    ("groups=0", "pjreddie", r"groups=0: must be >= 1"),
])
def test_groups_that_cannot_be_a_trained_model_are_refused(tmp_path, text, darknet, match):
    cfg = tmp_path / "g.cfg"
    cfg.write_text("[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\npad=1\n"
                   "activation=leaky\n\n[convolutional]\nfilters=8\nsize=3\npad=1\n" + text + "\nactivation=leaky\n")
    with pytest.raises(CfgError, match=match) as exc:
        Network.from_cfg(cfg, darknet=darknet)
    assert f"{cfg}:16" in str(exc.value)


def test_groups_zero_is_one_in_alexeyab(tmp_path):
    """AB make_convolutional_layer: ``if (groups < 1) groups = 1`` (src/convolutional_layer.c:511)."""
    cfg = tmp_path / "g.cfg"
    cfg.write_text("[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\npad=1\n"
                   "groups=0\nactivation=leaky\n")
    assert Network.from_cfg(cfg, darknet="alexeyab").layers[0].groups == 1


def test_analytic_bias_correction_reads_the_group_means():
    """Bias correction's expected shift (Nagel et al. 2019) of a grouped layer: filter m's weight
    rounding error times the means of its own group's channels -- the dense block-diagonal
    layer's shift."""
    from mdfi.layers.convolutional import weight_rounding_shift
    rng = np.random.default_rng(4)
    g, m, cg, k = 4, 8, 3, 3
    w = rng.normal(0, 0.3, (m, cg, k, k))
    frac = rng.integers(4, 7, m)
    w_q = np.round(w * np.exp2(frac)[:, None, None, None]).astype(np.int64)
    mean = rng.uniform(0, 2, g * cg)
    got = weight_rounding_shift(w_q, frac, w, mean, g)
    want = weight_rounding_shift(_dense(w_q, g), frac, _dense(w, g), mean, 1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert not np.allclose(got, weight_rounding_shift(np.tile(w_q, (1, g, 1, 1)), frac, np.tile(w, (1, g, 1, 1)),
                                                      mean, 1))
