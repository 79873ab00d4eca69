"""Forward-pass speed: MDFI fixed point (C kernels), MDFI float (NumPy), OpenCV DNN (float).

    pip install ".[bench]"
    python benchmarks/bench_speed.py [--runs 20] [--models yolov3-tiny,yolov3] [--skip-float]

One process, interleaved: every round times one forward of every (engine, threads)
configuration in turn, so machine noise hits all of them alike; the median of ``--runs``
rounds after warm-up is reported.  Before each timed forward the machine idles for
``--settle`` seconds, so that thread pools still spinning from the previous configuration
(OpenBLAS spins ~0.1 s after a GEMM) do not slow the next one down.  All at 416x416 from the same cfg/weights:
yolov3-tiny with the official weights, yolov3 (and ``--models yolov4-tiny``, AlexeyAB's, 416x416)
with generated weights of the right shape (no official weights of those can be fetched here;
speed does not depend on the values).
MDFI fixed point is 8-bit (the default model); its time covers the integer network
(conv/pool/route/.../yolo tables), like OpenCV's ``net.forward`` covers its network.

Also measured: a cold ``mdfi detect image.jpg`` (new process, default model cached) and its
peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_models(name: str, tmp: str):
    """(cfg path, weights path, float Network, fixed QuantizedModel) for a model name."""
    import mdfi
    from mdfi import zoo
    from mdfi.network import Network
    from mdfi.weights import random_weights, write_weights
    cfg = str(zoo.cfg_path(name))
    if name == "yolov3-tiny":
        weights = str(zoo.weights_path(name))
    else:
        net = Network.from_cfg(cfg, warn=False)
        random_weights(net, seed=1)
        weights = os.path.join(tmp, f"{name}-generated.weights")
        write_weights(net, weights)
    fixed = mdfi.load(cfg=cfg, weights=weights, engine="ref") if name != "yolov3-tiny" else mdfi.load(name, engine="ref")
    from mdfi.weights import load_weights
    net = Network.from_cfg(cfg, warn=False)          # the float network (a cached .mdfi holds integers only)
    load_weights(net, weights)
    return cfg, weights, net, fixed.quantized


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MDFI vs OpenCV DNN forward time")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default="yolov3-tiny,yolov3")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--skip-float", action="store_true", help="skip MDFI's NumPy float path (slow on yolov3)")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--settle", type=float, default=0.25,
                    help="seconds of idle before each timed forward (default 0.25)")
    ap.add_argument("--opencv-avx2", action="store_true",
                    help="keep OpenCV to its AVX2 code paths (OPENCV_CPU_DISABLE=AVX512-SKX), as on "
                         "the issue's AVX2-only target machine; MDFI has no AVX-512 path")
    args = ap.parse_args(argv)
    if args.opencv_avx2:
        os.environ["OPENCV_CPU_DISABLE"] = "AVX512-SKX"       # read when cv2 is first imported

    import cv2
    from threadpoolctl import threadpool_limits

    from mdfi.engine import FixedEngine
    from mdfi._ext import _conv
    from mdfi.quantize import input_to_u8
    from mdfi.preprocess import image_to_input

    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tmp = tempfile.mkdtemp(prefix="mdfi-bench-")
    log(f"CPU: {os.cpu_count()} cpus; MDFI conv path: {_conv.simd_path()}; OpenCV {cv2.__version__} "
        f"({cv2.getCPUFeaturesLine()}; '?' = disabled)")
    results = []
    for name in args.models.split(","):
        log(f"[{name}] loading and quantizing ...")
        cfg, weights, net, qm = load_models(name, tmp)
        x = image_to_input(rgb, net.width, net.height)
        x_u8 = input_to_u8(x)
        blob = x[None].astype(np.float32)                      # OpenCV gets the same letterboxed input
        cvnet = cv2.dnn.readNetFromDarknet(cfg, weights)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        out_names = cvnet.getUnconnectedOutLayersNames()
        engines = {t: FixedEngine(qm, "c", threads=t) for t in threads}

        def mdfi_fixed(t):
            engines[t].run(x_u8, keep="needed")

        def mdfi_float(t):
            with threadpool_limits(limits=t):
                net.forward_float(x, keep="needed")

        def opencv(t):
            cv2.setNumThreads(t)
            cvnet.setInput(blob)
            cvnet.forward(out_names)

        configs = [("MDFI fixed 8-bit (C)", mdfi_fixed), ("OpenCV DNN float", opencv)]
        if not args.skip_float:
            configs.append(("MDFI float (NumPy)", mdfi_float))
        times = {(label, t): [] for label, _ in configs for t in threads}
        for r in range(args.warmup + args.runs):
            for label, fn in configs:
                for t in threads:
                    # Thread pools keep spinning after a job (OpenBLAS for ~0.1 s, OpenCV's and
                    # MDFI's for ~1 ms): let the previous configuration's threads go idle so
                    # they do not steal the cores of the one being timed.
                    time.sleep(args.settle)
                    t0 = time.perf_counter()
                    fn(t)
                    dt = time.perf_counter() - t0
                    if r >= args.warmup:
                        times[(label, t)].append(dt)
            if r % 5 == 4:
                log(f"[{name}] round {r + 1}/{args.warmup + args.runs}")
        gmac = net.macs / 1e9
        for t in threads:
            cv_ms = 1e3 * statistics.median(times[("OpenCV DNN float", t)])
            for label, _ in configs:
                ms = 1e3 * statistics.median(times[(label, t)])
                results.append((name, label, t, ms, gmac / (ms / 1e3), ms / cv_ms))
    print(f"{'model':<12} {'engine':<22} {'threads':>7} {'ms/forward':>11} {'GMAC/s':>8} {'vs OpenCV':>10}")
    for name, label, t, ms, gs, ratio in results:
        print(f"{name:<12} {label:<22} {t:>7} {ms:>11.1f} {gs:>8.1f} {ratio:>9.2f}x")

    if not args.skip_cold:
        cold(tmp)
    return 0


def cold(tmp: str) -> None:
    """Wall time and max RSS of `mdfi detect image.jpg` in a new process (model cached)."""
    from PIL import Image
    img = os.path.join(tmp, "image.jpg")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (576, 768, 3), dtype=np.uint8)).save(img)
    cmd = [sys.executable, "-m", "mdfi", "detect", img, "--out", os.path.join(tmp, "pred.jpg")]
    subprocess.run(cmd, capture_output=True, check=True)               # make sure the cache is warm
    # A child forked from this (large) process starts with this process's resident pages, and
    # Linux counts them in the child's max RSS until exec.  So the timing and rusage come from
    # a small intermediate Python that forks the measured command itself.
    probe = ("import os, subprocess, sys, time\n"
             "t0 = time.perf_counter()\n"
             "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
             "_, st, ru = os.wait4(p.pid, 0)\n"
             "print(time.perf_counter() - t0, ru.ru_maxrss, st)\n")
    walls, rss = [], []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
        wall, maxrss, status = out.stdout.split()
        if int(status) != 0:
            raise RuntimeError(f"mdfi detect failed (status {status})")
        walls.append(float(wall))
        rss.append(int(maxrss) / 1024.0)                               # kB -> MB (Linux)
    print(f"cold `mdfi detect image.jpg` (new process, cached model): median {statistics.median(walls):.2f} s "
          f"(min {min(walls):.2f}), peak memory (max RSS) {max(rss):.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
