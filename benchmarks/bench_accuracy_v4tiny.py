"""8-bit accuracy of yolov4-tiny (AlexeyAB lineage, real 10-class weights) on the strict split.

    pip install ".[bench]"; pip install --no-deps ultralytics imgaug     # photo sources
    python benchmarks/bench_accuracy_v4tiny.py                 # the yolov4-tiny table of docs/quantization.md
    python benchmarks/bench_accuracy_v4tiny.py --split val     # the method-selection photos
    python benchmarks/bench_accuracy_v4tiny.py --configs default,recipe

Model: ``tests/fixtures/darknet-alexeyab/yolov4-tiny-10c/yolov4-tiny-10c.cfg`` (AlexeyAB's
``yolov4-tiny.cfg`` with 10 classes) and the trained weights of the PyPI sdist
``customyolov4==2`` (fetched into the MDFI cache on first use, never committed; ``--weights``
takes a local copy).  Photos: ``benchmarks/accuracy_images.py`` (calib / val / test, see
docs/quantization.md); reported numbers are on ``test`` unless ``--split val``.

Configurations (all per-channel weights, routes unified, statistics of the ``calib`` photos
without mirror images as ``mdfi eval --calib`` gathers them):

* ``default``: what ``mdfi eval --calib`` does (``mse`` formats with the 0.01 % clip budget);
* ``recipe``: the decisions chosen for this model on ``val``
  (:func:`mdfi.quant.formats.choose_decisions` with ``search=False, clip_budget=0.03,
  shift_strength=1.0``): formats may clip 0.03 % of the calibration values, and the head
  convolutions' objectness and class biases cancel the mean logit error measured at the
  object cells of the ``calib`` photos and their mirror images;
* ``clip``, ``shift``: each half of the recipe alone; ``search``: the yolov3-tiny recipe
  (formats searched by their effect on the heads, half shifts), rejected on ``val``;
* ``w16a16``, ``w8a16``, ``w16a8``, ``w10a10``: plain widths, ``default`` formats.

Metric as ``mdfi eval`` / ``benchmarks/bench_accuracy.py``.  Progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "darknet-alexeyab", "yolov4-tiny-10c")
SPEC = dict(
    name="yolov4-tiny-10c-test", cfg="yolov4-tiny-10c.cfg", names="classes.names",
    weights="yolov4-tiny-10c-customyolov4.weights", size=23_604_476,
    sha256="5477837f58f5de4499e94269a6c54f40fb703b8458a50820505b5add6f4f19d7",
    pypi="customyolov4==2", pypi_member="customyolov4-2/yolov4/weights/yolov4-tiny-final.weights",
    pypi_sha256="e8dc3faa6aff77d92cdff71b1fe93526bc60d82125fe257a1213dfb9bf5fc6cf")
CONFIGS = ["w16a16", "w8a16", "default", "clip", "shift", "recipe"]
#: The decisions chosen on ``val`` (docs/quantization.md, yolov4-tiny).
RECIPE = dict(search=False, clip_budget=0.03, shift_strength=1.0)
VARIANTS = {"recipe": RECIPE, "clip": dict(RECIPE, shift_strength=0.0),
            "shift": dict(RECIPE, clip_budget=None), "search": {}}


def calib_inputs(network, sets: str):
    """Network inputs (as the model's Darknet makes them) of the calibration photos and their
    mirror images."""
    import numpy as np
    from mdfi.quant import calibrate
    from mdfi.image import load_image
    from mdfi.preprocess import network_input
    xs = []
    for p in calibrate.list_images(os.path.join(sets, "calib")):
        rgb = load_image(p)
        for v in (rgb, rgb[:, ::-1]):
            xs.append(network_input(np.ascontiguousarray(v), network))
    return xs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"),
                    help="where the photo sets are (built by accuracy_images.py if absent)")
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache", "yolov4-tiny-10c"),
                    help="float-path cache (one folder per model)")
    ap.add_argument("--weights", help="yolov4-tiny-final.weights of customyolov4==2 (default: fetched into the cache)")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)
    configs = args.configs.split(",")
    known = set(CONFIGS) | set(VARIANTS) | {"w16a8", "w10a10"}
    bad = [c for c in configs if c not in known]
    if bad:
        ap.error(f"unknown configs {bad} (known: {', '.join(sorted(known))})")

    from mdfi.quant import calibrate
    from mdfi.eval import evaluate
    from mdfi import zoo
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    from mdfi.darknet.network import Network
    from mdfi.quant.formats import choose_decisions, decisions_to_kwargs
    from mdfi.quant.quantize import quantize_network
    from mdfi.darknet.weights import load_weights
    import accuracy_images
    from bench_accuracy import float_split

    if not os.path.isdir(os.path.join(args.sets, "test")):
        accuracy_images.main([args.sets])
    weights = args.weights or str(zoo.weights_path(zoo.ModelSpec(**SPEC)))
    network = Network.from_cfg(os.path.join(FIXTURE, SPEC["cfg"]), warn=False)
    load_weights(network, weights)
    names = zoo.load_names(os.path.join(FIXTURE, SPEC["names"]))
    calib = calibrate.collect(network, calibrate.list_images(os.path.join(args.sets, "calib")))
    data = float_split(network, names, args.sets, args.split, args.cache)
    float_dets = [d[2] for d in data]
    float_bytes = 4 * network.num_params()
    xs = None
    rows = {}
    print(f"yolov4-tiny-10c ({network.darknet}) on the {args.split} photos: {len(data)} images, "
          f"{sum(len(x) for x in float_dets)} float detections at 0.25")
    print(f"{'config':<8} {'mAP@.5':>7} {'kept':>12} {'extra':>10} {'dconf@.25':>9} {'bias':>8} {'lower':>6} "
          f"{'|dconf|':>7} {'size':>6} {'quant s':>7}")
    for tag in configs:
        t0 = time.perf_counter()
        w, a = (8, 8) if tag in VARIANTS or tag == "default" else map(int, tag[1:].split("a"))
        extra, dec = {}, None
        if tag in VARIANTS:
            if xs is None:
                xs = calib_inputs(network, args.sets)
            dec = choose_decisions(network, calib, xs, wbits=w, abits=a, per_channel=True, **VARIANTS[tag])
            extra = decisions_to_kwargs(network, dec)
        qm = quantize_network(network, wbits=w, abits=a, per_channel=True, calib=calib, names=names, **extra)
        tq = time.perf_counter() - t0
        fixed = Model(network, names, FixedEngine(qm, "c"))
        dets = [fixed.detect(d[1], thresh=0.005) for d in data]
        r = evaluate.agreement(float_dets, dets)
        size = qm.param_bytes() / float_bytes
        rows[tag] = dict(evaluate.to_json_dict(r), size_vs_float=size, quantize_seconds=tq, decisions=dec)
        f = lambda v, s, k=1.0: "n/a" if v is None else format(k * v, s)   # noqa: E731
        print(f"{tag:<8} {f(r.map, '.4f'):>7} {r.matched:>4}/{r.n_float} {f(r.kept_fraction, '.1f', 100):>5}% "
              f"{r.extra:>3} {f(r.extra_fraction, '.1f', 100):>4}% {f(r.mean_dconf, '+.4f'):>9} "
              f"{f(r.mean_dconf_ranked, '+.4f'):>8} {f(r.down_fraction_ranked, '.0f', 100):>5}% "
              f"{f(r.mean_abs_dconf, '.4f'):>7} {100 * size:>5.1f}% {tq:>7.1f}", flush=True)
    print("size: parameters at their declared widths vs float32")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": "yolov4-tiny-10c", "split": args.split, "images": len(data), "rows": rows},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
