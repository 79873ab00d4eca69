"""``mdfi quantize``: write a fixed-point ``.mdfi`` model (docs/quantization.md)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MDFIError
from .common import (DW_EQUALIZE_DEFAULT, ZERO_POINTS_DEFAULT, add_model_args, bits_arg, width_arg, check_model_args, layer_bits_arg, layer_rounding_arg,
                     layer_wbits_arg, check_output_file, image_inputs, model_inputs, refuse_quantized_model)


def cmd_quantize(args: argparse.Namespace) -> int:
    from ..quant import calibrate, modelfile, recipes
    from ..darknet.cfgfile import read_cfg_text
    from ..model import _float_network, _warn_low_bits
    from ..quant.quantize import quantize_network
    check_model_args(args)
    if args.bits is not None:
        if args.wbits is not None or args.abits is not None:
            raise MDFIError("give --bits, or --wbits/--abits, not both")
        args.wbits, args.abits = args.bits
    refuse_quantized_model(args, "mdfi quantize quantizes the float network")
    check_output_file(args.output, *model_inputs(args), args.calib_stats, *image_inputs(args.calib))
    if args.calib and args.calib_stats:
        raise MDFIError("give --calib DIR or --calib-stats FILE, not both")
    if args.calib and not os.path.isdir(args.calib):
        raise MDFIError(f"--calib {args.calib}: not a folder of images")
    if (args.weight_rounding != "nearest" or args.bias_correction == "empirical"
            or args.size_budget is not None) and not args.calib:
        raise MDFIError("--weight-rounding gptq/adaround, --bias-correction empirical and --size-budget need "
                        "calibration images (--calib DIR)")
    if args.gain_correction is not None:
        if not args.calib:
            raise MDFIError("--gain-correction needs calibration images (--calib DIR): the float and the quantized "
                            "network are compared on them")
        if args.weight_rounding in ("adaround", "brecq"):
            raise MDFIError(f"--gain-correction with --weight-rounding {args.weight_rounding}: "
                            f"{'AdaRound' if args.weight_rounding == 'adaround' else 'block reconstruction'} already targets the float "
                            "network's output (use nearest or gptq)")
    uses_inputs = (args.weight_rounding != "nearest" or args.bias_correction == "empirical"
                   or args.size_budget is not None or bool(args.align) or args.act_equalize is not None
                   or args.gain_correction is not None)
    if args.bn_estimate and (args.calib or args.calib_stats):
        raise MDFIError("give --bn-estimate or calibration statistics (--calib / --calib-stats), not both")
    if (args.search or args.calib_crops) and not args.calib:
        raise MDFIError("--search and --calib-crops need calibration images (--calib DIR)")
    if args.calib_crops and not (uses_inputs or args.search):
        raise MDFIError("--calib-crops adds inputs to the data-driven methods (--search, --weight-rounding "
                        "gptq/adaround, --bias-correction empirical, --size-budget, --align, --act-equalize); "
                        "the activation statistics of --calib are taken from the photos alone")
    if args.size_budget is not None and args.layer_wbits:
        raise MDFIError("give --size-budget (chooses the weight widths) or --layer-wbits, not both")
    if args.clip_budget is not None:
        if not (args.calib or args.calib_stats):
            raise MDFIError("--clip-budget needs calibration statistics (--calib DIR or --calib-stats FILE)")
        if args.method not in (None, "mse"):
            raise MDFIError(f"--clip-budget applies to mse formats, not --method {args.method}")
        if not 0.0 <= args.clip_budget < 100.0:
            raise MDFIError(f"--clip-budget {args.clip_budget:g}: a percentage in [0, 100)")
    if args.zero_points and args.search:
        raise MDFIError("give --zero-points or --search, not both (the search chooses formats without zero points)")
    if args.zero_points and args.method not in (None, "mse"):
        raise MDFIError(f"--zero-points chooses formats by the mse criterion, not --method {args.method}")
    if args.align and not args.calib:
        raise MDFIError("--align needs calibration images (--calib DIR): the rescaled network is calibrated again")
    if args.align and args.size_budget is not None:
        raise MDFIError("give --align or --size-budget, not both (the alignment depends on the weight widths)")
    if args.align and args.per_channel is False:
        raise MDFIError("--align needs per-channel weight formats (not --per-layer)")
    if args.act_equalize is not None:
        from ..quant.actequal import settings_from
        if args.align:
            raise MDFIError("give --align or --act-equalize, not both (each rescales the float network)")
        if not args.calib:
            raise MDFIError("--act-equalize needs calibration images (--calib DIR): the channels' ranges come from "
                            "them and the rescaled network is calibrated again")
        if args.size_budget is not None:
            raise MDFIError("give --act-equalize or --size-budget, not both (the factors depend on the weight widths)")
        if args.per_channel is False:
            raise MDFIError("--act-equalize needs per-channel weight formats (not --per-layer)")
        settings_from(args.act_equalize)           # bad settings refused before any heavy work
    if args.dw_equalize and (args.align or args.act_equalize is not None):
        raise MDFIError("give --dw-equalize or --align / --act-equalize, not both (each rescales the float network)")
    if args.dw_equalize and args.search:
        raise MDFIError("give --dw-equalize or --search, not both (the search chooses formats on the network as it is)")
    if args.dw_equalize and args.per_channel is False:
        raise MDFIError("--dw-equalize needs per-channel weight formats (not --per-layer)")
    if args.dw_equalize and args.calib_stats:
        raise MDFIError("--dw-equalize needs calibration images (--calib DIR) or the shipped sample photo, not "
                        "--calib-stats: the channels' ranges come from the photos and the rescaled network is "
                        "calibrated again")
    network, names, label, spec_name, _ = _float_network(args.model, args.cfg, args.weights, args.names, True,
                                                         args.darknet)
    if args.search and not any(l.kind == "yolo" for l in network.output_layers()):
        raise MDFIError(f"--search: {network.path} has no [yolo] detection heads to search the formats on")
    # One default everywhere: the model's recipe, as `mdfi detect` and mdfi.load use it
    # (per-channel weights and mse formats for the zoo models), unless an option says otherwise.
    opts = recipes.resolve(spec_name, wbits=args.wbits, abits=args.abits, per_channel=args.per_channel,
                           rounding=args.rounding, act_method=args.method)
    _warn_low_bits(opts["wbits"], opts["abits"])
    source = recipes.statistics_source(spec_name, photos=bool(args.calib or args.calib_stats),
                                       bn_estimate=args.bn_estimate)
    shipped_stats = source == "shipped"
    if args.zero_points is None:        # the default: docs/quantization.md rounds 14-15
        args.zero_points = (recipes.default_zero_points(spec_name, source, opts) and network.channels == 3
                            and not (args.search or args.align or args.layer_abits or args.layer_wbits
                                     or args.layer_rounding or args.size_budget is not None)
                            and args.method in (None, "mse") and args.act_equalize is None)
    if args.calib:
        calib = calibrate.collect_from_dir(network, args.calib, progress=True)
        how = f"calibrated on the images in {args.calib}"
    elif args.calib_stats:
        calib = calibrate.CalibStats.from_json(args.calib_stats)
        how = f"calibration statistics from {args.calib_stats}"
    elif args.bn_estimate:
        calib = calibrate.estimate_from_batchnorm(network)
        how = "--bn-estimate: activation formats estimated from batch-norm statistics (no photos)"
    else:                       # said before the sample photo's forward passes (slow on big models)
        calib, _ = recipes.default_calibration(
            spec_name, network, lambda text: print(f"mdfi quantize: {text}", file=sys.stderr, flush=True))
        how = None                              # already said
    if (args.calib or args.calib_stats or args.bn_estimate) and args.method is None:
        opts["act_method"] = None              # chosen by the statistics' source (mse for images)
    if how:
        print(f"mdfi quantize: {how}", file=sys.stderr)
    cfg_text = read_cfg_text(network.path)
    bias = {"auto": "auto", "empirical": "empirical", "on": True, "off": False}[args.bias_correction or "auto"]
    data_methods = (args.weight_rounding != "nearest" or bias == "empirical" or args.size_budget is not None
                    or args.gain_correction is not None)
    inputs = (calibrate.load_inputs(network, args.calib, crops=args.calib_crops)
              if args.calib and (uses_inputs or args.search) else None)
    kw = {}
    if args.align:
        kw.update(align=args.align, align_direction=args.align_direction)
    if args.act_equalize is not None:
        kw["act_equalize"] = args.act_equalize
    if args.gain_correction is not None:
        kw["gain_correction"] = args.gain_correction
    rescale = bool(args.align) or args.act_equalize is not None
    if data_methods or rescale:
        kw["calib_inputs"] = inputs
    elif not (args.calib or args.calib_stats or args.method or args.layer_rounding or args.layer_wbits
              or args.zero_points):
        # as `mdfi detect` quantizes (with --layer-abits: the wide layers' formats at their width)
        kw = recipes.shipped_decisions(spec_name, network, opts, layer_abits=args.layer_abits, calib=calib)
        kw.pop("layer_abits", None)
    dw = args.dw_equalize
    if dw is None:                              # round 29c
        dw = (recipes.default_dw_equalize(spec_name, source, opts, args.zero_points) and not rescale
              and not (args.layer_abits or args.layer_wbits or args.layer_rounding or args.size_budget is not None
                       or args.search or args.clip_budget is not None or data_methods))
    if dw:
        from ..quant.dwequal import eligible
        if not eligible(network):
            print(f"mdfi quantize: note: {network.path} has no tensor that only depthwise convolutions read: "
                  f"--dw-equalize changes nothing", file=sys.stderr)
        dkw = recipes.dw_equalize_kwargs(network, True, calibrate.list_images(args.calib) if args.calib else None)
        if kw.get("calib_inputs") is not None:
            dkw.pop("calib_inputs")             # the data-driven methods' inputs (with --calib-crops) serve both
        kw.update(dkw)
    # rounds 30-32: the empirical bias correction on the sample photo (as mdfi.load's default)
    auto_bias = (args.bias_correction is None
                 and recipes.default_empirical_bias(spec_name, source, opts, args.zero_points,
                                                    recipes.rgb_depthwise(network))
                 and not (rescale or data_methods or args.layer_abits or args.layer_wbits or args.layer_rounding
                          or args.search or args.clip_budget is not None))
    if auto_bias:
        bias = "empirical"
        if kw.get("calib_inputs") is None:
            kw["calib_inputs"] = recipes.calibration_inputs(network)
    common = dict(wbits=opts["wbits"], abits=opts["abits"], per_channel=opts["per_channel"],
                  rounding=opts["rounding"], calib=calib, act_method=opts["act_method"],
                  weight_method=opts["weight_method"], layer_rounding=args.layer_rounding,
                  layer_abits=args.layer_abits, layer_wbits=args.layer_wbits, cfg_text=cfg_text, names=names)
    if args.clip_budget is not None:
        common["act_options"] = {"clip_budget": args.clip_budget}
    zkw = {}
    if args.zero_points:
        # the recipe's shipped rounding (round 15) only where nothing changes what it was made for
        plain = not (args.clip_budget is not None or args.layer_abits or args.layer_wbits or args.layer_rounding
                     or args.size_budget is not None or args.align or args.act_equalize is not None
                     or data_methods)
        zkw = recipes.zero_point_kwargs(spec_name, shipped_stats, opts, plain=plain)
        common.update(zkw)
    if args.size_budget is not None:
        from ..quant.formats import HeadObjective
        from ..quant.mixed import choose_widths
        objective = HeadObjective(network, kw["calib_inputs"])
        widths = choose_widths(network, lambda lw: quantize_network(network, **dict(common, layer_wbits=lw)),
                               objective, base_bits=opts["wbits"], budget=args.size_budget)
        common["layer_wbits"] = widths
        print(f"mdfi quantize: size budget {100 * args.size_budget:g}%: weight widths "
              f"{', '.join(f'{i}:{w}' for i, w in sorted(widths.items())) or 'unchanged'}", file=sys.stderr)
    else:                                       # round 24: a model without a recipe at w4a8 / w6a8
        common = recipes.with_sample_mixed_widths(spec_name, network, opts, common)
    if args.search:
        qm = _searched_model(args, network, calib, inputs, common, bias, data_methods)
    else:
        qm = quantize_network(network, weight_rounding=args.weight_rounding, bias_correction=bias,
                              progress=data_methods or rescale, **common, **kw)
        if "weight_deltas" in zkw:
            recipes.check_rounding(spec_name, qm, args.darknet)
        if not (args.calib or args.calib_stats or args.method or args.bn_estimate):   # shipped files
            how = recipes.describe_source(spec_name, "act_fracs" in kw, calib)
            if how and args.zero_points and shipped_stats:
                how += "; " + recipes.zero_point_story(spec_name, zkw, False, opts)
            if how:
                qm.options["formats_source"] = how
        if dw and "dw_equalize" in qm.options:
            src = qm.options.get("formats_source")
            qm.options["formats_source"] = f"{src}; {recipes.DW_EQUALIZE_STORY}" if src else recipes.DW_EQUALIZE_STORY
        if auto_bias:
            src = qm.options.get("formats_source")
            qm.options["formats_source"] = (f"{src}; {recipes.EMPIRICAL_BIAS_STORY}" if src
                                            else recipes.EMPIRICAL_BIAS_STORY)
    size = modelfile.save(qm, args.output, model_name=label)
    float_bytes = 20 + 4 * network.num_params()
    clamped = sum(getattr(q, "bias_clamped", 0) for q in qm.layers)
    print(f"wrote {args.output}: {qm.describe()}, {size:,} bytes ({100 * size / float_bytes:.1f}% of the "
          f"{float_bytes:,}-byte float weights){f'; {clamped} biases clamped' if clamped else ''}",
          file=sys.stderr)
    return 0


def _searched_model(args, network, calib, inputs, common: dict, bias, data_methods: bool):
    """``mdfi quantize --search``: the activation formats searched by their effect on the
    detection heads and the head biases shifted (:func:`mdfi.quant.formats.choose_decisions`,
    as the shipped recipe's decisions and the benchmark's best models were made), then the
    model built with the chosen weight rounding and bias correction, all on the same inputs
    (with --calib-crops: the photos, their mirror images and corner crops)."""
    from ..quant.formats import HEAD_SHIFT_STRENGTH, choose_decisions
    al = None
    prep = dict(wbits=common["wbits"], layer_wbits=common["layer_wbits"], abits=common["abits"],
                layer_abits=common["layer_abits"], per_channel=common["per_channel"], inputs=inputs, progress=True)
    if args.align:
        from ..quant.align import prepare
        al = prepare(network, args.align, direction=args.align_direction, **prep)
    elif args.act_equalize is not None:
        from ..quant.actequal import prepare
        al = prepare(network, args.act_equalize, clip_budget=args.clip_budget, **prep)
    passed = {k: common[k] for k in ("rounding", "layer_rounding", "weight_method", "act_method", "cfg_text",
                                     "names")}
    shared = dict(wbits=common["wbits"], abits=common["abits"], per_channel=common["per_channel"],
                  act_method=common["act_method"] or "mse", clip_budget=args.clip_budget,
                  layer_wbits=common["layer_wbits"], align=al, common=passed)
    print(f"mdfi quantize: format search on {len(inputs)} inputs", file=sys.stderr)
    final = {"weight_rounding": args.weight_rounding, "bias_correction": bias}
    if args.gain_correction is not None:
        final["gain_correction"] = args.gain_correction
    if data_methods:
        final["calib_inputs"] = inputs
    if data_methods or al is not None:          # the model the shifts were measured on, shifted (as the benchmark)
        d, qm = choose_decisions(network, calib, inputs, final=final, with_model=True,
                                 layer_abits=common["layer_abits"], **shared)
    else:                                       # built again with the shifts in its biases, rounded once, as
        from ..quant.formats import decisions_to_kwargs   # the shipped decisions are applied (seconds)
        from ..quant.quantize import quantize_network
        d = choose_decisions(network, calib, inputs, final=final, layer_abits=common["layer_abits"],
                             **shared)
        dk = decisions_to_kwargs(network, d)
        dk.pop("layer_abits", None)
        qm = quantize_network(network, bias_correction=bias, **dk,
                              **{k: v for k, v in common.items() if k != "act_options"})
    qm.options["formats_source"] = "searched by their effect on the detection heads (mdfi quantize --search)"
    if "act_options" in common:                 # the search's starting formats were chosen with them
        qm.options["act_options"] = common["act_options"]
    qm.options["search"] = {"inputs": len(inputs),
                            "object_cells": int(d["object_cells"]), "head_shift_strength": HEAD_SHIFT_STRENGTH,
                            "heads": sorted(int(k) for k in d["head_shifts"])}
    for k, v in sorted(d["head_shifts"].items(), key=lambda kv: int(kv[0])):
        print(f"mdfi quantize: head layer {k}: biases shifted by objectness {v['objectness']:+.3f}, "
              f"classes {v['classes']:+.3f}", file=sys.stderr)
    return qm


def percent_arg(text: str) -> float:
    """'20%' or '20' -> 0.2 (the --size-budget of `mdfi quantize`)."""
    t = text.strip().rstrip("%")
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 < v <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: the budget must be in (0, 100]%")
    return v / 100.0


def add_quantize_parser(sub) -> None:
    q = sub.add_parser("quantize", help="write a fixed-point .mdfi model",
                       description="Quantize a Darknet model to power-of-two fixed point (docs/fixed-point.md).")
    add_model_args(q, quantized=False)
    q.add_argument("--calib", metavar="DIR", help="calibrate activation formats on these images")
    q.add_argument("--calib-stats", metavar="FILE", help="use statistics saved by `mdfi calibrate`")
    q.add_argument("--bn-estimate", action="store_true",
                   help="no photos at all: activation formats estimated from batch-norm statistics "
                        "(default without --calib: the recipe's statistics, else the shipped sample "
                        "photo's; docs/quantization.md round 11)")
    q.add_argument("--bits", type=width_arg, default=None, metavar="N|wNaM",
                   help="both widths at once: N, or a pair such as w4a8 (as detect, info and eval write them)")
    q.add_argument("--wbits", type=bits_arg, default=None, help="weight width 2..16 (default 8)")
    q.add_argument("--abits", type=bits_arg, default=None, help="activation width 2..16 (default 8)")
    pc = q.add_mutually_exclusive_group()          # both: the last one silently won
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                    help="one weight format per output channel (the default, for every model)")
    pc.add_argument("--per-layer", dest="per_channel", action="store_false",
                    help="one weight format per layer (before round 11 the default of models "
                         "without a recipe)")
    q.add_argument("--rounding", choices=("half_up", "truncate"), default=None,
                   help="rounding of every requantizing shift (default half_up)")
    q.add_argument("--layer-rounding", type=layer_rounding_arg, default=None, metavar="I=MODE,...",
                   help="per-layer rounding overrides, e.g. 5=truncate,7=truncate")
    q.add_argument("--layer-abits", type=layer_bits_arg, default=None, metavar="I=BITS,...",
                   help="wider activations for some layers' outputs, e.g. 0=16,10=16,14=16,21=16 (weights keep "
                        "--wbits; docs/quantization.md measures it for yolov3-tiny)")
    q.add_argument("--layer-wbits", type=layer_wbits_arg, default=None, metavar="I=BITS,...",
                   help="per-layer weight widths, e.g. 0=8 (the first layer's 432 weights at 8 bits in a "
                        "--wbits 4 model; docs/quantization.md)")
    q.add_argument("--method", choices=("mse", "max", "percentile"), default=None,
                   help="how activation formats are chosen from the statistics (default: the recipe's; "
                        "mse for calibration images, max for the batch-norm estimate)")
    q.add_argument("--clip-budget", type=float, default=None, metavar="PCT",
                   help="with --calib/--calib-stats and mse formats: at most PCT %% of the calibration values may "
                        "clip (default 0.01; docs/quantization.md, yolov4-tiny: 0.03)")
    q.add_argument("--zero-points", action=argparse.BooleanOptionalAction, default=None,
                   help="activation formats with a zero point (value (q - zero) * 2^-frac; docs/fixed-point.md 1.1): "
                        "one bit finer for one-sided (leaky) tensors; --no-zero-points: without.  "
                        + "D" + ZERO_POINTS_DEFAULT[1:] + " (and with no other format option)")
    q.add_argument("--dw-equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="multiply each channel of a tensor that only depthwise convolutions read by a power of two "
                        "(and divide the depthwise weights by it): the same float network, the same integer weights, "
                        "channels of similar range in the tensor's one format (docs/quantization.md round 29); "
                        "--no-dw-equalize: without.  " + "D" + DW_EQUALIZE_DEFAULT[1:] + " (and with no other "
                        "rescaling option)")
    q.add_argument("--weight-rounding", choices=("nearest", "gptq", "adaround", "brecq"), default="nearest",
                   help="gptq: sequential rounding with error feedback on the --calib images; adaround: "
                        "up/down rounding learned per layer on them; brecq: learned jointly over blocks of "
                        "convolutions with quantized, randomly dropped activations (minutes each; docs/quantization.md)")
    q.add_argument("--gain-correction", choices=("asym", "gain"), default=None,
                   help="round every convolution towards the float network's output from the quantized network's "
                        "inputs, so that the gain lost per layer does not compound (opt-in, needs --calib; with "
                        "--weight-rounding nearest or gptq): asym: least-squares target weights (asymmetric "
                        "calibration, GPTAQ); gain: per-channel measured slope, re-round w/g (docs/quantization.md)")
    q.add_argument("--bias-correction", choices=("auto", "empirical", "on", "off"), default=None,
                   help="empirical: cancel the mean error per channel measured on the --calib images; "
                        "auto: the analytic correction for weights of 6 bits or fewer (default: auto, and empirical "
                        "on the shipped sample photo without --calib and without options that change what it was "
                        "chosen for, for the zoo's yolo-fastest-1.1 (w8a8) and yolo-fastest-1.1-xl (w8a8, w6a8) and "
                        "every model without a recipe that has depthwise convolutions (w8a8); docs/quantization.md "
                        "rounds 30-32)")
    q.add_argument("--size-budget", type=percent_arg, default=None, metavar="P%",
                   help="mixed precision: narrow the least sensitive layers' weights (measured on the --calib "
                        "images) until the parameters are at most P%% of the float32 weights")
    q.add_argument("--align", choices=("max", "mse", "output"), default=None,
                   help="mantissa alignment (opt-in): rescale the float channels (real factors in [1/2, 2], the "
                        "readers compensate) so that each channel's ideal weight step, by max-abs or least squared "
                        "error, is a power of two (output: squared error weighted by the inputs' mean squares); "
                        "needs --calib and per-channel weights (docs/quantization.md)")
    q.add_argument("--align-direction", choices=("fit", "keep", "nearest", "down"), default="fit",
                   help="with --align: fit (default) enlarges a channel where its range still fits the tensor's "
                        "activation format, else shrinks it; keep: the same against the tensor's calibrated (mse) "
                        "format; nearest: the nearer power of two; down: never enlarge")
    q.add_argument("--act-equalize", nargs="?", const="", default=None, metavar="KEY=VALUE,...",
                   help="activation-range equalization (opt-in, for narrow activations such as --abits 6): rescale "
                        "the float channels (the readers compensate) to lower the expected output error of "
                        "per-tensor activation rounding and of both layers' weight rounding, bounded by the tensor's "
                        "format; settings e.g. bound=mse,headroom=2,max_scale=8 (mdfi.quant.actequal); needs --calib "
                        "and per-channel weights (docs/quantization.md)")
    q.add_argument("--search", action="store_true",
                   help="choose the activation formats by their effect on the detection heads and shift the "
                        "head biases by half the remaining object-cell error, measured on the --calib images (as "
                        "the shipped recipe's decisions and the best measured models were made; minutes; "
                        "docs/quantization.md)")
    q.add_argument("--calib-crops", action="store_true",
                   help="the data-driven methods use each --calib photo's four 75%% corner crops as well as the "
                        "photo and its mirror image (six inputs per photo)")
    q.add_argument("-o", "--output", required=True, metavar="MODEL.mdfi", help="the quantized model file to write")
    q.set_defaults(func=cmd_quantize)
