"""Where the fixed-point model disagrees with float at the 0.25 threshold (yolov3-tiny).

For every float detection lost at 0.25 (no fixed-point partner >= 0.25: same class, IoU >= 0.5,
one to one, greedy by confidence as in ``mdfi eval``) it finds the best fixed-point partner
below 0.25; for every extra fixed-point detection, the best float partner below 0.25.  A
partner inside ``[0.25 - BAND, 0.25)`` means the detection is there in both and only crossed
the threshold (noise of about the size of the mean |dconf|); no partner means a real loss or
gain (a box moved, a class swapped).  docs/quantization.md, "The default's 8-bit decisions
searched on more photos (round 6)".

    python benchmarks/bench_crossings.py MODEL.mdfi[,MODEL.mdfi...] [--split test] [--band 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def crossings(flo, fx, gt_conf: float, iou: float):
    """(lost, extra) of one image: lists of (confidence at or above gt_conf, best partner's
    confidence below it or 0.0) for float detections without a fixed-point partner and for
    fixed-point detections without a float partner."""
    from mdfi.eval.evaluate import iou_xyxy
    f_hi = [d for d in flo if d.confidence >= gt_conf]
    x_hi = sorted((d for d in fx if d.confidence >= gt_conf), key=lambda d: -d.confidence)
    used, extra = set(), []

    def partner(d, pool):
        return max((p.confidence for p in pool if p.class_id == d.class_id and p.confidence < gt_conf
                    and iou_xyxy(p.box, d.box) >= iou), default=0.0)
    for x in x_hi:
        best, bj = iou, None
        for j, f in enumerate(f_hi):
            if j not in used and f.class_id == x.class_id:
                v = iou_xyxy(x.box, f.box)
                if v >= best:
                    best, bj = v, j
        if bj is None:
            extra.append((x.confidence, partner(x, flo)))
        else:
            used.add(bj)
    lost = [(f.confidence, partner(f, fx)) for j, f in enumerate(f_hi) if j not in used]
    return lost, extra


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", help="quantized yolov3-tiny models (.mdfi), comma-separated")
    ap.add_argument("--split", default="test", choices=("val", "val4", "test"))
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"))
    ap.add_argument("--band", type=float, default=0.1, help="a partner this close below 0.25 is a crossing")
    args = ap.parse_args(argv)
    from bench_accuracy import float_split
    from mdfi.engine import FixedEngine
    from mdfi.model import FloatEngine, Model, _float_network
    from mdfi.quant import modelfile
    net, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    data = float_split(net, names, args.person_sets if args.split == "val4" else args.sets, args.split, args.cache)
    fm = Model(net, names, FloatEngine(net))
    low = [fm.detect(prep, thresh=0.01) for _, prep, _ in data]       # float below 0.25 too
    gt = 0.25
    for path in [m for m in args.models.split(",") if m]:
        xm = Model(net, names, FixedEngine(modelfile.load(path), "c"))
        lost, extra = [], []
        for (_, prep, _), flo in zip(data, low):
            lo, ex = crossings(flo, xm.detect(prep, thresh=0.01), gt, 0.5)
            lost += lo
            extra += ex
        n = sum(1 for flo in low for d in flo if d.confidence >= gt)
        near = lambda pairs: sum(1 for _, p in pairs if p >= gt - args.band)          # noqa: E731
        none = lambda pairs: sum(1 for _, p in pairs if p == 0.0)                     # noqa: E731
        close = lambda pairs: sum(1 for c, _ in pairs if c < gt + args.band)          # noqa: E731
        print(f"{os.path.basename(path)} on {args.split} ({len(data)} images, {n} float detections at {gt}):")
        print(f"  lost {len(lost)}: partner in [{gt - args.band:.2f}, {gt}) {near(lost)}, none {none(lost)}; "
              f"float confidence below {gt + args.band:.2f}: {close(lost)}")
        print(f"  extra {len(extra)}: partner in [{gt - args.band:.2f}, {gt}) {near(extra)}, none {none(extra)}; "
              f"fixed confidence below {gt + args.band:.2f}: {close(extra)}")
        print("  lost (float, best fixed below): " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in sorted(lost)))
        print("  extra (fixed, best float below): " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in sorted(extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
