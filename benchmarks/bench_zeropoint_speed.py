"""What zero points cost in speed (docs/performance.md "Round 13"): one network quantized twice,
without and with ``zero_points=True``, run alternately in one process on one thread; medians of
thread CPU time (other jobs on a shared machine count little), and with ``--layers`` the
per-layer-kind sums.

    python benchmarks/bench_zeropoint_speed.py                       # yolov3-tiny, shipped statistics
    python benchmarks/bench_zeropoint_speed.py --model yolov3 --rounds 12   # generated weights
    MDFI_SIMD=avx2 python benchmarks/bench_zeropoint_speed.py        # another path
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("yolov3-tiny", "yolov3", "yolov4-tiny"), default="yolov3-tiny")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--layers", action="store_true", help="also per-layer-kind times (5 runs each)")
    args = ap.parse_args(argv)
    from mdfi import zoo
    from mdfi.cengine import CRunner
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights, random_weights
    from mdfi.quant import calibrate, recipes
    from mdfi.quant.quantize import quantize_network
    net = Network.from_cfg(zoo.cfg_path(args.model))
    rng = np.random.default_rng(0)
    calib = recipes.shipped_calibration(args.model) if args.model != "yolov3" else None
    if calib is not None:
        load_weights(net, zoo.weights_path(args.model))
    else:
        random_weights(net, 1)
        imgs = [rng.integers(0, 256, (net.height, net.width, 3)).astype(np.uint8) for _ in range(2)]
        calib = calibrate.collect(net, imgs, progress=False)
    qa = quantize_network(net, per_channel=True, calib=calib)
    qb = quantize_network(net, per_channel=True, calib=calib, zero_points=True)
    ra, rb = CRunner(qa, 1), CRunner(qb, 1)
    x = rng.integers(0, 256, net.input_shape).astype(np.uint8)
    ta, tb = [], []
    for r in range(args.rounds):
        for run, t in (((ra, ta), (rb, tb)) if r % 2 else ((rb, tb), (ra, ta))):
            t0 = time.thread_time()
            run.run(x, keep="needed")
            t.append(time.thread_time() - t0)
    from mdfi._ext import _conv
    print(f"{args.model} on {_conv.simd_path()}: zero-free {1e3 * np.median(ta):.2f} ms, zero points "
          f"{1e3 * np.median(tb):.2f} ms, ratio {np.median(tb) / np.median(ta):.3f}")
    if args.layers:
        for name, runner in (("zero-free", ra), ("zero points", rb)):
            outs = runner.run(x, keep="all")
            kinds = {}
            for ql, step in zip(runner.qmodel.layers, runner.steps):
                xs = [x if j == -1 else outs[j] for j in ql.inputs]
                out = runner.new_output(ql.index)
                ts = []
                for _ in range(5):
                    t0 = time.thread_time()
                    step(xs, out)
                    ts.append(time.thread_time() - t0)
                kinds[ql.kind] = kinds.get(ql.kind, 0.0) + float(np.median(ts))
            print(f"  {name}: " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in kinds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
