"""The 8-bit letterbox of the integer engine (mdfi.preprocess.image_to_pixels, one C pass from
decoded pixels to the network input) equals the float letterbox followed by the host-side
rounding, input_to_u8(image_to_input(rgb)), for every size class and pixel value; and
Model.detect on an image (which takes that path) equals detect on the prepared float input."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.preprocess import image_to_input, image_to_pixels
from mdfi.quant.quantize import input_to_u8

SIZES = [(1, 1), (1, 7), (9, 1), (2, 3), (3, 2), (416, 416), (415, 417), (500, 741), (741, 500),
         (300, 1000), (1000, 300), (833, 2), (2, 833), (64, 64), (270, 480)]


@pytest.mark.parametrize("h,w", SIZES)
def test_pixels_equal_float_letterbox_then_rounding(h, w):
    rng = np.random.default_rng(h * 7919 + w)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            np.full((h, w, 3), 255, np.uint8), np.zeros((h, w, 3), np.uint8),
            rng.choice(np.array([0, 1, 127, 128, 254, 255], np.uint8), size=(h, w, 3))]
    for rgb in imgs:
        for net_w, net_h in ((416, 416), (608, 352), (32, 96))[:1 if h * w > 100000 else 3]:
            assert np.array_equal(image_to_pixels(rgb, net_w, net_h),
                                  input_to_u8(image_to_input(rgb, net_w, net_h))), (h, w, net_w, net_h)


def test_every_pixel_value_survives_a_copy():
    """A 416x416 image is copied, not resized: every byte value comes back unchanged."""
    rgb = np.arange(416 * 416 * 3, dtype=np.int64).reshape(416, 416, 3).astype(np.uint8)
    assert np.array_equal(image_to_pixels(rgb, 416, 416), rgb.transpose(2, 0, 1))


def test_detect_path_equals_prepared(tmp_path):
    import mdfi
    from PIL import Image
    skdata = pytest.importorskip("skimage.data")
    model = mdfi.load("yolov3-tiny", threads=2)
    path = tmp_path / "coffee.png"
    Image.fromarray(skdata.coffee()).save(path)
    a = model.detect(str(path), thresh=0.1)
    b = model.detect(model.prepare(str(path)), thresh=0.1)
    assert a == b and len(a) > 0
