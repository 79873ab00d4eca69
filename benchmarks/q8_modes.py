"""Every 8-bit register tile and B mode of the best path on a few yolov3 layer shapes, against
the automatic choice under each kernel-choice profile, interleaved in one process.

    python benchmarks/q8_modes.py                          # 1 thread, the default shapes
    python benchmarks/q8_modes.py --threads 2 --shapes 13,26,52

Each round runs every variant once (after one warm-up call) and times it by wall clock;
the table gives the median per variant, GMAC/s and the time relative to the first variant
(the automatic choice of the CPU's own profile).  Variants: "auto" (the CPU's profile),
"generic" and "intel" (the profiles forced, mdfi._ext._conv._set_q8_tune), and each
"tile/mode" forced (_set_q8_override), and "channels-last" (AMX's kernel of that mode) where the path has one.  All variants' outputs are checked to be equal.
Round 9 of docs/performance.md was measured with this.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_conv import make_case  # noqa: E402
from mdfi._ext import _conv  # noqa: E402

SHAPES = {  # yolov3 at 416 (C, H=W, M, k, stride)
    "52": (128, 52, 256, 3, 1), "26": (256, 26, 512, 3, 1), "13": (512, 13, 1024, 3, 1),
    "52s2": (256, 52, 512, 3, 2), "26s2": (512, 26, 1024, 3, 2), "104s2": (128, 104, 256, 3, 2),
    "208s2": (64, 208, 128, 3, 2), "416s2": (32, 416, 64, 3, 2), "52x1": (256, 52, 128, 1, 1),
    "26x1": (512, 26, 256, 1, 1), "13x1": (1024, 13, 512, 1, 1), "104": (64, 104, 128, 3, 1),
    "208": (32, 208, 64, 3, 1),
    # first layers (3 input channels, uint8 pixels): yolov3 and yolov3-tiny; tiny's next two;
    # yolov3's 1x1 layers on the big maps
    "416f": (3, 416, 32, 3, 1), "416ft": (3, 416, 16, 3, 1), "208t": (16, 208, 32, 3, 1),
    # stride-2 first layers (yolov4-tiny, yolov7-tiny; Yolo-Fastest 320) and the next one
    "416fs2": (3, 416, 32, 3, 2), "320fs2": (3, 320, 8, 3, 2), "208v4s2": (32, 208, 64, 3, 2),
    "104t": (32, 104, 64, 3, 1), "208x1": (64, 208, 32, 1, 1), "104x1": (128, 104, 64, 1, 1),
    # yolov3-tiny's other big 3x3 layers (6, 8, 10, 12 = "13", 14 = "13t", 21)
    "52t": (64, 52, 128, 3, 1), "26t": (128, 26, 256, 3, 1), "13t": (256, 13, 512, 3, 1),
    "26t21": (384, 26, 256, 3, 1),
    # yolov4-tiny's 64-channel 3x3 layers (2; 12, 13)
    "104v4": (64, 104, 64, 3, 1), "52v4": (64, 52, 64, 3, 1),
}
MODES = ("packed", "direct", "compact", "channels-last")


def model_shapes(models):
    """SHAPES entries for every distinct dense convolution of the shipped cfgs (name
    "model:layer"), the 8-bit layers' shapes at the cfg's input size."""
    from mdfi.darknet.network import Network
    names, seen = [], set()
    for model in models:
        net = Network.from_cfg(REPO / "cfg" / f"{model}.cfg", warn=False)
        for i, l in enumerate(net.layers):
            if l.kind != "convolutional" or l.groups != 1:
                continue
            c, h, w = l.in_shape
            key = (c, h, l.filters, l.size, l.stride)
            if h != w or key in seen:
                continue
            seen.add(key)
            SHAPES[f"{model}:{i}"] = key
            names.append(f"{model}:{i}")
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="52,26,13,52s2,26s2,52x1,26x1,13x1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--simd", default=None, help="path name (default: the best one)")
    ap.add_argument("--models", default=None,
                    help="audit: every distinct dense 3x3/1x1 layer shape of these shipped cfgs (e.g. "
                         "yolov3-tiny,yolov4-tiny) instead of --shapes, then the shapes where a forced "
                         "variant beat the automatic choice by more than --margin")
    ap.add_argument("--margin", type=float, default=0.05)
    args = ap.parse_args(argv)
    if args.models:
        args.shapes = ",".join(model_shapes(args.models.split(",")))
    path = args.simd or _conv.best_simd_path()
    tiles = _conv.q8_tiles(path)
    if not tiles:
        sys.exit(f"{path} has no 8-bit tiles")
    variants = [("auto", -1, None), ("generic", 0, None), ("intel", 1, None)]
    variants += [(f"{t[0]}x{t[1]}/{MODES[d]}", -1, (k, d)) for k, t in enumerate(tiles) for d in (0, 1, 2)]
    _conv._set_q8_override(0, 3)              # a path with a channels-last kernel (AMX) takes it
    if (_conv._q8_choice(path, 64, 8, 8, 32, 3, 1, 1) or (0, ""))[1] == "channels-last":
        variants.append(("channels-last", -1, (0, 3)))
    _conv._set_q8_override(-1, -1)
    rng = np.random.default_rng(0)
    print(f"path {path}, {args.threads} thread(s), medians of {args.runs} interleaved rounds; CPU: {_conv.cpu_features()}")
    beaten = []
    try:
        for name in args.shapes.split(","):
            c, hw, m, k, s = SHAPES[name]
            L = dict(c=c, h=hw, w=hw, m=m, k=k, s=s, p=k // 2, act=1)
            x, packed, bias, shift, out, scratch, macs = make_case(L, c <= 4, rng, args.threads)
            kw = dict(ksize=k, stride=s, pad=k // 2, rounding=0, out_bits=8, act=1, acc64=0,
                      nthreads=args.threads, scratch=scratch, simd=path)
            times = {v[0]: [] for v in variants}
            ref = None
            for rep in range(args.runs):
                for label, tune, force in variants:
                    _conv._set_q8_tune(tune)
                    _conv._set_q8_override(*(force or (-1, -1)))
                    _conv.conv2d(x, packed, bias, shift, out, **kw)
                    t0 = time.perf_counter()
                    _conv.conv2d(x, packed, bias, shift, out, **kw)
                    times[label].append(time.perf_counter() - t0)
                    if ref is None:
                        ref = out.copy()
                    elif rep == 0 and not np.array_equal(ref, out):
                        raise AssertionError(f"{name} {label}: output differs")
            base = float(np.median(times["auto"]))
            picks = {}
            for tune in (-1, 0, 1):
                _conv._set_q8_tune(tune)
                _conv._set_q8_override(-1, -1)
                kk, mode = _conv._q8_choice(path, c, hw, hw, m, k, s, k // 2, args.threads)
                picks[tune] = mode if kk >= len(tiles) else f"{tiles[kk][0]}x{tiles[kk][1]}/{mode}"
            print(f"{name}: C {c} {hw}x{hw} M {m} {k}x{k}/{s}  (auto picks {picks[-1]}, generic {picks[0]}, "
                  f"intel {picks[1]})")
            for label, _, _ in variants:
                md = float(np.median(times[label]))
                print(f"  {label:16s} {md * 1e3:8.3f} ms {macs / md / 1e9:7.1f} GMAC/s  {md / base:6.3f}")
            best = min((float(np.median(v)), k) for k, v in times.items() if k not in ("auto", "generic", "intel"))
            if best[0] < base * (1.0 - args.margin):
                beaten.append(f"{name} (C {c} {hw}x{hw} M {m} {k}x{k}/{s}): auto {base * 1e3:.3f} ms, "
                              f"{best[1]} {best[0] * 1e3:.3f} ms ({best[0] / base:.3f})")
        if args.models:
            print(f"shapes where a forced variant beat auto by more than {args.margin:.0%}: "
                  f"{len(beaten)} of {len(args.shapes.split(','))}")
            for line in beaten:
                print("  " + line)
    finally:
        _conv._set_q8_tune(-1)
        _conv._set_q8_override(-1, -1)


if __name__ == "__main__":
    main()
