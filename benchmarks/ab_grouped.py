"""A/B timing of two builds of the direct grouped kernel (mdfi._ext._kernels.conv_grouped) on
Yolo-Fastest 1.1's depthwise layers, with their real inputs, and in the whole forward.

Loads this tree's ``_kernels`` extension and a second build of it (``--base``: a directory
holding ``_kernels*.so``, e.g. a build of main) into the same process.  One forward of
mdfi.cengine.CRunner (real weights, ``mdfi.load("yolo-fastest-1.1")``) records every
conv_grouped call (arguments and input copies); each call is then timed with both builds,
alternating, ``--rounds`` times, by the calling thread's CPU time at one thread (wall clock at
more), and the outputs are checked equal.  Prints per layer the medians and GMAC/s of both,
their sum, and the median whole forward with the engine's kernel swapped between the builds
(alternating).  The SIMD path is the engine's (MDFI_SIMD).

    python benchmarks/ab_grouped.py --base /work/main/mdfi/_ext               # 1 thread
    MDFI_SIMD=avx2 python benchmarks/ab_grouped.py --base ... --threads 2 --rounds 40
"""

from __future__ import annotations

import argparse
import glob
import importlib.machinery
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="A/B of two builds of the direct grouped kernel")
    ap.add_argument("--base", required=True, help="directory holding the base build's _kernels*.so")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)

    import mdfi
    from mdfi import cengine
    from mdfi._ext import _kernels as new
    from mdfi.preprocess import image_to_input
    from mdfi.quant.quantize import input_to_u8

    so = sorted(glob.glob(os.path.join(args.base, "_kernels*.so")))
    if not so:
        ap.error(f"no _kernels*.so in {args.base}")
    loader = importlib.machinery.ExtensionFileLoader("mdfi_base._kernels", so[0])
    old = importlib.util.module_from_spec(importlib.util.spec_from_loader("mdfi_base._kernels", loader))
    loader.exec_module(old)

    clock = time.thread_time if args.threads == 1 else time.perf_counter
    qm = mdfi.load("yolo-fastest-1.1", engine="ref").quantized
    net = qm.network
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = input_to_u8(image_to_input(rgb, net.width, net.height))
    runner = cengine.CRunner(qm, args.threads)
    calls = []
    real = new.conv_grouped

    def record(*a, **k):
        calls.append((tuple(np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in a), dict(k)))
        return real(*a, **k)

    new.conv_grouped = record
    runner.run(x, keep="needed")
    new.conv_grouped = real
    idx = [ql.index for ql in qm.layers if ql.kind == "convolutional" and net.layers[ql.index].groups > 1]
    print(f"{len(calls)} conv_grouped calls, {args.threads} thread(s), {args.rounds} rounds, "
          f"{'thread CPU' if args.threads == 1 else 'wall'} time, path {cengine._conv.simd_path()}")
    tot_old = tot_new = 0.0
    for li, (a, k) in zip(idx, calls):
        xin, w, out = a[0], a[1], a[4]
        macs = out.shape[1] * out.shape[2] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
        o_old, o_new = out.copy(), out.copy()
        t_old, t_new = [], []
        for r in range(args.rounds):
            pair = ((old.conv_grouped, o_old, t_old), (new.conv_grouped, o_new, t_new))
            for f, o, t in (pair if r % 2 == 0 else pair[::-1]):
                t0 = clock()
                f(a[0], a[1], a[2], a[3], o, *a[5:], **k)
                t.append(clock() - t0)
        assert np.array_equal(o_old, o_new), f"layer {li}: the builds differ"
        mo, mn = 1e3 * statistics.median(t_old), 1e3 * statistics.median(t_new)
        tot_old += mo
        tot_new += mn
        print(f"{li:4d} {xin.shape[0]:4d} ch {xin.shape[1]:3d}x{xin.shape[2]:<3d} {w.shape[2]}x{w.shape[3]}/{a[7]} "
              f"{xin.dtype}  base {mo:6.3f} ms {macs / mo / 1e6:6.2f} GMAC/s   new {mn:6.3f} ms "
              f"{macs / mn / 1e6:6.2f} GMAC/s  x{mo / mn:5.2f}")
    print(f"depthwise layers: base {tot_old:.3f} ms, new {tot_new:.3f} ms (x{tot_old / tot_new:.2f})")
    f_old, f_new = [], []
    for r in range(args.rounds):
        pair = ((old.conv_grouped, f_old), (real, f_new))
        for f, t in (pair if r % 2 == 0 else pair[::-1]):
            new.conv_grouped = f
            t0 = clock()
            runner.run(x, keep="needed")
            t.append(clock() - t0)
    new.conv_grouped = real
    print(f"whole forward: base {1e3 * statistics.median(f_old):.2f} ms, new {1e3 * statistics.median(f_new):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
