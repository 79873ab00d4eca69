"""Draw detections on an image (``predictions.jpg``; :meth:`mdfi.Detections.plot`).

Like Darknet's ``draw_detections`` (src/image.c), every box gets *one* label listing all
classes found on it (``car 72%, truck 31%``), in the colour of its first class.  Unlike
Darknet's ``get_color()`` gradient, where neighbouring classes such as car and truck get
nearly the same colour, classes take Kelly's 20 colours of maximum contrast in class-id
order (COCO's vehicles and animals are consecutive ids, so they all differ).  Labels sit
on their box's top edge and move (below the top edge, to the box's bottom) rather than
cover a label already drawn, and always stay inside the image.  The line width and font
size scale with the image (~300 px to ~4000 px).  Only Pillow is used.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .detection import Detection
from .image import load_image

__all__ = ["class_color", "darknet_color", "draw_detections", "font_size_for", "group_detections",
           "label_text", "line_width_for", "text_color_for", "PALETTE"]

RGB = Tuple[int, int, int]
AnyFont = Union[ImageFont.ImageFont, ImageFont.FreeTypeFont]

# Darknet's image.c: ``float colors[6][3]``.  get_color(c, ...) reads column c, and
# draw_detections asks c=2 for red and c=0 for blue, so the columns read "B G R".
_DARKNET_COLORS = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1],
                            [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=np.float32)

#: Kenneth Kelly's 22 colours of maximum contrast (1965) without white and black, in his
#: order (each as different as possible from the ones before): class ``c`` gets
#: ``PALETTE[c % 20]``.
PALETTE: Tuple[RGB, ...] = tuple(
    (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in
    "F3C300 875692 F38400 A1CAF1 BE0032 C2B280 848482 008856 E68FAC 0067A5 "
    "F99379 604E97 F6A600 B3446C DCD300 882D17 8DB600 654522 E25822 2B3D26".split())

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
    """The colour MDFI draws class ``class_id`` in: ``PALETTE[class_id % 20]`` (``num_classes``
    must be positive; kept for :func:`darknet_color`'s signature)."""
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    return PALETTE[int(class_id) % len(PALETTE)]


def darknet_color(class_id: int, num_classes: int = 80) -> RGB:
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


def label_text(det: Detection, conf: bool = True) -> str:
    """The label drawn for ``det``, Darknet style: ``"dog 57%"`` (``"dog"`` without ``conf``)."""
    name = det.label or str(det.class_id)
    return f"{name} {float(det.confidence) * 100:.0f}%" if conf else name


def group_detections(detections: Iterable[Detection]) -> List[List[Detection]]:
    """Detections of the same box (one candidate above the threshold for several classes),
    grouped as Darknet draws them: one box, one label.  Groups in order of first appearance;
    within a group, classes in id order (Darknet's ``for j < classes`` loop)."""
    groups: dict = {}
    for det in detections:
        try:
            key = tuple(float(v) for v in det.box)
        except (TypeError, ValueError):
            key = ("?", id(det))
        groups.setdefault(key, []).append(det)
    return [sorted(g, key=lambda d: int(d.class_id)) for g in groups.values()]


def _overlap(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def _place_label(box: Tuple[int, int, int, int], label_w: int, label_h: int, width: int, height: int,
                 taken: List[Tuple[int, int, int, int]]) -> Tuple[int, int]:
    """Top-left corner of a label: on the box's top edge (above it, else just inside), else
    at the box's bottom edge (below, else inside), shifted to stay in the image; the first
    spot that covers no label drawn before, else the one covering least."""
    x1, y1, _x2, y2 = box
    lx = max(0, min(x1, width - label_w))
    spots = [y1 - label_h, y1, y2 + 1, y2 - label_h + 1]
    best, best_cover = None, None
    for ly in spots:
        ly = max(0, min(ly, height - label_h))
        rect = (lx, ly, lx + label_w, ly + label_h)
        cover = sum(_overlap(rect, t) for t in taken)
        if best_cover is None or cover < best_cover:
            best, best_cover = (lx, ly), cover
        if cover == 0:
            break
    return best


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
                    *, num_classes: int = 80, line_width: Optional[int] = None, labels: bool = True,
                    conf: bool = True) -> Image.Image:
    """Return an annotated RGB copy of ``image`` with every detection drawn on it.

    ``image`` is anything :func:`mdfi.image.load_image` accepts (a PIL image of any
    mode, an array, a path); it is converted to RGB the same way and never modified.
    ``detections`` are :class:`~mdfi.detection.Detection` records (anything with
    ``class_id``, ``label``, ``confidence`` and ``box`` works), boxes in pixels of
    this image; boxes partly outside are clipped, boxes entirely outside skipped.

    Detections of the same box are drawn once with one label (``"car 72%, truck 31%"``, see
    :func:`group_detections`), outlined in the colour of its first class
    (:func:`class_color`).  ``line_width`` overrides the width that scales with the image;
    ``labels=False`` draws boxes only, ``conf=False`` labels without percentages.  The
    label sits on a rectangle of the box's colour on the box's top edge, moved to avoid
    covering a label drawn before (:func:`_place_label`) and kept inside the image; the
    text is black or white, whichever contrasts more with the fill.  All boxes are drawn
    before any label, and labels in decreasing confidence, so no outline crosses a label and
    the most confident labels get the best spots.
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    # load_image may hand back the caller's own RGB array; copy it so drawing never
    # touches the caller's data.
    rgb = load_image(image)
    canvas = Image.fromarray(np.array(rgb, dtype=np.uint8, copy=True))
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)

    line = line_width_for(width, height) if line_width is None else max(1, int(line_width))
    size = font_size_for(width, height)
    font, scalable = _font(size)
    pad = max(1, int(round(size * 0.15))) if scalable else 1
    if size < _ANTIALIAS_MIN_FONT_SIZE:
        draw.fontmode = "1"

    placed: List[Tuple[List[Detection], Tuple[int, int, int, int], RGB]] = []
    for group in group_detections(detections):
        box = _clipped_box(group[0].box, width, height)
        if box is None:
            continue
        color = class_color(group[0].class_id, num_classes)
        # PIL draws the outline inwards from the given bounds, like Darknet's
        # draw_box_width (x1+i, y1+i, x2-i, y2-i).
        draw.rectangle(box, outline=color, width=line)
        placed.append((group, box, color))
    if not labels:
        return canvas

    placed.sort(key=lambda item: -max(float(d.confidence) for d in item[0]))
    taken: List[Tuple[int, int, int, int]] = []
    for group, box, color in placed:
        text = ", ".join(label_text(d, conf) for d in group)
        if not scalable:
            # The bitmap fallback font only covers Latin-1.
            text = text.encode("latin-1", "replace").decode("latin-1")
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_w = min((right - left) + 2 * pad, width)
        label_h = min((bottom - top) + 2 * pad, height)
        lx, ly = _place_label(box, label_w, label_h, width, height, taken)
        taken.append((lx, ly, lx + label_w, ly + label_h))
        draw.rectangle((lx, ly, lx + label_w - 1, ly + label_h - 1), fill=color)
        draw.text((lx + pad - left, ly + pad - top), text, fill=text_color_for(color), font=font)
    return canvas
