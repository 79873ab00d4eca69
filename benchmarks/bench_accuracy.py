"""Accuracy of MDFI's fixed point against the float path: the bit-width sweep.

    pip install ".[bench]"
    python benchmarks/bench_accuracy.py [--images DIR] [--engine c|ref] [--json OUT]

Evaluation images: the held-out set of benchmarks/eval_images.py (Darknet's 7 demo photos
from ../shared/images and 5 flips/crops of each; none was used for calibration: the
shipped statistics come from scikit-image photos, benchmarks/calibration_images.py).
Metric (as ``mdfi eval``): float detections with confidence >= 0.25 are the ground truth,
fixed-point detections down to 0.005 ranked by confidence, all-point AP per class averaged
over the classes present (agreement mAP@0.5); kept/extra at confidence 0.25.
Prints one table row per configuration; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CONFIGS = [(16, 16), (12, 12), (10, 10), (8, 8), (7, 7), (6, 6), (5, 5), (4, 4), (6, 8), (5, 8), (4, 8)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", help="evaluation folder (default: built from ../shared/images)")
    ap.add_argument("--engine", default=None, choices=("c", "ref"))
    ap.add_argument("--per-layer", action="store_true", help="per-layer weight formats instead of the recipe")
    ap.add_argument("--method", default=None, choices=("mse", "max", "percentile"))
    ap.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    args = ap.parse_args(argv)

    from mdfi.cli import main as mdfi_main
    folder = args.images
    if folder is None:
        import eval_images
        shared = os.path.join(HERE, "..", "..", "shared", "images")
        if not os.path.isdir(shared):
            print("need --images DIR (../shared/images not found)", file=sys.stderr)
            return 2
        folder = tempfile.mkdtemp(prefix="mdfi-eval-")
        eval_images.main([shared, folder])
    bits = ",".join(f"w{w}a{a}" for w, a in CONFIGS)
    cmd = ["eval", "--images", folder, "--bits", bits, "--json"]
    if args.engine:
        cmd += ["--engine", args.engine]
    if args.per_layer:
        cmd += ["--per-layer"]
    if args.method:
        cmd += ["--method", args.method]
    out = tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False)
    t0 = time.perf_counter()
    saved = sys.stdout
    sys.stdout = out
    try:
        status = mdfi_main(cmd)
    finally:
        sys.stdout = saved
    if status:
        return status
    out.seek(0)
    report = json.load(out)
    ag = report["agreement"]
    print(f"yolov3-tiny, {report['images']} held-out images, formats: {report['calibration']}, "
          f"{report['options']}, {report['engine']} engine ({time.perf_counter() - t0:.0f} s)")
    print(f"{'weights':>7} {'acts':>5} {'agree mAP@.5':>12} {'kept':>6} {'extra':>6} {'mean dconf':>10} {'|dconf|':>8}")
    for w, a in CONFIGS:
        r = ag[f"w{w}a{a}"]
        fmt = lambda v, f: "n/a" if v is None else format(v, f)
        print(f"{w:>7} {a:>5} {fmt(r['map'], '.4f'):>12} {fmt(100 * r['kept_fraction'], '.1f'):>5}% "
              f"{fmt(100 * r['extra_fraction'], '.1f'):>5}% {fmt(r['mean_dconf'], '+.4f'):>10} "
              f"{fmt(r['mean_abs_dconf'], '.4f'):>8}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
