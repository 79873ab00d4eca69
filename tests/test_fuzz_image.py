"""Fuzzing the image readers (issue 6; the rules and shared helpers: fuzz_common.py)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdfi.errors import ImageError, LimitError
from mdfi.image import load_image

import fuzz_common
from fuzz_common import (fuzz, fresh, attempt, note, assert_user_error, png_with_header, image_bytes,
                         IMAGE_KINDS)

# fixtures shared with the other test_fuzz_* modules (defined in fuzz_common.py)
work = fuzz_common.work


# ================================================================================================
# 4. images

IMAGE_NAMES = sorted(IMAGE_KINDS)


def check_image_bytes(work: Path, data: bytes, name: str = "fuzz.img"):
    path = fresh(work, "img") / name
    path.write_bytes(data)
    arr, exc = attempt(lambda: load_image(path), trace=False)
    if exc is None:
        note("accepted")
        assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert arr.shape[0] >= 1 and arr.shape[1] >= 1 and arr.flags.c_contiguous
        return arr
    assert_user_error(exc, path, (ImageError, LimitError))
    return exc


def test_image_kinds_load(work):
    for kind in IMAGE_NAMES:
        arr = check_image_bytes(work, image_bytes(kind), f"ok.{kind}")
        assert isinstance(arr, np.ndarray), (kind, arr)
        assert kind == "ico" or arr.shape[:2] == (17, 23), kind


@fuzz(250)
@given(st.sampled_from(IMAGE_NAMES), st.integers(0, 1 << 30))
def test_image_truncated(work, kind, cut):
    data = image_bytes(kind)
    check_image_bytes(work, data[:cut % len(data)], f"t.{kind}")


@fuzz(300)
@given(st.sampled_from(IMAGE_NAMES), st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)),
                                              min_size=1, max_size=8), st.booleans())
def test_image_byte_flips(work, kind, flips, header_only):
    data = bytearray(image_bytes(kind))
    for pos, byte in flips:
        data[pos % min(len(data), 64) if header_only else pos % len(data)] = byte
    check_image_bytes(work, bytes(data), f"f.{kind}")


@fuzz(150)
@given(st.binary(max_size=2000), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM",
                                                  b"II*\x00", b"MM\x00*", b"RIFF\0\0\0\0WEBP", b"P6\n"]))
def test_image_random_bytes(work, data, magic):
    check_image_bytes(work, magic + data)


_BOMB_IDAT = zlib.compress(b"\0" * 100000)


@pytest.mark.parametrize("data, expect", [
    (png_with_header(100_000, 100_000), LimitError),
    (png_with_header(2 ** 31 - 1, 2 ** 31 - 1), (ImageError, LimitError)),
    (png_with_header(20_000, 20_000, idat=_BOMB_IDAT), LimitError),
    (png_with_header(0, 0), ImageError),
    (png_with_header(0, 10), ImageError),
    (png_with_header(64, 64, 8, 3, plte=b""), ImageError),                          # empty palette
    (png_with_header(64, 64, 8, 3, plte=b"\x01\x02"), ImageError),                  # not a multiple of 3
    (png_with_header(64, 64, 8, 3, plte=b"\x01\x02\x03" * 300), ImageError),        # > 256 entries
    (png_with_header(8, 8, 8, 3, plte=b"\x01\x02\x03", idat=zlib.compress(b"\0\xff" * 64)), None),  # bad index
    (png_with_header(8, 8, 16, 2, idat=zlib.compress(b"\0" * 1000)), None),
    (png_with_header(8, 8, 7, 2), ImageError),                                      # impossible depth
    (b"BM" + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 100_000, 100_000, 1, 24, 0, 0, 0, 0, 0, 0),
     LimitError),
    (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0) + b",\0\0\0\0" + struct.pack("<HH", 65535, 65535)
     + b"\0\x02\x02\x4c\x01\0;", (ImageError, LimitError)),
], ids=["png-1e10", "png-max", "png-bomb", "png-0x0", "png-0x10", "plte-empty", "plte-short", "plte-long",
        "plte-index", "png-16-short", "png-depth7", "bmp-huge", "gif-huge"])
def test_image_crafted_headers(work, data, expect):
    res = check_image_bytes(work, data, "crafted.img")
    if expect is not None:
        assert isinstance(res, expect), repr(res)


@pytest.mark.parametrize("kind, cut", [("tiff-rgb", 60), ("tiff-rgb", 20), ("tiff-cmyk", 100)])
def test_image_pillow_warnings_do_not_leak(work, kind, cut):
    """Pillow warns about damaged TIFF metadata; printed by Python that is two lines of
    source code above the one-line error."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_image_bytes(work, image_bytes(kind)[:cut], f"w.{kind}")
    assert not [w for w in caught if "PIL" in w.filename], [str(w.message) for w in caught]


def test_image_empty_and_directory(work):
    assert isinstance(check_image_bytes(work, b"", "empty.png"), ImageError)
    d = fresh(work, "img") / "dir.png"
    d.mkdir()
    _, exc = attempt(lambda: load_image(d))
    assert_user_error(exc, d, ImageError)
