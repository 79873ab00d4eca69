"""The float32 reference forward reproduces the original Darknet, layer by layer.

Fed Darknet's own stored input tensor, every layer must agree within 1e-4 relative
(max abs error / max abs value).  The stored tensors were produced by Darknet itself
(tests/fixtures/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.preprocess import image_to_input

from conftest import DARKNET, SHARED_DARKNET, needs_shared, rel_err, skimage_image

TOL = 1e-4


@pytest.mark.parametrize("image", ["dog", "astronaut"])
def test_yolov3_tiny_heads_match_darknet(tiny_net, image):
    z = np.load(DARKNET / "yolov3-tiny" / f"{image}_heads.npz")
    outs = tiny_net.forward_float(z["input"])
    for key in ("layer15", "layer16", "layer22", "layer23"):
        assert rel_err(outs[int(key[5:])], z[key]) < TOL, key


def test_mini_yolov3_heads_match_darknet(mini_net):
    z = np.load(DARKNET / "mini-yolov3" / "astronaut_heads.npz")
    outs = mini_net.forward_float(z["input"])
    for key in z.files:
        if key != "input":
            assert rel_err(outs[int(key[5:])], z[key]) < TOL, key


@needs_shared
@pytest.mark.parametrize("net_name, image", [("tiny", "dog"), ("tiny", "astronaut"), ("mini", "astronaut")])
def test_every_layer_matches_darknet(tiny_net, mini_net, net_name, image):
    net = tiny_net if net_name == "tiny" else mini_net
    folder = "yolov3-tiny" if net_name == "tiny" else "mini-yolov3"
    z = np.load(SHARED_DARKNET / folder / f"{image}_all_layers.npz")
    outs = net.forward_float(z["input"])
    errs = [rel_err(o, z[f"layer{i:02d}"]) for i, o in enumerate(outs)]
    assert len(errs) == len(net.layers)
    assert max(errs) < TOL, errs


@pytest.mark.parametrize("size, fixture", [(416, DARKNET / "yolov3-tiny" / "astronaut_heads.npz"),
                                           (128, DARKNET / "mini-yolov3" / "astronaut_heads.npz")])
def test_letterbox_is_bit_identical_to_darknet(size, fixture):
    """PNG decodes identically everywhere, so the letterboxed input must be *equal*."""
    x = image_to_input(skimage_image("astronaut.png"), size, size)
    assert np.array_equal(x, np.load(fixture)["input"])


def test_letterbox_geometry_and_padding():
    from mdfi.preprocess import letterbox, letterbox_geometry
    assert letterbox_geometry(768, 576, 416, 416) == (416, 312)
    assert letterbox_geometry(300, 451, 416, 416) == (276, 416)
    img = np.random.default_rng(0).random((3, 5, 9), dtype=np.float32)
    out = letterbox(img, 16, 16)
    new_w, new_h = letterbox_geometry(9, 5, 16, 16)
    top = (16 - new_h) // 2
    assert np.all(out[:, :top] == 0.5) and np.all(out[:, top + new_h:] == 0.5)
    # corners of the resized image are the source corners (bilinear with aligned corners)
    assert out[0, top, 0] == img[0, 0, 0] and out[0, top + new_h - 1, 15] == img[0, 4, 8]


def test_letterbox_degenerate_sizes():
    from mdfi.preprocess import letterbox
    for shape in [(3, 1, 1), (3, 1, 500), (3, 700, 1), (1, 2, 2)]:
        img = np.random.default_rng(1).random(shape, dtype=np.float32)
        out = letterbox(img, 32, 24)
        assert out.shape == (shape[0], 24, 32) and np.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1
