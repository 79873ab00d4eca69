"""The arithmetic ceiling of each multiply-accumulate instruction on this machine (GMAC/s).

    python benchmarks/bench_ceiling.py [--threads 1,2] [--seconds 0.5]

Compiles benchmarks/ceiling.c (with csrc/mdfi_cpu.c, MDFI's own CPU detection) with the
system C compiler and runs it: 12 independent accumulator chains of one instruction per
thread, all threads at once.  It prints the rate by wall time (the ceiling on a quiet
machine) and by each thread's CPU time (what a core delivers while it runs, robust to other
processes sharing the machine).  docs/performance.md compares the convolution layers'
GMAC/s with these numbers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build(out_dir: str) -> str:
    cc = shlex.split(os.environ.get("CC", "cc"))
    exe = os.path.join(out_dir, "ceiling")
    subprocess.run([*cc, "-O2", "-pthread", str(REPO / "benchmarks" / "ceiling.c"), str(REPO / "csrc" / "mdfi_cpu.c"),
                    "-o", exe], check=True)
    return exe


def run(threads: str = "1,2", seconds: float = 0.5, reps: int = 5) -> str:
    with tempfile.TemporaryDirectory(prefix="mdfi-ceiling-") as tmp:
        exe = build(tmp)
        return subprocess.run([exe, "--threads", threads, "--seconds", str(seconds), "--reps", str(reps)],
                              check=True, capture_output=True, text=True).stdout


class Probe:
    """One instruction's ceiling, measured again on demand (``rate(threads)``): the profile of
    ``bench_speed.py`` takes one short sample right before each of its rounds, so that a layer's
    share of the ceiling compares two numbers from the same phase of the machine (a VM's
    second vCPU comes and goes; a ceiling measured minutes apart moved the share by 10-20 points).
    """

    def __init__(self, only: str = "vpdpbusd zmm"):
        self._tmp = tempfile.TemporaryDirectory(prefix="mdfi-ceiling-")
        self.exe = build(self._tmp.name)
        self.only = only

    def rate(self, threads: int, seconds: float = 0.1):
        """(wall GMAC/s, CPU-time GMAC/s) of one run, or None when the CPU lacks the instruction."""
        text = subprocess.run([self.exe, "--threads", str(threads), "--seconds", str(seconds), "--reps", "1",
                               "--only", self.only], check=True, capture_output=True, text=True).stdout
        vals = list(parse(text).values())
        return vals[0][0] if vals else None

    def close(self) -> None:
        self._tmp.cleanup()


def parse(text: str) -> dict:
    """instruction -> list of (wall GMAC/s, CPU-time GMAC/s) per thread count."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or "not supported" in line or line.startswith("instruction"):
            continue
        name, _, rest = line.partition(")")
        nums = rest.replace("(", " ").replace(")", " ").split()
        vals = [float(v) for v in nums]
        out[name + ")"] = list(zip(vals[0::2], vals[1::2]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    sys.stdout.write(run(args.threads, args.seconds, args.reps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
