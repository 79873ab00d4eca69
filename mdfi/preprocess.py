"""Network input from an image, exactly as Darknet's ``letterbox_image`` (src/image.c), or
``resize_image`` for AlexeyAB models without ``letter_box=1`` (:func:`resize`).

1. pixels / 255 in float32 (load_image_color);
2. resize keeping the aspect ratio (:func:`letterbox_geometry`) with Darknet's two-pass
   bilinear ``resize_image``;
3. paste at the integer offset ``((net_w-new_w)/2, (net_h-new_h)/2)`` onto a canvas of 0.5.

Steps 2-3 run in C (csrc/mdfi_image.c) with the same float32 operations as Darknet, so the
result is bit-identical to Darknet's network input for the same decoded pixels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ._ext import _image
from .errors import ShapeError
from .image import image_to_chw_float


def letterbox_geometry(img_w: int, img_h: int, net_w: int, net_h: int) -> Tuple[int, int]:
    """(new_w, new_h) of the resized image inside the canvas (letterbox_image)::

        if ((float)w/im.w < (float)h/im.h) { new_w = w; new_h = (im.h*w)/im.w; }
        else                               { new_h = h; new_w = (im.w*h)/im.h; }

    The comparison is done in float32 like Darknet; the sizes in integer arithmetic.
    """
    if img_w < 1 or img_h < 1:
        raise ShapeError(f"empty image {img_w}x{img_h}")
    f32 = np.float32
    if f32(net_w) / f32(img_w) < f32(net_h) / f32(img_h):
        new_w, new_h = net_w, (img_h * net_w) // img_w
    else:
        new_h, new_w = net_h, (img_w * net_h) // img_h
    # A very elongated image would give 0 rows/columns; keep at least one (Darknet would
    # crash there).
    return max(new_w, 1), max(new_h, 1)


def letterbox(chw: np.ndarray, net_w: int, net_h: int) -> np.ndarray:
    """Letterbox a (C,H,W) float32 image into a (C, net_h, net_w) float32 canvas."""
    chw = np.ascontiguousarray(chw, dtype=np.float32)
    if chw.ndim != 3:
        raise ShapeError(f"letterbox expects a (C,H,W) array, got shape {chw.shape}")
    c, h, w = chw.shape
    new_w, new_h = letterbox_geometry(w, h, net_w, net_h)
    part = np.empty((c, h, new_w), dtype=np.float32)
    out = np.empty((c, net_h, net_w), dtype=np.float32)
    _image.letterbox_f32(chw, part, out, new_h, new_w)
    return out


def resize(chw: np.ndarray, net_w: int, net_h: int) -> np.ndarray:
    """Darknet's plain ``resize_image(im, net_w, net_h)`` (no aspect ratio kept): what
    AlexeyAB's test_detector feeds the network unless the cfg sets ``letter_box=1``
    (AB src/detector.c:1674-1675; resize_image, src/image.c:1399-1443, is pjreddie's
    two-pass bilinear).  It is the letterbox kernel with the resized size equal to the
    canvas (no offset, nothing of the grey canvas left)."""
    chw = np.ascontiguousarray(chw, dtype=np.float32)
    if chw.ndim != 3:
        raise ShapeError(f"resize expects a (C,H,W) array, got shape {chw.shape}")
    c, h, w = chw.shape
    part = np.empty((c, h, net_w), dtype=np.float32)
    out = np.empty((c, net_h, net_w), dtype=np.float32)
    _image.letterbox_f32(chw, part, out, net_h, net_w)
    return out


def image_to_input(rgb: np.ndarray, net_w: int, net_h: int, letterbox_image: bool = True) -> np.ndarray:
    """HxWx3 uint8 RGB -> (3, net_h, net_w) float32 network input in [0,1]: letterboxed
    (pjreddie; AlexeyAB with ``letter_box=1``) or plainly resized (AlexeyAB's default)."""
    chw = image_to_chw_float(rgb)
    return letterbox(chw, net_w, net_h) if letterbox_image else resize(chw, net_w, net_h)


def image_to_pixels(rgb, net_w: int, net_h: int, letterbox_image: bool = True, *,
                    nthreads: int = 1, simd: Optional[bool] = None) -> np.ndarray:
    """HxWx3 uint8 RGB -> (3, net_h, net_w) uint8 input of the integer engine, in one C pass:
    equal to ``input_to_u8(image_to_input(rgb, net_w, net_h, letterbox_image))`` for every
    image (the same float32 letterbox or resize operations, then ``floor(255 v + 1/2)``; a
    plain resize is the letterbox with the resized size equal to the canvas).

    ``rgb`` may also be a loaded Pillow image of mode ``"RGB"`` (what
    :func:`mdfi.image.decode_image` returns): its pixels are those of ``np.asarray(rgb)``, read
    in place through the Arrow C data interface where Pillow offers it (Pillow >= 11.2, an
    image in one memory block), else copied.  ``nthreads``: threads of the engine's pool the
    pass may use; ``simd``: False for the portable C, True for the AVX2 twins where the CPU has
    them, None as the convolution (``MDFI_SIMD``).  The result depends on neither."""
    if not isinstance(rgb, np.ndarray):
        return _pil_to_pixels(rgb, net_w, net_h, letterbox_image, nthreads, simd)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3:
        raise ShapeError(f"image_to_pixels expects an (H,W,C) array, got shape {rgb.shape}")
    h, w, c = rgb.shape
    new_w, new_h = letterbox_geometry(w, h, net_w, net_h) if letterbox_image else (net_w, net_h)
    out = np.empty((c, net_h, net_w), dtype=np.uint8)
    _image.letterbox_u8(rgb, out, new_h, new_w, nthreads=nthreads, simd=simd)
    return out


def _pil_to_pixels(img, net_w: int, net_h: int, letterbox_image: bool, nthreads: int,
                   simd: Optional[bool]) -> np.ndarray:
    """:func:`image_to_pixels` of a Pillow image of mode RGB (read in place when possible)."""
    if getattr(img, "mode", None) != "RGB":
        raise ShapeError(f"image_to_pixels expects an (H,W,3) uint8 array or a Pillow RGB image, got "
                         f"{type(img).__name__}{' of mode ' + repr(img.mode) if hasattr(img, 'mode') else ''}")
    w, h = img.size
    new_w, new_h = letterbox_geometry(w, h, net_w, net_h) if letterbox_image else (net_w, net_h)
    out = np.empty((3, net_h, net_w), dtype=np.uint8)
    export = getattr(img, "__arrow_c_array__", None)
    if export is not None:
        try:
            schema, array = export()
        except Exception:  # noqa: BLE001 - e.g. "Image rows are not contiguous in memory": copy instead
            pass
        else:
            try:
                _image.letterbox_u8_arrow(schema, array, h, w, out, new_h, new_w, nthreads=nthreads, simd=simd)
                return out
            except (ShapeError, ValueError):
                pass                                   # not the layout expected: copy instead
    rgb = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    _image.letterbox_u8(rgb, out, new_h, new_w, nthreads=nthreads, simd=simd)
    return out


def network_input(rgb: np.ndarray, network) -> np.ndarray:
    """The float input of ``network`` for an HxWx3 uint8 image, as its Darknet lineage makes it."""
    return image_to_input(rgb, network.width, network.height, network.letter_box)


def network_pixels(rgb, network, *, nthreads: int = 1) -> np.ndarray:
    """The 8-bit input of ``network``'s integer engine for an HxWx3 uint8 image or a Pillow RGB
    image (the rounded :func:`network_input`, computed in one C pass on ``nthreads`` threads)."""
    return image_to_pixels(rgb, network.width, network.height, network.letter_box, nthreads=nthreads)
