"""Zero-point activation formats (docs/fixed-point.md section 1.1): value (q - zero) * 2^-frac.

Expected values are worked by hand from the written rules, or derived independently: a layer
with an input zero point must compute exactly what the same layer computes, without one, on
the input with the zero point subtracted (a 16-bit input, so nothing saturates)."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.errors import FormatError


def test_format_zero_point_rules():
    f = fp.QFormat(8, 4, zero=-105)
    assert (f.zero, f.min, f.max) == (-105, -128, 127)
    assert fp.QFormat.from_dict(f.to_dict()) == f
    assert f != fp.QFormat(8, 4) and hash(f) != hash(fp.QFormat(8, 4))
    assert "zero" not in fp.QFormat(8, 4).to_dict()            # zero-free files unchanged
    assert f.ap_type() == "ap_fixed<8,4>+105"
    assert f.with_zero(0) == fp.QFormat(8, 4)
    for bad in (128, -129, 1.5):
        with pytest.raises(FormatError):
            fp.QFormat(8, 4, zero=bad)
    assert fp.QFormat(4, 0, zero=7).zero == 7
    with pytest.raises(FormatError):
        fp.QFormat(4, 0, zero=8)


@pytest.mark.parametrize("acc, s, act, zero, want", [
    (100, 2, "linear", -105, 25 - 105),        # R(100/4) = 25, then + zero
    (102, 2, "linear", -105, 26 - 105),        # 25.5 rounds half up to 26
    (-40, 2, "leaky", -105, -1 - 105),         # leaky: R(-40*3277/2^17) = R(-1.0000..) = -1
    (1000, 2, "linear", -105, 127),            # 250 - 105 = 145 saturates at 127
    (-1000, 2, "linear", 100, -128),           # -250 + 100 = -150 saturates at -128
    (-1000, 2, "relu", -105, -105),            # relu: 0 + zero
])
def test_requantize_adds_the_zero_point_before_saturating(acc, s, act, zero, want):
    assert int(fp.requantize(np.int64(acc), s, "half_up", 8, act, zero=zero)) == want


def test_align_with_zero_points():
    # (x - z_in) / 2^1 rounded half up, + z_out, saturated
    x = np.array([-128, -100, 0, 127])
    got = fp.align(x, 5, 4, "half_up", 8, zero_in=-100, zero_out=-90)
    want = [(-28 + 1) // 2 - 90, 0 - 90, (100 + 1) // 2 - 90, (227 + 1) // 2 - 90]
    assert got.tolist() == want


def test_conv_reference_pads_with_the_zero_point():
    from mdfi.layers.convolutional import conv2d_int_ref
    x = np.arange(9, dtype=np.int32).reshape(1, 3, 3)           # 0..8
    w = np.ones((1, 1, 3, 3), np.int8)
    out = conv2d_int_ref(x, w, np.zeros(1, np.int64), np.zeros(1, np.int32), size=3, stride=1, padding=1,
                         rounding="half_up", bits=16, activation="linear", pad_value=-7, zero_out=3)
    # top-left window: 0 + 1 + 3 + 4 and five padding taps of -7; centre: the sum 0..8
    assert out[0, 0, 0] == (0 + 1 + 3 + 4) + 5 * -7 + 3
    assert out[0, 1, 1] == sum(range(9)) + 3
    assert out[0, 2, 2] == (4 + 5 + 7 + 8) + 5 * -7 + 3


def _conv_net(tmp_path, activation="leaky", pad=1, size=3, stride=1, extra=""):
    from mdfi.darknet.network import Network
    cfg = tmp_path / "z.cfg"
    cfg.write_text(f"[net]\nwidth=8\nheight=8\nchannels=3\n\n"
                   f"[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
                   f"[convolutional]\nbatch_normalize=1\nfilters=5\nsize={size}\nstride={stride}\npad={pad}\n"
                   f"activation={activation}\n{extra}")
    net = Network.from_cfg(cfg)
    rng = np.random.default_rng(3)
    for l in net.layers:
        l.set_params(rng.normal(0, 0.3, l.num_params()).astype(np.float32) +
                     np.float32(0.0))
        if l.batch_normalize:           # running variance must be positive
            l.rolling_variance = np.abs(l.rolling_variance) + np.float32(0.5)
    return net


@pytest.mark.parametrize("activation, size, stride", [("leaky", 3, 1), ("linear", 3, 2), ("relu", 1, 1),
                                                      ("logistic", 3, 1)])
def test_input_zero_point_equals_the_shifted_input(tmp_path, activation, size, stride):
    """An input zero point z (padding z, bias folded: b - z*sum w) computes exactly what the
    zero-free layer computes on x - z held in 16 bits."""
    from mdfi.layers.convolutional import QConvolutional
    net = _conv_net(tmp_path, activation, size=size, stride=stride)
    layer = net.layers[1]
    z = -97
    out = fp.QFormat(8, 4, zero=0 if activation == "logistic" else 23)
    qz = QConvolutional.quantize(layer, fp.QFormat(8, 4, zero=z), out, wbits=8, rounding="half_up", per_channel=True)
    q0 = QConvolutional.quantize(layer, fp.QFormat(16, 4), out, wbits=8, rounding="half_up", per_channel=True)
    assert np.array_equal(qz.weights, q0.weights) and np.array_equal(qz.shift, q0.shift)
    assert np.array_equal(qz.bias_unfolded(), q0.bias)
    wsum = qz.weights.reshape(5, -1).astype(np.int64).sum(axis=1)
    assert np.array_equal(qz.bias, q0.bias - z * wsum)
    rng = np.random.default_rng(7)
    for x in (rng.integers(-128, 128, (6, 8, 8)), np.full((6, 8, 8), -128), np.full((6, 8, 8), 127),
              np.full((6, 8, 8), z)):
        a = qz.forward_ref([x])
        b = q0.forward_ref([x - z])
        assert np.array_equal(a, b)
        sa = qz.stages_ref([x])
        sb = q0.stages_ref([x - z])
        assert np.array_equal(sa["acc"], sb["acc"])


def test_output_zero_point_shifts_codes_and_saturates(tmp_path):
    from mdfi.layers.convolutional import QConvolutional
    layer = _conv_net(tmp_path).layers[1]
    qi = fp.QFormat(8, 4)
    a = QConvolutional.quantize(layer, qi, fp.QFormat(16, 4), wbits=8, rounding="half_up", per_channel=True)
    b = QConvolutional.quantize(layer, qi, fp.QFormat(8, 4, zero=-100), wbits=8, rounding="half_up", per_channel=True)
    x = np.random.default_rng(1).integers(-128, 128, (6, 8, 8))
    wide = a.forward_ref([x]).astype(np.int64)
    assert np.array_equal(b.forward_ref([x]), np.clip(wide - 100, -128, 127))


def test_table_activation_folds_the_output_zero_point():
    from mdfi import actlut
    pre = fp.QFormat(8, 5)
    t0 = actlut.build_table("logistic", pre, fp.QFormat(8, 7), "half_up")
    tz = actlut.build_table("logistic", pre, fp.QFormat(8, 7, zero=-128), "half_up")
    assert np.array_equal(tz.astype(np.int64), np.clip(t0.astype(np.int64) - 128, -128, 127))


def test_head_tables_read_codes_minus_the_zero_point():
    from mdfi.layers import heads
    f0, fz = fp.QFormat(8, 4), fp.QFormat(8, 4, zero=50)
    # the code 50 of fz is the real 0 (index 50 - qmin); code 0 of f0 is the real 0 (index 128)
    assert heads.logistic_table(fz)[50 + 128] == heads.logistic_table(f0)[128] == 1 << 14
    assert np.array_equal(heads.exp_table(fz)[50:], heads.exp_table(f0)[:-50])
    assert heads.exp_table(fz)[50 + 128] == 1 << 16


def test_route_aligns_zero_points(tmp_path):
    from mdfi.darknet.network import Network
    from mdfi.layers.route import QRoute
    cfg = tmp_path / "r.cfg"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=3\n\n[maxpool]\nsize=1\nstride=1\n\n"
                   "[maxpool]\nsize=1\nstride=1\n\n[route]\nlayers=-1,-2\n")
    layer = Network.from_cfg(cfg).layers[2]
    fa, fb = fp.QFormat(8, 4, zero=-100), fp.QFormat(8, 5, zero=-60)
    q = QRoute(layer, [fa, fb], "half_up")
    assert q.out_fmt == fp.QFormat(8, 4, zero=-100) and q.copies() == [True, False]
    a = np.full((3, 4, 4), 17)
    b = np.array([-128, -60, 0, 127] * 12).reshape(3, 4, 4)
    out = q.forward_ref([a, b])
    assert np.array_equal(out[:3], a)
    # (b + 60) / 2 rounded half up, - 100, saturated
    assert out[3:, 0, :].reshape(-1)[:4].tolist() == [max((-68 + 1) // 2 - 100, -128), -100,
                                                      (60 + 1) // 2 - 100, (187 + 1) // 2 - 100]


def _shortcut_layer(tmp_path, route_first=False, activation="linear"):
    from mdfi.darknet.network import Network
    cfg = tmp_path / "s.cfg"
    mid = "[route]\nlayers=-1,-1\n" if route_first else "[maxpool]\nsize=1\nstride=1\n"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=3\n\n[maxpool]\nsize=1\nstride=1\n\n"
                   f"{mid}\n[shortcut]\nfrom=-2\nactivation={activation}\n")
    return Network.from_cfg(cfg).layers[2]


def test_shortcut_zero_points_hand_worked(tmp_path):
    """s = (a - za)*2^(fm-fa) + (b - zb)*2^(fm-fb), out = sat(R(act(s)/2^shift) + zo)."""
    from mdfi.layers.shortcut import QShortcut
    layer = _shortcut_layer(tmp_path)
    q = QShortcut(layer, [fp.QFormat(8, 4, zero=-100), fp.QFormat(8, 5, zero=20)], fp.QFormat(8, 3, zero=-50),
                  "half_up")
    assert (q.sum_frac, q.shift) == (5, 2)
    a = np.full((3, 4, 4), -90)                  # a - za = 10 -> 20 at frac 5
    b = np.full((3, 4, 4), 27)                   # b - zb = 7
    a[0, 0, :] = [-128, 127, -100, -90]
    b[0, 0, :] = [127, -128, 20, 29]
    out = q.forward_ref([a, b])
    # (2*(-28) + 107) = 51 -> R(51/4) = 13 -> -37; (2*227 - 148) = 306 -> 77 -> 27; 0 -> -50;
    # 20 + 9 = 29 -> R(29/4) = 7 -> -43; elsewhere 27 -> R(27/4) = 7 -> -43
    assert out[0, 0].tolist() == [-37, 27, -50, -43]
    assert np.all(out[1:] == -43)
    st = q.stages_ref([a, b])
    assert st["acc"][0, 0].tolist() == [51, 306, 0, 29]
    # the subtraction needs one more bit per input with a zero point: 8 + 1 + 1 (b at fm) ... + 1
    assert q.stage_formats()["acc"][0] == max(8 + 1 + 1, 8 + 1 + 0) + 1


@pytest.mark.parametrize("activation", ["linear", "leaky", "relu", "mish"])
def test_shortcut_zero_points_equal_the_shifted_zero_free_layer(tmp_path, activation):
    """Independent derivation: with zero points the layer computes what the zero-free layer
    computes on the inputs with their zero points subtracted (16-bit, nothing saturates),
    the output's zero point added before an 8-bit saturation (a table: folded in)."""
    from mdfi.layers.shortcut import QShortcut
    layer = _shortcut_layer(tmp_path, activation=activation)
    rng = np.random.default_rng(5)
    fa, fb, fo = fp.QFormat(8, 4, zero=-128), fp.QFormat(8, 6, zero=101), fp.QFormat(8, 4, zero=-77)
    a = rng.integers(-128, 128, (3, 4, 4))
    b = rng.integers(-128, 128, (3, 4, 4))
    got = QShortcut(layer, [fa, fb], fo, "half_up").forward_ref([a, b])
    if activation == "mish":
        ref_q = QShortcut(layer, [fa.with_zero(0), fb.with_zero(0)], fo, "half_up")
        ref_q = QShortcut(layer, [fp.QFormat(16, 4), fp.QFormat(16, 6)], fo, "half_up", pre_fmt=ref_q.pre_fmt)
        assert np.array_equal(got, ref_q.forward_ref([a - fa.zero, b - fb.zero]))
        return
    wide = QShortcut(layer, [fp.QFormat(16, 4), fp.QFormat(16, 6)], fp.QFormat(16, 4), "half_up")
    ref = np.clip(wide.forward_ref([a - fa.zero, b - fb.zero]).astype(np.int64) + fo.zero, -128, 127)
    assert np.array_equal(got, ref)


def test_shortcut_zero_points_short_b_contributes_zero(tmp_path):
    """b with fewer channels: beyond them b's real value is 0 (b - zb = 0, not -zb)."""
    from mdfi.layers.shortcut import QShortcut
    layer = _shortcut_layer(tmp_path, route_first=True)       # a: 6 channels, b: 3
    assert layer.in_shapes[0][0] == 6 and layer.in_shapes[1][0] == 3
    q = QShortcut(layer, [fp.QFormat(8, 4, zero=-10), fp.QFormat(8, 4, zero=40)], fp.QFormat(8, 4, zero=5),
                  "half_up")
    a = np.full((6, 4, 4), 0)
    b = np.full((3, 4, 4), 50)
    out = q.forward_ref([a, b])
    assert np.all(out[:3] == 10 + 10 + 5) and np.all(out[3:] == 10 + 5)


def test_choose_frac_zero_hand_worked():
    from mdfi.quant.calib_stats import TensorStats
    from mdfi.quant.zeropoint import choose_frac_zero
    # a one-sided tensor in [0, 7.9]: 8-bit codes with zero -128 cover [0, 255 * 2^-5 = 7.97]
    # at frac 5 -- one bit finer than the signed format's frac 4 ([-8, 7.94])
    st = TensorStats.from_array(np.linspace(0.0, 7.9, 10001))
    f, z = choose_frac_zero(st, 8, clip_budget=None)
    assert (f, z) == (5, -128)
    # a leaky-like range [-0.5, 6.3] (6.8 wide): frac 5 spans 255/32 = 7.97, frac 6 only 3.98
    # (its range cannot hold the data); at frac 5 the range must reach -0.5 within half a step:
    # unsigned zero points >= 15.5; from 16 (range [-0.5, 7.47]) to 53 every value is inside
    # and costs the same, and the first wins: 16, signed 16 - 128 = -112
    st = TensorStats.from_array(np.linspace(-0.5, 6.3, 10001))
    assert choose_frac_zero(st, 8, clip_budget=None) == (5, -112)


def test_quantize_network_refuses_conflicting_zero_point_options():
    """zero_points=True chooses the formats: with act_fracs given (whose zero points it would
    not know) it is refused, as are act_zeros without act_fracs and another format method --
    before any statistics are gathered."""
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    from mdfi.quant.quantize import quantize_network
    from conftest import DARKNET
    net = Network.from_cfg(DARKNET / "mini-yolov3" / "mini-yolov3.cfg")
    load_weights(net, DARKNET / "mini-yolov3" / "mini-yolov3.weights")
    fracs = {l.index: 4 for l in net.layers}
    for kw, msg in ((dict(zero_points=True, act_fracs=fracs), "act_zeros instead"),
                    (dict(act_zeros={0: 3}), "given with act_fracs"),
                    (dict(zero_points=True, act_method="max"), "mse criterion")):
        with pytest.raises(FormatError, match=msg):
            quantize_network(net, **kw)
