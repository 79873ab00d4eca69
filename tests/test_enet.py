"""AlexeyAB's ``[avgpool]``, ``[scale_channels]`` and ``[sam]`` (mdfi/layers/avgpool.py,
mdfi/layers/scale_channels.py), and ``cfg/enet-coco.cfg`` (EfficientNet-B0 + YOLOv3 head) that
needs them.

* float path = AlexeyAB's Darknet itself (tests/fixtures/darknet-alexeyab/enet-random/, README
  there): a mini network with every case (SE block, scale_wh=1, [sam], depthwise, swish,
  logistic, dropout, shortcut, [yolo]), every layer and its detections; enet-coco.cfg at
  128x128 one layer at a time and its detections end to end;
* the integer specification (docs/fixed-point.md section 9) against independent statements of
  it: a constant map averages to itself, the division rounds half up as a float64 oracle says,
  a scale of 1.0 is the requantized identity; the C kernels equal the reference on random and
  edge-heavy inputs (tests/test_paths_alexeyab.py runs the networks on every path);
* the golden model rebuilt by the standalone runner, and every refusal in one line.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from alexeyab_data import ENET, load_json, match_detections, random_network, rel_err
from alexeyab_data import random_weights_file as random_weights
from mdfi.darknet.network import Network
from mdfi.darknet.weights import load_weights
from mdfi.errors import CfgError
from mdfi.postprocess import postprocess, settings

TOL = 1e-4
MINI = "mini-enet.cfg"
ENET128 = "enet-coco-128.cfg"


def mini_network():
    return random_network(ENET, MINI)


def test_mini_weights_are_the_ones_darknet_ran(tmp_path):
    out = random_weights(ENET, MINI, tmp_path / "w.weights")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == \
        "78b86c9995b4915bf6ce91759d023d82414fef1c7937754fab4901555449b880"
    net = Network.from_cfg(ENET / MINI, warn=False)
    assert out.stat().st_size == 10_952 == 20 + 4 * net.num_params()
    load_weights(net, out)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(net.layers, mini_network().layers)
               if a.kind == "convolutional")


def test_mini_is_parsed_as_darknet_parsed_it():
    net = mini_network()
    assert net.darknet == "alexeyab"
    assert [l.out_shape for l in net.layers if l.kind == "avgpool"] == [(16, 1, 1), (16, 1, 1)]
    sc = [l for l in net.layers if l.kind == "scale_channels"]
    assert [(l.inputs, l.mode, l.out_shape) for l in sc] == [
        ([4, 1], "channels", (16, 24, 24)), ([9, 8], "spatial", (16, 24, 24)),
        ([11, 10], "elementwise", (16, 24, 24)), ([15, 13], "channels", (16, 12, 12))]


def test_mini_every_layer_equals_alexeyab_darknet():
    """End to end from Darknet's input, and each layer from Darknet's own inputs: [avgpool]
    (float sum in index order, then /h*w) and the products are bit-identical."""
    net = mini_network()
    z = np.load(ENET / "mini-enet_astronaut_layers.npz")
    outs = net.forward_float(z["input"])
    end = {l.index: rel_err(outs[l.index], z["layer%03d" % l.index]) for l in net.layers}
    for l in net.layers:
        xs = [z["input"] if i == -1 else z["layer%03d" % i] for i in l.inputs]
        got = l.forward_float(xs)
        if l.kind in ("avgpool", "scale_channels", "route", "shortcut"):
            assert np.array_equal(got, z["layer%03d" % l.index]), l
        else:
            assert rel_err(got, z["layer%03d" % l.index]) <= TOL, l
    print("mini-enet end to end", {k: f"{v:.1e}" for k, v in end.items()})
    assert max(end.values()) <= TOL, end


def test_mini_detections_equal_alexeyab_darknet():
    net = mini_network()
    z = np.load(ENET / "mini-enet_astronaut_layers.npz")
    rec = load_json(ENET / "mini-enet_astronaut_detections.json")
    outs = net.forward_float(z["input"])
    raws = [l.decode(outs[l.index], rec["thresh"]) for l in net.output_layers()]
    dets = postprocess(raws, rec["image_w"], rec["image_h"], net.width, net.height, rec["thresh"], rec["nms"],
                       ["a", "b", "c"], **settings(net))
    assert len(rec["detections_test_detector"]) == 2
    problems = match_detections(dets, rec["detections_test_detector"], rec["image_w"], rec["image_h"])
    assert not problems, problems[:5]


def test_enet_coco_layers_equal_alexeyab_darknet():
    """AlexeyAB's enet-coco.cfg at 128x128 (seeded random weights), each selected layer fed
    Darknet's stored inputs: [avgpool] over 64x64, 32x32 and 4x4, [scale_channels] from=-4,
    a [dropout] and its shortcut, the shortcut from a wider layer (576 -> 128 channels, AB's
    flat-index add), both heads."""
    z = np.load(ENET / "enet-coco-128_astronaut_selected_layers.npz")
    targets = [3, 10, 13, 22, 23, 92, 95, 129, 135, 136, 140, 143, 144, 145]
    net = random_network(ENET, ENET128, layers=[135, 144])
    assert net.darknet == "alexeyab"
    assert sum(l.kind == "avgpool" for l in net.layers) == 16
    assert sum(l.kind == "scale_channels" for l in net.layers) == 16
    worst = {}
    for t in targets:
        l = net.layers[t]
        got = l.forward_float([z["layer%03d" % i] for i in l.inputs])
        worst[t] = rel_err(got, z["layer%03d" % t])
        if l.kind != "convolutional" and l.kind != "yolo":
            assert np.array_equal(got, z["layer%03d" % t]), l
    print("enet-coco-128", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= TOL, worst


def test_enet_coco_detections_equal_alexeyab_darknet():
    """End to end from Darknet's input tensor: the 146 layers, then decoding and NMS."""
    net = random_network(ENET, ENET128)
    z = np.load(ENET / "enet-coco-128_astronaut_selected_layers.npz")
    rec = load_json(ENET / "enet-coco-128_astronaut_detections.json")
    outs = net.forward_float(z["input"])
    heads = {t: rel_err(outs[t], z["layer%03d" % t]) for t in (136, 145)}
    print("enet-coco-128 heads end to end", heads)
    assert max(heads.values()) <= 1e-3, heads
    raws = [l.decode(outs[l.index], rec["thresh"]) for l in net.output_layers()]
    dets = postprocess(raws, rec["image_w"], rec["image_h"], net.width, net.height, rec["thresh"], rec["nms"],
                       [str(i) for i in range(80)], **settings(net))
    assert len(rec["detections_test_detector"]) == 74
    problems = match_detections(dets, rec["detections_test_detector"], rec["image_w"], rec["image_h"])
    assert not problems, problems[:5]


# -- refusals ------------------------------------------------------------------------------
HEAD = "[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"


@pytest.mark.parametrize("body,match", [
    ("[avgpool]\n\n[convolutional]\nfilters=8\nsize=1\nactivation=logistic\n\n[scale_channels]\nfrom=-4\n",
     "resolves to -1"),
    ("[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n\n[scale_channels]\nfrom=-2\n",
     r"must be 8x1x1 .*scale_channels_layer.c:18, :24"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2\nscale_wh=1\n", r"must be 1x16x16 .*scale_channels_layer.c:19, :25"),
    ("[avgpool]\n\n[scale_channels]\n", r"from= is required .*parser.c:992"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2,-1\n", r"from: 2 layers.*parser.c:993"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2\nactivation=swish\n", r"activate\(\).*activations.c:112"),
    ("[avgpool]\n\n[scale_channels]\nfrom=-2\nactivation=tanh\n", "not supported on"),
    ("[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n\n[sam]\nfrom=-2\n", r"sam_layer.c:21-22"),
    ("[local_avgpool]\n", "Darknet layer MDFI does not support"),
])
def test_cfgs_darknet_cannot_run_are_refused_with_file_line(tmp_path, body, match):
    cfg = tmp_path / "x.cfg"
    cfg.write_text(HEAD + body)
    with pytest.raises(CfgError, match=match) as e:
        Network.from_cfg(cfg, warn=False)
    assert "x.cfg:" in str(e.value) and "\n" not in str(e.value)


def test_scale_channels_is_alexeyab_only(tmp_path):
    cfg = tmp_path / "x.cfg"
    cfg.write_text(HEAD + "[avgpool]\n\n[scale_channels]\nfrom=-2\n")
    with pytest.raises(CfgError, match="AlexeyAB's Darknet only"):
        Network.from_cfg(cfg, warn=False, darknet="pjreddie")
    assert Network.from_cfg(cfg, warn=False).darknet == "alexeyab"


def test_avgpool_alias_and_float_activations(tmp_path):
    """[avg] is [avgpool] (AB src/parser.c:87-88); leaky on a scale layer is leaky_activate's
    float .1f (activate_array, AB src/activations.c:119-123), logistic the float one."""
    cfg = tmp_path / "x.cfg"
    cfg.write_text(HEAD + "[avg]\n\n[scale_channels]\nfrom=-2\nactivation=leaky\n")
    net = Network.from_cfg(cfg, warn=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 16)).astype(np.float32)
    s = rng.standard_normal((8, 1, 1)).astype(np.float32)
    p = (s * x).astype(np.float32)
    assert rel_err(net.layers[1].forward_float([x]), x.astype(np.float64).mean(axis=(1, 2)).reshape(8, 1, 1)) < 1e-6
    assert np.array_equal(net.layers[2].forward_float([s, x]), np.where(p > 0, p, np.float32(0.1) * p))
