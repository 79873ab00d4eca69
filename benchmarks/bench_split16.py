"""The split path of 16-bit layers (csrc/mdfi_conv.c, conv_int16) on and off, alternating in one
process on the same input: yolov3-tiny's forward (run(keep="needed")) at 1 and 2 threads and,
at one thread, every convolution's time.

    python benchmarks/bench_split16.py [--bits 16] [--runs 9]

"off" is the code before the split path (acc64 layers summed in int32 chunks of 0-1 K-pairs or
by the scalar int64 kernel); "auto" is the default.  One thread is timed in thread CPU time
(time.thread_time, robust on a shared machine), two threads in wall time.  At --bits 8 the
split path must not be taken (the two columns then time the same code).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # NumPy must not spin on our cores
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="16", help="mdfi.load bits= (16, w16a16, 8, ...)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    import mdfi
    from mdfi._ext import _conv
    from mdfi.cengine import CRunner
    from mdfi.preprocess import image_to_input
    from mdfi.quant.quantize import input_to_u8

    bits = int(args.bits) if args.bits.isdigit() else args.bits
    qm = mdfi.load("yolov3-tiny", bits=bits, engine="ref").quantized
    net = qm.network
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = input_to_u8(image_to_input(rgb, net.width, net.height))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"yolov3-tiny bits={args.bits}, path {_conv.simd_path()}, CPU {cpu}, {args.runs} runs")
    modes = {"off": 0, "auto": -1}
    try:
        for threads in (int(t) for t in args.threads.split(",")):
            clock = time.thread_time if threads == 1 else time.perf_counter
            runner = CRunner(qm, threads)
            per = {m: {} for m in modes}
            tot = {m: [] for m in modes}
            nsplit = {m: 0 for m in modes}
            for _ in range(args.runs):
                for name, mode in modes.items():
                    _conv._set_split(mode)
                    runner.run(x, keep="needed")
                    n0 = _conv._split_calls()
                    t0 = clock()
                    runner.run(x, keep="needed")
                    tot[name].append(clock() - t0)
                    nsplit[name] = _conv._split_calls() - n0
                    if threads != 1:
                        continue
                    outs = [None] * len(qm.layers)
                    for ql, step in zip(qm.layers, runner.steps):
                        xs = [x if i == -1 else outs[i] for i in ql.inputs]
                        out = runner.new_output(ql.index)
                        t0 = clock()
                        step(xs, out)
                        per[name].setdefault(ql.index, []).append(clock() - t0)
                        outs[ql.index] = out
            med = {m: 1e3 * statistics.median(v) for m, v in tot.items()}
            print(f"{threads} thread(s): forward median off {med['off']:.1f} ms, auto {med['auto']:.1f} ms "
                  f"({med['off'] / med['auto']:.2f}x; {nsplit['auto']} split convolutions per forward)")
            if threads == 1:
                for ql in qm.layers:
                    a = 1e3 * statistics.median(per["off"][ql.index])
                    b = 1e3 * statistics.median(per["auto"][ql.index])
                    if ql.kind == "convolutional":
                        print(f"  layer {ql.index:3d} {net.layers[ql.index].describe():28s} off {a:7.2f} ms  "
                              f"auto {b:7.2f} ms")
    finally:
        _conv._set_split(-1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
