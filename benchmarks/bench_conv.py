"""Benchmark of the integer convolution kernel (mdfi._ext._conv) on real network shapes.

Runs every [convolutional] layer of a Darknet cfg (default: yolov3-tiny at 416x416) with
8-bit data (uint8 pixels into the first layer, int8 activations after it, int8 weights,
int32 accumulation, leaky/linear as in the cfg) and prints, per layer and in total, the
median time of ``--runs`` calls after a warm-up, for each thread count, with GMAC/s and the
SIMD path used.

    python benchmarks/bench_conv.py                       # yolov3-tiny, 1 and 2 threads
    python benchmarks/bench_conv.py --net yolov3 --runs 5
    MDFI_SIMD=0 python benchmarks/bench_conv.py           # scalar path
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# NumPy's BLAS threads must not spin on the cores being measured.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mdfi._ext import _conv  # noqa: E402
from mdfi.darknet.network import Network  # noqa: E402

ACT = {"linear": 0, "leaky": 1, "relu": 2}


def conv_layers(cfg: Path, size: int):
    net = Network.from_cfg(cfg)
    out = []
    for layer in net.layers:
        if layer.kind != "convolutional":
            continue
        c, h, w = layer.in_shape
        if size != 416:  # rescale the maps (all YOLO maps scale with the input)
            h, w = h * size // 416, w * size // 416
        out.append(dict(index=layer.index, c=c, h=h, w=w, m=layer.filters, k=layer.size,
                        s=layer.stride, p=layer.padding, act=ACT.get(layer.activation, 0)))
    return out


def make_case(L, first: bool, rng, nthreads: int):
    c, h, w, m, k = L["c"], L["h"], L["w"], L["m"], L["k"]
    if first:
        x = rng.integers(0, 256, size=(c, h, w), dtype=np.uint8)
    else:
        x = rng.integers(-128, 128, size=(c, h, w), dtype=np.int8)
    wt = rng.integers(-128, 128, size=(m, c, k, k), dtype=np.int8)
    packed = _conv.pack_weights(wt)
    bias = rng.integers(-(1 << 12), 1 << 12, size=m).astype(np.int64)
    shift = rng.integers(8, 14, size=m).astype(np.int32)
    oh = _conv.out_size(h, k, L["s"], L["p"])
    ow = _conv.out_size(w, k, L["s"], L["p"])
    out = np.empty((m, oh, ow), np.int8)
    scratch = np.zeros(_conv.scratch_bytes(c, h, w, m, k, L["s"], L["p"], nthreads), np.uint8)
    macs = m * c * k * k * oh * ow
    return x, packed, bias, shift, out, scratch, macs


CLOCK = time.perf_counter


def time_layer(L, case, nthreads, runs, warmup, simd, stat="median"):
    x, packed, bias, shift, out, scratch, _ = case
    kw = dict(ksize=L["k"], stride=L["s"], pad=L["p"], rounding=0, out_bits=8, act=L["act"],
              acc64=0, nthreads=nthreads, scratch=scratch, simd=simd)
    for _ in range(warmup):
        _conv.conv2d(x, packed, bias, shift, out, **kw)
    ts = []
    for _ in range(runs):
        t0 = CLOCK()
        _conv.conv2d(x, packed, bias, shift, out, **kw)
        ts.append(CLOCK() - t0)
    return float(np.median(ts) if stat == "median" else np.min(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="yolov3-tiny", help="cfg name in cfg/ or a path")
    ap.add_argument("--size", type=int, default=416, help="network input size (multiple of 32)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per layer (median)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--simd", default=None, help="a path name (_conv.PATHS) or auto (default: MDFI_SIMD)")
    ap.add_argument("--stat", default="median", choices=("median", "min"),
                    help="statistic over the timed runs (min is steadier on a busy machine)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the calling thread's CPU time (1 thread only): steady on a loaded machine")
    ap.add_argument("--layers", default=None, help="comma-separated layer indices (default: all)")
    args = ap.parse_args(argv)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.thread_time
        args.threads = "1"

    cfg = Path(args.net)
    if not cfg.exists():
        cfg = REPO / "cfg" / f"{args.net}.cfg"
    layers = conv_layers(cfg, args.size)
    if args.layers:
        keep = {int(v) for v in args.layers.split(",")}
        layers = [L for L in layers if L["index"] in keep]
    path = _conv.set_simd_path(args.simd) if args.simd else _conv.simd_path()
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    total_macs = 0
    print(f"{cfg.name} at {args.size}x{args.size}: {len(layers)} conv layers; SIMD path: {path} "
          f"(best on this CPU: {_conv.best_simd_path()}); {args.stat} of {args.runs} runs, "
          f"{os.cpu_count()} CPUs")
    hdr = f"{'layer':>5} {'in CxHxW':>15} {'M':>5} {'k/s':>4} {'MMAC':>8}"
    for t in threads:
        hdr += f" {f'{t}T ms':>9} {f'{t}T GMAC/s':>10}"
    print(hdr)
    totals = {t: 0.0 for t in threads}
    for i, L in enumerate(layers):
        row = None
        for t in threads:
            case = make_case(L, i == 0, rng, t)
            macs = case[-1]
            if row is None:
                total_macs += macs
                row = (f"{L['index']:>5} {L['c']:>5}x{L['h']:>4}x{L['w']:<4} {L['m']:>5} "
                       f"{L['k']}/{L['s']:<2} {macs / 1e6:>8.1f}")
            dt = time_layer(L, case, t, args.runs, args.warmup, args.simd, args.stat)
            totals[t] += dt
            row += f" {dt * 1e3:>9.3f} {macs / dt / 1e9:>10.1f}"
        print(row, flush=True)
    row = f"{'total':>5} {'':>15} {'':>5} {'':>4} {total_macs / 1e6:>8.1f}"
    for t in threads:
        row += f" {totals[t] * 1e3:>9.3f} {total_macs / totals[t] / 1e9:>10.1f}"
    print(row)


if __name__ == "__main__":
    main()
