"""Zero-point activations (docs/fixed-point.md 1.1, docs/quantization.md "Round 13") against the
same model without them, on the integer engine, on a strict split.

For each model: the generic quantization of a model without a recipe (per-channel weight
formats, ``mse`` activation formats, bias correction ``auto``) built twice -- without and with
``zero_points=True`` -- at the given widths, optionally with the data-driven refinements
(``--method empirical``: empirical bias correction on the calibration photos; ``adaround``:
AdaRound weights and empirical bias correction), and each evaluated against the cached
float-path detections (bench_accuracy.py's metric and caches) on every split asked for.

Statistics: yolov3-tiny and the COCO yolov4-tiny use their shipped statistics (of the ``calib``
photos); yolov4-tiny-10c (customyolov4 weights, tests only) the ``calib`` photos
(bench_grid.load_model); ``--stats sample``: every model the shipped sample photo's (what a model
without a recipe gets when no photos are given).  Selection sets: ``val``, ``val4`` (round 13),
``val5`` (round 14: fresh photos, benchmarks/person_images.py --splits val5), ``val6`` (fresh photos
again: --splits val6), ``val7`` (and again: --splits val7), ``val8`` (--splits val8), ``val9``
(--splits val9); report sets: ``test``, ``test4``.  Example::

    python benchmarks/bench_zeropoint.py --model yolov3-tiny --split val,val4,test,test4
    python benchmarks/bench_zeropoint.py --model yolov4-tiny-10c --split val,val4,test,test4 --abits 6
    python benchmarks/bench_zeropoint.py --model yolov3-tiny --split val,val4,test,test4 --method adaround
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_accuracy as ba  # noqa: E402
import bench_grid as bg  # noqa: E402

MODELS = ("yolov3-tiny", "yolov4-tiny", "yolov4-tiny-10c")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="yolov3-tiny")
    ap.add_argument("--split", default="val,val4,test,test4", metavar="SPLIT[,SPLIT...]")
    ap.add_argument("--abits", type=int, default=8)
    ap.add_argument("--wbits", type=int, default=8)
    ap.add_argument("--method", choices=("nearest", "empirical", "adaround"), default="nearest")
    ap.add_argument("--layer-wbits", default=None, metavar="I=BITS[,...]",
                    help="per-layer weight widths, e.g. 0=8 (round 15c: the first layer at 8 bits in a w4a8 model)")
    ap.add_argument("--weight-method", choices=("mse", "max"), default="mse",
                    help="per-channel weight formats: mse (the default of every model) or max (nothing clipped)")
    ap.add_argument("--only-zero-points", action="store_true", help="skip the model without zero points")
    ap.add_argument("--stats", choices=("calib", "sample"), default="calib",
                    help="activation statistics: calib = as above (a user's calibration photos); sample = the "
                         "shipped sample photo and its mirror image (recipes.sample_calibration: what a model "
                         "without a recipe gets when no photos are given)")
    ap.add_argument("--recipe-candidates", action="store_true",
                    help="zoo models: round 14's second rule -- R (the shipped recipe), Z (zero points, mse formats on "
                         "the shipped statistics with the recipe's clip budget), ZH (Z + head bias shifts measured on "
                         "the calib photos and their mirror images, at the recipe's strength)")
    ap.add_argument("--shipped-default", action="store_true",
                    help="zoo models: the 8-bit default the recipe ships since round 15 (zero points with the shipped "
                         "AdaRound rounding and bias shifts, recipes.zero_point_kwargs), beside R (--no-zero-points)")
    ap.add_argument("--candidate", default=None, metavar="FILE",
                    help="with --shipped-default: also B, the default's pipeline with this rounding file (made by "
                         "make_rounding.py, e.g. round 16's 168-input AdaRound) instead of the shipped one")
    ap.add_argument("--no-recipe", action="store_true", help="with --shipped-default: skip R")
    ap.add_argument("--heads", choices=("A", "B"), default=None,
                    help="with --shipped-default: also H, model A (the shipped default) or B (--candidate) with head "
                         "bias shifts (formats.head_shifts on the calib photos and their mirror images, times the "
                         "recipe's shift strength) added to its bias shifts (round 16b); --heads-out FILE writes "
                         "H's rounding file")
    ap.add_argument("--heads-out", default=None, metavar="FILE")
    ap.add_argument("--heads-calib-extra", default=None, metavar="DIR[,DIR]",
                    help="with --heads: measure the head shifts on these calibration folders too (round 17: "
                         "person_images.py's calib4)")
    ap.add_argument("--heads-crops", action="store_true",
                    help="with --heads: also on the four 75 %% corner crops of every calibration photo")
    ap.add_argument("--heads-split", default=None, metavar="SPLIT[,SPLIT]",
                    help="with --heads: measure the head shifts on these selection splits' images instead of the "
                         "calibration photos (round 17d: val4,val5; never test or test4, nor a split --split evaluates)")
    ap.add_argument("--heads-strength", type=float, default=None, metavar="S",
                    help="with --heads: the fraction of the measured shift applied (default: the recipe's, 0.5; "
                         "round 17: 1.0)")
    ap.add_argument("--paired-bootstrap", type=int, default=0, metavar="N",
                    help="with --shipped-default: B (or H) minus A on N resamplings of each split's photos (all "
                         "variants of a photo together): the difference's 5th-95th percentiles and how often B leads")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets")
    ap.add_argument("--person-sets", default="/tmp/mdfi-person-sets")
    ap.add_argument("--cache", default=None, help="float-path cache (default /tmp/mdfi-accuracy-cache[-MODEL])")
    ap.add_argument("--weights", default=None, help="yolov4-tiny-10c: the customyolov4 weights (default: the zoo cache)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    from mdfi.quant.quantize import quantize_network
    splits = [s for s in args.split.split(",") if s]
    bad = [s for s in splits if s not in ba.SELECTION_SPLITS + ("test", "test4")]
    if bad:
        ap.error(f"--split: unknown {', '.join(bad)}")
    # checked before any model is built (the work below takes minutes)
    if (args.candidate or args.heads or args.heads_out or args.paired_bootstrap) and not args.shipped_default:
        ap.error("--candidate, --heads, --heads-out and --paired-bootstrap go with --shipped-default")
    if args.candidate and not os.path.isfile(args.candidate):
        ap.error(f"--candidate {args.candidate}: no such file")
    if args.heads == "B" and not args.candidate:
        ap.error("--heads B needs --candidate")
    if (args.heads_calib_extra or args.heads_crops or args.heads_strength is not None or args.heads_split) \
            and not args.heads:
        ap.error("--heads-calib-extra, --heads-crops, --heads-split and --heads-strength go with --heads")
    hsplits = [h for h in (args.heads_split or "").split(",") if h]
    if any(h not in ba.SELECTION_SPLITS or h in splits for h in hsplits):
        ap.error("--heads-split: selection splits only (val, val4-val9), none of those --split evaluates")
    if hsplits and (args.heads_calib_extra or args.heads_crops):
        ap.error("--heads-split excludes --heads-calib-extra and --heads-crops")
    missing = [d for d in (args.heads_calib_extra or "").split(",") if d and not os.path.isdir(d)]
    if missing:
        ap.error(f"--heads-calib-extra: {', '.join(missing)}: not a folder")
    if args.heads_out and (not args.heads or os.path.exists(args.heads_out)):
        ap.error(f"--heads-out {args.heads_out}: " + ("needs --heads" if not args.heads else
                                                      "exists (remove it first; nothing is overwritten)"))
    network, names, calib = bg.load_model(args.model, types.SimpleNamespace(
        weights=args.weights, sets=args.sets, person_sets=args.person_sets, calib_set="calib"))
    if args.stats == "sample":
        from mdfi.quant import recipes
        calib = recipes.sample_calibration(network)
    cache = args.cache = args.cache or ("/tmp/mdfi-accuracy-cache" if args.model == "yolov3-tiny"
                                        else f"/tmp/mdfi-accuracy-cache-{args.model}")
    person = [sp for sp in ba.SELECTION_SPLITS + ("test4",) if sp != "val"]     # benchmarks/person_images.py's splits
    datas = {sp: ba.float_split(network, names, args.person_sets if sp in person else args.sets, sp, cache)
             for sp in splits}
    if args.recipe_candidates or args.shipped_default:
        if args.model not in ("yolov3-tiny", "yolov4-tiny"):
            ap.error("--recipe-candidates / --shipped-default: the zoo models yolov3-tiny and yolov4-tiny have recipes")
    if args.shipped_default:
        shipped_default(args, network, names, calib, datas)
        return 0
    if args.recipe_candidates:
        recipe_candidates(args, network, names, calib, datas)
        return 0
    kw = {}
    if args.layer_wbits:
        kw["layer_wbits"] = {int(i): int(b) for i, b in (item.split("=") for item in args.layer_wbits.split(","))}
    if args.method != "nearest":
        kw.update(bias_correction="empirical", calib_inputs=ba.calib_inputs(network, args.sets), progress=True,
                  weight_rounding="adaround" if args.method == "adaround" else "nearest")
    rows = {}
    print(f"{'model':<8} {'mAP@.5':>7} {'kept':>14} {'extra':>10} {'dconf':>9} {'bias':>8} {'lower':>6} "
          f"{'|dconf|':>7} {'size':>6} {'s':>7}")
    for tag, zp in (("plain", False), ("zp", True))[1 if args.only_zero_points else 0:]:
        t0 = time.perf_counter()
        qm = quantize_network(network, wbits=args.wbits, abits=args.abits, per_channel=True, calib=calib,
                              names=names, zero_points=zp, weight_method=args.weight_method, **kw)
        label = (f"{tag}-w{args.wbits}a{args.abits}" + ("" if args.method == "nearest" else f"-{args.method}")
                 + ("" if args.weight_method == "mse" else f"-w{args.weight_method}")
                 + ("" if args.stats == "calib" else "-sample")
                 + ("" if not args.layer_wbits else f"-lw{args.layer_wbits}"))
        ba.evaluate_model(qm, label, time.perf_counter() - t0, False, network, names, datas, rows, False)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "splits": splits, "method": args.method, "stats": args.stats, "rows": rows}, fh, indent=1)
    return 0


def shipped_default(args, network, names, calib, datas) -> None:
    """The recipe's default at --wbits/--abits (round 15) beside R, the recipe without zero
    points (--no-zero-points: its decisions at 8 bits, round-half-up weights elsewhere)."""
    from mdfi.quant import recipes
    from mdfi.quant.quantize import quantize_network
    opts = recipes.resolve(args.model, wbits=args.wbits, abits=args.abits)
    common = dict(wbits=args.wbits, abits=args.abits, per_channel=True, calib=calib, names=names,
                  weight_method=opts["weight_method"])
    rows = {}
    if not args.no_recipe:
        t0 = time.perf_counter()
        qm = quantize_network(network, act_method=opts["act_method"], **common,
                              **recipes.shipped_decisions(args.model, network, opts))
        ba.evaluate_model(qm, "R-recipe", time.perf_counter() - t0, False, network, names, datas, rows, False)
    if not recipes.default_zero_points(args.model, "shipped", opts):
        raise SystemExit(f"bench_zeropoint.py: {args.model} has no zero-point default at {recipes.width_tag(opts)}")
    t0 = time.perf_counter()
    zkw_a = recipes.zero_point_kwargs(args.model, True, opts)      # reads the shipped rounding file once
    qm = quantize_network(network, **common, **zkw_a)
    meta = recipes.shipped_rounding_meta(args.model, recipes.width_tag(opts)) or {}
    print(f"shipped default: integer digest {'matches' if recipes.integer_digest(qm) == meta.get('integer_digest') else 'DIFFERS from'} "
          f"the rounding file's", file=sys.stderr)
    kept: dict = {}
    ba.evaluate_model(qm, "A-shipped-default", time.perf_counter() - t0, False, network, names, datas, rows, False,
                      keep=kept.setdefault("A", {}))
    base = (qm, zkw_a, meta)
    if args.candidate:
        cmeta, deltas, shifts = recipes.read_rounding(args.candidate)
        if (cmeta.get("model"), cmeta.get("wbits"), cmeta.get("abits")) != (args.model, args.wbits, args.abits):
            raise SystemExit(f"{args.candidate}: made for {cmeta.get('model')} w{cmeta.get('wbits')}a{cmeta.get('abits')}, "
                             f"not {args.model} w{args.wbits}a{args.abits}")
        # everything A's rounding file set is replaced by what the candidate's sets (a candidate
        # without 16-bit layers must not inherit A's layer_abits)
        zkw = {k: v for k, v in zkw_a.items() if k not in recipes.ROUNDING_KWARGS}
        zkw.update(recipes.rounding_kwargs(cmeta, deltas, shifts))
        t0 = time.perf_counter()
        qb = quantize_network(network, **common, **zkw)
        same = recipes.integer_digest(qb) == cmeta.get("integer_digest")
        print(f"candidate: integer digest {'matches' if same else 'DIFFERS from'} {args.candidate}'s", file=sys.stderr)
        ba.evaluate_model(qb, "B-candidate", time.perf_counter() - t0, False, network, names, datas, rows, False,
                          keep=kept.setdefault("B", {}))
        if args.heads == "B":
            base = (qb, zkw, cmeta)
    if args.heads:
        with_heads(args, network, names, common, base, datas, rows, kept.setdefault("H", {}))
    if args.paired_bootstrap:
        from bench_accuracy_v4tiny import paired_bootstrap
        for other in [k for k in ("B", "H") if k in kept]:
            for sp, data in datas.items():
                pb = paired_bootstrap(data, kept["A"][sp], kept[other][sp], args.paired_bootstrap)
                rows[f"{other}-A paired {sp}"] = pb
                m, k, b = pb["map"], pb["kept_minus_extra"], pb["abs_bias_reduction"]
                print(f"{other} - A on {sp} ({pb['photos']} photos, {pb['n']} resamplings): agreement {m['diff']:+.4f} "
                      f"[{m['p5']:+.4f}, {m['p95']:+.4f}] {other} ahead {100 * m['b_ahead']:.0f} %; kept - extra "
                      f"{k['diff']:+d} [{k['p5']:+.0f}, {k['p95']:+.0f}] {other} ahead {100 * k['b_ahead']:.0f} %; "
                      f"|bias| A - {other} {b['diff']:+.4f} [{b['p5']:+.4f}, {b['p95']:+.4f}] {other} lower "
                      f"{100 * b['b_ahead']:.0f} %")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "splits": list(datas), "shipped_default": True,
                       "candidate": args.candidate, "rows": rows}, fh, indent=1)


def with_heads(args, network, names, common, base, datas, rows, keep=None) -> None:
    """Round 16b's H: ``base`` (a quantized model, its quantize_network keywords, its rounding
    file's meta) with the head bias shifts of rounds 2-14 measured on it added to its bias shifts."""
    import numpy as np
    from mdfi.quant import formats, recipes
    from mdfi.quant.quantize import quantize_network
    qb, zkw, bmeta = base
    options = json.loads(recipes._decisions_resource(args.model).read_text())["configs"][0].get("options") or {}
    strength = (args.heads_strength if args.heads_strength is not None
                else options.get("shift_strength", formats.HEAD_SHIFT_STRENGTH))
    extra = [d for d in (args.heads_calib_extra or "").split(",") if d]
    hsplits = [h for h in (args.heads_split or "").split(",") if h]
    t0 = time.perf_counter()
    if hsplits:
        inputs = [d[1].tensor for h in hsplits for d in ba.float_split(
            network, names, args.sets if h == "val" else args.person_sets, h, args.cache)]
    else:
        inputs = ba.calib_inputs(network, args.sets, args.heads_crops, extra)
    objective = formats.HeadObjective(network, inputs)
    shifts = formats.head_shifts(qb, objective)
    kw = dict(zkw)
    kw["bias_shifts"] = {i: np.asarray(v, np.float64).copy() for i, v in zkw["bias_shifts"].items()}
    for i, v in shifts.items():
        kw["bias_shifts"][i] = kw["bias_shifts"].get(i, 0.0) + strength * v
    qh = quantize_network(network, **common, **kw)
    print(f"H: head shifts x {strength} on {objective.n_cells} object cells: "
          + ", ".join(f"{i}: obj {strength * v[4]:+.4f} cls {strength * v[5]:+.4f}" for i, v in shifts.items()),
          file=sys.stderr)
    ba.evaluate_model(qh, f"H-{args.heads}-heads", time.perf_counter() - t0, False, network, names, datas, rows,
                      False, keep=keep)
    if args.heads_out:
        refinements = {i: {"weight_delta": d, "bias_shift": kw["bias_shifts"][i]} for i, d in kw["weight_deltas"].items()}
        where = ("the calib photos" + "".join(f", {os.path.basename(d)}" for d in extra)
                 + (", their mirror images and four corner crops" if args.heads_crops else " and their mirror images"))
        if hsplits:
            where = "the selection splits " + " and ".join(hsplits)
        opts = ((f" --heads-split {','.join(hsplits)}" if hsplits else "")
                + (f" --heads-calib-extra {','.join(extra)}" if extra else "")
                + (" --heads-crops" if args.heads_crops else "")
                + (f" --heads-strength {args.heads_strength}" if args.heads_strength is not None else ""))
        meta = dict(bmeta, method=bmeta.get("method", "") + f"; head bias shifts x {strength} on {where} "
                    f"({objective.n_cells} object cells; {'round 17' if opts else 'round 16b'})",
                    integer_digest=recipes.integer_digest(qh),
                    command=bmeta.get("command", "") + f"; python benchmarks/bench_zeropoint.py --model {args.model} "
                    f"--shipped-default --heads {args.heads}{opts} --heads-out FILE")
        meta.pop("format", None)
        recipes.write_rounding(args.heads_out, refinements, meta)
        print(f"{args.heads_out}: written", file=sys.stderr)


def recipe_candidates(args, network, names, calib, datas) -> None:
    """Round 14's second rule: R, Z and ZH of a zoo model (docs/quantization.md "Round 14")."""
    from mdfi.quant import formats, recipes
    from mdfi.quant.quantize import quantize_network
    opts = recipes.resolve(args.model)
    dec = recipes.shipped_decisions(args.model, network, opts)
    options = json.loads(recipes._decisions_resource(args.model).read_text())["configs"][0].get("options", {})
    clip = options.get("clip_budget")
    strength = options.get("shift_strength", formats.HEAD_SHIFT_STRENGTH)
    common = dict(wbits=8, abits=8, per_channel=True, calib=calib, names=names, weight_method=opts["weight_method"])
    rows = {}
    t0 = time.perf_counter()
    qm = quantize_network(network, act_method=opts["act_method"], **common, **dec)
    ba.evaluate_model(qm, "R-recipe", time.perf_counter() - t0, False, network, names, datas, rows, False)
    t0 = time.perf_counter()
    zkw = dict(zero_points=True, act_method="mse", **({"act_options": {"clip_budget": clip}} if clip else {}))
    qz = quantize_network(network, **common, **zkw)
    ba.evaluate_model(qz, "Z-zp", time.perf_counter() - t0, False, network, names, datas, rows, False)
    t0 = time.perf_counter()
    objective = formats.HeadObjective(network, ba.calib_inputs(network, args.sets))
    shifts = formats.head_shifts(qz, objective)
    # as a shipped recipe applies them (quantize_network(bias_shifts=...), recipes.shipped_decisions)
    qz = quantize_network(network, **common, **zkw, bias_shifts={i: strength * v for i, v in shifts.items()})
    print(f"ZH: head shifts x {strength} on {objective.n_cells} object cells: "
          + ", ".join(f"{i}: obj {strength * v[4]:+.4f} cls {strength * v[5]:+.4f}" for i, v in shifts.items()),
          file=sys.stderr)
    ba.evaluate_model(qz, "ZH-zp-heads", time.perf_counter() - t0, False, network, names, datas, rows, False)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "splits": list(datas), "recipe_candidates": True, "clip_budget": clip,
                       "shift_strength": strength, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
