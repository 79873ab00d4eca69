"""``mdfi eval``: fixed point against the float path over a folder or list of images.

The images are streamed through :mod:`mdfi.pipeline` (this process, local worker processes
or a Dask cluster; the job is :func:`mdfi.imagejobs.eval_infer`): each result -- the float
detections and, per width, the fixed-point detections and saturation counts of one image --
is appended to a JSON-lines results file as it arrives (``--results FILE`` keeps it and
makes the run resumable; otherwise a temporary file is used).  The report is computed from
that file at the end, one width at a time, with the metrics of :mod:`mdfi.evaluate`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple


class _Det:
    """A detection read back from the results file (what :mod:`mdfi.evaluate` reads)."""

    __slots__ = ("class_id", "label", "confidence", "box")

    def __init__(self, row: Sequence[float], names: Sequence[str]):
        self.class_id = int(row[0])
        self.label = names[self.class_id] if 0 <= self.class_id < len(names) else str(self.class_id)
        self.confidence = float(row[1])
        self.box = (float(row[2]), float(row[3]), float(row[4]), float(row[5]))


def scale_options(args: argparse.Namespace) -> dict:
    """workers / cluster / ship of the eval, calibrate and golden subcommands."""
    from .pipeline import JobError
    cluster = getattr(args, "cluster", None) or os.environ.get("MDFI_DASK_SCHEDULER", "").strip() or None
    ship = bool(getattr(args, "ship_images", False))
    if ship and not cluster:
        raise JobError("--ship-images sends image bytes to Dask workers; it needs --cluster")
    if cluster:
        from .cluster import _distributed, check_address, probe
        cluster = check_address(cluster)
        if cluster != "local" and getattr(args, "workers", None):
            print("note: --workers sets the size of a --cluster local; an existing cluster has its own "
                  "workers", file=sys.stderr)
        _distributed()                     # installed?
        probe(cluster)                     # reachable?  (before any model is loaded)
    return {"workers": getattr(args, "workers", None), "cluster": cluster, "ship": ship}


def run_eval(args: argparse.Namespace) -> Tuple[dict, str]:
    from . import calibrate, evaluate, imagejobs, modelfile, pipeline, recipes
    from .cli import parse_bits_list
    from .model import DEFAULT_ENGINE, _float_network
    from .quantize import quantize_network

    configs = parse_bits_list(args.bits)
    scale = scale_options(args)
    network, names, label, spec_name, weights_file = _float_network(args.model, args.cfg, args.weights,
                                                                    args.names, True)
    inputs = imagejobs.list_inputs(args.images)
    labels = None
    if args.labels:                   # before any heavy work: a missing label is an error
        if os.path.isdir(args.labels) or args.labels.lower().endswith(".xml"):
            gt = evaluate.load_voc_xml(args.labels, names)
        else:
            gt = evaluate.load_coco_json(args.labels, names)
        labels = dict(zip([k for k, _ in inputs], evaluate.align_labels([p for _, p in inputs], gt)))
    if args.calib:
        calib = imagejobs.calibrate_images(network, weights_file, args.calib, workers=scale["workers"],
                                           cluster=scale["cluster"], ship=scale["ship"])
        calib_src = args.calib
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

    shared = imagejobs.float_shared(network, weights_file)
    tags: List[str] = []
    opts: dict = {}
    for wbits, abits in configs:
        tag = f"w{wbits}a{abits}"
        if tag in tags:
            continue
        opts = recipes.resolve(spec_name, wbits=wbits, abits=abits, per_channel=args.per_channel,
                               rounding=args.rounding, act_method=args.method)
        qm = quantize_network(network, wbits=wbits, abits=abits, per_channel=opts["per_channel"],
                              rounding=opts["rounding"], calib=calib, act_method=opts["act_method"],
                              weight_method=opts["weight_method"], cfg_text=cfg_text, names=names)
        shared[tag] = modelfile.dumps(qm, model_name=label)
        tags.append(tag)
    del qm
    want_stats = getattr(args, "stats", True)
    job = pipeline.Job(
        name="eval", setup="mdfi.imagejobs:eval_setup", prepare="mdfi.imagejobs:eval_prepare",
        infer="mdfi.imagejobs:eval_infer", batch=4, shared=shared,
        params={"cfg_name": os.path.basename(network.path), "label": label, "names": list(names),
                "configs": tags, "engine": engine, "stats": bool(want_stats), "gt_thresh": 0.25,
                "min_thresh": 0.005, "nms": 0.45, "net": [network.width, network.height, network.channels]})
    job = pipeline.pack_job(job)            # from here on only the packed bytes are kept
    digest = job.digest
    del network, shared

    tmpdir = None
    path = args.results
    if not path:
        tmpdir = tempfile.mkdtemp(prefix="mdfi-eval-")
        path = os.path.join(tmpdir, "results.jsonl")
    try:
        journal = pipeline.ResultsFile(path, {"job": "eval", "digest": digest})
        keys = [k for k, _ in inputs]
        prog = pipeline.RateProgress(len(inputs), "eval")
        prog.skipped = len(journal.done & set(keys))
        try:
            pipeline.execute(job, imagejobs.make_items(inputs, skip=journal.done, ship=scale["ship"]),
                             lambda key, text: journal.write(text), workers=scale["workers"],
                             cluster=scale["cluster"], progress=prog)
        finally:
            journal.close()
        prog.done()
        return _report(journal, keys, tags, names, labels, job, want_stats, {
            "label": label, "images": args.images, "calib_src": calib_src, "opts": opts, "engine": engine,
            "results": args.results})
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _report(journal, keys: List[str], tags: List[str], names: Sequence[str], labels: Optional[dict],
            job, want_stats: bool, info: dict) -> Tuple[dict, str]:
    """The agreement report from the results file, one width at a time."""
    from . import evaluate, imagejobs, modelfile
    from .quantize import saturation_report

    wanted = set(keys)
    floats: Dict[str, list] = {}
    errors: Dict[str, str] = {}
    for rec in journal.records():
        k = rec["image"]
        if k not in wanted:
            continue
        if "error" in rec:
            errors[k] = rec["error"]
        else:
            floats[k] = [_Det(r, names) for r in rec["float"]]
    order = [k for k in keys if k in floats]
    float_dets = [floats.pop(k) for k in order]
    gt = [labels[k] for k in order] if labels is not None else None
    results: Dict[str, object] = {}
    plain: Dict[str, object] = {}
    sat: Dict[str, dict] = {}
    for tag in tags:
        fixed: Dict[str, list] = {}
        stats: Dict[int, dict] = {}
        for rec in journal.records():
            if rec["image"] not in wanted or "error" in rec:
                continue
            fixed[rec["image"]] = [_Det(r, names) for r in rec["fixed"][tag]]
            for i, s, n in rec.get("saturation", {}).get(tag, []):
                st = stats.setdefault(int(i), {"saturated": 0, "total": 0})
                st["saturated"] += s
                st["total"] += n
        fixed_dets = [fixed.pop(k) for k in order]
        results[tag] = evaluate.agreement(float_dets, fixed_dets)
        if want_stats:
            qm = modelfile.loads(job.shared(tag), f"{info['label']}-{tag}.mdfi")
            sat[tag] = {"per_layer": {str(i): v for i, v in sorted(stats.items()) if v},
                        "table": saturation_report(qm, stats, only_nonzero=True)}
            del qm
        if gt is not None:
            plain[tag] = evaluate.evaluate_map(fixed_dets, gt)
    if gt is not None:
        plain["float"] = evaluate.evaluate_map(float_dets, gt)

    opts = info["opts"]
    head = (f"{info['label']}: {len(order)} images from {info['images']}; formats from {info['calib_src']}; "
            f"weights {'per channel' if opts['per_channel'] else 'per layer'}, "
            f"{opts['act_method'] or 'auto (mse for images, max for a batch-norm estimate)'} activations, "
            f"{opts['rounding']} rounding, {info['engine']} engine")
    text = head + "\n" + evaluate.format_agreement_table(results)
    for tag, d in sat.items():
        text += f"\n\nsaturated outputs per layer, {tag} (layers with none omitted):\n{d['table']}"
    if plain:
        text += "\n\nmAP@0.5 against the labels:\n" + "\n".join(
            f"  {k:<8} {'n/a' if v.map is None else f'{v.map:.4f}'}" for k, v in plain.items())
    err_list = [{"image": k, "error": errors[k]} for k in keys if k in errors]
    if err_list:
        imagejobs.report_errors([(e["image"], e["error"]) for e in err_list], "eval")
        text += (f"\n\n{len(err_list)} image(s) could not be used and are not counted "
                 f"(first: {err_list[0]['image']}: {err_list[0]['error']})")
    report = {"model": info["label"], "images": len(order), "calibration": info["calib_src"],
              "options": {k: v for k, v in opts.items() if k not in ("wbits", "abits")}, "engine": info["engine"],
              "agreement": evaluate.to_json_dict(results)}
    if plain:
        report["map50_labels"] = evaluate.to_json_dict(plain)
    if sat:
        report["saturation"] = {k: v["per_layer"] for k, v in sat.items()}
    if err_list:
        report["errors"] = err_list
    if info.get("results"):
        report["results"] = info["results"]
    if not order:
        from .errors import MDFIError
        raise MDFIError(f"{info['images']}: no image could be evaluated (first error: "
                        f"{err_list[0]['image']}: {err_list[0]['error']})" if err_list else
                        f"{info['images']}: no image was evaluated")
    return report, text
