"""Write the calibration photos of the shipped yolov3-tiny recipe into a folder.

The shipped statistics ``mdfi/data/yolov3-tiny.calib.json`` are reproduced by::

    pip install ".[bench]"
    python benchmarks/calibration_images.py /tmp/mdfi-calib
    mdfi calibrate --model yolov3-tiny --images /tmp/mdfi-calib --augment \\
        -o mdfi/data/yolov3-tiny.calib.json

The photos are the natural-scene images bundled with scikit-image (no download): they are
disjoint from Darknet's demo images (``../shared/images``), which are kept for evaluation.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

#: scikit-image loader name -> file name written.
PHOTOS = {
    "astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png",
    "rocket": "rocket.png", "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png", "camera": "camera.png", "coins": "coins.png",
    "clock": "clock.png",
}


def photo(name: str) -> np.ndarray:
    import skimage.data
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(skimage.data, name)()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python benchmarks/calibration_images.py OUTPUT_DIR", file=sys.stderr)
        return 2
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    for name, fname in PHOTOS.items():
        Image.fromarray(photo(name)).save(os.path.join(out, fname))
        print(f"wrote {os.path.join(out, fname)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
