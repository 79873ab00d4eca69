"""The Python API: load once, detect on paths, PIL images and arrays; layer outputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mdfi
from mdfi.errors import ImageError, MDFIError

from conftest import skimage_image


@pytest.fixture(scope="module")
def coffee():
    return skimage_image("coffee.png")


def test_detect_accepts_path_pil_and_array(tiny_model, coffee, tmp_path):
    p = tmp_path / "c.png"
    Image.fromarray(coffee).save(p)
    a = tiny_model.detect(coffee)
    b = tiny_model.detect(str(p))
    c = tiny_model.detect(Image.open(p))
    assert a == b == c
    assert [d.label for d in a] == ["cup"]
    d = a[0]
    assert isinstance(d, mdfi.Detection) and 0 < d.confidence < 1
    x1, y1, x2, y2 = d.box
    assert 0 <= x1 < x2 <= 600 and 0 <= y1 < y2 <= 400


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_other_image_modes(tiny_model, coffee, tmp_path, mode):
    im = Image.fromarray(coffee)
    if mode == "I;16":
        arr = (np.asarray(im.convert("L")).astype(np.uint16) << 8) | 0x7F
        im = Image.fromarray(arr.astype(np.uint16))  # mode I;16
    else:
        im = im.convert(mode)
    p = tmp_path / f"c_{mode.replace(';', '')}.png"
    im.save(p)
    dets = tiny_model.detect(p)
    assert all(isinstance(d, mdfi.Detection) for d in dets)
    if mode in ("RGBA",):
        assert dets == tiny_model.detect(coffee)   # alpha is dropped, like Darknet/stb


def test_gray_16bit_equals_8bit(tiny_model, coffee, tmp_path):
    gray8 = np.asarray(Image.fromarray(coffee).convert("L"))
    p16 = tmp_path / "g16.png"
    Image.fromarray(((gray8.astype(np.uint16) << 8) | 0xFF).astype(np.uint16)).save(p16)
    assert tiny_model.detect(p16) == tiny_model.detect(np.stack([gray8] * 3, axis=-1))


def test_unreadable_file_is_clear_error(tiny_model, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="x.png"):
        tiny_model.detect(bad)


def test_layer_outputs(tiny_model):
    x = np.full((3, 416, 416), 0.5, np.float32)
    outs = tiny_model.layer_outputs(x)
    assert len(outs) == 24
    assert [o.shape for o in outs] == [l.out_shape for l in tiny_model.network.layers]
    with pytest.raises(MDFIError, match=r"\(3, 416, 416\)"):
        tiny_model.layer_outputs(np.zeros((3, 10, 10), np.float32))


def test_bad_arguments(tiny_model, coffee):
    with pytest.raises(MDFIError, match="thresh"):
        tiny_model.detect(coffee, thresh=1.5)
    with pytest.raises(MDFIError, match="needs its weights"):
        mdfi.load(cfg="x.cfg")


def test_one_model_detects_from_several_threads(tiny_weights_path):
    """Load once, detect from a thread pool (the fixed-point C engine by default): every
    thread gets the same detections as a sequential call on its image."""
    from concurrent.futures import ThreadPoolExecutor
    model = mdfi.load("yolov3-tiny")
    images = [skimage_image(n) for n in ("coffee.png", "astronaut.png", "chelsea.png", "rocket.jpg")]
    want = [model.detect(im) for im in images]
    assert any(want)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(model.detect, images * 3))
    assert got == want * 3
