"""``mdfi eval``: fixed point against the float path over a folder or list of images.

The images are streamed through :mod:`mdfi.scale.pipeline` (this process, local worker processes
or a Dask cluster; the job is :func:`mdfi.scale.imagejobs.eval_infer`): each result -- the float
detections and, per width, the fixed-point detections and saturation counts of one image --
is appended to a JSON-lines results file as it arrives (``--results FILE`` keeps it and
makes the run resumable; otherwise a temporary file is used).  The report is computed from
that file at the end, one width at a time, with the metrics of :mod:`mdfi.eval.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple


class _Det:
    """A detection read back from the results file (what :mod:`mdfi.eval.evaluate` reads)."""

    __slots__ = ("class_id", "label", "confidence", "box")

    def __init__(self, row: Sequence[float], names: Sequence[str]):
        self.class_id = int(row[0])
        self.label = names[self.class_id] if 0 <= self.class_id < len(names) else str(self.class_id)
        self.confidence = float(row[1])
        self.box = (float(row[2]), float(row[3]), float(row[4]), float(row[5]))


def scale_options(args: argparse.Namespace) -> dict:
    """workers / cluster / ship of the eval, calibrate and golden subcommands."""
    from ..scale.pipeline import JobError
    cluster = getattr(args, "cluster", None) or os.environ.get("MDFI_DASK_SCHEDULER", "").strip() or None
    ship = bool(getattr(args, "ship_images", False))
    if ship and not cluster:
        raise JobError("--ship-images sends image bytes to Dask workers; it needs --cluster")
    if cluster:
        from ..scale.cluster import _distributed, check_address, probe
        cluster = check_address(cluster)
        if cluster != "local" and getattr(args, "workers", None):
            print("note: --workers sets the size of a --cluster local; an existing cluster has its own "
                  "workers", file=sys.stderr)
        _distributed()                     # installed?
        probe(cluster)                     # reachable?  (before any model is loaded)
    return {"workers": getattr(args, "workers", None), "cluster": cluster, "ship": ship}


def run_eval(args: argparse.Namespace) -> Tuple[dict, str]:
    from ..quant import calibrate, modelfile, recipes
    from . import evaluate
    from ..scale import imagejobs
    from ..fixedpoint import parse_bits_list
    from ..model import DEFAULT_ENGINE, _float_network
    from ..quant.quantize import quantize_network

    configs = parse_bits_list(args.bits)
    if getattr(args, "zero_points", None) and args.method not in (None, "mse"):
        from ..errors import MDFIError
        raise MDFIError(f"--zero-points chooses formats by the mse criterion, not --method {args.method}")
    scale = scale_options(args)
    network, names, label, spec_name, weights_file = _float_network(args.model, args.cfg, args.weights,
                                                                    args.names, True, getattr(args, "darknet", None))
    gt_thresh = getattr(args, "thresh", 0.25)
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
    elif getattr(args, "bn_estimate", False):
        calib = calibrate.estimate_from_batchnorm(network)
        calib_src = "batch-norm estimate (--bn-estimate)"
    else:
        shipped = recipes.has_shipped_calibration(spec_name)
        calib, _ = recipes.default_calibration(
            spec_name, network, None if shipped else lambda text: print(f"note: {text}", file=sys.stderr, flush=True))
        calib_src = ("shipped statistics" if shipped else
                     "batch-norm estimate (no calibration images)" if calib.method == "batchnorm-estimate" else
                     f"shipped sample photo mdfi/data/{recipes.SAMPLE_PHOTO} and its mirror image")
    engine = args.engine or DEFAULT_ENGINE
    with open(network.path, "r", encoding="utf-8") as fh:
        cfg_text = fh.read()
    models: Dict[str, bytes] = {}
    sizes: Dict[str, int] = {}
    opts: dict = {}
    zero_tags = []                         # the configs quantized with zero points
    rounded_tags = []                      # ... and with the recipe's shipped rounding (round 15)
    dw_tags = []                           # the configs whose depthwise inputs were equalized (round 29)
    eb_tags = []                           # the configs with the empirical bias correction (rounds 30-32)
    source = recipes.statistics_source(spec_name, photos=bool(args.calib),
                                       bn_estimate=calib.method == "batchnorm-estimate")
    for wbits, abits in configs:
        tag = f"w{wbits}a{abits}"
        if tag in models:
            continue
        opts = recipes.resolve(spec_name, wbits=wbits, abits=abits, per_channel=args.per_channel,
                               rounding=args.rounding, act_method=args.method)
        # The recipe's shipped decisions apply when the formats come from its statistics.
        zp = getattr(args, "zero_points", None)
        if zp is None:                  # the default: docs/quantization.md rounds 14-15
            zp = recipes.default_zero_points(spec_name, source, opts) and args.method in (None, "mse")
        if zp:
            extra = recipes.zero_point_kwargs(spec_name, source == "shipped", opts)
            opts = dict(opts, act_method=extra["act_method"])
            zero_tags.append(tag)
            if "weight_deltas" in extra:
                rounded_tags.append(tag)
        elif args.calib or args.method or getattr(args, "bn_estimate", False):
            extra = {"act_method": opts["act_method"]}
        else:
            extra = recipes.shipped_decisions(spec_name, network, opts)
            extra["act_method"] = opts["act_method"]
        qkw = dict(wbits=wbits, abits=abits, per_channel=opts["per_channel"], rounding=opts["rounding"],
                   calib=calib, weight_method=opts["weight_method"], cfg_text=cfg_text, names=names, **extra)
        qkw = recipes.with_sample_mixed_widths(spec_name, network, opts, qkw)   # round 24: w4a8 / w6a8
        dw = getattr(args, "dw_equalize", None)
        if dw is None:                  # round 29c
            dw = recipes.default_dw_equalize(spec_name, source, opts, zp)
        images = calibrate.list_images(args.calib) if args.calib else None
        qkw.update(recipes.dw_equalize_kwargs(network, dw, images))
        eb = getattr(args, "empirical_bias", None)
        if eb is None:                  # rounds 30-32
            eb = recipes.default_empirical_bias(spec_name, source, opts, zp, recipes.rgb_depthwise(network))
        qkw.update(recipes.photo_bias_inputs(network, eb, images))
        qkw.update(recipes.empirical_bias_kwargs(network, eb, qkw, images, what="--empirical-bias",
                                                 shipped=source == "shipped"))
        qm = quantize_network(network, **qkw)
        if "dw_equalize" in qm.options:
            dw_tags.append(tag)
        if eb:
            eb_tags.append(tag)
        sizes[tag] = qm.param_bytes()
        models[tag] = modelfile.dumps(qm, model_name=label)
        del qm
    cfg_file, darknet, float_bytes = network.path, network.darknet, 4 * network.num_params()
    del network                            # the workers build their own from the bytes
    run = evaluate_models(cfg_file, weights_file, models, inputs, names=names, label=label, labels=labels,
                          stats=getattr(args, "stats", True), engine=engine, results=args.results,
                          darknet=darknet, gt_thresh=gt_thresh, **scale)
    return _report(run, {"label": label, "images": args.images, "calib_src": calib_src, "opts": opts,
                         "engine": engine, "results": args.results, "darknet": darknet, "gt_thresh": gt_thresh,
                         "sizes": sizes, "float_bytes": float_bytes, "plot": getattr(args, "plot", None),
                         "zero_points": zero_tags, "shipped_rounding": rounded_tags, "dw_equalize": dw_tags,
                         "empirical_bias": eb_tags})


@dataclass
class EvalRun:
    """What :func:`evaluate_models` measured.  ``agreement[tag]``: an
    :class:`mdfi.eval.evaluate.AgreementResult` against the float path; ``map50[tag]`` (and
    ``map50["float"]``) against the labels when given; ``saturation[tag]``: ``{layer:
    {"saturated", "total"}}`` summed over the images; ``errors``: ``[(key, message)]`` of the
    images that could not be used (not counted); ``keys``: the images counted, in order."""

    agreement: Dict[str, object]
    map50: Dict[str, object]
    saturation: Dict[str, Dict[int, dict]]
    errors: List[Tuple[str, str]]
    keys: List[str]
    models: Dict[str, bytes]
    #: per tag, the milliseconds of each image's fixed-point ``detect`` on its letterboxed input
    #: (forward, heads, NMS); ``machines``: where they were timed (CPU, engine, SIMD path, threads)
    times: Dict[str, List[float]] = field(default_factory=dict)
    machines: List[dict] = field(default_factory=list)


#: Images whose times :func:`evaluate_models` keeps for the median (memory stays bounded).
MAX_TIMED = 10000


def evaluate_models(cfg_file, weights_file, models: Mapping[str, object], images, *,
                    names: Optional[Sequence[str]] = None, label: str = "", labels: Optional[dict] = None,
                    stats: bool = False, engine: str = "c", workers: Optional[int] = None,
                    cluster: Optional[str] = None, ship: bool = False, results: Optional[str] = None,
                    darknet: Optional[str] = None, gt_thresh: float = 0.25, progress: bool = True) -> EvalRun:
    """Fixed-point models against the float path over many images, on every core or a cluster.

    ``models``: ``{tag: QuantizedModel or .mdfi bytes}`` -- widths of a sweep, or the
    candidates of a search (per-layer widths, rounding modes...): every image is decoded and
    run through the float network (``cfg_file`` and ``weights_file``, sent to the workers as
    bytes) once, then through every model; each worker holds all of them.  ``images``: a folder, a list
    file or ``[(key, path)]`` (:func:`mdfi.scale.imagejobs.list_inputs`).  ``labels``: ``{key:
    [GroundTruth]}`` for plain mAP@0.5.  ``stats``: saturation counts (NumPy reference path,
    slower; same integers).  ``results``: keep the per-image results there (resumable);
    otherwise a temporary file is used.  ``darknet``: the float path's lineage (default: as
    detected from the cfg); ``gt_thresh``: the float detections kept as the reference.
    Memory does not grow with the number of images.
    """
    from ..scale import imagejobs, pipeline
    from ..quant import modelfile
    from ..darknet.cfgfile import parse_cfg_text
    from ..darknet.network import Network
    inputs = imagejobs.list_inputs(images) if isinstance(images, (str, os.PathLike)) else list(images)
    if names is None:
        from .. import zoo
        names = zoo.load_names(zoo.names_path(zoo.DEFAULT_MODEL))
    names = list(names)
    shared = {"cfg": imagejobs.read_file(cfg_file, "cfg"), "weights": imagejobs.read_file(weights_file, "weights")}
    network = Network(parse_cfg_text(shared["cfg"].decode("utf-8"), os.fspath(cfg_file)), os.fspath(cfg_file),
                      warn=False, darknet=darknet)      # shapes and lineage only, no weights
    for tag, m in models.items():
        shared[tag] = m if isinstance(m, (bytes, bytearray)) else modelfile.dumps(m, model_name=label or None)
    job = pipeline.Job(
        name="eval", setup="mdfi.scale.imagejobs:eval_setup", prepare="mdfi.scale.imagejobs:eval_prepare",
        infer="mdfi.scale.imagejobs:eval_infer", batch=4, shared=shared,
        params={"label": label, "names": names,
                "configs": list(models), "engine": engine, "stats": bool(stats), "gt_thresh": float(gt_thresh),
                "min_thresh": 0.005, "nms": 0.45, **imagejobs.net_params(network)})
    job = pipeline.pack_job(job)            # from here on only the packed bytes are kept
    del shared
    tmpdir = None
    path = results
    if not path:
        tmpdir = tempfile.mkdtemp(prefix="mdfi-eval-")
        path = os.path.join(tmpdir, "results.jsonl")
    try:
        journal = pipeline.ResultsFile(path, {"job": "eval", "digest": job.digest,
                                              "images": imagejobs.images_identity(inputs)})
        keys = [k for k, _ in inputs]
        prog = pipeline.RateProgress(len(inputs), "eval", enabled=progress)
        prog.skipped = len(journal.done & set(keys))
        times: Dict[str, List[float]] = {}
        machines: List[dict] = []

        def keep(key, text: str) -> None:
            # the times stay out of the results file, whose bytes do not depend on how the
            # images were split (docs/scale.md); a resumed run times the images it runs; memory
            # stays bounded: the first MAX_TIMED images' times are kept
            if '"ms":' in text:
                from ..scale.results import canonical
                rec = json.loads(text)
                for tag, ms in (rec.pop("ms", None) or {}).items():
                    got = times.setdefault(tag, [])
                    if len(got) < MAX_TIMED:
                        got.append(float(ms))
                machine = rec.pop("machine", None)
                if machine and machine not in machines and len(machines) < 64:
                    machines.append(machine)
                text = canonical(rec)
            journal.write(text)

        try:
            pipeline.execute(job, imagejobs.make_items(inputs, skip=journal.done, ship=ship), keep,
                             workers=workers, cluster=cluster, progress=prog)
        finally:
            journal.close()
        prog.done()
        run = _aggregate(journal, keys, list(models), names, labels, job, stats)
        run.times = {t: times[t] for t in models if times.get(t)}
        run.machines = machines
        return run
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _aggregate(journal, keys: List[str], tags: List[str], names: Sequence[str], labels: Optional[dict],
               job, want_stats: bool) -> EvalRun:
    """The metrics from the results file, one model at a time (only the detections of one
    model are in memory at once)."""
    from . import evaluate
    from ..scale import imagejobs

    wanted = set(keys)
    floats: Dict[str, list] = {}
    errors: Dict[str, str] = {}
    capped: Dict[str, int] = {}
    for rec in journal.records():
        k = rec["image"]
        if k not in wanted:
            continue
        if "error" in rec:
            errors[k] = rec["error"]
        else:
            floats[k] = [_Det(r, names) for r in rec["float"]]
            for tag in rec.get("dropped", {}):
                capped[tag] = capped.get(tag, 0) + 1
    for tag, n in sorted(capped.items()):
        print(f"eval: {tag}: {n} image(s) had more than {imagejobs.MAX_EVAL_DETECTIONS} detections; "
              f"the most confident {imagejobs.MAX_EVAL_DETECTIONS} of each were evaluated", file=sys.stderr)
    order = [k for k in keys if k in floats]
    float_dets = [floats.pop(k) for k in order]
    gt = [labels[k] for k in order] if labels is not None else None
    results: Dict[str, object] = {}
    plain: Dict[str, object] = {}
    sat: Dict[str, Dict[int, dict]] = {}
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
        if order:
            results[tag] = evaluate.agreement(float_dets, fixed_dets)
        if want_stats:
            sat[tag] = stats
        if gt is not None and order:
            plain[tag] = evaluate.evaluate_map(fixed_dets, gt)
    if gt is not None and order:
        plain["float"] = evaluate.evaluate_map(float_dets, gt)
    return EvalRun(results, plain, sat, [(k, errors[k]) for k in keys if k in errors], order,
                   {t: job.shared(t) for t in tags} if want_stats else {})


def _time_report(run: EvalRun) -> Optional[Tuple[dict, str]]:
    """The median time of each width's ``detect`` per image and its ratio to w8a8's (else
    the first width's), measured in the same run on the same letterboxed inputs, with where it ran --
    what a width costs in time on this machine (narrower weights run on the same 8-bit dot
    products: docs/performance.md).  None when nothing was timed (results files of older
    versions)."""
    import statistics
    med = {t: statistics.median(v) for t, v in run.times.items() if v}
    if not med:
        return None
    base_tag = "w8a8" if "w8a8" in med else next(iter(med))      # ratios to the default width
    where = "; ".join(f"{m.get('cpu') or '?'}, {m.get('engine')} engine"
                      + (f" ({m['path']})" if m.get("path") else "") + f", {m.get('threads')} thread(s)"
                      for m in run.machines) or "?"
    workers = " per worker, timed while the other workers ran" if len(run.machines) > 1 else ""
    n = min(len(v) for v in run.times.values())
    line = (f"time per image (median of {n}{' (the first timed)' if n >= MAX_TIMED else ''}; fixed-point detect on the "
            f"letterboxed input: forward, heads, NMS; {where}{workers}): "
            + ", ".join(f"{t} {ms:.1f} ms" + ("" if t == base_tag else f" ({ms / med[base_tag]:.2f}x {base_tag})")
                        for t, ms in med.items()))
    return {"median": med, "machines": run.machines}, line


def _report(run: EvalRun, info: dict) -> Tuple[dict, str]:
    """``mdfi eval``'s text and JSON reports."""
    from . import evaluate
    from ..scale import imagejobs
    from ..quant import modelfile
    from ..errors import MDFIError
    from ..quant.qmodel import saturation_report

    results, plain = run.agreement, run.map50
    sat = {}
    for tag, stats in run.saturation.items():
        qm = modelfile.loads(run.models[tag], f"{info['label']}-{tag}.mdfi")
        sat[tag] = {"per_layer": {str(i): v for i, v in sorted(stats.items()) if v},
                    "table": saturation_report(qm, stats, only_nonzero=True)}
        del qm
    order = run.keys
    err_list = [{"image": k, "error": m} for k, m in run.errors]
    if not order:
        raise MDFIError(f"{info['images']}: no image could be evaluated (first error: "
                        f"{err_list[0]['image']}: {err_list[0]['error']})" if err_list else
                        f"{info['images']}: no image was evaluated")
    opts = info["opts"]
    head = (f"{info['label']} ({info['darknet']} Darknet): {len(order)} images from {info['images']}; float "
            f"detections >= {info['gt_thresh']:g} as ground truth; formats from {info['calib_src']}; "
            f"weights {'per channel' if opts['per_channel'] else 'per layer'}, "
            f"{opts['act_method'] or 'auto (mse for images, max for a batch-norm estimate)'} activations, "
            f"{opts['rounding']} rounding, {info['engine']} engine")
    zero_tags = info.get("zero_points") or []
    if zero_tags:                          # all configs, or some (a recipe's widths with a shipped rounding)
        head += ("; with zero points" if len(zero_tags) == len(info["sizes"])
                 else f"; zero points at {', '.join(zero_tags)}")
    if info.get("shipped_rounding"):
        head += f"; the recipe's shipped AdaRound weights at {', '.join(info['shipped_rounding'])}"
    if info.get("dw_equalize"):
        head += f"; depthwise inputs equalized (docs/quantization.md round 29) at {', '.join(info['dw_equalize'])}"
    if info.get("empirical_bias"):
        head += ("; biases corrected for the mean error on the calibration inputs (docs/quantization.md "
                 f"rounds 30-32) at {', '.join(info['empirical_bias'])}")
    text = head + "\n" + evaluate.format_agreement_table(results)
    for tag, d in sat.items():
        text += f"\n\nsaturated outputs per layer, {tag} (layers with none omitted):\n{d['table']}"
    if plain:
        text += "\n\nmAP@0.5 against the labels:\n" + "\n".join(
            f"  {k:<8} {'n/a' if v.map is None else f'{v.map:.4f}'}" for k, v in plain.items())
    if err_list:
        imagejobs.report_errors([(e["image"], e["error"]) for e in err_list], "eval")
        text += (f"\n\n{len(err_list)} image(s) could not be used and are not counted "
                 f"(first: {err_list[0]['image']}: {err_list[0]['error']})")
    report = {"model": info["label"], "darknet": info["darknet"], "gt_thresh": info["gt_thresh"],
              "images": len(order), "calibration": info["calib_src"],
              "options": {k: v for k, v in opts.items() if k not in ("wbits", "abits")}, "engine": info["engine"],
              "agreement": evaluate.to_json_dict(results), "zero_points": zero_tags,
              "shipped_rounding": info.get("shipped_rounding") or [], "dw_equalize": info.get("dw_equalize") or [],
              "empirical_bias": info.get("empirical_bias") or []}
    sizes, float_bytes = info["sizes"], info["float_bytes"]
    report["param_bytes"] = sizes
    report["size_vs_float"] = {k: v / float_bytes for k, v in sizes.items()}
    text += "\nparameters vs float32: " + ", ".join(f"{k} {100 * v / float_bytes:.1f}%" for k, v in sizes.items())
    cost = _time_report(run)
    if cost:
        report["time_ms"], line = cost
        text += "\n" + line
    if info.get("plot"):
        from .plot import write_plot
        write_plot(info["plot"], results, report["size_vs_float"], title=f"{info['label']}: {len(order)} images")
        text += f"\nwrote {info['plot']}"
    if plain:
        report["map50_labels"] = evaluate.to_json_dict(plain)
    if sat:
        report["saturation"] = {k: v["per_layer"] for k, v in sat.items()}
    if err_list:
        report["errors"] = err_list
    if info.get("results"):
        report["results"] = info["results"]
    return report, text
