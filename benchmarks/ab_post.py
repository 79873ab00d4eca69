"""A/B of detect's post-processing: the C twin (csrc/mdfi_post.c) against the Python
reference (``MDFI_POST=ref``), in one process, interleaved, on yolov3-tiny.

Per round and thread count: ``model.detect(path)`` once with each (the order alternates),
the forward alone (``engine.run``), and detect's pieces in detect's order -- Pillow open +
decode, the 8-bit letterbox, the forward with the heads' decoding, the post-processing --
with each post-processing.  Prints medians (wall clock, or the calling thread's CPU time with
``--cpu-time``) and detect / forward for both, and checks that both give equal detections.

    python benchmarks/ab_post.py --runs 150 --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--image", default=None, help="a JPEG (default: bench_speed's quality-95 timing photo)")
    ap.add_argument("--cpu-time", action="store_true", help="the calling thread's CPU time (1 thread only)")
    args = ap.parse_args(argv)
    import mdfi
    from mdfi.model import _pixel_threads
    from mdfi.postprocess import postprocess, settings
    from mdfi.preprocess import network_pixels
    threads = [int(t) for t in args.threads.split(",")]
    clock = time.thread_time if args.cpu_time else time.perf_counter
    path = args.image
    if path is None:
        from PIL import Image
        from bench_speed import timing_rgb
        path = os.path.join(tempfile.mkdtemp(prefix="mdfi-ab-post-"), "timing.jpg")
        Image.fromarray(timing_rgb()).save(path, quality=95)
    models = {t: mdfi.load("yolov3-tiny", threads=t) for t in threads}
    keys = ("decode", "letterbox", "forward+heads[c]", "post[c]", "forward+heads[ref]", "post[ref]",
            "detect[c]", "detect[ref]", "forward")
    times = {(k, t): [] for k in keys for t in threads}

    def use(kind):
        if kind == "ref":
            os.environ["MDFI_POST"] = "ref"
        else:
            os.environ.pop("MDFI_POST", None)

    for r in range(args.runs + 5):
        for t in threads:
            m = models[t]
            net, eng = m.network, m.engine
            got = {}
            for kind in (("c", "ref") if r % 2 else ("ref", "c")):
                use(kind)
                t0 = clock()
                dets = m.detect(path)
                got[f"detect[{kind}]"] = clock() - t0
                got[f"dets[{kind}]"] = dets
            for kind in (("c", "ref") if r % 2 else ("ref", "c")):
                use(kind)
                t0 = clock()
                rgb = m._load_rgb(path, False, decoded=True)
                t1 = clock()
                x = network_pixels(rgb, net, nthreads=_pixel_threads(eng))
                t2 = clock()
                raws = eng.heads(x, 0.25)
                t3 = clock()
                postprocess(raws, rgb.size[0], rgb.size[1], net.width, net.height, 0.25, 0.45, m.names,
                            **settings(net))
                t4 = clock()
                got["decode"], got["letterbox"] = t1 - t0, t2 - t1
                got[f"forward+heads[{kind}]"], got[f"post[{kind}]"] = t3 - t2, t4 - t3
            t0 = clock()
            eng.run(x)
            got["forward"] = clock() - t0
            if list(got["dets[c]"]) != list(got["dets[ref]"]):
                raise SystemExit("C and reference post-processing disagree")
            if r >= 5:
                for k in keys:
                    times[(k, t)].append(got[k])
    use("c")
    print(f"# {args.runs} rounds, {'thread CPU time' if args.cpu_time else 'wall clock'}, medians in ms; "
          f"load average {os.getloadavg()[0]:.2f}")
    for t in threads:
        med = {k: 1e3 * statistics.median(times[(k, t)]) for k in keys}
        print(f"{t} thr.: " + "  ".join(f"{k} {v:.3f}" for k, v in med.items()))
        print(f"        detect / forward: C {med['detect[c]'] / med['forward']:.3f}, "
              f"reference {med['detect[ref]'] / med['forward']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
