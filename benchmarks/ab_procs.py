"""Two-thread wall-clock A/B of two builds, in alternating processes.

    python benchmarks/ab_procs.py --base /tmp/old-tree [--new .] [--rounds 10] [--threads 2]
    MDFI_SIMD=avx2 python benchmarks/ab_procs.py --base /tmp/old-tree --fifo --mode-ms 16

``ab_net.py --threads 2`` runs both builds in one process, where each build's thread pool
spins against the other's; here every round runs ``profile_layers.py`` once from each tree (A
= ``--base``, B = ``--new``; the order alternates), each in its own process, and prints the
medians of the whole forwards and of every layer.

``--fifo`` runs the processes under ``chrt -f 1`` (SCHED_FIFO): on a machine shared with
background jobs (``nice``) both cores are then this benchmark's while it runs (it needs the
right to use real-time scheduling).  ``--mode-ms T`` splits the runs at a forward median of
T ms into a fast and a slow group and compares A and B within each: the 2-vCPU VM this project
is developed on has two modes at two threads (the same build measures ~13 or ~19 ms for
yolov3-tiny on ``avx2``, for minutes at a time; docs/performance.md, round 7), and a
comparison across modes says nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_tree(tree: str, args) -> tuple:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, str(Path(tree) / "benchmarks" / "profile_layers.py"), "--threads", str(args.threads),
           "--runs", str(args.runs), "--model", args.model]
    if args.fifo:
        cmd = ["chrt", "-f", "1"] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    layers = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"^\s*(\d+) .*?([\d.]+) ms", out, re.M)}
    fwd = float(re.search(r"run\(keep='needed'\) median ([\d.]+)", out).group(1))
    return layers, fwd


def compare(label: str, a: list, b: list, min_ms: float) -> None:
    ma, mb = statistics.median(x[1] for x in a), statistics.median(x[1] for x in b)
    print(f"{label}: A n={len(a)} median {ma:.2f} min {min(x[1] for x in a):.2f} ms | "
          f"B n={len(b)} median {mb:.2f} min {min(x[1] for x in b):.2f} ms | B/A {mb / ma:.3f}")
    for k in sorted(a[0][0]):
        la = statistics.median(x[0][k] for x in a)
        lb = statistics.median(x[0][k] for x in b)
        if la >= min_ms:
            print(f"    layer {k:3d}: A {la:.3f} B {lb:.3f} ms  {lb / la if la else float('nan'):.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="tree A (a built copy of the old checkout)")
    ap.add_argument("--new", default=str(REPO), help="tree B (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=40, help="forwards per process (profile_layers --runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="yolov3-tiny")
    ap.add_argument("--fifo", action="store_true", help="run under chrt -f 1 (SCHED_FIFO)")
    ap.add_argument("--mode-ms", type=float, default=None,
                    help="compare the runs below and above this forward median separately")
    ap.add_argument("--min-ms", type=float, default=0.2, help="print layers of at least this many ms")
    args = ap.parse_args(argv)

    res = {"A": [], "B": []}
    for r in range(args.rounds):
        order = (("A", args.base), ("B", args.new)) if r % 2 == 0 else (("B", args.new), ("A", args.base))
        for lab, tree in order:
            res[lab].append(run_tree(tree, args))
        print(f"round {r}: A {res['A'][-1][1]:.2f} ms, B {res['B'][-1][1]:.2f} ms, "
              f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    compare("all runs", res["A"], res["B"], args.min_ms)
    if args.mode_ms is not None:
        for label, fast in (("fast mode", True), ("slow mode", False)):
            a = [x for x in res["A"] if (x[1] < args.mode_ms) == fast]
            b = [x for x in res["B"] if (x[1] < args.mode_ms) == fast]
            if a and b:
                compare(f"{label} (< {args.mode_ms} ms)" if fast else f"{label} (>= {args.mode_ms} ms)", a, b,
                        args.min_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
