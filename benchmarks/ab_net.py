"""A/B timing of two builds of the convolution kernel inside a whole network forward.

Like benchmarks/ab_conv.py, but each build runs the network (mdfi.cengine.CRunner, one
thread, generated weights as in benchmarks/profile_layers.py) layer by layer: the weights come
from wherever the rest of the forward left them (for yolov3, mostly not from cache), as in
real use.  Each round runs one forward of A and one of B (the order alternates), timing every
step by the calling thread's CPU time; prints per-layer medians of the convolutions, the sums
per kind, the whole-forward medians and the ratio, and checks the outputs are equal.

    python benchmarks/ab_net.py --base /tmp/base --model yolov3 --runs 11

When the base folder also holds a ``_kernels*.so`` (the other build's pools, shortcuts,
routes ...), the base runner uses it too; otherwise both use this tree's ``_kernels``.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ab_conv import load_base  # noqa: E402
from profile_layers import load_quantized  # noqa: E402


def conv_kind(layer) -> str:
    if layer.kind != "convolutional":
        return layer.kind
    if layer.in_shape[0] <= 4:
        return "conv first"
    return f"conv {layer.size}x{layer.size}/{layer.stride}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="directory with the other build's _conv*.so")
    ap.add_argument("--model", default="yolov3")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1,
                    help="engine threads; above 1 the clock is wall time (a quiet machine is needed)")
    ap.add_argument("--layers", action="store_true", help="print every convolution layer")
    ap.add_argument("--fuse-base", action="store_true",
                    help="the base build fuses max pools too (conv2d pool=, any build since round 8): both "
                         "runners fuse them, so the layers compare like for like")
    args = ap.parse_args(argv)

    import mdfi.cengine as ce
    from mdfi._ext import _conv as conv_new
    from mdfi.preprocess import image_to_input
    from mdfi.quant.quantize import input_to_u8

    mods = {"base": load_base(args.base), "new": conv_new}
    kfiles = glob.glob(os.path.join(args.base, "_kernels*.so"))
    kmods = {"base": ce._kernels, "new": ce._kernels}
    if kfiles:
        # the base _kernels runs on the thread pool of the _conv it imports (pool_capsule): the
        # base one, so that each runner has one pool (with the tree's, the base runner's
        # kernels and convolutions took turns with each other's spinning workers at two threads)
        import mdfi._ext as ext_pkg
        saved = sys.modules.get("mdfi._ext._conv"), ext_pkg._conv
        sys.modules["mdfi._ext._conv"] = ext_pkg._conv = mods["base"]
        try:
            spec = importlib.util.spec_from_file_location("mdfi._ext._kernels", kfiles[0])
            kmods["base"] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(kmods["base"])
        finally:
            sys.modules["mdfi._ext._conv"], ext_pkg._conv = saved
        print(f"base _kernels: {kfiles[0]}")
    qm = load_quantized(args.model)
    net = qm.network
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = input_to_u8(image_to_input(rgb, net.width, net.height))
    runners, bufs = {}, {}
    for name, mod in mods.items():
        ce._conv, ce._kernels = mod, kmods[name]
        # the base build's conv2d has no pool= (its runner runs every pool as a layer)
        runners[name] = ce.CRunner(qm, args.threads, fuse_pool=name == "new" or args.fuse_base)
        bufs[name] = [runners[name].new_output(ql.index) for ql in qm.layers]
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    per_layer = {k: defaultdict(list) for k in mods}
    totals = {k: [] for k in mods}
    finals = {}

    def forward(name):
        ce._conv, ce._kernels = mods[name], kmods[name]
        runner, outs = runners[name], [None] * len(qm.layers)
        tot = 0.0
        for ql, step in zip(qm.layers, runner.steps):
            xs = [x if i == -1 else outs[i] for i in ql.inputs]
            out = bufs[name][ql.index]
            if outs[ql.index] is not None:          # a pool its convolution wrote (0 ms)
                per_layer[name][ql.index].append(0.0)
                continue
            j = runner.pooled.get(ql.index)
            t0 = clock()
            if j is None:
                step(xs, out)
            else:
                runner._pool_steps[ql.index](xs, out, bufs[name][j], ql.index in runner.pool_only)
                outs[j] = bufs[name][j]
            dt = clock() - t0
            tot += dt
            per_layer[name][ql.index].append(dt)
            outs[ql.index] = out
        totals[name].append(tot)
        finals[name] = [o.copy() for o in outs if o is not None][-3:]

    for name in mods:              # warm-up
        forward(name)
        forward(name)
    for k in mods:
        per_layer[k].clear()
        totals[k].clear()
    if not all(np.array_equal(a, b) for a, b in zip(finals["base"], finals["new"])):
        print("OUTPUTS DIFFER")
        return 1
    load0 = os.getloadavg()[0]
    order = list(mods)
    for i in range(args.runs):
        for name in (order if i % 2 == 0 else order[::-1]):
            forward(name)
    load1 = os.getloadavg()[0]
    med = {k: {i: statistics.median(v) for i, v in per_layer[k].items()} for k in mods}
    kinds = {k: defaultdict(float) for k in mods}
    print(f"{args.model}, {args.threads} thread(s), path {conv_new.simd_path()}, "
          f"{'thread CPU time' if args.threads == 1 else 'wall clock'}, medians of {args.runs} "
          f"interleaved forwards; load average {load0:.2f} before, {load1:.2f} after")
    for ql in qm.layers:
        layer = net.layers[ql.index]
        kind = conv_kind(layer)
        for k in mods:
            kinds[k][kind] += med[k][ql.index]
        if args.layers and ql.kind == "convolutional":
            b, n = med["base"][ql.index], med["new"][ql.index]
            macs = getattr(layer, "macs", 0) or 0
            print(f"{ql.index:4d} {layer.describe():30s} base {b * 1e3:7.3f} new {n * 1e3:7.3f} ms  "
                  f"{n / b:6.3f}  {macs / n / 1e9:6.1f} GMAC/s")
    for kind in sorted(kinds["base"], key=lambda s: -kinds["base"][s]):
        b, n = kinds["base"][kind], kinds["new"][kind]
        print(f"  {kind:16s} base {b * 1e3:8.2f} ms  new {n * 1e3:8.2f} ms  {n / b:6.3f}")
    b, n = statistics.median(totals["base"]), statistics.median(totals["new"])
    print(f"forward (sum of steps): base {b * 1e3:.1f} ms, new {n * 1e3:.1f} ms, new/base {n / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
