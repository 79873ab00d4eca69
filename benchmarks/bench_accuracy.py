"""Accuracy of MDFI's fixed point against the float path: the bit-width sweep on a strict split.

    pip install ".[bench]"; pip install --no-deps ultralytics imgaug     # photo sources
    python benchmarks/bench_accuracy.py                      # the table of docs/quantization.md
    python benchmarks/bench_accuracy.py --split val          # the method-selection photos
    python benchmarks/bench_accuracy.py --method old         # before the bias fixes
    python benchmarks/bench_accuracy.py --make-decisions mdfi/data/yolov3-tiny.decisions.json \
        --layer-abits 0=16,10=16,14=16,21=16          # also the entry of the wide-activation variant
    python benchmarks/bench_accuracy.py --model yolov4-tiny --make-decisions mdfi/data/yolov4-tiny.decisions.json \
        --decision-options search=0,clip_budget=0.03,shift_strength=1    # the COCO yolov4-tiny recipe's
    python benchmarks/bench_accuracy.py --configs w8a8 --layer-abits 0=16,10=16,14=16,21=16
    python benchmarks/bench_accuracy.py --method adaround --configs w4a8 --layer-wbits 0=8
    python benchmarks/bench_accuracy.py --method brecq --configs w4a8 --layer-wbits 0=8 --brecq iters=300,p_drop=0.5
    python benchmarks/bench_accuracy.py --method gptq --align max --configs w4a8 --layer-wbits 0=8
    python benchmarks/bench_accuracy.py --method nearest-data --act-equalize --configs w6a6 --layer-wbits 0=8
    python benchmarks/bench_accuracy.py --method gptq --configs w4a8 --layer-wbits 0=8 --search-cache \
        --calib-extra DIR/calib4 --calib-crops --split val,val4 --model-dir M   # 168 calibration inputs
    python benchmarks/bench_accuracy.py ...the same... --split test               # the chosen model, once
    python benchmarks/bench_accuracy.py ...the same... --gain-correction gain      # round 6: gain correction

Photos: benchmarks/accuracy_images.py writes the three disjoint sets (calib / val / test,
see its docstring and docs/quantization.md).  Reported numbers are on ``test`` (held out:
never used to calibrate or to choose anything) unless ``--split val`` (or ``val,test``: each
model built once, evaluated on both).  ``val4`` (person_images.py, ``--person-sets``) is a
second selection set (people photos), ``test4`` (the same script, ``--splits test4``) a second
held-out set, reported like ``test``; ``--calib-extra DIR`` (its ``calib4``) adds calibration
photos to the data-driven methods.  ``--make-decisions``
derives the recipe's shipped decisions (formats searched by their effect on the heads,
head bias shifts) from the ``calib`` photos only; ``--model yolov4-tiny`` (with
``--make-decisions`` only) makes those of the official COCO yolov4-tiny, ``--calib-stats``
takes statistics not yet shipped, ``--decision-options`` the settings of
``mdfi.quant.formats.choose_decisions`` (search, clip budget, shift strength).

Metric (as ``mdfi eval``): float detections with confidence >= 0.25 are the ground truth,
fixed-point detections down to 0.005 ranked by confidence, all-point AP per class averaged
over the classes present (agreement mAP@0.5); kept/extra at 0.25; *bias* = mean confidence
change (fixed - float) over every float detection found at >= 0.005, *lower* = the fraction
of those whose confidence went down.  Float detections are cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CONFIGS = ["w16a16", "w8a8", "w8a16", "w7a7", "w6a8", "w6a6", "w5a8", "w4a8"]


def float_split(network, names, sets: str, split: str, cache: str):
    """[(name, Prepared, float detections)] of a split, cached on disk."""
    from mdfi.quant import calibrate
    from mdfi.image import load_image
    from mdfi.model import FloatEngine, Model
    path = os.path.join(cache, f"float-{split}.pkl")
    paths = calibrate.list_images(os.path.join(sets, split))
    if os.path.exists(path):
        with open(path, "rb") as fh:
            data = pickle.load(fh)
        if [d[0] for d in data] == [os.path.basename(p) for p in paths]:
            return data
    fm = Model(network, names, FloatEngine(network))
    data = []
    for n, p in enumerate(paths, 1):
        prep = fm.prepare(load_image(p))
        data.append((os.path.basename(p), prep, fm.detect(prep, thresh=0.25)))
        print(f"float path {split}: {n}/{len(paths)}", file=sys.stderr, flush=True)
    os.makedirs(cache, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return data


SELECTION_SPLITS = ("val", "val4", "val5", "val6", "val7", "val8", "val9")    # val4-val9: person_images.py's folder


def _selection_splits(text: str):
    import argparse
    splits = text.split(",")
    if any(sp not in SELECTION_SPLITS for sp in splits):
        raise argparse.ArgumentTypeError(f"selection splits only: {', '.join(SELECTION_SPLITS)} "
                                         "(test and test4 are never used to choose)")
    return splits


def selection_parser(description: str):
    """The argument parser of the diagnostics that read only the selection photos: model
    files, ``--split`` (selection splits: val, val4-val9; never test or test4), and where
    the photos and caches are."""
    import argparse
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("models", nargs="+", metavar="MODEL.mdfi")
    ap.add_argument("--split", type=_selection_splits, default="val,val4",
                    help="selection splits, comma-separated: val, val4-val9; never test or test4")
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"))
    return ap


def selection_tensors(args, network, names):
    """(splits, input tensors) of the selection photos named by ``args.split`` (checked by
    :func:`selection_parser`)."""
    splits, xs = args.split, []
    for sp in splits:
        data = float_split(network, names, args.sets if sp == "val" else args.person_sets, sp, args.cache)
        xs += [d[1].tensor for d in data]
    return splits, xs


VARIANTS = ("orig", "flip", "tl", "tr", "bl", "br")   # accuracy_images.variants: file name suffixes


def keep_variants(data, text):
    """The images of a split whose variant (``NAME_TAG.png``) is in ``text`` (comma-separated
    tags of accuracy_images.variants, or ``crops`` for the four corner crops); all when None.
    A reporting breakdown only: nothing may be chosen on a subset of ``test`` either."""
    if not text:
        return data
    tags = set()
    for t in text.split(","):
        tags.update(VARIANTS[2:] if t == "crops" else [t])
    bad = tags - set(VARIANTS)
    if bad:
        raise SystemExit(f"--variants: unknown {sorted(bad)} (known: {', '.join(VARIANTS)}, crops)")
    return [d for d in data if os.path.splitext(d[0])[0].rsplit("_", 1)[-1] in tags]


def calib_inputs(network, sets: str, crops: bool = False, extra=()):
    """Inputs of the calibration photos and their mirror images, as the model's Darknet makes
    them (letterboxed for yolov3-tiny; ``crops``: also the four 75 % corner crops of
    accuracy_images.variants, six inputs per photo).  ``extra``: more calibration folders
    (e.g. person_images.py's ``calib4``), each photo treated the same."""
    from mdfi.preprocess import image_to_input
    import accuracy_images
    return [image_to_input(v, network.width, network.height, getattr(network, "letter_box", True))
            for v in accuracy_images.calibration_photos([os.path.join(sets, "calib"), *extra], crops)]


#: --decision-options keys (mdfi.quant.formats.choose_decisions arguments) and their parsers.
DECISION_OPTIONS = {"search": lambda v: {"1": True, "0": False, "true": True, "false": False}[v.lower()],
                    "clip_budget": float, "shift_strength": float}


def decision_options(text):
    """'search=0,clip_budget=0.03,shift_strength=1' -> choose_decisions keyword arguments."""
    out = {}
    for item in [t for t in (text or "").split(",") if t]:
        k, sep, v = item.partition("=")
        if not sep or k not in DECISION_OPTIONS:
            raise ValueError(f"--decision-options: KEY=VALUE with KEY in {', '.join(DECISION_OPTIONS)}, not {item!r}")
        try:
            out[k] = DECISION_OPTIONS[k](v)
        except (KeyError, ValueError):
            raise ValueError(f"--decision-options: bad value in {item!r}") from None
    return out


def adaround_settings(text):
    """``iters=1000,reg=0.1,mode=pre`` -> dict for ``quantize_network(adaround=...)``."""
    out = {}
    for part in (text or "").split(","):
        if not part:
            continue
        k, _, v = part.partition("=")
        if k == "mode":
            out[k] = v
        elif k == "beta":
            out[k] = [float(b) for b in v.split(":")]
        else:
            out[k] = int(v) if k in ("iters", "batch", "seed", "crop", "convs", "eval_crops") else float(v)
    return out


def model_key(args, tag, extra_dirs, wide) -> str:
    """Everything that makes a benchmark model what it is (for --model-dir).  Options added
    later enter the key only when given, so the models saved before them keep their keys."""
    later = {"gain_correction": args.gain_correction} if args.gain_correction else {}
    if args.method == "brecq":
        later["brecq"] = adaround_settings(args.brecq)
    return json.dumps({**later, "tag": tag, "method": args.method, "layer_abits": args.layer_abits, "align": args.align,
                       "align_direction": args.align_direction, "act_equalize": args.act_equalize,
                       "calib_extra": [os.path.abspath(d) for d in extra_dirs], "calib_crops": args.calib_crops,
                       "adaround": adaround_settings(args.adaround) if args.method == "adaround" else None,
                       "search_cache": args.search_cache, "sets": os.path.abspath(args.sets), "wide": bool(wide)},
                      sort_keys=True)


_OBJECTIVES = {}


def refine_heads(qm, network, xs, strength: float, thresh: float):
    """``qm`` with ``strength`` times the mean head-logit error that remains at the object cells
    (float objectness > ``thresh``) of the calibration inputs ``xs`` added to the head
    convolutions' biases (:func:`mdfi.quant.formats.head_shifts` on the built model)."""
    import numpy as np
    from mdfi.quant.formats import HeadObjective, head_shifts
    from mdfi.quant.quantize import shift_biases
    if id(xs) not in _OBJECTIVES:
        _OBJECTIVES[id(xs)] = HeadObjective(network, xs)
    obj = _OBJECTIVES[id(xs)]
    cells = obj.cells
    obj.cells = [[tuple(t[m] for t in p) for p, m in ((p, 1.0 / (1.0 + np.exp(-p[4])) > thresh) for p in per)]
                 for per in cells]
    try:
        sh = head_shifts(qm, obj)
    finally:
        obj.cells = cells
    for s, v in sh.items():
        print(f"head refine: layer {s}: objectness {strength * v[4]:+.3f}, classes {strength * v[5]:+.3f}",
              file=sys.stderr)
        qm.layers[s] = shift_biases(qm.layers[s], strength * v)
    return qm


def build_model(args, network, names, calib, xs, w, a, wide, lw, opts):
    """(QuantizedModel, decisions used) of one width pair and ``args.method``.  The data-driven
    methods round and correct on ``xs``; their format search runs on the calib photos and their
    mirror images only (or comes from ``--search-cache``, which is keyed by that)."""
    from mdfi.quant.quantize import quantize_network
    from mdfi.quant import recipes
    if args.method in ("gptq", "adaround", "brecq", "nearest-data"):
        from mdfi.quant.formats import choose_decisions
        final = dict(weight_rounding=args.method if args.method != "nearest-data" else "nearest",
                     bias_correction="empirical", calib_inputs=xs)
        if args.method == "adaround":
            final["adaround"] = adaround_settings(args.adaround)
        if args.method == "brecq":
            final["brecq"] = adaround_settings(args.brecq)
        if args.gain_correction:
            final["gain_correction"] = args.gain_correction
        al = None
        if args.align:
            from mdfi.quant.align import prepare
            al = prepare(network, args.align, direction=args.align_direction, wbits=w, layer_wbits=lw, abits=a,
                         layer_abits=wide, per_channel=opts["per_channel"], inputs=xs, progress=True)
        skey = f"{w}/{a}/{sorted(lw.items())}" + (f"/align={args.align}/{args.align_direction}" if al else "")
        if args.act_equalize is not None:      # its search runs on all the calibration inputs, keyed by them
            from mdfi.quant import actequal
            al = actequal.prepare(network, args.act_equalize, wbits=w, layer_wbits=lw, abits=a, layer_abits=wide,
                                  per_channel=opts["per_channel"], inputs=xs, progress=True)
            skey += f"/actequal={al.settings.label()}" + ("/crops" if args.calib_crops else "") \
                + "".join(f"/+{os.path.abspath(d)}" for d in (args.calib_extra or "").split(",") if d)
        spath = os.path.join(args.cache, "searched-formats.json")
        known = {}
        if args.search_cache and os.path.exists(spath):
            with open(spath) as fh:
                known = json.load(fh)
        searched = {int(k): v for k, v in known[skey].items()} if skey in known else None
        base_only = (not args.calib_crops and not args.calib_extra) or args.act_equalize is not None
        if searched is None and not base_only:      # the search on the calib photos and mirrors alone
            searched = choose_decisions(network, calib, calib_inputs(network, args.sets), wbits=w, abits=a,
                                        per_channel=opts["per_channel"], layer_wbits=lw, align=al)["act_fracs"]
            searched = {int(k): v for k, v in searched.items()}
        d, qm = choose_decisions(network, calib, xs, wbits=w, abits=a, per_channel=opts["per_channel"],
                                 final=final, with_model=True, layer_abits=wide, layer_wbits=lw,
                                 searched=searched, align=al)
        if args.search_cache and skey not in known and (not wide or not base_only):
            known[skey] = d["act_fracs"] if base_only else {str(k): v for k, v in searched.items()}
            os.makedirs(args.cache, exist_ok=True)
            with open(spath, "w") as fh:
                json.dump(known, fh)
        return qm, {args.method: True}
    extra = recipes.shipped_decisions("yolov3-tiny", network, opts, layer_abits=wide, calib=calib) \
        if args.method == "recipe" else {}
    if wide and args.method == "recipe" and not extra:
        print(f"w{w}a{a}: no shipped decisions for these widths", file=sys.stderr)
    if lw and args.method == "recipe":
        raise SystemExit("--layer-wbits: no shipped decisions for per-layer weight widths (use --method "
                         "gptq, adaround, nearest-data or old)")
    kw = dict(extra)
    kw.setdefault("layer_abits", wide)
    kw["layer_wbits"] = lw
    qm = quantize_network(network, wbits=w, abits=a, per_channel=opts["per_channel"], calib=calib,
                          act_method=opts["act_method"], weight_method=opts["weight_method"], names=names,
                          unify_routes=args.method == "recipe", **kw)
    return qm, extra


def photo_bootstrap(data, dets, n: int, key: str) -> float:
    """The agreement's SD over ``n`` resamplings of the photos (bench_accuracy_v4tiny.bootstrap_sd),
    printed on stderr."""
    from bench_accuracy_v4tiny import bootstrap_sd
    sd = bootstrap_sd(data, dets, n)
    print(f"  {key}: agreement mAP over {n} resamplings of the photos: sd {sd:.4f}", file=sys.stderr, flush=True)
    return sd


def evaluate_model(qm, tag, tq, extra, network, names, datas, rows, single: bool, bootstrap: int = 0,
                   keep: Optional[dict] = None) -> None:
    """Print and record (in ``rows``) the agreement of ``qm`` with the float detections on each
    split of ``datas`` (and on the pooled ``val+val4`` when both are there); ``bootstrap``: also
    the spread of the agreement over that many resamplings of each split's photos; ``keep``: a
    dict that receives the fixed-point detections per split (for paired comparisons)."""
    from mdfi.engine import FixedEngine
    from mdfi.eval import evaluate
    from mdfi.model import Model
    from mdfi.scale import imagejobs
    pooled = "val" in datas and "val4" in datas
    float_bytes = 4 * network.num_params()
    fixed = Model(network, names, FixedEngine(qm, "c"))
    size = qm.param_bytes() / float_bytes
    allf, alld = [], []
    for sp, data in list(datas.items()) + ([("val+val4", None)] if pooled else []):
        if data is None:        # the two selection sets pooled: one AP over all their detections
            fl, dets = allf, alld
        else:
            # as mdfi eval: the most confident MAX_EVAL_DETECTIONS per image (w2a2 finds tens of thousands)
            fl = [d[2] for d in data]
            dets = [imagejobs.top_detections(fixed.detect(d[1], thresh=0.005))[0] for d in data]
            if keep is not None:
                keep[sp] = dets
            if sp in ("val", "val4"):
                allf, alld = allf + fl, alld + dets
        r = evaluate.agreement(fl, dets)
        key = tag if single else f"{tag} {sp}"
        rows[key] = dict(evaluate.to_json_dict(r), size_vs_float=size, quantize_seconds=tq,
                         decisions=bool(extra), model=qm.describe(), split=sp)
        if bootstrap and data is not None:
            rows[key]["bootstrap_sd"] = photo_bootstrap(data, dets, bootstrap, key)
        f = lambda v, s, k=1.0: "n/a" if v is None else format(k * v, s)   # noqa: E731
        print(f"{key:<8} {f(r.map, '.4f'):>7} {r.matched:>4}/{r.n_float} {f(r.kept_fraction, '.1f', 100):>5}% "
              f"{r.extra:>3} {f(r.extra_fraction, '.1f', 100):>4}% {f(r.mean_dconf, '+.4f'):>9} "
              f"{f(r.mean_dconf_ranked, '+.4f'):>8} {f(r.down_fraction_ranked, '.0f', 100):>5}% "
              f"{f(r.mean_abs_dconf, '.4f'):>7} {100 * size:>5.1f}% {tq:>7.1f}{' *' if extra else ''}",
              flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"),
                    help="where the photo sets are (built by accuracy_images.py if absent)")
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"), help="float-path cache")
    ap.add_argument("--split", default="test", metavar="SPLIT[,SPLIT...]",
                    help="test (default), val, val4 (person_images.py's people photos, selection only), test4 "
                         "(person_images.py's second held-out set, report only) or several joined by commas "
                         "(val,val4,test): each model built once and evaluated on each; with val and val4 also "
                         "their pooled row val+val4")
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"),
                    help="where person_images.py's val4 (and calib4) are (built there if val4 is asked for and "
                         "absent)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--variants", default=None, metavar="TAG,...",
                    help="report only these variants of each photo (orig, flip, tl, tr, bl, br, or crops): "
                         "a breakdown of the same split, not a different one")
    ap.add_argument("--method", default="recipe", choices=("recipe", "old", "gptq", "adaround", "brecq", "nearest-data"),
                    help="recipe: the shipped recipe (routes unified, shipped decisions); old: before the bias "
                         "fixes; gptq / adaround: decisions, GPTQ / AdaRound weights and empirical bias correction "
                         "made now from the calib photos (minutes per width); nearest-data: the same with "
                         "round-to-nearest weights (the peer of gptq and adaround)")
    ap.add_argument("--brecq", default=None, metavar="KEY=VALUE,...",
                    help="--method brecq: block reconstruction settings (mdfi.quant.brecq.BrecqSettings), "
                         "e.g. iters=300,p_drop=0.5,convs=2")
    ap.add_argument("--adaround", default=None, metavar="KEY=VALUE,...",
                    help="AdaRound settings (mdfi.quant.adaround.AdaRoundSettings), e.g. iters=1000,reg=0.1,mode=pre")
    ap.add_argument("--search-cache", action="store_true",
                    help="reuse the activation formats searched for the same widths by an earlier data-driven "
                         "run (stored in --cache; the search uses nearest weights, so it is the same for "
                         "gptq, adaround and nearest-data)")
    ap.add_argument("--make-decisions", metavar="OUT.json", help="derive the recipe decisions from the calib photos")
    ap.add_argument("--decision-configs", default="w8a8")
    ap.add_argument("--model", default="yolov3-tiny", choices=("yolov3-tiny", "yolov4-tiny"),
                    help="the zoo model (yolov4-tiny, the official COCO model: with --make-decisions only)")
    ap.add_argument("--calib-stats", default=None, metavar="FILE",
                    help="--make-decisions: statistics written by `mdfi calibrate` instead of the model's shipped "
                         "ones (to make the decisions of a recipe before its statistics are shipped)")
    ap.add_argument("--decision-options", default=None, metavar="KEY=VALUE,...",
                    help="--make-decisions: choose_decisions settings search=0|1, clip_budget=PCT, "
                         "shift_strength=S (default: formats searched, no clip budget, half shifts)")
    ap.add_argument("--layer-abits", default=None, metavar="I=BITS,...",
                    help="wider activations at these layers' outputs (e.g. 0=16,10=16,14=16,21=16); with "
                         "--make-decisions: also write the decisions entry of that variant")
    ap.add_argument("--layer-wbits", default=None, metavar="I=BITS,...",
                    help="per-layer weight widths (e.g. 0=8: the first layer's 432 weights at 8 bits); "
                         "--method gptq, adaround, nearest-data and old only")
    ap.add_argument("--calib-crops", action="store_true",
                    help="data-driven methods: the calib photos' four corner crops as well (66 inputs instead of "
                         "22) for the weight rounding, the empirical bias and the head shifts (not for the format "
                         "search, which --search-cache may reuse)")
    ap.add_argument("--calib-extra", default=None, metavar="DIR[,DIR...]",
                    help="data-driven methods: more calibration photo folders besides "
                         "SETS/calib, e.g. person_images.py's calib4, each photo with its mirror image (and its "
                         "corner crops with --calib-crops) for the weight rounding, the empirical bias and the "
                         "head shifts; the format search stays on the calib photos and their mirror images")
    ap.add_argument("--model-dir", default=None, metavar="DIR",
                    help="save every model built here (a .mdfi named by the method, widths and calibration "
                         "options) and load it instead of building it again when it is there, e.g. to evaluate "
                         "on test, once, the model chosen on val/val4")
    ap.add_argument("--gain-correction", choices=("asym", "gain"), default=None,
                    help="gptq/nearest-data: round towards the float network's output from the quantized inputs "
                         "(asym: least-squares weights, GPTAQ; gain: per-channel slope, re-round w/g)")
    ap.add_argument("--head-refine", default=None, metavar="S[@T]",
                    help="data-driven methods: after building (or loading) each model, measure again the mean "
                         "error of the objectness and best-class logits at the calibration inputs' object cells "
                         "(float objectness > T, default 0.1) and add S times it to the head convolutions' "
                         "biases (a second head shift, e.g. 1@0.25: all of the remaining error where the "
                         "detections are)")
    ap.add_argument("--align", choices=("max", "mse", "output"), default=None,
                    help="data-driven methods: mantissa alignment (mdfi.quant.align) of the float network first, "
                         "recalibrated on the calib photos; the format search then runs on the aligned network")
    ap.add_argument("--align-direction", choices=("fit", "keep", "nearest", "down"), default="fit")
    ap.add_argument("--act-equalize", nargs="?", const="", default=None, metavar="KEY=VALUE,...",
                    help="data-driven methods: activation-range equalization (mdfi.quant.actequal) of the float "
                         "network first (settings of ActEqualSettings, e.g. bound=mse,headroom=2,max_scale=8; none: "
                         "the defaults), recalibrated on the calib photos; the format search runs on the result")
    ap.add_argument("--models", default=None, metavar="FILE.mdfi[,...]",
                    help="evaluate these quantized models (e.g. written by `mdfi quantize`) instead of building "
                         "--configs; each row is named by its file")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="also the spread of the agreement mAP over N resamplings of the photos (a photo's "
                         "variants together)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)

    from mdfi.quant import recipes
    from mdfi.fixedpoint import parse_bits_list
    from mdfi.model import _float_network
    import accuracy_images
    from mdfi.cli.common import layer_bits_arg
    splits = args.split.split(",")
    if not splits or any(sp not in ("val", "val4", "test", "test4") for sp in splits) or len(set(splits)) != len(splits):
        ap.error(f"--split: val, val4, test, test4 or several of them joined by commas, not {args.split!r}")
    extra_dirs = [d for d in (args.calib_extra or "").split(",") if d]
    for d in extra_dirs:
        if not os.path.isdir(d):
            ap.error(f"--calib-extra: {d}: not a folder")
    if (extra_dirs or args.calib_crops) and (args.method not in ("gptq", "adaround", "brecq", "nearest-data")
                                             or args.make_decisions):
        ap.error("--calib-extra / --calib-crops: with --method gptq, adaround, brecq or nearest-data only")
    if args.brecq and args.method != "brecq":
        ap.error("--brecq: with --method brecq only")
    if args.gain_correction and args.method not in ("gptq", "nearest-data"):
        ap.error("--gain-correction: with --method gptq or nearest-data only")
    refine = None
    if args.head_refine:
        if args.method not in ("gptq", "adaround", "brecq", "nearest-data"):
            ap.error("--head-refine: with --method gptq, adaround, brecq or nearest-data only")
        st, _, th = args.head_refine.partition("@")
        try:
            refine = (float(st), float(th) if th else 0.1)
        except ValueError:
            ap.error(f"--head-refine: S[@T] (numbers), not {args.head_refine!r}")
    wide = layer_bits_arg(args.layer_abits) if args.layer_abits else {}
    lw = layer_bits_arg(args.layer_wbits) if args.layer_wbits else {}
    model_files = [m for m in (args.models or "").split(",") if m]
    for m in model_files:
        if not os.path.isfile(m):
            ap.error(f"--models: {m}: no such file")

    if args.model != "yolov3-tiny" and not args.make_decisions:
        ap.error(f"--model {args.model}: with --make-decisions only (benchmarks/bench_accuracy_v4tiny.py --coco "
                 f"evaluates it)")
    if (args.calib_stats or args.decision_options) and not args.make_decisions:
        ap.error("--calib-stats / --decision-options: with --make-decisions only")
    try:
        dopts = decision_options(args.decision_options)
    except ValueError as exc:
        ap.error(str(exc))
    if args.calib_stats and not os.path.isfile(args.calib_stats):
        ap.error(f"--calib-stats: {args.calib_stats}: no such file")
    if not os.path.isdir(os.path.join(args.sets, "test")):
        accuracy_images.main([args.sets])
    network, names, *_ = _float_network(args.model, None, None, None, True)
    if args.calib_stats:
        from mdfi.quant import calibrate
        calib = calibrate.CalibStats.from_json(args.calib_stats)
    else:
        calib = recipes.shipped_calibration(args.model)
        if calib is None:
            ap.error(f"{args.model} has no shipped calibration statistics: give --calib-stats FILE")

    if args.make_decisions:
        from mdfi.quant.formats import choose_decisions
        xs = calib_inputs(network, args.sets)
        print(f"{args.model}: decisions from {len(xs)} calibration inputs", file=sys.stderr, flush=True)
        configs = []
        for w, a in parse_bits_list(args.decision_configs):
            t0 = time.perf_counter()
            d = choose_decisions(network, calib, xs, wbits=w, abits=a, per_channel=True, **dopts)
            d["seconds"] = round(time.perf_counter() - t0)
            configs.append(d)
            if wide:                # the searched formats are reused; wide formats and head shifts new
                t0 = time.perf_counter()
                d2 = choose_decisions(network, calib, xs, wbits=w, abits=a, per_channel=True, layer_abits=wide,
                                      searched=d["act_fracs"], **dopts)
                d2["seconds"] = round(time.perf_counter() - t0)
                configs.append(d2)
        doc = {"format": "mdfi-recipe-decisions", "version": 1, "model": args.model,
               "source": "benchmarks/bench_accuracy.py --make-decisions: calib photos of "
                         "benchmarks/accuracy_images.py and their mirror images", "configs": configs}
        with open(args.make_decisions, "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")
        print(f"wrote {args.make_decisions}", file=sys.stderr)
        return 0

    import person_images
    for sp in splits:
        person_images.ensure_split(sp, args.person_sets)
    datas = {sp: keep_variants(float_split(network, names, person_images.split_dir(sp, args.sets, args.person_sets),
                                           sp, args.cache), args.variants)
             for sp in splits}
    rows = {}
    xs = None
    if args.method in ("gptq", "adaround", "brecq", "nearest-data"):
        xs = calib_inputs(network, args.sets, crops=args.calib_crops, extra=extra_dirs)
    for sp, data in datas.items():
        print(f"yolov3-tiny on the {sp} photos: {len(data)} images, "
              f"{sum(len(d[2]) for d in data)} float detections at 0.25; method {args.method}"
              + (f", {len(xs)} calibration inputs (calib{''.join(' + ' + os.path.basename(os.path.normpath(d)) for d in extra_dirs)}"
                 f"{', mirrors and crops' if args.calib_crops else ', mirrors'})" if xs is not None else ""))
    print(f"{'config':<8} {'mAP@.5':>7} {'kept':>12} {'extra':>10} {'dconf@.25':>9} {'bias':>8} {'lower':>6} "
          f"{'|dconf|':>7} {'size':>6} {'quant s':>7}")
    for path in model_files:
        from mdfi.quant import modelfile
        qm = modelfile.load(path)
        if [(l.kind, l.out_shape) for l in qm.network.layers] != [(l.kind, l.out_shape) for l in network.layers]:
            raise SystemExit(f"--models: {path} is not a yolov3-tiny model")
        evaluate_model(qm, os.path.basename(path), 0.0, {}, network, names, datas, rows, len(splits) == 1,
                       args.bootstrap)
    for w, a in ([] if model_files else parse_bits_list(args.configs)):
        tag = f"w{w}a{a}" + ("+" if wide else "") + ("".join(f"/w{b}@{i}" for i, b in sorted(lw.items())))
        if args.align:
            tag += f"/al-{args.align}-{args.align_direction}"
        if args.act_equalize is not None:
            tag += "/ae"
        if args.gain_correction:
            tag += f"/gc-{args.gain_correction}"
        opts = recipes.resolve("yolov3-tiny", wbits=w, abits=a)
        if (args.align or args.act_equalize is not None) and args.method not in ("gptq", "adaround", "brecq", "nearest-data"):
            raise SystemExit("--align, --act-equalize: with --method gptq, adaround, brecq or nearest-data only")
        if args.align and args.act_equalize is not None:
            raise SystemExit("give --align or --act-equalize, not both")
        mkey = model_key(args, tag, extra_dirs, wide)
        mpath = None
        if args.model_dir:
            import hashlib
            mpath = os.path.join(args.model_dir, args.method + "-" + tag.replace("/", "_").replace("+", "p") + "-"
                                 + hashlib.sha256(mkey.encode()).hexdigest()[:10] + ".mdfi")
        t0 = time.perf_counter()
        if mpath and os.path.exists(mpath) and os.path.exists(mpath + ".json"):
            from mdfi.quant import modelfile
            qm = modelfile.load(mpath)
            with open(mpath + ".json") as fh:
                side = json.load(fh)
            if side.get("key") != mkey:
                raise SystemExit(f"{mpath}: built with other options ({side.get('key')!r})")
            tq = side["quantize_seconds"]
            extra = {args.method: True} if args.method != "recipe" or side.get("decisions") else {}
            print(f"{tag}: loaded {mpath} (built in {tq:.0f} s)", file=sys.stderr)
        else:
            qm, extra = build_model(args, network, names, calib, xs, w, a, wide, lw, opts)
            tq = time.perf_counter() - t0
            if mpath:
                from mdfi.quant import modelfile
                os.makedirs(args.model_dir, exist_ok=True)
                modelfile.save(qm, mpath, model_name="yolov3-tiny")
                with open(mpath + ".json", "w") as fh:
                    json.dump({"key": mkey, "quantize_seconds": tq, "decisions": bool(extra)}, fh)
        if refine:
            qm = refine_heads(qm, network, xs, *refine)
            tag += f"/hr{refine[0]:g}@{refine[1]:g}"
        evaluate_model(qm, tag, tq, extra, network, names, datas, rows, len(splits) == 1, args.bootstrap)
    print("size: parameters at their declared widths vs float32; * = shipped decisions used"
          + (f"; + = activations of layers {args.layer_abits} wider" if wide else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"split": args.split, "method": args.method, "align": args.align,
                       "align_direction": args.align_direction, "act_equalize": args.act_equalize,
                       "adaround": adaround_settings(args.adaround),
                       "images": {sp: len(d) for sp, d in datas.items()}, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
