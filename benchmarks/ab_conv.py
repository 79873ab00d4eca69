"""A/B timing of two builds of the convolution kernel (mdfi._ext._conv) on real layer shapes.

Loads this tree's ``_conv`` extension and a second build of it (``--base``: a directory
holding a copy of ``_conv*.so``, e.g. the build before a change) into the same process and
times both on every [convolutional] layer of a cfg, interleaved (each round runs A then B or
B then A, alternating), by the calling thread's CPU time at one thread (``--cpu-time``,
default) or wall clock.  Prints per layer the medians, the ratio new/base, and checks that
both builds give the same output bytes.  For a machine shared with other work: both builds
see the same disturbance, so the ratio is steadier than either time.

    cp mdfi/_ext/_conv*.so /tmp/base/          # before the change
    ... change, rebuild ...
    python benchmarks/ab_conv.py --base /tmp/base --net yolov3 --layers 0,1,2
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
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

from bench_conv import conv_layers, make_case  # noqa: E402
from mdfi._ext import _conv as conv_new  # noqa: E402


def load_base(directory: str):
    files = glob.glob(os.path.join(directory, "_conv*.so"))
    if not files:
        raise SystemExit(f"{directory}: no _conv*.so")
    spec = importlib.util.spec_from_file_location("mdfi._ext._conv", files[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="directory with the other build's _conv*.so")
    ap.add_argument("--net", default="yolov3", help="cfg name in cfg/ or a path")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--layers", default=None, help="comma-separated layer indices (default: all)")
    ap.add_argument("--runs", type=int, default=15, help="interleaved rounds per layer")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wall", action="store_true", help="wall clock instead of thread CPU time")
    ap.add_argument("--simd", default=None, help="a path name for both builds")
    ap.add_argument("--stat", default="median", choices=("median", "min"),
                    help="statistic over the rounds (min: the least disturbed call, for wall clock on a busy machine)")
    args = ap.parse_args(argv)
    if args.threads != 1 and not args.wall:
        raise SystemExit("thread CPU time needs --threads 1 (or --wall)")
    clock = time.perf_counter if args.wall else time.thread_time
    base = load_base(args.base)
    mods = {"base": base, "new": conv_new}
    for mod in mods.values():
        if args.simd:
            mod.set_simd_path(args.simd)
    cfg = Path(args.net)
    if not cfg.exists():
        cfg = REPO / "cfg" / f"{args.net}.cfg"
    layers = conv_layers(cfg, args.size)
    first = layers[0]["index"]
    if args.layers:
        keep = {int(v) for v in args.layers.split(",")}
        layers = [L for L in layers if L["index"] in keep]
    print(f"{cfg.name} {args.size}: path {conv_new.simd_path()}, {args.threads} thread(s), "
          f"{'wall clock' if args.wall else 'thread CPU time'}, {args.stat}s of {args.runs} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'layer':>5} {'in CxHxW':>15} {'M':>5} {'k/s':>4} {'base ms':>9} {'new ms':>9} {'new/base':>9} "
          f"{'GMAC/s new':>10}")
    tot = {"base": 0.0, "new": 0.0}
    rng = np.random.default_rng(0)
    for L in layers:
        case = make_case(L, L["index"] == first, rng, args.threads)
        x, _, bias, shift, out, _, macs = case
        wt = rng.integers(-128, 128, size=(L["m"], L["c"], L["k"], L["k"]), dtype=np.int8)
        outs, packs, times = {}, {}, {k: [] for k in mods}
        kw = dict(ksize=L["k"], stride=L["s"], pad=L["p"], rounding=0, out_bits=8, act=L["act"],
                  acc64=0, nthreads=args.threads)
        scratch = {}
        for name, mod in mods.items():
            packs[name] = mod.pack_weights(wt)
            outs[name] = np.empty_like(out)
            scratch[name] = np.zeros(mod.scratch_bytes(L["c"], L["h"], L["w"], L["m"], L["k"], L["s"], L["p"],
                                                       args.threads), np.uint8)
            for _ in range(2):
                mod.conv2d(x, packs[name], bias, shift, outs[name], scratch=scratch[name], **kw)
        if not np.array_equal(outs["base"], outs["new"]):
            print(f"layer {L['index']}: OUTPUTS DIFFER", flush=True)
            return 1
        order = list(mods)
        for i in range(args.runs):
            for name in (order if i % 2 == 0 else order[::-1]):
                mod = mods[name]
                t0 = clock()
                mod.conv2d(x, packs[name], bias, shift, outs[name], scratch=scratch[name], **kw)
                times[name].append(clock() - t0)
        med = {k: float(np.median(v) if args.stat == "median" else np.min(v)) for k, v in times.items()}
        for k in med:
            tot[k] += med[k]
        print(f"{L['index']:>5} {L['c']:>5}x{L['h']:>4}x{L['w']:<4} {L['m']:>5} {L['k']}/{L['s']:<2} "
              f"{med['base'] * 1e3:>9.3f} {med['new'] * 1e3:>9.3f} {med['new'] / med['base']:>9.3f} "
              f"{macs / med['new'] / 1e9:>10.1f}", flush=True)
    print(f"{'total':>5} {'':>15} {'':>5} {'':>4} {tot['base'] * 1e3:>9.3f} {tot['new'] * 1e3:>9.3f} "
          f"{tot['new'] / tot['base']:>9.3f}   load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
