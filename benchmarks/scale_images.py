"""Write N varied photos for the dataset-scale benchmarks (bench_scale.py), from the photos at
hand: scikit-image's bundled photos, labelme's example JPEGImages
(/usr/share/doc/labelme-examples) and Darknet's demo photos (../shared/images beside the
checkout or a worktree, or $MDFI_SHARED/images), whichever exist.

    python benchmarks/scale_images.py /tmp/mdfi-scale --count 1000 [--broken 1] [--seed 0]

Each image is a random crop (40-100 % of the width and of the height) of a source photo,
mirrored half of the time, scaled by 1-8 (log-uniform, at most 3000 pixels a side), saved
as JPEG (quality 90): from ~0.02 to ~6 megapixels (median ~0.7), so that decoding and
letterboxing cost something next to inference.  ``--broken N`` adds N files that are not images (the
unreadable-image case).  Deterministic for a seed.  Nothing here is committed: the photos
stay where they are.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right",
           "camera", "coins", "page")


def sources():
    """Distinct source photos as RGB PIL images, with a name."""
    out, seen = [], set()

    def add(name, img):
        img = img.convert("RGB")
        h = hashlib.sha256(img.tobytes()).hexdigest()
        if h not in seen:
            seen.add(h)
            out.append((name, img))

    try:
        import skimage.data as sd
        for n in SKIMAGE:
            arr = sd.stereo_motorcycle()[0 if n.endswith("left") else 1] if n.startswith("motorcycle") \
                else getattr(sd, n)()
            add(f"skimage-{n}", Image.fromarray(np.ascontiguousarray(arr[..., :3] if arr.ndim == 3 else arr)))
    except ImportError:
        print("note: scikit-image not installed: its photos are not used", file=sys.stderr)
    for f in sorted(glob.glob("/usr/share/doc/labelme-examples/examples/**/JPEGImages/*.jpg", recursive=True)):
        with Image.open(f) as im:
            add("labelme-" + os.path.basename(f), im)
    shared = [os.environ["MDFI_SHARED"]] if os.environ.get("MDFI_SHARED") else \
        [os.path.join(REPO, "..", "shared"), os.path.join(REPO, "..", "..", "shared")]
    for f in sorted(f for d in shared for f in glob.glob(os.path.join(d, "images", "*.jpg"))):
        with Image.open(f) as im:
            add("darknet-" + os.path.basename(f), im)
    return out


def variant(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    cw, ch = max(16, int(w * rng.uniform(0.4, 1.0))), max(16, int(h * rng.uniform(0.4, 1.0)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    s = min(float(np.exp(rng.uniform(0.0, np.log(8.0)))), 3000 / max(cw, ch))
    return out.resize((max(8, round(cw * s)), max(8, round(ch * s))), Image.Resampling.BILINEAR)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--broken", type=int, default=0, help="also write N files that are not images")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    src = sources()
    if not src:
        print("no source photos found", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for i in range(a.count):
        name, img = src[i % len(src)]
        variant(img, rng).save(os.path.join(a.out, f"img{i:05d}.jpg"), quality=90)
    for i in range(a.broken):
        with open(os.path.join(a.out, f"img{a.count // 2 + i:05d}-broken.jpg"), "wb") as fh:
            fh.write(b"\xff\xd8\xff\xe0 this is not a JPEG " * 8)
    print(f"wrote {a.count} images from {len(src)} source photos (+{a.broken} broken) to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
