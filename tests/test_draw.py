"""Tests for mdfi.draw: distinct colours, one label per box, boxes, readable labels, edge cases."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest
from PIL import Image, ImageFont

import mdfi.draw as draw_mod
from mdfi.detection import Detection
from mdfi.draw import (class_color, darknet_color, draw_detections, font_size_for, group_detections,
                       label_text, line_width_for, text_color_for)

BLACK = (0, 0, 0)
WHITE = (255, 255, 255)

# COCO class ids.  BLUE is a class whose colour (Kelly's blue) takes white text.
DOG, BICYCLE, CAR, TRUCK, PERSON, BIRD, BLUE = 16, 1, 2, 7, 0, 14, 9


def det(cls: int, label: str, conf: float, box: Tuple[float, float, float, float]) -> Detection:
    return Detection(class_id=cls, label=label, confidence=conf, box=box)


def px(img: Image.Image, x: int, y: int) -> Tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(img)[y, x])  # type: ignore[return-value]


def colours_in(img: Image.Image, x0: int, y0: int, x1: int, y1: int) -> set:
    region = np.asarray(img)[y0:y1, x0:x1].reshape(-1, 3)
    return {tuple(int(v) for v in p) for p in region}


# ------------------------------------------------------------------------------------
# colours

def test_darknet_palette() -> None:
    """darknet_color is Darknet's get_color() gradient (kept for reference), worked out by
    hand: offset = c*123457 % 80, ratio = offset/80*5."""
    assert darknet_color(PERSON) == (255, 0, 255)     # offset 0 -> colors[0]
    assert darknet_color(BICYCLE) == (255, 15, 0)     # offset 17: 255*.0625 truncated
    assert darknet_color(TRUCK) == (143, 255, 0)      # offset 39: 255*.5625 truncated
    assert darknet_color(DOG) == (255, 255, 0)        # offset 32 -> colors[2]
    assert darknet_color(BIRD) == (0, 31, 255)
    assert darknet_color(0, num_classes=1) == (255, 0, 255)
    with pytest.raises(ValueError):
        darknet_color(1, num_classes=0)


def _delta_e(a, b) -> float:
    """CIE76 colour difference (Lab, D65) computed here from the sRGB formulas."""
    def lab(c):
        rgb = np.array(c, float) / 255
        lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
        t = xyz / np.array([0.95047, 1.0, 1.08883])
        f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    return float(np.linalg.norm(lab(a) - lab(b)))


def test_close_classes_get_distinct_colours() -> None:
    """Issue 9 item 18: car and truck were nearly the same colour (Darknet's gradient puts
    them 5/80 apart, CIE76 difference about 30); COCO's vehicles (ids 1-8) and animals (14-23)
    must all differ clearly."""
    assert _delta_e(darknet_color(CAR), darknet_color(TRUCK)) < 31      # the problem (two yellow-greens)
    assert _delta_e(class_color(CAR), class_color(TRUCK)) > 40
    for group in (range(1, 9), range(14, 24), range(0, 20)):
        ids = list(group)
        worst = min(_delta_e(class_color(a), class_color(b)) for a in ids for b in ids if a < b)
        assert worst > 15, (group, worst)
    for c in list(range(80)) + [80, 1000, -3]:
        assert all(0 <= v <= 255 for v in class_color(c))
    with pytest.raises(ValueError):
        class_color(1, num_classes=0)


def test_one_label_per_box_like_darknet() -> None:
    """Issue 9 item 18: a candidate above the threshold for two classes is one box with one
    label "car 72%, truck 31%" (Darknet's draw_detections), not two labels on top of each other."""
    box = (100.0, 120.0, 300.0, 260.0)
    dets = [det(TRUCK, "truck", 0.31, box), det(CAR, "car", 0.72, box), det(DOG, "dog", 0.5, (10, 10, 50, 50))]
    groups = group_detections(dets)
    assert [[d.label for d in g] for g in groups] == [["car", "truck"], ["dog"]]
    drawn = []
    real = draw_mod.ImageDraw.ImageDraw.text

    def spy(self, xy, text, *a, **k):
        drawn.append(text)
        return real(self, xy, text, *a, **k)

    draw_mod.ImageDraw.ImageDraw.text = spy
    try:
        out = draw_detections(np.full((400, 500, 3), 128, np.uint8), dets)
        draw_detections(np.full((400, 500, 3), 128, np.uint8), dets, conf=False)
        draw_detections(np.full((400, 500, 3), 128, np.uint8), dets, labels=False)
    finally:
        draw_mod.ImageDraw.ImageDraw.text = real
    assert drawn == ["car 72%, truck 31%", "dog 50%", "car, truck", "dog"]
    assert px(out, 100, 190) == class_color(CAR)          # the box in its first class's colour


def test_overlapping_labels_do_not_cover_each_other() -> None:
    """Two boxes whose top edges coincide: the second label moves instead of covering the
    first, and every label stays inside the image."""
    a = det(PERSON, "person", 0.9, (40.0, 100.0, 200.0, 300.0))
    b = det(BLUE, "traffic light", 0.8, (60.0, 100.0, 220.0, 280.0))
    c = det(DOG, "dog", 0.7, (300.0, 0.0, 399.0, 40.0))     # at the top right corner
    out = np.asarray(draw_detections(np.zeros((320, 400, 3), np.uint8), [a, b, c]))
    size = font_size_for(400, 320)
    # a's label (yellow fill) above its box, b's label (blue fill) not on top of it
    region_a = out[100 - size:100, 40:40 + 3 * size].reshape(-1, 3).tolist()
    assert list(class_color(PERSON)) in region_a
    ys, xs = np.nonzero(np.all(out == class_color(BLUE), axis=2))
    assert ys.size and not np.any((ys < 100) & (xs < 40 + 3 * size) & (xs > 60))   # moved elsewhere
    assert list(class_color(DOG)) in out[0:2 * size, 300:400].reshape(-1, 3).tolist()


def test_text_colour_contrast() -> None:
    assert text_color_for((255, 255, 0)) == BLACK
    assert text_color_for((255, 255, 255)) == BLACK
    assert text_color_for((0, 0, 0)) == WHITE
    assert text_color_for((0, 31, 255)) == WHITE
    assert text_color_for(class_color(PERSON)) == BLACK


def test_sizes_scale_with_image() -> None:
    assert line_width_for(8, 8) == 1
    assert 1 <= line_width_for(300, 300) <= 3
    assert line_width_for(4000, 3000) > line_width_for(640, 480) > line_width_for(300, 300) - 1
    assert font_size_for(8, 8) >= 10
    assert font_size_for(4000, 3000) > font_size_for(640, 480) >= font_size_for(300, 300)


def test_label_text() -> None:
    assert label_text(det(DOG, "dog", 0.57, (0, 0, 1, 1))) == "dog 57%"
    assert label_text(det(3, "", 0.999, (0, 0, 1, 1))) == "3 100%"


# ------------------------------------------------------------------------------------
# drawing

SCENE = [
    det(DOG, "dog", 0.57, (100.0, 200.0, 260.0, 420.0)),
    det(BICYCLE, "bicycle", 0.92, (330.0, 120.0, 600.0, 300.0)),
    det(TRUCK, "truck", 0.80, (420.0, 360.0, 620.0, 460.0)),
]


def test_boxes_and_labels_on_synthetic_image() -> None:
    src = np.full((480, 640, 3), 128, np.uint8)
    before = src.copy()
    out = draw_detections(src, SCENE)
    assert isinstance(out, Image.Image)
    assert out.mode == "RGB" and out.size == (640, 480)
    np.testing.assert_array_equal(src, before)  # input untouched

    for d in SCENE:
        color = class_color(d.class_id)
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        # all four edges, at their middles, are in the class colour
        assert px(out, x1, cy) == color
        assert px(out, x2, cy) == color
        assert px(out, cx, y2) == color
        assert px(out, cx, y1) == color
        # the inside of the box is untouched
        assert px(out, cx, cy) == (128, 128, 128)
        # the label sits just above the box: fill colour and text colour both present
        size = font_size_for(640, 480)
        seen = colours_in(out, x1, y1 - size, x1 + 3 * size, y1)
        assert color in seen
        assert text_color_for(color) in seen
        assert text_color_for(color) != color


@pytest.mark.parametrize("background", [0, 255])
def test_labels_readable_on_black_and_white(background: int) -> None:
    src = np.full((300, 400, 3), background, np.uint8)
    dets = [det(DOG, "dog", 0.9, (40, 80, 180, 250)),     # yellow-green fill -> black text
            det(BLUE, "light", 0.7, (220, 80, 380, 250))]  # blue fill -> white text
    out = draw_detections(src, dets)
    size = font_size_for(400, 300)
    for d, expected_text in ((dets[0], BLACK), (dets[1], WHITE)):
        fill = class_color(d.class_id)
        x1, y1 = int(d.box[0]), int(d.box[1])
        seen = colours_in(out, x1, y1 - size, x1 + 3 * size, y1)
        assert fill in seen
        assert text_color_for(fill) == expected_text
        assert expected_text in seen  # the text is drawn, in a colour != fill


def test_grayscale_origin_image() -> None:
    gray = Image.fromarray(np.full((200, 300), 60, np.uint8))
    assert gray.mode == "L"
    out = draw_detections(gray, [det(PERSON, "person", 0.8, (50, 60, 150, 180))])
    assert out.mode == "RGB" and out.size == (300, 200)
    assert px(out, 50, 120) == class_color(PERSON)
    assert px(out, 100, 120) == (60, 60, 60)
    assert gray.mode == "L"  # caller's image unchanged
    la = Image.fromarray(np.zeros((50, 60, 2), np.uint8))
    assert draw_detections(la, []).mode == "RGB"


def test_tiny_image() -> None:
    out = draw_detections(np.zeros((8, 8, 3), np.uint8), [det(DOG, "dog", 0.5, (1, 1, 6, 6))])
    assert out.size == (8, 8) and out.mode == "RGB"
    assert class_color(DOG) in colours_in(out, 0, 0, 8, 8)


def test_box_partly_outside_is_clipped() -> None:
    src = np.zeros((200, 200, 3), np.uint8)
    out = draw_detections(src, [det(TRUCK, "truck", 0.9, (-40.0, -30.0, 120.0, 150.0))])
    color = class_color(TRUCK)
    assert px(out, 0, 100) == color      # left edge clipped to x=0
    assert px(out, 120, 100) == color    # right edge in place
    assert px(out, 60, 150) == color     # bottom edge in place
    assert px(out, 60, 100) == BLACK     # inside untouched
    # top edge clipped to y=0, label moved inside the box at the image top
    size = font_size_for(200, 200)
    seen = colours_in(out, 0, 0, 3 * size, size)
    assert color in seen and text_color_for(color) in seen


def test_box_entirely_outside_is_skipped() -> None:
    src = np.full((50, 50, 3), 7, np.uint8)
    out = draw_detections(src, [det(DOG, "dog", 0.9, (60, 60, 90, 90)),
                                det(DOG, "dog", 0.9, (-30, 10, -5, 20)),
                                det(DOG, "dog", 0.9, (float("nan"), 0, 10, 10))])
    np.testing.assert_array_equal(np.asarray(out), src)


def test_label_at_right_edge_stays_inside() -> None:
    w, h = 320, 240
    src = np.full((h, w, 3), 90, np.uint8)
    box = (float(w - 12), 100.0, float(w - 1), 160.0)
    out = draw_detections(src, [det(BICYCLE, "bicycle", 0.99, box)])
    color = class_color(BICYCLE)
    size = font_size_for(w, h)
    # The label is wider than the 12 px box: it is shifted left, not cut off.
    seen_left = colours_in(out, w - 5 * size, 100 - size, w - 12, 100)
    assert color in seen_left and text_color_for(color) in seen_left


def test_box_reversed_corners_and_inside_label_at_top() -> None:
    src = np.zeros((240, 320, 3), np.uint8)
    out = draw_detections(src, [det(PERSON, "person", 0.6, (200.0, 180.0, 40.0, 0.0))])
    color = class_color(PERSON)
    assert px(out, 40, 120) == color and px(out, 200, 120) == color
    size = font_size_for(320, 240)
    seen = colours_in(out, 40, 0, 40 + 3 * size, size)
    assert color in seen and text_color_for(color) in seen


def test_line_width_option() -> None:
    d = [det(1, "b", 0.9, (10, 10, 60, 60))]
    src = np.zeros((100, 100, 3), np.uint8)
    thin = np.asarray(draw_detections(src, d, line_width=1, labels=False))
    thick = np.asarray(draw_detections(src, d, line_width=5, labels=False))
    assert tuple(thin[40, 10]) == class_color(1) and tuple(thin[40, 11]) == BLACK
    assert tuple(thick[40, 14]) == class_color(1) and tuple(thick[40, 15]) == BLACK
    with pytest.raises(ValueError):
        draw_detections(src, d, num_classes=0)


def test_bitmap_font_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow < 10.1 (no size argument): the fixed bitmap font is used."""
    real = ImageFont.load_default
    bitmap = getattr(ImageFont, "load_default_imagefont", real)  # Pillow >= 10.1

    def old_load_default(*args: object, **kwargs: object) -> object:
        if args or kwargs:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return bitmap()

    monkeypatch.setattr(ImageFont, "load_default", old_load_default)
    draw_mod._font.cache_clear()
    try:
        font, scalable = draw_mod._font(20)
        assert not scalable
        out = draw_detections(np.full((240, 320, 3), 255, np.uint8),
                              [det(DOG, "chien ¤ 犬", 0.5, (50, 80, 200, 200))])
        color = class_color(DOG)
        seen = colours_in(out, 50, 60, 150, 80)
        assert color in seen and text_color_for(color) in seen
    finally:
        monkeypatch.setattr(ImageFont, "load_default", real)
        draw_mod._font.cache_clear()


def test_large_image_is_fast_enough() -> None:
    # 4000x3000 with a handful of boxes: scaled line width and font, no errors.
    src = np.zeros((3000, 4000, 3), np.uint8)
    out = draw_detections(src, [det(c, f"c{c}", 0.5 + c / 100, (100 + 300 * c, 500, 350 + 300 * c, 2500))
                                for c in range(5)])
    lw = line_width_for(4000, 3000)
    assert lw >= 10
    # the full line width is drawn inwards from the box edge
    assert px(out, 100 + lw - 1, 1500) == class_color(0)
    assert px(out, 100 + lw, 1500) == BLACK
    # antialiased text at this size still reaches the exact text colour
    size = font_size_for(4000, 3000)
    assert size >= 16
    seen = colours_in(out, 100, 500 - 2 * size, 100 + 3 * size, 500)
    assert class_color(0) in seen and text_color_for(class_color(0)) in seen
