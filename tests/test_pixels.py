"""The 8-bit letterbox of the integer engine (mdfi.preprocess.image_to_pixels, one C pass from
decoded pixels to the network input) equals the float letterbox followed by the host-side
rounding, input_to_u8(image_to_input(rgb)), for every size class and pixel value, on any
number of threads and read from a packed RGB array or in place from a Pillow image (RGBX
storage, through the Arrow C data interface where Pillow has it); and Model.detect on an
image (which takes that path) equals detect on the prepared float input."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi._ext import _image
from mdfi.preprocess import image_to_input, image_to_pixels
from mdfi.quant.quantize import input_to_u8

#: the letterbox paths this CPU runs: portable C, and the AVX2 twins where the CPU has AVX2
SIMD = (False, True) if _image.have_avx2() else (False,)


def test_simd_paths_ran_or_skipped():
    """Says which paths the tests of this file ran (the portable C always)."""
    if not _image.have_avx2():
        pytest.skip("no AVX2 on this CPU: only the portable C letterbox was tested")

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
            ref = input_to_u8(image_to_input(rgb, net_w, net_h))
            for nthreads in (1, 2, 3):
                for simd in SIMD:
                    assert np.array_equal(image_to_pixels(rgb, net_w, net_h, nthreads=nthreads, simd=simd), ref), \
                        (h, w, net_w, net_h, nthreads, simd)


# odd widths, single pixels, very wide and very tall images, up- and down-scaling
EDGE_SIZES = [(1, 1), (1, 2), (2, 1), (1, 3001), (3001, 1), (2, 2999), (2999, 3), (5, 7), (7, 5), (17, 1023),
              (1023, 17), (281, 415), (415, 281), (333, 333), (1, 416), (416, 1)]


def _pil_has_arrow() -> bool:
    from PIL import Image
    try:
        Image.new("RGB", (3, 2)).__arrow_c_array__()
    except Exception:  # noqa: BLE001 - older Pillow: no Arrow export
        return False
    return True


@pytest.mark.parametrize("h,w", EDGE_SIZES)
def test_pixels_threads_and_pillow_storage_equal_reference(h, w):
    """Every way into the 8-bit letterbox -- a packed (H,W,3) array, a Pillow RGB image read in
    place (RGBX, 4 bytes a pixel) or copied, on 1, 2 or 5 threads, letterboxed or plainly
    resized -- equals the float reference followed by the rounding."""
    from PIL import Image
    rng = np.random.default_rng(h * 131 + w)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb)

    class NoArrow:                    # a Pillow image without the Arrow export: the copy path
        mode, size = pil.mode, pil.size
        __array_interface__ = property(lambda self: pil.__array_interface__)

    no_arrow = NoArrow()
    for net_w, net_h in ((416, 416), (608, 352), (33, 97)):
        for letterbox in (True, False):
            ref = input_to_u8(image_to_input(rgb, net_w, net_h, letterbox))
            for nthreads in (1, 2, 5):
                for simd in SIMD:
                    for src in (rgb, pil, no_arrow):
                        got = image_to_pixels(src, net_w, net_h, letterbox, nthreads=nthreads, simd=simd)
                        assert np.array_equal(got, ref), \
                            (h, w, net_w, net_h, letterbox, nthreads, simd, type(src).__name__)


def test_pillow_in_place_path_ran_or_skipped():
    """Says whether the in-place (Arrow) path of the test above ran on this Pillow."""
    if not _pil_has_arrow():
        pytest.skip("this Pillow has no Arrow export (before 11.2): only the copy path was tested")
    from PIL import Image
    rgb = np.random.default_rng(5).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    schema, array = Image.fromarray(rgb).__arrow_c_array__()
    out = np.empty((3, 64, 64), np.uint8)
    _image.letterbox_u8_arrow(schema, array, 37, 53, out, 44, 64, nthreads=2)
    assert np.array_equal(out, input_to_u8(image_to_input(rgb, 64, 64)))
    # capsules that do not describe h x w pixels are refused (the caller then copies)
    from mdfi.errors import ShapeError
    with pytest.raises(ShapeError):
        _image.letterbox_u8_arrow(schema, array, 38, 53, out, 44, 64)
    with pytest.raises(ShapeError):
        schema, array = Image.new("L", (53, 37)).__arrow_c_array__()
        _image.letterbox_u8_arrow(schema, array, 37, 53, out, 44, 64)


def test_pillow_image_in_several_blocks_is_copied():
    """Pillow keeps a large image in several memory blocks, which it cannot export in place:
    the letterbox then reads a copy, with the same result."""
    from PIL import Image
    rgb = np.random.default_rng(3).integers(0, 256, (2100, 2101, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb)
    for nthreads in (1, 2):
        for simd in SIMD:
            assert np.array_equal(image_to_pixels(pil, 416, 416, nthreads=nthreads, simd=simd),
                                  image_to_pixels(rgb, 416, 416, simd=False))


def test_decode_image_keeps_rgb_pillow_images(tmp_path):
    """decode_image gives a Pillow RGB image whose pixels are load_image's, and load_image's
    array for everything else (gray, RGBA, 16-bit, arrays)."""
    from PIL import Image
    from mdfi.image import decode_image, load_image
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, (31, 45, 3), dtype=np.uint8)
    paths = {}
    for mode, arr in (("RGB", rgb), ("L", rgb[..., 0]), ("RGBA", np.dstack([rgb, rgb[..., :1]]))):
        paths[mode] = tmp_path / f"im_{mode}.png"
        Image.fromarray(arr).save(paths[mode])
    paths["jpeg"] = tmp_path / "im.jpg"
    Image.fromarray(rgb).save(paths["jpeg"], quality=90)
    for key, path in paths.items():
        got = decode_image(str(path))
        ref = load_image(str(path))
        if key in ("RGB", "jpeg"):
            assert isinstance(got, Image.Image) and got.mode == "RGB"
            got = np.asarray(got)
        else:
            assert isinstance(got, np.ndarray)
        assert np.array_equal(got, ref), key
    assert decode_image(rgb) is load_image(rgb) or np.array_equal(decode_image(rgb), rgb)


def test_every_pixel_value_survives_a_copy():
    """A 416x416 image is copied, not resized: every byte value comes back unchanged."""
    rgb = np.arange(416 * 416 * 3, dtype=np.int64).reshape(416, 416, 3).astype(np.uint8)
    assert np.array_equal(image_to_pixels(rgb, 416, 416), rgb.transpose(2, 0, 1))


@pytest.mark.parametrize("threads", [1, 2])
def test_detect_path_equals_prepared(tmp_path, threads):
    """detect() on a file or a Pillow image (the 8-bit letterbox, in place, on the engine's
    threads) equals detect() on the float input prepared like Darknet's."""
    import mdfi
    from PIL import Image
    skdata = pytest.importorskip("skimage.data")
    model = mdfi.load("yolov3-tiny", threads=threads)
    png, jpg = tmp_path / "coffee.png", tmp_path / "coffee.jpg"
    Image.fromarray(skdata.coffee()).save(png)
    Image.fromarray(skdata.coffee()[:, 37:]).save(jpg, quality=90)       # an odd width
    for path in (png, jpg):
        b = model.detect(model.prepare(str(path)), thresh=0.1)
        assert len(b) > 0
        assert model.detect(str(path), thresh=0.1) == b
        with Image.open(path) as im:
            assert model.detect(im, thresh=0.1) == b
        assert model.detect(np.asarray(Image.open(path).convert("RGB")), thresh=0.1) == b


@pytest.mark.parametrize("h,w", [(1, 1), (1, 2), (3, 5), (2, 741), (500, 741), (7, 1000)])
def test_letterbox_reads_nothing_past_the_image(h, w):
    """The image's last byte is the last byte before an inaccessible page: a vector gather that
    read past the pixels would crash the process (Linux; the AVX2 twins read 4 bytes a pixel)."""
    import ctypes
    import mmap
    import sys
    if not sys.platform.startswith("linux"):
        pytest.skip("guard pages via mprotect: Linux only")
    page = mmap.PAGESIZE
    n = h * w * 3
    span = (n + page - 1) // page * page
    buf = mmap.mmap(-1, span + page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    assert libc.mprotect(ctypes.c_void_p(base + span), page, 0) == 0     # PROT_NONE guard page
    try:
        rgb = np.frombuffer(buf, np.uint8, count=n, offset=span - n).reshape(h, w, 3)
        rgb[...] = np.random.default_rng(h + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = input_to_u8(image_to_input(np.array(rgb), 416, 416))
        for simd in SIMD:
            for nthreads in (1, 2):
                assert np.array_equal(image_to_pixels(rgb, 416, 416, nthreads=nthreads, simd=simd), ref)
    finally:
        libc.mprotect(ctypes.c_void_p(base + span), page, mmap.PROT_READ | mmap.PROT_WRITE)
        del rgb
        buf.close()
