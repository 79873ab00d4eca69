"""Tests for mdfi.image: Darknet/stb-compatible loading, error reporting, saving."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from mdfi.errors import ImageError, LimitError, MDFIError
from mdfi.image import (DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV, image_to_chw_float,
                        load_image, max_image_pixels, save_image)


# ------------------------------------------------------------------------------------
# helpers

def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(width: int, height: int, bit_depth: int, color_type: int,
              raw: Optional[bytes] = None) -> bytes:
    """A PNG file built by hand (filter type 0 on every row).

    ``raw`` is the unfiltered pixel data, rows concatenated; None writes a tiny IDAT
    that does not cover the image (used for header-only tests).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if raw is None:
        idat = zlib.compress(b"\x00" * 16)
    else:
        channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
        row = width * channels * bit_depth // 8
        assert len(raw) == row * height
        idat = zlib.compress(b"".join(b"\x00" + raw[i * row:(i + 1) * row] for i in range(height)))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def rgb_pattern(h: int = 24, w: int = 32) -> np.ndarray:
    """A deterministic RGB image with distinct values in every channel."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7 + y) % 256, (y * 11 + 3) % 256, (x * y + 5) % 256],
                    axis=2).astype(np.uint8)


def assert_rgb_u8(arr: np.ndarray, h: int, w: int) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.shape == (h, w, 3)
    assert arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"]


def assert_one_line_about(err: BaseException, name: str) -> None:
    msg = str(err)
    assert "\n" not in msg
    assert name in msg


# ------------------------------------------------------------------------------------
# files: modes and conversions

def test_rgb_png_exact(tmp_path: Path) -> None:
    ref = rgb_pattern()
    p = tmp_path / "a.png"
    Image.fromarray(ref).save(p)
    out = load_image(p)
    assert_rgb_u8(out, 24, 32)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(load_image(str(p)), ref)  # str path too


def test_rgb_jpeg_matches_decoder(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    Image.fromarray(rgb_pattern(40, 48)).save(p, quality=90)
    out = load_image(p)
    assert_rgb_u8(out, 40, 48)
    with Image.open(p) as im:
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))


def test_grayscale_replicated(tmp_path: Path) -> None:
    gray = rgb_pattern()[:, :, 0]
    p = tmp_path / "g.png"
    Image.fromarray(gray).save(p)
    out = load_image(p)
    assert_rgb_u8(out, *gray.shape)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_la_alpha_dropped(tmp_path: Path) -> None:
    gray = np.full((4, 5), 77, np.uint8)
    alpha = np.zeros((4, 5), np.uint8)  # fully transparent
    p = tmp_path / "la.png"
    Image.fromarray(np.stack([gray, alpha], axis=2)).save(p)
    out = load_image(p)
    assert_rgb_u8(out, 4, 5)
    assert (out == 77).all()


def test_rgba_alpha_dropped_not_composited(tmp_path: Path) -> None:
    rgba = np.zeros((6, 7, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 100, 50
    rgba[..., 3] = 255
    rgba[2, 3, 3] = 0      # fully transparent pixel keeps its RGB
    rgba[4, 4, 3] = 128    # half transparent too
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(p)
    out = load_image(p)
    assert_rgb_u8(out, 6, 7)
    np.testing.assert_array_equal(out, rgba[..., :3])
    assert tuple(out[2, 3]) == (200, 100, 50)


def _palette_image() -> Image.Image:
    im = Image.new("P", (4, 3))
    palette = [0] * 768
    palette[0:12] = [10, 20, 30, 200, 0, 0, 0, 200, 0, 1, 2, 250]
    im.putpalette(palette)
    im.putdata([0, 1, 2, 3] * 3)
    return im


def test_palette_expanded(tmp_path: Path) -> None:
    p = tmp_path / "p.png"
    _palette_image().save(p)
    out = load_image(p)
    assert_rgb_u8(out, 3, 4)
    np.testing.assert_array_equal(out[0], [[10, 20, 30], [200, 0, 0], [0, 200, 0], [1, 2, 250]])


def test_palette_with_transparency_drops_alpha(tmp_path: Path) -> None:
    p = tmp_path / "pt.png"
    _palette_image().save(p, transparency=1)  # index 1 (200,0,0) transparent
    with Image.open(p) as im:
        assert im.mode == "P" and "transparency" in im.info
    out = load_image(p)
    assert tuple(out[0, 1]) == (200, 0, 0)
    gif = tmp_path / "pt.gif"
    _palette_image().save(gif, transparency=1)
    assert tuple(load_image(gif)[1, 1]) == (200, 0, 0)


def test_16bit_gray_png_is_shifted_not_rounded(tmp_path: Path) -> None:
    raw = np.array([[0x0000, 0x00FF, 0x0100, 0x12FF],
                    [0x7F80, 0x8000, 0xFEFF, 0xFFFF]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    p.write_bytes(png_bytes(4, 2, 16, 0, raw.astype(">u2").tobytes()))
    with Image.open(p) as im:
        assert im.mode in ("I;16", "I;16B", "I")
    out = load_image(p)
    assert_rgb_u8(out, 2, 4)
    expected = (raw >> 8).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)
    assert out[0, 3, 0] == 0x12  # rounding would give 0x13


def test_16bit_rgb_png_is_shifted(tmp_path: Path) -> None:
    raw = np.array([[[0x12FF, 0x0080, 0xFFFF], [0x8000, 0x7FFF, 0x0001]]], dtype=np.uint16)
    p = tmp_path / "rgb16.png"
    p.write_bytes(png_bytes(2, 1, 16, 2, raw.astype(">u2").tobytes()))
    np.testing.assert_array_equal(load_image(p), (raw >> 8).astype(np.uint8))


def test_16bit_pil_modes_in_memory() -> None:
    raw = np.array([[0x00FF, 0x12FF], [0xAB00, 0xFFFF]], dtype=np.uint16)
    im = Image.fromarray(raw)
    assert im.mode == "I;16"
    np.testing.assert_array_equal(load_image(im)[:, :, 1], raw >> 8)
    im_b = Image.frombytes("I;16B", (2, 2), raw.astype(">u2").tobytes())
    np.testing.assert_array_equal(load_image(im_b)[:, :, 2], raw >> 8)


def test_mode_i_and_f_scaling() -> None:
    vals = np.array([[-3, 0, 127, 300]], dtype=np.int32)
    im_i = Image.fromarray(vals)
    assert im_i.mode == "I"
    np.testing.assert_array_equal(load_image(im_i)[0, :, 0], [0, 0, 127, 255])
    # "I" read from a PNG (older Pillow) holds 16-bit samples: >> 8.
    im_png = Image.fromarray(np.array([[0x12FF, 70000, -1]], dtype=np.int32))
    im_png.format = "PNG"
    np.testing.assert_array_equal(load_image(im_png)[0, :, 0], [0x12, 0xFF, 0])
    im_f = Image.fromarray(np.array([[-3.0, 0.5, 127.5, 300.0, np.nan]], dtype=np.float32))
    assert im_f.mode == "F"
    np.testing.assert_array_equal(load_image(im_f)[0, :, 0], [0, 1, 128, 255, 0])


def test_one_bit(tmp_path: Path) -> None:
    im = Image.new("1", (5, 2))
    im.putpixel((1, 0), 1)
    im.putpixel((4, 1), 1)
    p = tmp_path / "bw.png"
    im.save(p)
    out = load_image(p)
    assert set(np.unique(out)) == {0, 255}
    assert tuple(out[0, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[1, 4]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb_pattern()).convert("CMYK").save(p, quality=95)
    with Image.open(p) as im:
        assert im.mode == "CMYK"
        expected = np.asarray(im.convert("RGB"))
    out = load_image(p)
    assert_rgb_u8(out, 24, 32)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "CMYK", "RGBX", "PA"])
def test_other_modes_use_pil_convert(mode: str) -> None:
    im = Image.fromarray(rgb_pattern(5, 6)).convert("RGBA" if mode == "PA" else "RGB")
    im = im.convert("P").convert("PA") if mode == "PA" else im.convert(mode)
    np.testing.assert_array_equal(load_image(im), np.asarray(im.convert("RGB")))


def test_exif_orientation_not_applied(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb_pattern(20, 40)).save(p, exif=exif)
    with Image.open(p) as im:
        assert im.getexif().get(0x0112) == 6
    assert load_image(p).shape == (20, 40, 3)  # as stored, not rotated


def test_lazy_pil_image_is_loaded(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.fromarray(rgb_pattern()).save(p)
    with Image.open(p) as im:
        np.testing.assert_array_equal(load_image(im), rgb_pattern())


# ------------------------------------------------------------------------------------
# files: errors

def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="no such file") as e:
        load_image(p)
    assert_one_line_about(e.value, str(p))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="directory") as e:
        load_image(tmp_path)
    assert_one_line_about(e.value, str(tmp_path))


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "fake.jpg"
    p.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="not an image") as e:
        load_image(p)
    assert_one_line_about(e.value, str(p))
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as e:
        load_image(p)
    assert_one_line_about(e.value, str(p))


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_file(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"cut.{ext}"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert_one_line_about(e.value, str(p))
    assert not isinstance(e.value, LimitError)
    # Also when the caller opened it lazily with Pillow.
    with Image.open(p) as im:
        with pytest.raises(ImageError) as e2:
            load_image(im)
    assert_one_line_about(e2.value, str(p))


def test_zero_size() -> None:
    with pytest.raises(ImageError, match="zero size"):
        load_image(Image.new("RGB", (0, 5)))
    with pytest.raises(ImageError, match="zero size"):
        load_image(np.zeros((0, 5, 3), np.uint8))


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageError, match="file path"):
        load_image(42)  # type: ignore[arg-type]
    with pytest.raises(ImageError):
        load_image(b"\x89PNG")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------
# size limit

def test_huge_png_header_default_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bytes(100_000, 100_000, 8, 0))  # 1e10 pixels, header only
    saved = Image.MAX_IMAGE_PIXELS
    with pytest.raises(LimitError) as e:
        load_image(p)
    msg = str(e.value)
    assert_one_line_about(e.value, str(p))
    assert MAX_PIXELS_ENV in msg and "100,000,000" in msg and "100000x100000" in msg
    assert Image.MAX_IMAGE_PIXELS == saved  # restored
    assert isinstance(e.value, MDFIError)


def test_env_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(p)
    monkeypatch.setenv(MAX_PIXELS_ENV, "99")
    with pytest.raises(LimitError, match=f"{MAX_PIXELS_ENV}=100"):
        load_image(p)
    with pytest.raises(LimitError):
        load_image(np.zeros((10, 10, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")
    assert load_image(p).shape == (10, 10, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1_000")
    assert max_image_pixels() == 1000


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "1.5"])
def test_env_limit_invalid(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, bad)
    with pytest.raises(LimitError, match=MAX_PIXELS_ENV):
        load_image(np.zeros((2, 2, 3), np.uint8))


def test_our_limit_overrides_pillow_bomb_check(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow alone would refuse 400 px with MAX_IMAGE_PIXELS=50 (error above 2x);
    # MDFI's limit (1000) is the one that counts, and Pillow's value is restored.
    p = tmp_path / "a.png"
    Image.fromarray(rgb_pattern(20, 20)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    np.testing.assert_array_equal(load_image(p), rgb_pattern(20, 20))
    assert Image.MAX_IMAGE_PIXELS == 50
    monkeypatch.setenv(MAX_PIXELS_ENV, "399")
    with pytest.raises(LimitError, match="399"):
        load_image(p)
    assert Image.MAX_IMAGE_PIXELS == 50


# ------------------------------------------------------------------------------------
# numpy inputs

def test_array_rgb_as_is() -> None:
    ref = rgb_pattern()
    out = load_image(ref)
    assert_rgb_u8(out, 24, 32)
    np.testing.assert_array_equal(out, ref)
    strided = ref[:, ::2]  # not contiguous
    out2 = load_image(strided)
    assert_rgb_u8(out2, 24, 16)
    np.testing.assert_array_equal(out2, strided)


def test_array_gray_and_alpha() -> None:
    gray = rgb_pattern()[:, :, 1]
    for arr in (gray, gray[:, :, None], np.stack([gray, np.zeros_like(gray)], axis=2)):
        out = load_image(arr)
        assert_rgb_u8(out, 24, 32)
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], gray)
    rgba = np.concatenate([rgb_pattern(), np.zeros((24, 32, 1), np.uint8)], axis=2)
    out = load_image(rgba)
    assert_rgb_u8(out, 24, 32)
    np.testing.assert_array_equal(out, rgb_pattern())  # alpha 0 dropped, RGB kept


def test_array_uint16_and_bool() -> None:
    u16 = np.array([[[0x12FF, 0x00FF, 0xFFFF]]], dtype=np.uint16)
    np.testing.assert_array_equal(load_image(u16), [[[0x12, 0x00, 0xFF]]])
    np.testing.assert_array_equal(load_image(u16.astype(">u2")), [[[0x12, 0x00, 0xFF]]])
    b = np.array([[True, False]])
    np.testing.assert_array_equal(load_image(b)[0, :, 0], [255, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_array_float_round_half_up(dtype: type) -> None:
    arr = np.array([[0.0, 0.5, 1.0, 0.25, 1 / 255, 254.5 / 255]], dtype=dtype)
    out = load_image(arr)[0, :, 0]
    assert list(out[:4]) == [0, 128, 255, 64]  # 127.5 -> 128, 63.75 -> 64
    assert out[4] == 1
    ks = np.arange(256)
    np.testing.assert_array_equal(load_image((ks / 255.0).astype(dtype)[None, :])[0, :, 0], ks)


@pytest.mark.parametrize("arr", [
    np.array([[0.0, 1.5]]),                       # float out of range
    np.array([[-0.1, 0.5]], dtype=np.float32),
    np.array([[np.nan, 0.5]]),
    np.zeros((4, 4, 3), dtype=np.int64),          # 0..255 ints but wrong dtype
    np.zeros((4, 4), dtype=np.int8),
    np.zeros((4, 4, 3), dtype=np.complex64),
    np.zeros((4, 4, 5), dtype=np.uint8),          # bad channel count
    np.zeros((16,), dtype=np.uint8),              # 1-D
    np.zeros((2, 4, 4, 3), dtype=np.uint8),       # batch
])
def test_array_rejected(arr: np.ndarray) -> None:
    with pytest.raises(ImageError, match="accepted arrays") as e:
        load_image(arr)
    assert_one_line_about(e.value, "<array>")


# ------------------------------------------------------------------------------------
# float conversion

def test_chw_float_matches_darknet() -> None:
    ks = np.arange(256, dtype=np.uint8)
    img = np.stack([ks, 255 - ks, ks // 2], axis=1)[None, :, :]  # 1x256x3
    chw = image_to_chw_float(img)
    assert chw.shape == (3, 1, 256) and chw.dtype == np.float32 and chw.flags["C_CONTIGUOUS"]
    # Darknet: im.data = (float)v/255.  (double division rounded to float)
    darknet = (img.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(chw, darknet)
    assert chw[0, 0, 255] == 1.0 and chw[0, 0, 0] == 0.0


def test_chw_float_channel_order() -> None:
    img = rgb_pattern()
    chw = image_to_chw_float(img)
    for c in range(3):
        np.testing.assert_array_equal(chw[c], img[:, :, c].astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((4, 4, 4), np.uint8), [[1, 2, 3]]])
def test_chw_float_rejects(bad: object) -> None:
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        image_to_chw_float(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------
# saving

def test_save_png_roundtrip_and_parents(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b" / "out.png"
    save_image(Image.fromarray(rgb_pattern()), p)
    np.testing.assert_array_equal(load_image(p), rgb_pattern())


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".JPG"])
def test_save_jpeg_quality(tmp_path: Path, ext: str) -> None:
    smooth = np.zeros((64, 64, 3), np.uint8)
    smooth[..., 0] = np.arange(64)[None, :] * 4
    smooth[..., 1] = 128
    p = tmp_path / f"out{ext}"
    save_image(Image.fromarray(smooth), p)
    with Image.open(p) as im:
        assert im.format == "JPEG"
    back = load_image(p).astype(int)
    assert np.abs(back - smooth).max() <= 6  # quality 95: close to the original


def test_save_rgba_as_jpeg_and_array(tmp_path: Path) -> None:
    rgba = Image.fromarray(np.full((8, 8, 4), 100, np.uint8))
    save_image(rgba, tmp_path / "x.jpg")
    assert load_image(tmp_path / "x.jpg").shape == (8, 8, 3)
    save_image(rgb_pattern(), tmp_path / "arr.bmp")
    np.testing.assert_array_equal(load_image(tmp_path / "arr.bmp"), rgb_pattern())


@pytest.mark.parametrize("name", ["out.xyz", "noextension", "out.psd"])
def test_save_bad_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageError) as e:
        save_image(Image.new("RGB", (2, 2)), tmp_path / name)
    assert_one_line_about(e.value, name)
    assert not (tmp_path / name).exists()


def test_save_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ImageError, match="cannot write") as e:
        save_image(Image.new("RGB", (2, 2)), blocker / "out.png")  # parent is a file
    assert_one_line_about(e.value, "out.png")
    with pytest.raises(ImageError):
        save_image(Image.new("RGB", (2, 2)), tmp_path)  # a directory, no extension


def test_save_does_not_modify_the_image(tmp_path: Path) -> None:
    # JPEG cannot hold RGBA: save_image converts a copy, the caller's image stays RGBA.
    rgba = Image.fromarray(np.full((3, 3, 4), 9, np.uint8))
    save_image(rgba, tmp_path / "y.jpeg")
    assert rgba.mode == "RGBA"
    assert os.path.getsize(tmp_path / "y.jpeg") > 0
