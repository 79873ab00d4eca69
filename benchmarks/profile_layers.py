"""Per-layer time of the C engine (mdfi.cengine.CRunner) on a whole network.

    python benchmarks/profile_layers.py                       # yolov3-tiny, 2 threads
    python benchmarks/profile_layers.py --model yolov3 --threads 1 --runs 10
    MDFI_SIMD=scalar python benchmarks/profile_layers.py      # the portable C path

Each layer's step (the closure CRunner.run calls) is timed separately, ``--runs`` times
after a warm-up; the table lists the median per layer with its GMAC/s (convolutions), the
sum of the medians, and the median of whole ``run(keep="needed")`` calls (which also
includes the Python bookkeeping between layers).  yolov3-tiny uses the official weights
(default model, 8-bit); other models use generated weights of the right shape, as
benchmarks/bench_speed.py does (speed does not depend on the values).  The input is the
dog test image's network input.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # NumPy must not spin on our cores
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def load_quantized(name: str):
    import mdfi
    if name == "yolov3-tiny":
        return mdfi.load(name, engine="ref").quantized
    from bench_speed import load_models
    return load_models(name, tempfile.mkdtemp(prefix="mdfi-prof-"))[3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="per-layer time of MDFI's C engine")
    ap.add_argument("--model", default="yolov3-tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--summary", action="store_true", help="totals per layer kind only")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the calling thread's CPU time (forces --threads 1; for a loaded machine)")
    args = ap.parse_args(argv)
    if args.cpu_time:
        args.threads = 1
    clock = time.thread_time if args.cpu_time else time.perf_counter

    from mdfi._ext import _conv
    from mdfi.cengine import CRunner
    from mdfi.preprocess import image_to_input
    from mdfi.quant.quantize import input_to_u8

    qm = load_quantized(args.model)
    net = qm.network
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = input_to_u8(image_to_input(rgb, net.width, net.height))
    runner = CRunner(qm, args.threads)
    for _ in range(args.warmup):
        runner.run(x, keep="needed")

    # one output buffer per layer, allocated once (as run(keep="needed") reuses its own)
    bufs = [runner.new_output(ql.index) for ql in qm.layers]
    per_layer = defaultdict(list)
    runs = []
    for _ in range(args.runs):
        outs = [None] * len(qm.layers)
        for ql, step in zip(qm.layers, runner.steps):
            xs = [x if i == -1 else outs[i] for i in ql.inputs]
            out = bufs[ql.index]
            if outs[ql.index] is not None:          # a pool its convolution wrote (CRunner.pooled)
                per_layer[ql.index].append(0.0)
                continue
            j = runner.pooled.get(ql.index)
            t0 = clock()
            if j is None:
                step(xs, out)
            else:
                runner._pool_steps[ql.index](xs, out, bufs[j], ql.index in runner.pool_only)
                outs[j] = bufs[j]
            per_layer[ql.index].append(clock() - t0)
            outs[ql.index] = out
        t0 = clock()
        runner.run(x, keep="needed")
        runs.append(clock() - t0)

    print(f"{args.model}, {args.threads} thread(s), conv path {_conv.simd_path()}, "
          f"median of {args.runs} runs" + (" (thread CPU time)" if args.cpu_time else ""))
    kinds = defaultdict(float)
    total = 0.0
    for ql in qm.layers:
        layer = net.layers[ql.index]
        ms = 1e3 * statistics.median(per_layer[ql.index])
        total += ms
        kinds[ql.kind] += ms
        if args.summary:
            continue
        macs = getattr(layer, "macs", 0) or 0
        rate = f"{macs / ms / 1e6:7.1f} GMAC/s" if macs and ql.kind == "convolutional" else ""
        print(f"{ql.index:4d} {layer.describe():30s} {ms:8.2f} ms {rate}")
    print("per kind: " + ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
    print(f"sum of per-layer medians {total:.1f} ms; run(keep='needed') median "
          f"{1e3 * statistics.median(runs):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
