"""mdfi/quant on AlexeyAB graphs (yolov4-tiny's CSP blocks: route groups, concatenations,
scale_x_y heads): range equalization and the recipe decisions without format search."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.quant import calibrate
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.quant import equalize
from mdfi.quant.formats import HEAD_SHIFT_STRENGTH, HeadObjective, choose_decisions, decisions_to_kwargs
from mdfi.quant.quantize import quantize_network, unify_route_formats
from mdfi.darknet.weights import random_weights

# A yolov4-tiny CSP block (layers 1-6) and a scale_x_y head, at 32x32.
CSP_CFG = """
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

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=1
activation=leaky

[route]
layers=-6,-1

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
scale_x_y=1.05
"""


def csp_net(tmp_path=None, seed=3):
    if tmp_path is None:
        net = Network(parse_cfg_text(CSP_CFG, "csp.cfg"), "csp.cfg", warn=False, darknet="alexeyab")
    else:                                   # quantize_network reads the cfg text from the file
        (tmp_path / "csp.cfg").write_text(CSP_CFG)
        net = Network.from_cfg(tmp_path / "csp.cfg", warn=False, darknet="alexeyab")
    random_weights(net, seed=seed)
    return net


def inputs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((3, 32, 32)).astype(np.float32) for _ in range(n)]


def test_channel_origins_follow_route_groups():
    origin, frozen = equalize.channel_origins(csp_net())
    # layer 1 = the second half (group_id 1 of 2) of layer 0's 8 channels
    assert origin[1] == [(0, c) for c in range(4, 8)]
    # layer 4 = concat(layer 3, layer 2); layer 6 = concat(layer 0, layer 5)
    assert origin[4] == [(3, c) for c in range(4)] + [(2, c) for c in range(4)]
    assert origin[6] == [(0, c) for c in range(8)] + [(5, c) for c in range(8)]
    assert origin[7] == origin[6]
    assert frozen == {8}                    # the head convolution


def test_power_of_two_scales_keep_the_function_of_an_alexeyab_graph():
    net = csp_net()
    rng = np.random.default_rng(1)
    scales = {i: 2.0 ** rng.integers(-3, 4, net.layers[i].filters).astype(np.float64) for i in (0, 2, 3, 5)}
    net2 = equalize.apply_scales(net, scales)
    for x in inputs(2):
        a, b = net.forward_float(x), net2.forward_float(x)
        ref = np.abs(a[8]).max()
        assert np.abs(a[8] - b[8]).max() <= 1e-4 * ref
        # the scaled tensors really are scaled (the fused-parameter cache was refreshed)
        np.testing.assert_allclose(b[0], a[0] * scales[0][:, None, None], rtol=1e-4, atol=1e-5 * np.abs(a[0]).max())


def test_decisions_without_search_keep_the_budgeted_formats_and_scale_the_shift(tmp_path):
    net = csp_net(tmp_path)
    xs = inputs(4)
    calib = calibrate.collect(net, [np.ascontiguousarray((x.transpose(1, 2, 0) * 255).astype(np.uint8)) for x in xs],
                              progress=False)
    obj = HeadObjective(net, xs)
    if obj.n_cells == 0:
        pytest.skip("no object cells with these random weights (the shifts would be zero)")
    full = choose_decisions(net, calib, xs, wbits=8, abits=8, per_channel=True, progress=False,
                            search=False, clip_budget=0.03, shift_strength=1.0)
    half = choose_decisions(net, calib, xs, wbits=8, abits=8, per_channel=True, progress=False, search=False,
                            clip_budget=0.03)
    want = unify_route_formats(net, calibrate.choose_formats(calib, net, 8, "mse", clip_budget=0.03), {}, 8)
    conv = [l.index for l in net.layers if l.kind == "convolutional"]
    assert full["act_fracs"] == {str(i): want[i] for i in conv}
    assert full["options"] == {"search": False, "clip_budget": 0.03, "shift_strength": 1.0}
    assert half["options"]["shift_strength"] == HEAD_SHIFT_STRENGTH
    for k in ("objectness", "classes"):
        assert full["head_shifts"]["8"][k] == pytest.approx(half["head_shifts"]["8"][k] / HEAD_SHIFT_STRENGTH)
    # the full shift cancels the mean objectness error at the object cells (up to bias rounding)
    def mean_obj_error(qm):
        from mdfi.engine import FixedEngine
        eng, err, n = FixedEngine(qm, "ref"), 0.0, 0
        for u8, per in zip(obj.u8, obj.cells):
            z = eng.run(u8, keep="all")[8].astype(np.float64) * 2.0 ** -qm.layers[8].out_fmt.frac
            z = z.reshape(2, 7, *z.shape[1:])
            a, r, c, _, zo, _ = per[0]
            err, n = err + float((z[a, 4, r, c] - zo).sum()), n + a.size
        return err / n
    before = quantize_network(net, wbits=8, abits=8, per_channel=True, calib=calib, act_fracs=want)
    after = quantize_network(net, wbits=8, abits=8, per_channel=True, calib=calib,
                             **decisions_to_kwargs(net, full))
    e0, e1 = mean_obj_error(before), mean_obj_error(after)
    assert abs(e0) > 1e-3 and abs(e1) < 0.1 * abs(e0)


def test_activation_equalization_keeps_the_function_through_route_groups(tmp_path):
    """actequal on a CSP block: channels reach their readers through `[route] groups` slices
    and concatenations; the rescaled float network computes the same head, the factors stay
    in their bounds, and the 8-bit model made from it runs equal in C and NumPy after
    save/load, with the method recorded."""
    from mdfi.quant import actequal, modelfile
    from test_align import assert_c_equals_reference, input_to_u8
    net = csp_net(tmp_path)
    xs = inputs(3)
    for settings in ("", "headroom=2,max_scale=16"):
        eq = actequal.prepare(net, settings, wbits=8, abits=8, inputs=xs)
        assert sorted(eq.scales) == [0, 2, 3, 5]            # 8 is the head convolution
        s = np.concatenate(list(eq.scales.values()))
        assert np.all((s >= eq.settings.min_scale * (1 - 1e-9)) & (s <= eq.settings.max_scale * (1 + 1e-9)))
        assert np.any(np.abs(s - 1.0) > 0.05)
        for x in inputs(2, seed=9):
            a, b = net.forward_float(x), eq.network.forward_float(x)
            assert np.abs(a[8] - b[8]).max() <= 1e-5 * np.abs(a[8]).max()
            # layer 1 is the second half of layer 0's channels, scaled by their factors
            np.testing.assert_allclose(b[1], a[1] * eq.scales[0][4:, None, None], rtol=1e-4,
                                       atol=1e-5 * np.abs(a[1]).max())
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, act_equalize=True, calib_inputs=xs,
                          cfg_text=CSP_CFG)
    assert {i for i, ql in enumerate(qm.layers) if (getattr(ql, "method", None) or {}).get("actequal")} == {0, 2, 3, 5}
    modelfile.save(qm, tmp_path / "ae.mdfi")
    back = modelfile.load(tmp_path / "ae.mdfi")
    assert back.options["actequal"]["layers"] == [0, 2, 3, 5]
    assert_c_equals_reference(qm, back, input_to_u8(inputs(1, seed=11)[0]))


def test_rescaling_leaves_non_homogeneous_activations_alone():
    """mish(s x) != s mish(x): a convolution with such an activation keeps its output scale
    (its readers still absorb the factors of their own inputs); before this rule the
    equalized network's head was 22 % off."""
    from mdfi.quant import actequal
    cfg = CSP_CFG.replace("activation=leaky", "activation=mish", 2)      # layers 0 and 2
    net = Network(parse_cfg_text(cfg, "csp.cfg"), "csp.cfg", warn=False, darknet="alexeyab")
    random_weights(net, seed=3)
    _, frozen = equalize.channel_origins(net)
    assert frozen == {0, 2, 8}
    eq = actequal.prepare(net, "", wbits=8, abits=8, inputs=inputs(3))
    assert sorted(eq.scales) == [3, 5]
    for x in inputs(2, seed=9):
        a, b = net.forward_float(x), eq.network.forward_float(x)
        assert np.abs(a[8] - b[8]).max() <= 1e-5 * np.abs(a[8]).max()
