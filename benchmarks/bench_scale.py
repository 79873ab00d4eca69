"""Dataset-scale `mdfi eval`: throughput per worker layout, and peak memory against the number
of images (docs/scale.md).

    python benchmarks/scale_images.py /tmp/mdfi-scale --count 1000 --broken 1
    python benchmarks/bench_scale.py throughput --images /tmp/mdfi-scale --count 120 --repeat 3
    python benchmarks/bench_scale.py memory --images /tmp/mdfi-scale --counts 100,1000

Every run is ``python -m mdfi eval`` in a child process, on the first ``count`` images (a list
file).  ``throughput`` runs the layouts below interleaved, ``repeat`` rounds, and reports
the median images/s of the streaming phase (the last progress line: from the start of the
job, worker start-up included, to the last result) and the ratio of each layout to
``1 worker``; because the machine may be shared, each run also reports how much CPU other
jobs took meanwhile (from /proc/stat, minus this run's own processes):

* ``1 worker``: one process, one engine thread, one BLAS thread (one core's worth);
* ``2 workers``: ``--workers 2`` (two processes, each one engine and one BLAS thread);
* ``1 process all threads``: ``--workers 1`` with the engine's and BLAS's default threads;
* ``decode split``: ``--workers 2`` with ``MDFI_PIPELINE_SPLIT=decode`` (the workers decode and
  letterbox; inference runs in the main process on every engine thread).

``memory`` samples the RSS of the eval process and of its worker processes every 0.2 s and
reads each one's peak (VmHWM): the client's, the largest worker's, and the largest sampled
sum over all of them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYOUTS = {
    "1 worker": (["--workers", "1"], {"MDFI_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}),
    "2 workers": (["--workers", "2"], {}),
    "1 process all threads": (["--workers", "1"], {}),
    "decode split": (["--workers", "2"], {"MDFI_PIPELINE_SPLIT": "decode"}),
}


def image_list(folder: str, count: int, tmp: str) -> str:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".png")))[:count]
    if len(names) < count:
        sys.exit(f"{folder}: only {len(names)} images, {count} wanted (benchmarks/scale_images.py)")
    path = os.path.join(tmp, f"list{count}.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(os.path.join(os.path.abspath(folder), n) for n in names) + "\n")
    return path


def _env(extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _proc_status(pid: int):
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return None
    get = lambda k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) // 1024  # noqa: E731
    return get("VmRSS"), get("VmHWM")


def _descendants(pid: int):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def run_eval(listfile: str, args, env, tmp: str, sample: bool = False):
    """(images/s, wall s, memory dict, stderr tail) of one `mdfi eval` run."""
    import resource
    res = os.path.join(tmp, f"r{time.monotonic_ns()}.jsonl")
    cmd = [sys.executable, "-m", "mdfi", "eval", "--images", listfile, "--results", res, "--json", *args]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = _machine_busy()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=tmp, env=_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks, total = {}, 0
    err_lines = []
    if sample:
        import threading
        err_thread = threading.Thread(target=lambda: err_lines.extend(p.stderr), daemon=True)
        err_thread.start()
        while p.poll() is None:
            tree_rss = 0
            for pid in [p.pid] + _descendants(p.pid):
                st = _proc_status(pid)
                if st is None:
                    continue
                tree_rss += st[0]
                peaks[pid] = max(peaks.get(pid, 0), st[1])
            total = max(total, tree_rss)
            time.sleep(0.2)
        err_thread.join()
    else:
        err_lines = p.stderr.readlines()
        p.wait()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    others = max(0.0, _machine_busy() - busy0 - cpu)      # CPU seconds of everything else
    os.unlink(res) if os.path.exists(res) else None
    if p.returncode != 0:
        sys.exit(f"mdfi eval failed ({p.returncode}): {''.join(err_lines[-5:])}")
    done = [l for l in err_lines if re.match(r"eval: \d+ images in ", l)]
    rate = float(re.search(r"\(([\d.]+) images/s\)", done[-1]).group(1)) if done else float("nan")
    errors = re.search(r"(\d+) errors?$", done[-1].strip()) if done else None
    mem = {"client": peaks.get(p.pid, 0), "worker": max([v for k, v in peaks.items() if k != p.pid] or [0]),
           "tree": total, "cpu": cpu, "errors": int(errors.group(1)) if errors else 0,
           "others": others / (wall * (os.cpu_count() or 1))}
    return rate, wall, mem, "".join(err_lines[-3:])


def throughput(a) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lst = image_list(a.images, a.count, tmp)
        layouts = [l.strip() for l in a.layouts.split(",")] if a.layouts else list(LAYOUTS)
        rates = {k: [] for k in layouts}
        others = {k: [] for k in layouts}
        print(f"CPU: {_cpu()}, {os.cpu_count()} logical CPUs; {a.count} images; mdfi eval --bits {a.bits}"
              f"{' --no-stats' if not a.stats else ''}", flush=True)
        for r in range(a.repeat):
            for name in layouts:
                args, env = LAYOUTS[name]
                _wait_idle(a.idle_below)
                load0 = os.getloadavg()[0]
                rate, wall, mem, _ = run_eval(lst, ["--bits", a.bits, *([] if a.stats else ["--no-stats"]), *args],
                                              env, tmp)
                rates[name].append(rate)
                others[name].append(mem["others"])
                print(f"round {r + 1}: {name:<24} {rate:6.2f} images/s  (wall {wall:5.1f} s, "
                      f"{mem['cpu'] / a.count:.3f} CPU s/image in all processes, other jobs used "
                      f"{100 * mem['others']:4.1f} % of the machine, load {load0:.1f} -> "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
        base = statistics.median(rates[layouts[0]])
        print(f"\n{'layout':<24} {'median images/s':>16} {'vs ' + layouts[0]:>14}  per round")
        for name in layouts:
            med = statistics.median(rates[name])
            ratios = [x / y for x, y in zip(rates[name], rates[layouts[0]])]
            print(f"{name:<24} {med:16.2f} {med / base:13.2f}x  " + " ".join(f"{x:.2f}" for x in ratios))
        if a.quiet_below is not None:
            quiet = [r for r in range(a.repeat)
                     if all(others[k][r] * 100 < a.quiet_below for k in layouts)]
            print(f"\nrounds where other jobs used < {a.quiet_below:g} % of the machine in every run: "
                  f"{len(quiet)} of {a.repeat}")
            if quiet:
                for name in layouts[1:]:
                    rs = [rates[name][r] / rates[layouts[0]][r] for r in quiet]
                    print(f"  {name} vs {layouts[0]}: median {statistics.median(rs):.2f}x  "
                          f"(" + " ".join(f"{x:.2f}" for x in rs) + ")")


def memory(a) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"CPU: {_cpu()}; mdfi eval --bits {a.bits}{' --no-stats' if not a.stats else ''} "
              f"--workers {a.workers}", flush=True)
        print(f"{'images':>7} {'images/s':>9} {'client peak MB':>15} {'largest worker MB':>18} "
              f"{'all processes MB':>17}", flush=True)
        for n in [int(c) for c in a.counts.split(",")]:
            lst = image_list(a.images, n, tmp)
            rate, wall, mem, _ = run_eval(lst, ["--bits", a.bits, "--workers", str(a.workers),
                                                *([] if a.stats else ["--no-stats"])], {}, tmp, sample=True)
            print(f"{n:>7} {rate:9.2f} {mem['client']:>15} {mem['worker']:>18} {mem['tree']:>17}"
                  f"   (wall {wall:.0f} s, load {os.getloadavg()[0]:.1f}, {mem['errors']} unreadable image(s) "
                  f"reported)", flush=True)


def _machine_busy() -> float:
    """CPU seconds all CPUs have spent busy since boot (/proc/stat; 0 where unavailable)."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _wait_idle(below, limit: float = 900.0) -> None:
    """On a shared machine: wait (at most ``limit`` s) until the 1-minute load is below ``below``."""
    if not below:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] >= below and time.monotonic() - t0 < limit:
        time.sleep(5)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return re.search(r"model name\s*:\s*(.+)", fh.read()).group(1)
    except (OSError, AttributeError):
        return "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--images", required=True)
    t.add_argument("--count", type=int, default=120)
    t.add_argument("--repeat", type=int, default=3)
    t.add_argument("--layouts", help=f"comma-separated, from: {', '.join(LAYOUTS)}")
    t.add_argument("--quiet-below", type=float, default=None, metavar="PCT",
                   help="also summarise the rounds in which other jobs used less than PCT %% of the machine")
    t.add_argument("--idle-below", type=float, default=None, metavar="LOAD",
                   help="before each run wait (up to 15 min) for the 1-minute load average to drop below LOAD")
    m = sub.add_parser("memory")
    m.add_argument("--images", required=True)
    m.add_argument("--counts", default="100,1000")
    m.add_argument("--workers", type=int, default=2)
    for p in (t, m):
        p.add_argument("--bits", default="8")
        p.add_argument("--stats", action="store_true",
                       help="keep the saturation statistics (NumPy reference; default --no-stats)")
    a = ap.parse_args(argv)
    (throughput if a.what == "throughput" else memory)(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
