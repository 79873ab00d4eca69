"""Where ``model.detect(path)`` spends its time around the forward (issue 12): every piece of
the path timed on its own, in one process, interleaved, as wall time and as the calling
thread's CPU time (``time.thread_time``; on a machine shared with other work the CPU time of
the single-threaded pieces is the number to read).

    python benchmarks/profile_detect.py                    # yolov3-tiny, 1 and 2 threads, 60 rounds
    python benchmarks/profile_detect.py --threads 2 --runs 100

Pieces (each round times every piece once, in this order; medians over the rounds):

* ``open + header``: the file opened and Pillow's header parse (``Image.open``);
* ``Pillow decode``: ``Image.open`` + ``load()`` of the JPEG bytes (libjpeg-turbo inside Pillow);
* ``libjpeg-turbo alone (OpenCV)``: ``cv2.imdecode`` of the same bytes when OpenCV is
  installed -- the decoder without Pillow's row copy and chunked feeding (its pixels are
  checked equal to Pillow's);
* ``model._decode``: what detect runs before the letterbox (open, checks, decode);
* ``letterbox (8-bit, T thr.)``: ``network_pixels`` on the engine's threads, and on one;
* ``forward`` (``engine.run``), ``forward + head decode`` (``engine.heads``);
* ``boxes + NMS``: ``postprocess``; ``Detections()``;
* ``detect(path)``: the whole call.

The photo is bench_speed.py's timing photo (``motorcycle_left`` 741x500, quality-95 JPEG).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):   # NumPy must not spin
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pieces(model, path: str, threads: int):
    """[(label, callable)] of the detect path's pieces on ``path``."""
    import numpy as np
    from PIL import Image
    from mdfi.detection import Detections
    from mdfi.postprocess import postprocess, settings as post_settings
    from mdfi.preprocess import network_pixels
    net = model.network
    with open(path, "rb") as fh:
        data = fh.read()
    dec = model._decode(path, False)
    x = network_pixels(dec, net, nthreads=threads)
    raws = model.engine.heads(x, 0.25)
    width, height = dec.size
    dets = postprocess(raws, width, height, net.width, net.height, 0.25, 0.45, model.names, **post_settings(net))

    def header():
        with open(path, "rb") as f:
            return Image.open(f).size

    def pillow():
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    out = [("open + header", header), ("Pillow decode", pillow)]
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        cv2.setNumThreads(1)
        buf = np.frombuffer(data, np.uint8)
        same = np.array_equal(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1], np.asarray(pillow()))
        out.append((f"libjpeg-turbo alone (OpenCV){'' if same else ' [pixels differ]'}",
                    lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR)))
    out += [("model._decode", lambda: model._decode(path, False)),
            (f"letterbox (8-bit, {threads} thr.)", lambda: network_pixels(dec, net, nthreads=threads))]
    if threads > 1:
        out.append(("letterbox (8-bit, 1 thr.)", lambda: network_pixels(dec, net, nthreads=1)))
    out += [("forward", lambda: model.engine.run(x, keep="needed")),
            ("forward + head decode", lambda: model.engine.heads(x, 0.25)),
            ("boxes + NMS", lambda: postprocess(raws, width, height, net.width, net.height, 0.25, 0.45,
                                                model.names, **post_settings(net))),
            ("Detections()", lambda: Detections(dets, path, exif=False, num_classes=len(model.names))),
            ("detect(path)", lambda: model.detect(path))]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="time every piece of model.detect(path)")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--model", default="yolov3-tiny")
    args = ap.parse_args(argv)
    import mdfi
    from PIL import Image
    from bench_speed import TIMING_PHOTO, cpu_name, loadavg, timing_rgb
    tmp = tempfile.mkdtemp(prefix="mdfi-profile-detect-")
    path = os.path.join(tmp, "timing.jpg")
    rgb = timing_rgb()
    Image.fromarray(rgb).save(path, quality=95)
    print(f"# CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; photo {TIMING_PHOTO} {rgb.shape[1]}x{rgb.shape[0]} "
          f"quality 95 ({os.path.getsize(path):,} bytes); load average before: {loadavg()}")
    for t in (int(v) for v in args.threads.split(",")):
        log(f"[{args.model}, {t} thr.] loading ...")
        model = mdfi.load(args.model, threads=t)
        ps = pieces(model, path, t)
        times = {label: [] for label, _ in ps}
        for r in range(args.warmup + args.runs):
            if r % 20 == 0:
                log(f"[{args.model}, {t} thr.] round {r}/{args.warmup + args.runs}")
            for label, f in ps:
                w0, c0 = time.perf_counter(), time.thread_time()
                f()
                w, c = time.perf_counter() - w0, time.thread_time() - c0
                if r >= args.warmup:
                    times[label].append((w, c))
        print(f"\n{args.model}, {t} thread(s): medians of {args.runs} interleaved rounds (ms)")
        print(f"  {'piece':<40} {'wall':>8} {'thread CPU':>11}")
        for label, v in times.items():
            print(f"  {label:<40} {1e3 * statistics.median(a for a, _ in v):8.3f} "
                  f"{1e3 * statistics.median(b for _, b in v):11.3f}")
    print(f"\n# load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
