"""What the power-of-two grid costs: fake-quantized 8-bit tensors on the float path (diagnostic).

    python benchmarks/bench_grid.py --model yolov4-tiny-10c --split val4,test,test4 --bootstrap 1000
    python benchmarks/bench_grid.py --model yolov3-tiny --split val,test
    python benchmarks/bench_grid.py --model yolov4-tiny --split val,test,test4 --modes w-mdfi,w-float,w-float-mse
    python benchmarks/bench_grid.py --model yolov4-tiny-10c --split val4,test,test4 --modes a-pot,a-float
    python benchmarks/bench_grid.py --model yolov3-tiny --split val,test --modes a-pot,a-float
    python benchmarks/bench_grid.py --model yolov4-tiny-10c --split test4 --modes w-mdfi,w-float --paired 1000
    python benchmarks/bench_grid.py --model yolov4-tiny-10c --calib-set calib4 --split test4 \
        --modes w-mdfi+a-pot,w-float+a-float-asym,w-float+a-float-mse --bootstrap 1000

Question (issues 10/11): is it the power-of-two scales (shifts only) or 8 bits as such that
keep MDFI's 8-bit models from the accuracy targets?  Every row runs the **float path**
(Darknet's float forward, ``FloatEngine``) with some tensors fake-quantized (quantize, round
to nearest, saturate, dequantize; everything else float) and is scored against the plain
float path's detections with the metric of ``bench_accuracy.py`` (``mdfi.eval.evaluate``;
agreement mAP@0.5, kept, extra, bias; ``--bootstrap N``: the photo-resampling SD of
``bench_accuracy_v4tiny.bootstrap_sd``; ``--paired N``: the SD of each row's difference to the
first mode over the same resamplings).  Photos: ``accuracy_images.py`` / ``person_images.py``;
float detections are shared with the other benchmarks' caches.

Weights (8 bits, per output channel, batch norm folded exactly as MDFI folds it:
``ConvolutionalLayer.folded_float_params``, the first layer's weights times 1/255 as MDFI
quantizes them; the network then runs with the folded weights and no batch norm):

* ``fold``: folded float weights, nothing quantized (control: the folding alone);
* ``w-mdfi``: MDFI's own weights **and** biases, dequantized from the integers of the w8a16
  model (``quantize_network(wbits=8, abits=16, per_channel=True)``: the power-of-two format
  ``max_frac`` then ``mse_frac``, i.e. the finest step that holds max|w| or up to two steps
  finer if that lowers the squared error, round half up; bias at the accumulator scale);
* ``w-mdfi-fb``: the same weights, float biases (what MDFI's bias rounding costs);
* ``w-pot``: power-of-two scale with nothing clipped (``fixedpoint.max_frac`` alone), float biases;
* ``w-float``: float scale ``max|w| / 127`` (symmetric, ONNX Runtime / TFLite), float biases;
* ``w-float-mse``: float scale ``c / 127`` with the clip ``c`` in [0.50, 1.00] x max|w|
  (step 0.01) minimising the channel's squared error, float biases.

Activations (8 bits, per tensor, every layer output except the [yolo] heads, and the input
pixels at 1/255 as MDFI's uint8 input; weights float):

* ``a-pot``: the formats MDFI chooses by default (read from a w16a8 model built with the
  ``mse`` formats, 0.01 % clip budget, routes unified): ``Q(8, frac)``, step ``2**-frac``;
* ``a-pot-recipe`` (yolov3-tiny, yolov4-tiny): the shipped w8a8 recipe's formats (yolov3-tiny:
  searched by head effect; yolov4-tiny: ``mse`` with the 0.03 % clip budget; the head shifts
  are not applied, the weights being float);
* ``a-float``: float scale ``max|x| / 127`` from the same calibration statistics (MinMax,
  symmetric and signed like MDFI's formats, nothing clipped on the calibration photos);
* ``a-float-mse``: MDFI's own ``mse`` criterion (expected squared error over the same
  histograms, at most 0.01 % clipped) with a continuous step instead of a power of two;
* ``a-float-asym``: uint8 with a zero point over [min, max] (ONNX Runtime's MinMax activations).
* ``a-pot-asym``: unsigned codes ``0 .. 2**bits - 1`` with an integer zero point and a
  **power-of-two** step (what a shift-only engine could run: the zero point of a convolution's
  input folds into its bias, ``-z * sum(w)``, and into its padding value): step and zero point
  by MDFI's ``mse`` criterion over the same histograms (``frac`` among ``fmax - 2 .. fmax + 5``,
  every zero point, smallest expected squared error), with the same 0.01 % clip budget.
  Diagnostic only: MDFI's integer engine has no zero points (round 12, docs/quantization.md).
* ``a-pot-asym-max``: the same with nothing clipped on the calibration photos (the finest
  power-of-two step at which [min, max] fits with some zero point).

``--abits N`` (default 8) runs every activation mode at N bits (``a-pot`` from a w16aN model);
``--wbits N`` (default 8) takes ``w-mdfi``'s weights from the wNa16 model instead (the first
layer's weights at 8 bits below 8, as MDFI's low-width recipes keep them: ``--layer-wbits 0=8``).

Both: ``W+A`` (e.g. ``w-mdfi+a-pot``, ``w-float+a-float-asym``): the weight mode and the
activation mode together (activation formats from the float network's statistics).

Routes: the float-scale modes quantize each tensor with its own scale (no route unification).
Calibration: yolov3-tiny and yolov4-tiny (the official COCO model of the zoo) their shipped
statistics (``calib`` photos and their mirror images); yolov4-tiny-10c the ``calib`` photos, plus
``calib4`` with ``--calib-set calib4``.  Nothing is chosen from these numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

WEIGHT_MODES = ["fold", "w-mdfi", "w-mdfi-fb", "w-pot", "w-float", "w-float-mse"]
ACT_MODES = ["a-pot", "a-pot-recipe", "a-float", "a-float-mse", "a-float-asym", "a-pot-asym", "a-pot-asym-max"]
#: zoo models: the official weights and their shipped statistics (and, for a-pot-recipe, decisions)
ZOO_MODELS = ("yolov3-tiny", "yolov4-tiny")
MODELS = ("yolov3-tiny", "yolov4-tiny", "yolov4-tiny-10c")
DEFAULT_MODES = ["fold", "w-mdfi", "w-mdfi-fb", "w-pot", "w-float", "w-float-mse"]


def _in_scale(layer) -> float:
    """1/255 for a convolution reading the network input (MDFI folds Darknet's /255 into it)."""
    return 1.0 / 255.0 if layer.inputs[0] == -1 else 1.0


def fake_weights(w: np.ndarray, mode: str) -> np.ndarray:
    """Per-output-channel 8-bit fake quantization of folded weights ``w`` (M, ...), float64."""
    from mdfi import fixedpoint as fp
    m = w.shape[0]
    flat = w.reshape(m, -1)
    if mode == "w-pot":
        f = fp.max_frac(flat.min(axis=1), flat.max(axis=1), 8).astype(np.float64)
        return (fp.quantize_float(flat, f[:, None], 8) * np.exp2(-f)[:, None]).reshape(w.shape)
    amax = np.abs(flat).max(axis=1, keepdims=True)
    amax = np.where(amax > 0, amax, 1.0)
    if mode == "w-float":
        s = amax / 127.0
        return (np.clip(np.round(flat / s), -127, 127) * s).reshape(w.shape)
    if mode == "w-float-mse":
        best, err = None, None
        for r in np.arange(0.50, 1.0001, 0.01):
            s = r * amax / 127.0
            q = np.clip(np.round(flat / s), -127, 127) * s
            e = ((q - flat) ** 2).sum(axis=1, keepdims=True)
            if best is None:
                best, err = q, e
            else:
                better = e < err
                best = np.where(better, q, best)
                err = np.where(better, e, err)
        return best.reshape(w.shape)
    raise ValueError(mode)


def paired_sd(data, dets_a, dets_b, n: int, seed: int = 0):
    """Mean and SD of agreement(b) - agreement(a) over ``n`` resamplings of the photos (the
    resampling of ``bench_accuracy_v4tiny.bootstrap_sd``, the same photos for both rows)."""
    from mdfi.eval import evaluate
    from bench_accuracy_v4tiny import photo_resamples
    diffs = []
    for idx in photo_resamples(data, n, seed):
        gt = [data[k][2] for k in idx]
        ra = evaluate.agreement(gt, [dets_a[k] for k in idx])
        rb = evaluate.agreement(gt, [dets_b[k] for k in idx])
        if ra.map is not None and rb.map is not None:
            diffs.append(rb.map - ra.map)
    return float(np.mean(diffs)), float(np.std(diffs)), float(np.mean(np.asarray(diffs) > 0))


def agreement_line(r) -> str:
    """One row of ``mdfi.eval.evaluate.agreement``'s result as bench_dwequal / bench_dwbias print it."""
    return (f"agreement {r.map:.4f}  kept {r.matched}/{r.n_float} {100 * r.kept_fraction:.1f} %  extra {r.extra} "
            f"{100 * r.extra_fraction:.1f} %  bias {r.mean_dconf_ranked:+.4f} ({100 * r.down_fraction_ranked:.0f} % lower)")


def paired_line(data, dets_a, dets_b, n: int, a: str, b: str, label: str) -> str:
    """``b - a (label): agreement ... sd ..., b ahead in ...`` over ``n`` paired resamplings (:func:`paired_sd`)."""
    md, sd, above = paired_sd(data, dets_a, dets_b, n)
    return (f"{b} - {a} ({label}): agreement {md:+.4f} sd {sd:.4f}, {b} ahead in {100 * above:.0f} % of {n} "
            "paired resamplings")


def weight_network(network, mode: str, qm=None):
    """A copy of ``network`` whose convolutions carry folded (fake-quantized) weights and no batch norm."""
    net = copy.deepcopy(network)
    qls = {ql.index: ql for ql in qm.layers} if qm is not None else {}
    for l in net.layers:
        if l.kind != "convolutional":
            continue
        w, b = l.folded_float_params()
        s = _in_scale(l)
        if mode in ("w-mdfi", "w-mdfi-fb"):
            ql = qls[l.index]
            f = np.asarray(ql.w_frac, np.float64).reshape(-1)
            wq = ql.weights.astype(np.float64) * np.exp2(-f)[:, None, None, None] / s
            within = np.abs(wq - w) <= 0.5001 * np.exp2(-f)[:, None, None, None] / s
            # mse_frac may clip a few (more below 8 bits, where a step finer pays off more often)
            assert within.mean() > (0.99 if ql.wbits >= 8 else 0.9), f"layer {l.index}: not the weights MDFI quantizes"
            w = wq
            if mode == "w-mdfi":
                b = ql.bias.astype(np.float64) * np.exp2(-(f + ql.in_fmt.frac))
        elif mode != "fold":
            w = fake_weights(w * s, mode) / s
        l.weights = np.ascontiguousarray(w, dtype=np.float32)
        l.biases = np.ascontiguousarray(b, dtype=np.float32)
        l.batch_normalize = False
        if hasattr(l, "_fused"):
            l._fused = None
    return net


class HookedFloatEngine:
    """FloatEngine whose forward rewrites every layer output in place (``fq(index, out)``)."""

    name = "float"

    def __init__(self, network, fq=None, fq_input=None):
        self.network, self.fq, self.fq_input = network, fq, fq_input

    def heads(self, x, thresh):
        if self.fq_input is not None:
            x = self.fq_input(x)
        outs = self.network.forward_float(x, keep="needed", hook=self.fq)
        return [layer.decode(outs[layer.index], thresh) for layer in self.network.output_layers()]


def _hist_points(stats):
    """(values, counts) of the calibration histograms as ``calibrate.choose_frac``'s ``mse`` sees them
    (``calibrate.hist_points``)."""
    from mdfi.quant.calibrate import hist_points
    return hist_points(stats)


def float_mse_step(stats, bits: int, signed: bool, clip_budget=0.01) -> float:
    """MDFI's ``mse`` activation criterion (calibrate.choose_frac: expected squared error over
    the log2 histograms, capped so that at most ``clip_budget`` % of the values clip) with a
    continuous step instead of a power of two (frac searched in 1/64 steps)."""
    from mdfi.quant import calibrate
    from mdfi import fixedpoint as fp
    vals, cnts = _hist_points(stats)
    amax = max(abs(stats.min), abs(stats.max))
    f_lo = np.log2(fp.qmax(bits, signed) / amax)            # continuous "max" frac: nothing clips
    best_f, best_err = f_lo, None
    for f in f_lo + np.arange(0, 6 * 64 + 1) / 64.0:
        err = calibrate._expected_sq_error(vals, cnts, f, bits, signed)
        if best_err is None or err < best_err * (1 - 1e-12):
            best_f, best_err = f, err
    if clip_budget is not None:
        t = stats.abs_percentile(100.0 - float(clip_budget))
        t = min(max(t, 1e-30), amax)
        best_f = min(best_f, np.log2(fp.qmax(bits, signed) / t))
    return float(2.0 ** -best_f)


def pot_asym_format(stats, bits: int, clip_budget=0.01):
    """(step, zero point) of ``a-pot-asym``: unsigned ``bits``-wide codes, power-of-two step, integer
    zero point, by MDFI's ``mse`` criterion with an asymmetric range, capped so that at most
    ``clip_budget`` % of the values clip -- the engine's own choice since round 13
    (``mdfi.quant.zeropoint.choose_frac_zero``, whose signed zero point is the unsigned one
    minus ``2**(bits-1)``)."""
    from mdfi.quant.zeropoint import choose_frac_zero
    if stats.min is None or stats.nonzero == 0:
        return 1.0, 0.0
    f, z = choose_frac_zero(stats, bits, clip_budget)
    return float(2.0 ** -f), float(z + (1 << (bits - 1)))


def act_quantizer(network, qm, calib, mode: str):
    """(hook, input quantizer) fake-quantizing every non-head layer output per tensor at the width of
    ``qm``'s formats (``--abits``):
    ``a-pot`` / ``a-pot-recipe`` the power-of-two formats of ``qm``; ``a-float`` MinMax float
    scale (symmetric, signed like MDFI's formats); ``a-float-mse`` MDFI's ``mse`` criterion with a
    continuous scale; ``a-float-asym`` uint8 with a zero point over [min, max] (ONNX Runtime's
    MinMax activations)."""
    from mdfi import fixedpoint as fp
    quant = {}
    for ql in qm.layers:
        fmt = ql.out_fmt
        if fmt is None or network.layers[ql.index].kind in ("yolo", "region"):
            continue
        lo, hi = fp.qmin(fmt.bits, fmt.signed), fp.qmax(fmt.bits, fmt.signed)
        st = calib.layers[ql.index]
        zp = 0.0
        if mode == "a-float":
            amax = max(abs(st.min), abs(st.max))
            step = amax / hi
        elif mode == "a-float-mse":
            step = float_mse_step(st, fmt.bits, fmt.signed)
        elif mode == "a-float-asym":
            mn, mx = min(st.min, 0.0), max(st.max, 0.0)
            lo, hi = 0, 2 ** fmt.bits - 1
            step = (mx - mn) / hi
            zp = float(np.round(-mn / step))
        elif mode in ("a-pot-asym", "a-pot-asym-max"):
            step, zp = pot_asym_format(st, fmt.bits, clip_budget=0.0 if mode == "a-pot-asym-max" else 0.01)
            lo, hi = 0, 2 ** fmt.bits - 1
        else:
            step = 2.0 ** -fmt.frac
        quant[ql.index] = (np.float32(step), np.float32(zp), lo, hi)

    def hook(i, out):
        if i in quant:
            s, zp, lo, hi = quant[i]
            out[...] = (np.clip(np.floor(out / s + np.float32(0.5)) + zp, lo, hi) - zp) * s

    def fq_input(x):
        return (np.floor(np.asarray(x, np.float64) * 255.0 + 0.5) / 255.0).astype(np.float32)
    return hook, fq_input, {i: float(q[0]) for i, q in quant.items()}


def load_model(name: str, args):
    """(network, names, calib stats) of yolov3-tiny or yolov4-tiny (zoo; their shipped statistics)
    or yolov4-tiny-10c (customyolov4 weights; statistics of the calib photos)."""
    from mdfi.quant import calibrate, recipes
    if name in ZOO_MODELS:
        from mdfi.model import _float_network
        # --weights (yolov4-tiny): a local copy of the official weights; the shipped statistics
        # only if it is the official file (zoo_cache.recipe_name, as mdfi.load)
        network, names, _, spec, _ = _float_network(name, None, getattr(args, "weights", None), None, True)
        calib = recipes.shipped_calibration(spec)
        if calib is None:
            raise SystemExit(f"bench_grid.py: {args.weights}: not the official {name} weights; its shipped "
                             f"statistics do not apply")
        return network, names, calib
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    import bench_accuracy_v4tiny as v4
    weights = args.weights or str(zoo.weights_path(zoo.ModelSpec(**v4.SPEC)))
    network = Network.from_cfg(os.path.join(v4.FIXTURE, v4.SPEC["cfg"]), warn=False)
    load_weights(network, weights)
    names = zoo.load_names(os.path.join(v4.FIXTURE, v4.SPEC["names"]))
    cdirs = [os.path.join(args.sets, "calib")]
    if args.calib_set == "calib4":
        cdirs.append(os.path.join(args.person_sets, "calib4"))
    return network, names, calibrate.collect(network, [p for d in cdirs for p in calibrate.list_images(d)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov4-tiny-10c", choices=MODELS,
                    help="yolov3-tiny / yolov4-tiny: the zoo's official weights and shipped statistics "
                         "(yolov4-tiny = the 80-class COCO model); yolov4-tiny-10c: customyolov4 weights")
    ap.add_argument("--split", default="test", help="val, test, val4, test4, comma-separated")
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"of {', '.join(WEIGHT_MODES + ACT_MODES)}")
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"),
                    help="float-path cache (yolov4-tiny / -10c: its subfolder yolov4-tiny-coco / yolov4-tiny-10c, "
                         "as bench_accuracy_v4tiny)")
    ap.add_argument("--weights", help="yolov4-tiny-10c: local yolov4-tiny-final.weights of customyolov4==2; "
                                      "yolov4-tiny: a local copy of the official COCO weights")
    ap.add_argument("--calib-set", default="calib", choices=("calib", "calib4"),
                    help="yolov4-tiny-10c activation statistics: calib, or calib + calib4 (the zoo models "
                         "use their shipped statistics)")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N")
    ap.add_argument("--paired", type=int, default=0, metavar="N",
                    help="also each row's agreement minus the first mode's, over N paired photo resamplings")
    ap.add_argument("--wbits", type=int, default=8, help="weight width of w-mdfi (default 8)")
    ap.add_argument("--abits", type=int, default=8, help="activation width of every activation mode (default 8)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    splits = args.split.split(",")
    if any(p not in WEIGHT_MODES + ACT_MODES for m in modes for p in m.split("+")):
        ap.error(f"--modes: of {', '.join(WEIGHT_MODES + ACT_MODES)}")
    if any(sp not in ("val", "test", "val4", "test4") for sp in splits):
        ap.error("--split: val, test, val4, test4")
    if args.model in ZOO_MODELS and args.calib_set != "calib":
        ap.error(f"--calib-set {args.calib_set}: yolov4-tiny-10c only ({args.model} uses its shipped statistics)")
    if args.weights and args.model == "yolov3-tiny":
        ap.error("--weights: yolov4-tiny or yolov4-tiny-10c only")
    if args.weights and not os.path.isfile(args.weights):
        ap.error(f"--weights: no such file {args.weights!r}")
    if not 2 <= args.abits <= 16:
        ap.error("--abits: 2..16")
    if not 2 <= args.wbits <= 16:
        ap.error("--wbits: 2..16")
    if args.abits != 8 and any("a-pot-recipe" in m.split("+") for m in modes):
        ap.error("a-pot-recipe: 8-bit activations only (the shipped w8a8 decisions)")
    if any("a-pot-recipe" in m.split("+") for m in modes) and args.model not in ZOO_MODELS:
        ap.error("a-pot-recipe: yolov3-tiny or yolov4-tiny only (their shipped w8a8 decisions)")

    from mdfi.eval import evaluate
    from mdfi.model import Model
    from mdfi.quant.quantize import quantize_network
    from bench_accuracy import float_split
    from bench_accuracy_v4tiny import bootstrap_sd
    import person_images

    for sp in splits:
        if sp in ("val4", "test4"):
            person_images.ensure_split(sp, args.person_sets)
    network, names, calib = load_model(args.model, args)
    cache = args.cache if args.model == "yolov3-tiny" else \
        os.path.join(args.cache, "yolov4-tiny-coco" if args.model == "yolov4-tiny" else "yolov4-tiny-10c")
    datas = {sp: float_split(network, names, person_images.split_dir(sp, args.sets, args.person_sets), sp, cache)
             for sp in splits}
    for sp, data in datas.items():
        print(f"{args.model} on {sp}: {len(data)} images, {sum(len(d[2]) for d in data)} float detections at 0.25")
    lw = {network.layers[0].index: 8} if args.wbits < 8 and network.layers[0].kind == "convolutional" else None
    qw = quantize_network(network, wbits=args.wbits, abits=16, per_channel=True, calib=calib, names=names,
                          layer_wbits=lw) \
        if any("w-mdfi" in m for m in modes) else None
    qa = qa_recipe = None
    if any("a-" in m for m in modes):
        # MDFI's default activation formats (mse, 0.01 % clip budget, routes unified), --abits bits
        qa = quantize_network(network, wbits=16, abits=args.abits, per_channel=True, calib=calib, names=names)
        if any("a-pot-recipe" in m.split("+") for m in modes):
            from mdfi.quant import recipes
            extra = recipes.shipped_decisions(args.model, network, dict(wbits=8, abits=8, per_channel=True),
                                              calib=calib)
            qa_recipe = quantize_network(network, wbits=8, abits=8, per_channel=True, calib=calib, names=names,
                                         **extra)
        fs = {ql.index: (ql.out_fmt.frac, ql.out_fmt.signed) for ql in qa.layers if ql.out_fmt is not None}
        print("a-pot formats (frac, signed): " + " ".join(f"{i}:{f}{'' if sg else 'u'}" for i, (f, sg) in fs.items()))
    print(f"{'mode':<12} {'split':<6} {'mAP@.5':>7} {'SD':>6} {'kept':>14} {'extra':>10} {'bias':>8} {'lower':>6} "
          f"{'|dconf|':>7} {'s':>5}")
    rows = {}
    first = {}
    for mode in modes:
        t0 = time.perf_counter()
        wmode = next((p for p in mode.split("+") if p in WEIGHT_MODES), None)
        amode = next((p for p in mode.split("+") if p in ACT_MODES), None)
        net = weight_network(network, wmode, qw) if wmode else network
        if amode:
            hook, fqi, steps = act_quantizer(network, qa_recipe if amode == "a-pot-recipe" else qa, calib, amode)
            print(f"{mode} steps: " + " ".join(f"{i}:{v:.4g}" for i, v in steps.items()), file=sys.stderr)
            eng = HookedFloatEngine(net, hook, fqi)
        else:
            eng = HookedFloatEngine(net)
        model = Model(net, names, eng)
        for sp, data in datas.items():
            dets = [model.detect(d[1], thresh=0.005) for d in data]
            r = evaluate.agreement([d[2] for d in data], dets)
            sd = bootstrap_sd(data, dets, args.bootstrap) if args.bootstrap else None
            rows[f"{mode} {sp}"] = dict(evaluate.to_json_dict(r), bootstrap_sd=sd, mode=mode, split=sp)
            first.setdefault(sp, (mode, dets))
            if args.paired and first[sp][0] != mode:
                md, sdd, pos = paired_sd(data, first[sp][1], dets, args.paired)
                rows[f"{mode} {sp}"]["paired"] = dict(vs=first[sp][0], mean=md, sd=sdd, above=pos)
                print(f"  {mode} - {first[sp][0]} on {sp}: {md:+.4f} sd {sdd:.4f} over {args.paired} paired "
                      f"resamplings ({100 * pos:.0f} % above 0)", flush=True)
            f = lambda v, s, k=1.0: "n/a" if v is None else format(k * v, s)   # noqa: E731
            print(f"{mode:<12} {sp:<6} {f(r.map, '.4f'):>7} {f(sd, '.4f'):>6} {r.matched:>4}/{r.n_float} "
                  f"{f(r.kept_fraction, '.1f', 100):>5}% {r.extra:>3} {f(r.extra_fraction, '.1f', 100):>4}% "
                  f"{f(r.mean_dconf_ranked, '+.4f'):>8} {f(r.down_fraction_ranked, '.0f', 100):>5}% "
                  f"{f(r.mean_abs_dconf, '.4f'):>7} {time.perf_counter() - t0:>5.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "splits": splits, "calib_set": args.calib_set, "abits": args.abits, "wbits": args.wbits,
                       "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
