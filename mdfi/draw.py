"""Draw detections on an image, in Darknet's colours (``predictions.jpg``).

Each detection gets a box outline in its class colour and a label such as
``dog 57%`` on a filled rectangle of the same colour.  Class colours follow
Darknet's ``get_color()`` palette so the picture looks like Darknet's; the line
width and font size scale with the image so the result reads well from ~300 px to
~4000 px images.  Only Pillow is used (``ImageDraw`` + the default font).
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .detection import Detection
from .image import load_image

__all__ = ["class_color", "draw_detections", "font_size_for", "label_text",
           "line_width_for", "text_color_for"]

RGB = Tuple[int, int, int]
AnyFont = Union[ImageFont.ImageFont, ImageFont.FreeTypeFont]

# Darknet's image.c: ``float colors[6][3]``.  get_color(c, ...) reads column c, and
# draw_detections asks c=2 for red and c=0 for blue, so the columns read "B G R".
_DARKNET_COLORS = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1],
                            [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=np.float32)

_BLACK: RGB = (0, 0, 0)
_WHITE: RGB = (255, 255, 255)

# Size scaling, as fractions of the image's *shorter* side (Darknet uses the height;
# the shorter side keeps panoramas from getting huge labels).  Darknet draws lines
# of h*.006 px; 0.005 gives 2 px at 300-416 px, 3 px at 640 px and 20 px at 4000 px.
_LINE_FRACTION = 0.005
# Darknet's label alphabet is about h*.03 px tall; 10 px is the smallest size that
# stays legible, so small images get that.
_FONT_FRACTION = 0.03
_MIN_FONT_SIZE = 10
# Below this size antialiased 1-px strokes never reach the full text colour and
# look washed out on saturated fills; hinted 1-bit glyphs are crisper there.
_ANTIALIAS_MIN_FONT_SIZE = 16


def _get_color(c: int, x: int, max_: int) -> np.float32:
    """Darknet's ``get_color(c, x, max)``, evaluated in float32 like the C code."""
    ratio = (np.float32(x) / np.float32(max_)) * np.float32(5)
    i = int(math.floor(ratio))
    j = int(math.ceil(ratio))
    ratio = np.float32(ratio - np.float32(i))
    return np.float32((np.float32(1) - ratio) * _DARKNET_COLORS[i][c]
                      + ratio * _DARKNET_COLORS[j][c])


def class_color(class_id: int, num_classes: int = 80) -> RGB:
    """The 8-bit RGB colour Darknet draws class ``class_id`` in.

    ``offset = class*123457 % classes``; red/green/blue are ``get_color(2/1/0, offset,
    classes)``, and Darknet writes a float channel ``f`` as ``(unsigned char)(255*f)``
    (truncation).  Class ids outside ``0..num_classes-1`` still get a valid colour
    (Python's ``%`` is never negative).
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    offset = (int(class_id) * 123457) % num_classes
    channels = (_get_color(2, offset, num_classes),   # red
                _get_color(1, offset, num_classes),   # green
                _get_color(0, offset, num_classes))   # blue
    r, g, b = (int(np.float32(255) * ch) for ch in channels)
    return (r, g, b)


def _relative_luminance(color: RGB) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0 = black, 1 = white)."""
    def linear(v: int) -> float:
        s = v / 255.0
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(v) for v in color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_color_for(fill: RGB) -> RGB:
    """Black or white, whichever has the higher WCAG contrast ratio against ``fill``.

    The label text sits on the filled label rectangle, never on the photo, so only
    the fill decides readability.
    """
    lum = _relative_luminance(fill)
    contrast_black = (lum + 0.05) / 0.05
    contrast_white = 1.05 / (lum + 0.05)
    return _BLACK if contrast_black >= contrast_white else _WHITE


def line_width_for(width: int, height: int) -> int:
    """Box outline width in pixels for a ``width`` x ``height`` image (at least 1)."""
    return max(1, int(min(width, height) * _LINE_FRACTION + 0.5))


def font_size_for(width: int, height: int) -> int:
    """Label font size in pixels for a ``width`` x ``height`` image."""
    return max(_MIN_FONT_SIZE, int(min(width, height) * _FONT_FRACTION + 0.5))


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Tuple[AnyFont, bool]:
    """The default font at ``size`` px, and whether it is scalable.

    ``ImageFont.load_default(size=...)`` exists from Pillow 10.1 and needs FreeType;
    otherwise fall back to the fixed ~11 px bitmap font.
    """
    try:
        return ImageFont.load_default(size=size), True  # type: ignore[call-arg]
    except (TypeError, OSError, ImportError, AttributeError):
        return ImageFont.load_default(), False


def label_text(det: Detection) -> str:
    """The label drawn for ``det``, Darknet style: ``"dog 57%"``."""
    name = det.label or str(det.class_id)
    return f"{name} {float(det.confidence) * 100:.0f}%"


def _clipped_box(box: Tuple[float, float, float, float], width: int,
                 height: int) -> Union[Tuple[int, int, int, int], None]:
    """Integer (x1, y1, x2, y2) inside the image, or None if nothing of it is visible."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
        return None
    # Like Darknet: pixel coordinates clamped to 0..w-1 / 0..h-1, drawn inclusive.
    ix1 = min(max(int(round(x1)), 0), width - 1)
    iy1 = min(max(int(round(y1)), 0), height - 1)
    ix2 = min(max(int(round(x2)), 0), width - 1)
    iy2 = min(max(int(round(y2)), 0), height - 1)
    return ix1, iy1, ix2, iy2


def draw_detections(image: Union[Image.Image, np.ndarray, str], detections: Iterable[Detection],
                    *, num_classes: int = 80) -> Image.Image:
    """Return an annotated RGB copy of ``image`` with every detection drawn on it.

    ``image`` is anything :func:`mdfi.image.load_image` accepts (a PIL image of any
    mode, an array, a path); it is converted to RGB the same way and never modified.
    ``detections`` are :class:`~mdfi.detection.Detection` records (anything with
    ``class_id``, ``label``, ``confidence`` and ``box`` works), boxes in pixels of
    this image; boxes partly outside are clipped, boxes entirely outside skipped.

    Each box is outlined in Darknet's colour for its class (see :func:`class_color`,
    ``num_classes`` as in the model) with a width that scales with the image.  Its
    label (``"dog 57%"``) is drawn on a rectangle of the same colour sitting on the
    box's top edge, moved inside the box when there is no room above, and shifted
    to stay inside the image; the text is black or white, whichever contrasts more
    with the fill.  All boxes are drawn before any label, and labels in increasing
    confidence, so no outline crosses a label and the most confident label is on top.
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    # load_image may hand back the caller's own RGB array; copy it so drawing never
    # touches the caller's data.
    rgb = load_image(image)
    canvas = Image.fromarray(np.array(rgb, dtype=np.uint8, copy=True))
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)

    line = line_width_for(width, height)
    size = font_size_for(width, height)
    font, scalable = _font(size)
    pad = max(1, int(round(size * 0.15))) if scalable else 1
    if size < _ANTIALIAS_MIN_FONT_SIZE:
        draw.fontmode = "1"

    placed: List[Tuple[Detection, Tuple[int, int, int, int], RGB]] = []
    for det in detections:
        box = _clipped_box(det.box, width, height)
        if box is None:
            continue
        color = class_color(det.class_id, num_classes)
        # PIL draws the outline inwards from the given bounds, like Darknet's
        # draw_box_width (x1+i, y1+i, x2-i, y2-i).
        draw.rectangle(box, outline=color, width=line)
        placed.append((det, box, color))

    placed.sort(key=lambda item: float(item[0].confidence))
    for det, (x1, y1, _x2, _y2), color in placed:
        text = label_text(det)
        if not scalable:
            # The bitmap fallback font only covers Latin-1.
            text = text.encode("latin-1", "replace").decode("latin-1")
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_w = (right - left) + 2 * pad
        label_h = (bottom - top) + 2 * pad

        lx = min(x1, width - label_w)          # shift left to stay inside ...
        ly = y1 - label_h                      # ... sit on the box's top edge ...
        if ly < 0:
            ly = y1                            # ... or inside it at the image top
        ly = min(ly, height - label_h)
        lx, ly = max(0, lx), max(0, ly)        # labels larger than the image: clip

        draw.rectangle((lx, ly, lx + label_w - 1, ly + label_h - 1), fill=color)
        draw.text((lx + pad - left, ly + pad - top), text, fill=text_color_for(color), font=font)
    return canvas
