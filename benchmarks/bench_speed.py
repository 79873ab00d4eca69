"""Forward-pass speed of MDFI's 8-bit C engine against ONNX Runtime (int8 and float) and OpenCV
DNN (float), all in one interleaved run, plus the end-to-end ``model.detect(path)`` time, the
instruction ceilings of the machine and the per-layer efficiency of the big convolutions.

    pip install ".[bench]"
    python benchmarks/bench_speed.py                        # everything, both models, 1 and 2 threads
    python benchmarks/bench_speed.py --models yolov3-tiny --runs 10
    python benchmarks/bench_speed.py --cpu-time --threads 1  # on a busy machine: thread CPU time
    python benchmarks/bench_speed.py --only-detect --runs 40 # detect(path) / forward, yolov3-tiny, 1 and 2 threads

Engines (same 416x416 input for all; yolov3-tiny with the official weights, yolov3 and
``--models yolov4-tiny`` (AlexeyAB's) with generated weights of the right shape -- no official
weights of those can be fetched here, and speed does not depend on the values):

* MDFI fixed 8-bit (C): ``FixedEngine.run`` from the uint8 input to the yolo tables, on the
  best convolution path of this CPU and, for the AVX2-only comparison, on ``avx2``
  (``--mdfi-paths``; the path names are printed);
* ONNX Runtime int8: the same network exported by benchmarks/onnx_export.py and quantized by
  onnxruntime.quantization (static QDQ, per-channel, u8 activations x s8 weights), and the
  float export; ``intra_op_num_threads`` = threads;
* OpenCV DNN float: ``readNetFromDarknet`` on the same cfg/weights (``--opencv-avx2`` holds it to
  its AVX2 code, as on an AVX2-only machine);
* MDFI detect: ``model.detect(jpeg path)`` end to end (decode, letterbox, forward, heads, NMS).
  ``--only-detect`` times just this and the MDFI forward it contains (yolov3-tiny, best path;
  a minute on 2 cores) and prints their ratio per thread count.

One process, interleaved: every round times one call of every (engine, threads) in turn, so
machine noise hits all alike; medians of ``--runs`` rounds after ``--warmup``.  Before each
timed call the machine idles ``--settle`` seconds so that thread pools still spinning from the
previous configuration (ONNX Runtime's, OpenBLAS's) do not steal the cores.  Ratios are taken
within this run.  ``--cpu-time`` times the calling thread's CPU time instead of the wall clock
(1 thread only): on a machine shared with other work this measures what one core delivers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):   # NumPy must not spin
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_models(name: str, tmp: str, quantize: bool = True):
    """(cfg path, weights path, float Network, fixed QuantizedModel or None) for a model name:
    yolov3-tiny with the official weights (its shipped 8-bit recipe), other zoo models with
    generated weights of the right shape (seed 1; speed does not depend on the values)."""
    import mdfi
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights, random_weights, write_weights
    cfg = str(zoo.cfg_path(name))
    if name == "yolov3-tiny":
        weights = str(zoo.weights_path(name))
    else:
        weights = os.path.join(tmp, f"{name}-generated.weights")
        if not os.path.exists(weights):
            net = Network.from_cfg(cfg, warn=False)
            random_weights(net, seed=1)
            write_weights(net, weights)
    net = Network.from_cfg(cfg, warn=False)          # the float network (a cached .mdfi holds integers only)
    load_weights(net, weights)
    if not quantize:
        return cfg, weights, net, None
    fixed = mdfi.load(name, engine="ref") if name == "yolov3-tiny" else mdfi.load(cfg=cfg, weights=weights, engine="ref")
    return cfg, weights, net, fixed.quantized


#: the timing / check photo (scikit-image; not one of onnx_export.CALIB_PHOTOS)
TIMING_PHOTO = "motorcycle_left"


def timing_rgb() -> np.ndarray:
    from calibration_images import photo
    return np.ascontiguousarray(photo(TIMING_PHOTO)[..., :3])


def check_image(net) -> np.ndarray:
    """The float input of the timing photo (letterboxed, or resized for AlexeyAB's lineage)."""
    from mdfi.preprocess import network_input
    return network_input(timing_rgb(), net)


def cpu_name() -> str:
    from mdfi.scale.imagejobs import cpu_name as name      # the one reader (mdfi eval prints it too)
    return name()


def loadavg() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "?"


def conv_profile(qm, x_u8, threads: int, runs: int, clock, probe=None):
    """Per convolution layer: (index, description, MACs, median seconds) inside a CRunner, and
    per round the instruction ceiling sampled right before it (``probe``, bench_ceiling.Probe;
    the round after the sample is a warm-up so the pool's workers are awake, as in a forward)
    with the round's layer times: [(ceiling (wall, cpu) or None, {index: seconds})]."""
    from mdfi.cengine import CRunner
    runner = CRunner(qm, threads)
    bufs = [runner.new_output(ql.index) for ql in qm.layers]
    per = {ql.index: [] for ql in qm.layers}
    rounds = []

    def one_round():
        outs = [None] * len(qm.layers)
        times = {}
        for ql, step in zip(qm.layers, runner.steps):
            xs = [x_u8 if i == -1 else outs[i] for i in ql.inputs]
            t0 = clock()
            step(xs, bufs[ql.index])
            times[ql.index] = clock() - t0
            outs[ql.index] = bufs[ql.index]
        return times

    for r in range(runs + 2):
        ceil = None
        if probe is not None and r >= 2:
            ceil = probe.rate(threads)
            one_round()
        times = one_round()
        if r >= 2:
            for i, s in times.items():
                per[i].append(s)
            rounds.append((ceil, times))
    net = qm.network
    rows = [(ql.index, net.layers[ql.index].describe(), net.layers[ql.index].macs, statistics.median(per[ql.index]))
            for ql in qm.layers if ql.kind == "convolutional"]
    return rows, rounds


def on_amx(net, index: int) -> bool:
    """The layer runs on AMX tiles when the path is amx: input channels a multiple of 64, or
    29-63 (8-15 channel quads; csrc/mdfi_conv_amx.c amx_usable); the others take the
    avx512vnni kernels."""
    c = net.layers[index].in_shape[0]
    return c % 64 == 0 or 8 <= (c + 3) // 4 < 16


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MDFI vs ONNX Runtime and OpenCV DNN forward time")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default=None, help="default: yolov3-tiny,yolov3 (--only-detect: yolov3-tiny)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--mdfi-paths", default=None,
                    help="convolution paths to time (default: the best one and avx2, when available)")
    ap.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    ap.add_argument("--no-opencv", action="store_true", help="skip OpenCV DNN")
    ap.add_argument("--no-detect", action="store_true", help="skip model.detect(path)")
    ap.add_argument("--only-detect", action="store_true",
                    help="only model.detect(path) and the MDFI forward (best path), interleaved: their ratio "
                         "(implies --no-ort --no-opencv --no-ceiling --no-profile --skip-cold; --settle 0.05)")
    ap.add_argument("--numpy-float", action="store_true", help="also time MDFI's NumPy float path (slow)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the instruction ceilings")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-layer profile")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--onnx-dir", default=None, help="reuse/keep the ONNX exports here")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds of idle before each timed call (default 0.25; --only-detect: 0.05)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the calling thread's CPU time (forces --threads 1)")
    ap.add_argument("--opencv-avx2", action="store_true",
                    help="keep OpenCV to its AVX2 code paths (OPENCV_CPU_DISABLE=AVX512-SKX), as on an "
                         "AVX2-only machine")
    args = ap.parse_args(argv)
    if args.only_detect:
        if args.no_detect:
            ap.error("--only-detect and --no-detect exclude each other")
        args.no_ort = args.no_opencv = args.no_ceiling = args.no_profile = args.skip_cold = True
        args.numpy_float = False
    if args.models is None:
        args.models = "yolov3-tiny" if args.only_detect else "yolov3-tiny,yolov3"
    if args.settle is None:
        args.settle = 0.05 if args.only_detect else 0.25
    if args.opencv_avx2:
        os.environ["OPENCV_CPU_DISABLE"] = "AVX512-SKX"       # read when cv2 is first imported
    if args.cpu_time:
        args.threads = "1"
    clock = time.thread_time if args.cpu_time else time.perf_counter

    sys.path.insert(0, str(REPO))
    import mdfi
    from mdfi._ext import _conv
    from mdfi.engine import FixedEngine
    from mdfi.quant.quantize import input_to_u8

    threads = [int(t) for t in args.threads.split(",")]
    avail = _conv.available_simd_paths()
    best = _conv.simd_path()
    probe_instr = "tdpbusd" if best == "amx" else "vpdpbusd zmm"     # the ceiling of best's 8-bit layers
    paths = args.mdfi_paths.split(",") if args.mdfi_paths else \
        [best] + (["avx2"] if best != "avx2" and "avx2" in avail and not args.only_detect else [])
    for p in paths:
        if p not in avail:
            log(f"--mdfi-paths: {p} is not available on this CPU (available: {', '.join(avail)})")
            return 2
    tmp = tempfile.mkdtemp(prefix="mdfi-bench-")
    onnx_dir = args.onnx_dir or os.path.join(tmp, "onnx")
    cv2 = None
    if not args.no_opencv:
        import cv2
    print(f"# CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; MDFI kernels see: {_conv.cpu_features()}")
    print(f"# MDFI convolution paths timed: {', '.join(paths)} (best here: {best}); clock: "
          f"{'thread CPU time' if args.cpu_time else 'wall'}; load average before: {loadavg()}")
    if cv2 is not None:
        print(f"# OpenCV {cv2.__version__} ({cv2.getCPUFeaturesLine()}; '?' = disabled)")
    if not args.no_ort:
        import onnxruntime
        print(f"# ONNX Runtime {onnxruntime.__version__}")
    results = []
    detect_rows = []
    rgb = timing_rgb()
    img_path = os.path.join(tmp, "timing.jpg")
    from PIL import Image
    Image.fromarray(rgb).save(img_path, quality=95)
    nets = {}
    profiles = {}
    for name in args.models.split(","):
        log(f"[{name}] loading and quantizing ...")
        cfg, weights, net, qm = load_models(name, tmp)
        x = check_image(net)
        x_u8 = input_to_u8(x)
        blob = x[None].astype(np.float32)
        configs = []
        engines = {t: FixedEngine(qm, "c", threads=t) for t in threads}
        for p in paths:
            def mdfi_fixed(t, p=p):
                _conv.set_simd_path(p)
                engines[t].run(x_u8, keep="needed")
            configs.append((f"MDFI 8-bit C [{p}]", mdfi_fixed))
        if not args.no_ort:
            import onnx_export
            fpath = os.path.join(onnx_dir, f"{name}.float.onnx")
            qpath = os.path.join(onnx_dir, f"{name}.int8.onnx")
            if not (os.path.exists(fpath) and os.path.exists(qpath)):
                log(f"[{name}] exporting to ONNX and quantizing (int8 QDQ) ...")
                onnx_export.export(net, onnx_dir, name, check_image=x, log=log)
            sess = {(k, t): onnx_export.session(pth, t) for k, pth in (("int8", qpath), ("float", fpath))
                    for t in threads}

            def ort(t, kind):
                sess[(kind, t)].run(None, {"input": blob})
            configs.append(("ONNX Runtime int8 (QDQ u8s8)", lambda t: ort(t, "int8")))
            configs.append(("ONNX Runtime float", lambda t: ort(t, "float")))
        if cv2 is not None:
            cvnet = cv2.dnn.readNetFromDarknet(cfg, weights)
            cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            out_names = cvnet.getUnconnectedOutLayersNames()

            def opencv(t):
                cv2.setNumThreads(t)
                cvnet.setInput(blob)
                cvnet.forward(out_names)
            configs.append(("OpenCV DNN float", opencv))
        if args.numpy_float:
            from threadpoolctl import threadpool_limits

            def mdfi_float(t):
                with threadpool_limits(limits=t):
                    net.forward_float(x, keep="needed")
            configs.append(("MDFI float (NumPy)", mdfi_float))
        if not args.no_detect and name == "yolov3-tiny":
            models = {t: mdfi.load(name, threads=t) for t in threads}

            def detect(t):
                _conv.set_simd_path(paths[0])
                models[t].detect(img_path)
            configs.append((f"MDFI detect(path) [{paths[0]}]", detect))

        times = {(label, t): [] for label, _ in configs for t in threads}
        for r in range(args.warmup + args.runs):
            for label, fn in configs:
                for t in threads:
                    time.sleep(args.settle)
                    t0 = clock()
                    fn(t)
                    dt = clock() - t0
                    if r >= args.warmup:
                        times[(label, t)].append(dt)
            if r % 5 == 4:
                log(f"[{name}] round {r + 1}/{args.warmup + args.runs}")
        _conv.set_simd_path(best)
        gmac = net.macs / 1e9
        for t in threads:
            med = {label: statistics.median(times[(label, t)]) for label, _ in configs}
            ort8 = med.get("ONNX Runtime int8 (QDQ u8s8)")
            ocv = med.get("OpenCV DNN float")
            for label, _ in configs:
                ms = 1e3 * med[label]
                results.append((name, label, t, ms, 1e3 * min(times[(label, t)]), gmac / med[label],
                                med[label] / ort8 if ort8 else None, med[label] / ocv if ocv else None))
            det = f"MDFI detect(path) [{paths[0]}]"
            if det in med:
                detect_rows.append((name, t, 1e3 * med[det], 1e3 * med[f"MDFI 8-bit C [{paths[0]}]"]))
        if not args.no_profile:
            _conv.set_simd_path(best)
            probe = None
            if not args.no_ceiling:
                import bench_ceiling
                probe = bench_ceiling.Probe(probe_instr)
            log(f"[{name}] per-layer profile ...")
            profiles[name] = {t: conv_profile(qm, x_u8, t, max(5, args.runs // 2), clock, probe) for t in threads}
            nets[name] = qm.network
            if probe is not None:
                probe.close()

    print(f"\n# load average after: {loadavg()}")
    print(f"{'model':<12} {'engine':<32} {'thr':>3} {'median ms':>10} {'min ms':>8} {'GMAC/s':>7} "
          f"{'/ORT int8':>9} {'/OpenCV':>8}")
    for name, label, t, ms, mn, gs, r_ort, r_cv in results:
        fmt = lambda v: f"{v:.2f}x" if v is not None else "-"
        print(f"{name:<12} {label:<32} {t:>3} {ms:>10.2f} {mn:>8.2f} {gs:>7.1f} {fmt(r_ort):>9} {fmt(r_cv):>8}")

    # targets of issue 12 (ratios within this run)
    print("\n# targets (issue 12; ratios from this run)")

    def ratio(r, target):               # enough digits that the verdict can be read off the ratio
        return f"{r:.4f}" if abs(r - target) < 0.005 else f"{r:.2f}"

    # the ONNX Runtime target is set for CPUs with AVX512-VNNI; elsewhere the ratio is reported only
    vnni = "avx512vnni" in _conv.cpu_features().split()
    for name, label, t, ms, mn, gs, r_ort, r_cv in results:
        if label == f"MDFI 8-bit C [{paths[0]}]" and r_ort is not None:
            verdict = ("met" if r_ort <= 1.0 else "NOT met") if vnni else "set for CPUs with AVX512-VNNI; none here"
            print(f"  {name:<12} {t} thr.: MDFI [{paths[0]}] / ONNX Runtime int8 = {ratio(r_ort, 1.0)} "
                  f"(target <= 1.0: {verdict})")
        if label == "MDFI 8-bit C [avx2]" and r_cv is not None:
            print(f"  {name:<12} {t} thr.: MDFI [avx2] / OpenCV DNN float = {ratio(r_cv, 0.5)} (target <= 0.5: "
                  f"{'met' if r_cv <= 0.5 else 'NOT met'}){' (OpenCV held to AVX2)' if args.opencv_avx2 else ''}")
    for name, t, det, fwd in detect_rows:
        print(f"  {name:<12} {t} thr.: detect(path) / forward = {det:.1f} / {fwd:.1f} ms = {det / fwd:.3f} "
              f"(target <= 1.3: {'met' if det / fwd <= 1.3 else 'NOT met'})")
    if detect_rows:
        print(f"  (timing photo: {TIMING_PHOTO} {rgb.shape[1]}x{rgb.shape[0]} as a quality-95 JPEG; medians of "
              f"{args.runs} interleaved rounds; load average after: {loadavg()})")

    ceiling = None
    if not args.no_ceiling:
        import bench_ceiling
        log("instruction ceilings ...")
        text = bench_ceiling.run(args.threads, 0.3, 3)
        print("\n# instruction ceilings (benchmarks/ceiling.c)")
        print(text.rstrip())
        ceiling = bench_ceiling.parse(text)
    if profiles:
        def key_of(prefix):
            return next((k for k in (ceiling or {}) if k.startswith(prefix)), None)

        print(f"\n# per-layer convolution time inside the forward (path {best}); big = 3x3 layers of >= 150 MMAC")
        for name, per_t in profiles.items():
            net = nets[name]
            for ti, t in enumerate(threads):
                rows, rounds = per_t[t]
                big = [(i, d, mac, s) for i, d, mac, s in rows if " 3x3/" in d and mac >= 150e6]
                tot = sum(s for *_, s in rows)
                line = f"  {name} {t} thr.: conv layers {1e3 * tot:.1f} ms ({sum(m for _, _, m, _ in rows) / tot / 1e9:.0f} GMAC/s)"
                # the big layers by the instruction they ran on: AMX tiles (path amx, on_amx)
                # against the tdpbusd ceiling, the others against vpdpbusd zmm's; the probe
                # sampled probe_instr's ceiling before each round
                groups = [("", big, "vpdpbusd zmm")]
                if best == "amx":
                    groups = [(" on AMX tiles", [b for b in big if on_amx(net, b[0])], "tdpbusd"),
                              (" on the avx512vnni fallback (C < 29 or > 63 and not a multiple of 64)",
                               [b for b in big if not on_amx(net, b[0])], "vpdpbusd zmm")]
                for label, grp, instr in groups:
                    if not grp:
                        continue
                    bg = sum(m for _, _, m, _ in grp) / sum(s for *_, s in grp) / 1e9
                    line += f"\n    big 3x3 layers{label}: {bg:.0f} GMAC/s"
                    key = key_of(instr)
                    if key and ti < len(ceiling[key]):
                        wall, cpu = ceiling[key][ti]
                        ref = cpu if args.cpu_time else wall
                        line += f" = {100 * bg / ref:.0f}% of the {instr} ceiling ({ref:.0f}; target >= 60%)"
                    shares = [sum(m for _, _, m, _ in grp) / sum(tm[i] for i, *_ in grp) / 1e9
                              / (c[1] if args.cpu_time else c[0]) for c, tm in rounds if c and instr == probe_instr]
                    if shares:
                        shares.sort()
                        line += (f"\n      same-phase share (each round / the ceiling sampled right before it, "
                                 f"{len(shares)} rounds): median {100 * statistics.median(shares):.0f}% "
                                 f"(range {100 * shares[0]:.0f}-{100 * shares[-1]:.0f}%; target >= 60%)")
                print(line)
                for i, d, mac, s in rows:
                    print(f"      {i:4d} {d:32s} {1e3 * s:7.2f} ms {mac / s / 1e9:7.1f} GMAC/s")

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
    print(f"\ncold `mdfi detect image.jpg` (new process, cached model): median {statistics.median(walls):.2f} s "
          f"(min {min(walls):.2f}), peak memory (max RSS) {max(rss):.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
