"""Write the held-out evaluation set: Darknet's 7 demo photos and 5 variants of each.

    python benchmarks/eval_images.py ../shared/images /tmp/mdfi-eval

Variants per photo: the original, a horizontal flip, and four crops keeping 75% of the
width and height (the four corners), resized back to the original size with bilinear
filtering.  The calibration set (benchmarks/calibration_images.py: scikit-image photos)
shares no image with this one.  Crops and flips move objects across the network's grid
cells and scales, so the 42 images exercise far more distinct activations than the 7
originals, and give about 6x as many float detections to compare.
"""

from __future__ import annotations

import os
import sys

from PIL import Image

CROPS = {"tl": (0.0, 0.0), "tr": (0.25, 0.0), "bl": (0.0, 0.25), "br": (0.25, 0.25)}


def variants(img: Image.Image):
    w, h = img.size
    yield "orig", img
    yield "flip", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for tag, (fx, fy) in CROPS.items():
        box = (round(fx * w), round(fy * h), round(fx * w + 0.75 * w), round(fy * h + 0.75 * h))
        yield tag, img.crop(box).resize((w, h), Image.Resampling.BILINEAR)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python benchmarks/eval_images.py SRC_DIR OUT_DIR", file=sys.stderr)
        return 2
    src, out = argv
    os.makedirs(out, exist_ok=True)
    names = sorted(f for f in os.listdir(src) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        print(f"{src}: no images", file=sys.stderr)
        return 2
    for name in names:
        with Image.open(os.path.join(src, name)) as im:
            img = im.convert("RGB")
        stem = os.path.splitext(name)[0]
        for tag, v in variants(img):
            v.save(os.path.join(out, f"{stem}_{tag}.png"))
    print(f"wrote {6 * len(names)} images to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
