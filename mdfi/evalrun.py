"""``mdfi eval``: fixed point against the float path over a folder of images."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Tuple



def run_eval(args: argparse.Namespace) -> Tuple[dict, str]:
    from . import calibrate, evaluate, recipes
    from .cli import parse_bits_list
    from .engine import FixedEngine
    from .image import load_image
    from .model import DEFAULT_ENGINE, FloatEngine, Model, _float_network
    from .quantize import quantize_network, saturation_report

    configs = parse_bits_list(args.bits)
    network, names, label, spec_name, _ = _float_network(args.model, args.cfg, args.weights, args.names, True,
                                                         getattr(args, "darknet", None))
    gt_thresh = getattr(args, "thresh", 0.25)
    paths = calibrate.list_images(args.images)
    if args.calib:
        calib, calib_src = calibrate.collect_from_dir(network, args.calib, progress=True), args.calib
    else:
        calib = recipes.shipped_calibration(spec_name)
        calib_src = "shipped statistics" if calib is not None else None
        if calib is None:
            calib = calibrate.estimate_from_batchnorm(network)
            calib_src = "batch-norm estimate (no calibration images)"
            print("note: no calibration statistics: activation formats estimated from batch norm", file=sys.stderr)
    engine = args.engine or DEFAULT_ENGINE
    with open(network.path, "r", encoding="utf-8") as fh:
        cfg_text = fh.read()

    # Decode every image once; the float path once.
    float_model = Model(network, names, FloatEngine(network), name=label)
    prepared, float_dets = [], []
    prog = evaluate.Progress(len(paths), "float path")
    for p in paths:
        prep = float_model.prepare(load_image(p))
        prepared.append(prep)
        float_dets.append(float_model.detect(prep, thresh=gt_thresh))
        prog.step(os.path.basename(p))
    prog.done()

    labels = None
    if args.labels:
        if os.path.isdir(args.labels) or args.labels.lower().endswith(".xml"):
            gt = evaluate.load_voc_xml(args.labels, names)
        else:
            gt = evaluate.load_coco_json(args.labels, names)
        labels = evaluate.align_labels(paths, gt)

    results: Dict[str, object] = {}
    sizes: Dict[str, int] = {}
    plain: Dict[str, object] = {}
    sat: Dict[str, dict] = {}
    want_stats = getattr(args, "stats", True)
    for wbits, abits in configs:
        tag = f"w{wbits}a{abits}"
        opts = recipes.resolve(spec_name, wbits=wbits, abits=abits, per_channel=args.per_channel,
                               rounding=args.rounding, act_method=args.method)
        # The recipe's shipped decisions apply when the formats come from its statistics.
        extra = {} if (args.calib or args.method) else recipes.shipped_decisions(spec_name, network, opts)
        qm = quantize_network(network, wbits=wbits, abits=abits, per_channel=opts["per_channel"],
                              rounding=opts["rounding"], calib=calib, act_method=opts["act_method"],
                              weight_method=opts["weight_method"], cfg_text=cfg_text, names=names, **extra)
        sizes[tag] = qm.param_bytes()
        # Saturation counts come from the NumPy reference (bit-identical to the C engine), so
        # with statistics on the reference runs the fixed-point path itself.
        fixed = Model(network, names, FixedEngine(qm, engine), name=label)
        fixed_dets: List = []
        stats: Dict[int, dict] = {}
        prog = evaluate.Progress(len(paths), f"fixed point {tag}")
        for p, prep in zip(paths, prepared):
            fixed_dets.append(fixed.detect(prep, thresh=0.005, stats=stats if want_stats else None))
            prog.step(os.path.basename(p))
        prog.done()
        results[tag] = evaluate.agreement(float_dets, fixed_dets)
        if want_stats:
            sat[tag] = {"per_layer": {str(i): v for i, v in sorted(stats.items()) if v},
                        "table": saturation_report(qm, stats, only_nonzero=True)}
        if labels is not None:
            plain[tag] = evaluate.evaluate_map([[d for d in ds] for ds in fixed_dets], labels)
    if labels is not None:
        plain["float"] = evaluate.evaluate_map(float_dets, labels)

    head = (f"{label} ({network.darknet} Darknet): {len(paths)} images from {args.images}; float detections "
            f">= {gt_thresh:g} as ground truth; formats from {calib_src}; "
            f"weights {'per channel' if opts['per_channel'] else 'per layer'}, "
            f"{opts['act_method'] or 'auto (mse for images, max for a batch-norm estimate)'} activations, "
            f"{opts['rounding']} rounding, {engine} engine")
    text = head + "\n" + evaluate.format_agreement_table(results)
    for tag, d in sat.items():
        text += f"\n\nsaturated outputs per layer, {tag} (layers with none omitted):\n{d['table']}"
    if plain:
        text += "\n\nmAP@0.5 against the labels:\n" + "\n".join(
            f"  {k:<8} {'n/a' if v.map is None else f'{v.map:.4f}'}" for k, v in plain.items())
    report = {"model": label, "darknet": network.darknet, "gt_thresh": gt_thresh, "images": len(paths),
              "calibration": calib_src,
              "options": {k: v for k, v in opts.items() if k not in ("wbits", "abits")}, "engine": engine,
              "agreement": evaluate.to_json_dict(results)}
    float_bytes = 4 * network.num_params()
    report["param_bytes"] = sizes
    report["size_vs_float"] = {k: v / float_bytes for k, v in sizes.items()}
    text += "\nparameters vs float32: " + ", ".join(f"{k} {100 * v / float_bytes:.1f}%" for k, v in sizes.items())
    if getattr(args, "plot", None):
        from .evalplot import write_plot
        write_plot(args.plot, results, report["size_vs_float"], title=f"{label}: {len(paths)} images")
        text += f"\nwrote {args.plot}"
    if plain:
        report["map50_labels"] = evaluate.to_json_dict(plain)
    if sat:
        report["saturation"] = {k: v["per_layer"] for k, v in sat.items()}
    return report, text

