"""The quantizer.

:func:`quantize_network` turns a float :class:`~mdfi.darknet.network.Network` into a
:class:`~mdfi.quant.qmodel.QuantizedModel` (``mdfi/quant/qmodel.py``, re-exported here): every layer gets integer parameters and power-of-two formats
(docs/fixed-point.md).  All float work (batch-norm folding, rounding of weights, lookup
tables) happens here; :meth:`QuantizedModel.forward_ref` is integer-only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
from ..errors import FormatError, ModelFileError, ShapeError
from ..layers import OWN_FORMAT_KINDS, QREGISTRY, QLayer
from ..layers.yolo import yolo_gains
from ..darknet.network import Network
from .qmodel import QuantizedModel, input_to_u8, saturation_report  # noqa: F401 (re-exported)

#: Methods that choose activation formats from calibration statistics.
ACT_METHODS = ("max", "percentile", "mse")
WEIGHT_METHODS = ("max", "mse")
#: How integer weights are chosen at their formats.
WEIGHT_ROUNDINGS = ("nearest", "gptq", "adaround", "brecq")


#: ``bias_correction="auto"`` applies to weights this narrow or narrower.
BIAS_CORRECTION_AUTO_BITS = 6


def _input_mean(calib, network: Network, index: int) -> Optional[np.ndarray]:
    """Per-channel mean of layer ``index``'s output (-1: the network input) from the
    calibration statistics, or None when they do not record it."""
    if calib is None or not hasattr(calib, "channel_mean"):
        return None
    m = calib.channel_mean(index)
    if m is not None and m.shape != (network.shape_of(index)[0],):
        return None
    return m


def fixed_point_refusal(network: Network) -> str:
    """Why ``network`` cannot be quantized ("" when every layer has a fixed-point
    implementation): the first layer whose fixed-point class refuses it."""
    for layer in network.layers:
        why = getattr(QREGISTRY[layer.kind], "refusal", lambda l: "")(layer)
        if why:
            return f"layer {layer.index} ({layer.kind}): {why}"
    return ""


def quantize_network(network: Network, *, wbits: int = 8, abits: int = 8, per_channel: bool = False,
                     rounding: str = "half_up", calib=None, act_method: Optional[str] = None,
                     weight_method: str = "mse", layer_rounding: Optional[Mapping[int, str]] = None,
                     layer_wbits: Optional[Mapping[int, int]] = None, layer_abits: Optional[Mapping[int, int]] = None,
                     act_fracs: Optional[Mapping[int, int]] = None, bias_correction="auto",
                     cfg_text: Optional[str] = None,
                     names: Optional[Sequence[str]] = None, progress: bool = False,
                     calib_inputs: Optional[Sequence[np.ndarray]] = None, weight_rounding: str = "nearest",
                     bias_shifts: Optional[Mapping[int, np.ndarray]] = None,
                     unify_routes: bool = True, adaround: Optional[Mapping] = None,
                     align=None, align_direction: str = "fit", act_equalize=None,
                     act_options: Optional[Mapping[str, Any]] = None,
                     gain_correction: Optional[str] = None, brecq: Optional[Mapping] = None,
                     zero_points: bool = False, act_zeros: Optional[Mapping[int, int]] = None,
                     weight_deltas: Optional[Mapping[int, np.ndarray]] = None,
                     weight_deltas_method: str = "adaround", bias_mode: str = "post",
                     refinements: Optional[dict] = None,
                     head_gains: Optional[Mapping[int, float]] = None,
                     dw_equalize: bool = False) -> QuantizedModel:
    """Quantize every layer of ``network`` (which must have its float weights loaded).

    Activation formats come from ``act_fracs`` if given, else from calibration statistics
    ``calib`` (:class:`mdfi.quant.calibrate.CalibStats`) with ``act_method``, else from a
    batch-norm estimate.  ``act_method=None`` picks ``"mse"`` for statistics of images and
    ``"max"`` for the batch-norm estimate, whose tails are lighter than real activations
    (docs/quantization.md measures both).  ``layer_rounding``, ``layer_wbits`` and ``layer_abits`` override the
    rounding mode, weight width and output width per layer index (mixed precision); with
    ``act_fracs`` given, a layer whose width is overridden must have its frac there too.

    ``bias_correction``: subtract the expected output shift of weight rounding from each
    convolution's bias, using per-channel input means from ``calib`` (True, False, or
    ``"auto"``: for weights of 6 bits or fewer, where docs/quantization.md measured it to
    help), or ``"empirical"``: with ``calib_inputs`` (float (C,H,W) letterboxed inputs, the
    calibration images), quantize layer by layer on them and cancel the mean output error
    the quantized network really makes, per channel (:mod:`mdfi.quant.sequential`);
    ``bias_mode`` "post" (default) matches the means after the activation, "pre" those of
    the pre-activation sums (round 17c, docs/quantization.md: after a convex leaky, noise
    raises the mean near zero and matching it lowers the large values; "pre" measured no
    better at the heads on yolov3-tiny).
    ``bias_shifts`` ({layer: per-channel float}) adds recorded empirical corrections
    instead of measuring them (how a recipe ships them without shipping images).

    ``unify_routes`` (default True; ignored with ``act_fracs`` given): the producers of a
    route's inputs get the route's (coarsest) format, so the route is a plain
    concatenation instead of a requantizing shift by one or two bits, whose round-half-up
    ties bias the values upward (:func:`unify_route_formats`).

    ``weight_rounding``: ``"nearest"`` (round half up), ``"gptq"`` (sequential rounding
    with error feedback on the calibration inputs, :mod:`mdfi.quant.gptq`) or
    ``"adaround"`` (up/down rounding learned per layer on the calibration inputs,
    :mod:`mdfi.quant.adaround`; ``adaround``: its settings, the fields of
    :class:`~mdfi.quant.adaround.AdaRoundSettings`) or ``"brecq"`` (the same up/down
    rounding learned jointly over blocks of consecutive convolutions with the activations
    quantized and randomly dropped, :mod:`mdfi.quant.brecq`; ``brecq``: the fields of
    :class:`~mdfi.quant.brecq.BrecqSettings`); all need ``calib_inputs``.  Every
    convolution records the methods that produced its integers (``QConvolutional.method``,
    saved in the model file).

    ``align`` (opt-in; ``"max"`` or ``"mse"``, or an :class:`~mdfi.quant.align.Alignment`
    prepared for this network and these weight widths): mantissa alignment
    (:mod:`mdfi.quant.align`), a real-valued rescaling of the float network that makes each
    output channel's ideal weight step a power of two; ``align_direction`` is ``"fit"``,
    ``"nearest"`` or ``"down"``.  It needs per-channel weights and ``calib_inputs``: the
    model is quantized from the rescaled network, and ``calib`` is replaced by statistics
    gathered again on it.

    ``act_equalize`` (opt-in; settings of :class:`~mdfi.quant.actequal.ActEqualSettings` as
    a mapping or ``"KEY=VALUE,..."`` text, True for the defaults, or a prepared
    :class:`~mdfi.quant.actequal.ActEqualization`): activation-range equalization
    (:mod:`mdfi.quant.actequal`), a real-valued rescaling of the float network chosen for
    narrow per-tensor activation formats; the same requirements and effects as ``align``
    (not both).

    ``dw_equalize``: power-of-two factors on the tensors only depthwise convolutions read
    (:mod:`mdfi.quant.dwequal`; exact in float, absorbed by the per-channel weight formats):
    each channel of such a tensor gets about the tensor's range in its one format.  Needs
    per-channel weights and ``calib_inputs`` (the factors come from them, and ``calib`` is
    replaced by statistics gathered again on the rescaled network); not with ``align`` or
    ``act_equalize``.  A network without such tensors is quantized as without it.

    ``gain_correction`` (opt-in, needs ``calib_inputs``; with ``weight_rounding`` ``"nearest"``
    or ``"gptq"``): ``"asym"`` rounds every convolution towards the least-squares weights
    that reproduce the float network's output from the quantized network's inputs
    (asymmetric calibration, GPTAQ), ``"gain"`` re-rounds ``w / g`` with ``g`` each output
    channel's measured slope of quantized on float output (:mod:`mdfi.quant.gaincorr`).
    Recorded per layer (``method["gain"]``) and in the options.

    ``zero_points`` (opt-in; formats chosen from statistics with ``act_method`` ``"mse"``):
    activation formats with a zero point (docs/fixed-point.md 1.1), chosen by
    :func:`mdfi.quant.zeropoint.choose_formats_zero` (which also unifies the formats of each
    route's producers, so ``unify_routes`` is implied).  ``act_zeros`` ({layer: zero}) gives
    them with ``act_fracs`` instead.

    ``act_options``: options of ``act_method`` when formats are chosen from statistics
    (:func:`mdfi.quant.calibrate.choose_frac`, e.g. ``{"clip_budget": 0.03}`` for ``"mse"``);
    recorded in the model's options.

    ``weight_deltas`` ({layer: integer array of the layer's weight shape}): recorded weight
    rounding, each weight's integer minus its round-half-up integer (values -1, 0, 1): how a
    recipe ships AdaRound's choices (``weight_deltas_method`` names what made them, recorded
    as the layer's weight method) without shipping the calibration images, as
    ``bias_shifts`` ships empirical bias corrections.  ``refinements`` (a dict, filled in):
    for every convolution refined on calibration data, ``{layer: {"weight_delta": int8
    array, "bias_shift": float64 array}}`` -- what ``weight_deltas`` and ``bias_shifts``
    need to rebuild the same integers without the data (``benchmarks/make_rounding.py``).

    ``head_gains`` ({[yolo] layer: g}): logit gains of heads' objectness/class tables
    (:class:`mdfi.layers.yolo.QYolo`), recorded in the layer meta and the options.
    """
    calibrate = None

    why = fixed_point_refusal(network)
    if why:
        raise FormatError(f"{network.path}: {why}")
    fp.check_bits(wbits, "weight width")
    fp.check_bits(abits, "activation width")
    fp.rounding_code(rounding)
    if act_method is not None and act_method not in ACT_METHODS:
        raise FormatError(f"unknown activation method {act_method!r} (expected one of {', '.join(ACT_METHODS)})")
    if weight_method not in WEIGHT_METHODS:
        raise FormatError(f"unknown weight method {weight_method!r} (expected one of {', '.join(WEIGHT_METHODS)})")
    layer_rounding = {int(k): v for k, v in (layer_rounding or {}).items()}
    layer_wbits = {int(k): fp.check_bits(v, "weight width") for k, v in (layer_wbits or {}).items()}
    layer_abits = {int(k): fp.check_bits(v, "activation width") for k, v in (layer_abits or {}).items()}
    for what, table in (("rounding", layer_rounding), ("weight width", layer_wbits), ("activation width", layer_abits)):
        for i in table:
            if not 0 <= i < len(network.layers):
                raise FormatError(f"per-layer {what} for layer {i}: the network has layers 0..{len(network.layers) - 1}")
    for what, table, kinds in (("weight width", layer_wbits, ("convolutional",)),
                               ("activation width", layer_abits, OWN_FORMAT_KINDS)):
        for i in sorted(table):
            if network.layers[i].kind not in kinds:     # would be recorded and shown, and change nothing
                raise FormatError(f"per-layer {what} for layer {i}: layer {i} of {network.path} is a "
                                  f"{network.layers[i].kind} layer; only {', '.join(kinds[:-1]) + ' and ' if len(kinds) > 1 else ''}"
                                  f"{kinds[-1]} layers have "
                                  f"{'weights' if what == 'weight width' else 'an output format of their own'}")
    for mode in layer_rounding.values():
        fp.rounding_code(mode)
    head_gains = yolo_gains(network, head_gains)
    if zero_points and act_fracs is not None:
        raise FormatError("zero_points=True chooses the activation formats; with act_fracs given, give their "
                          "zero points as act_zeros instead")
    if weight_deltas and (weight_rounding != "nearest" or gain_correction is not None or brecq):
        raise FormatError("weight_deltas record a weight rounding: give them with weight_rounding 'nearest' only")
    if weight_deltas and weight_deltas_method not in ("adaround", "gptq", "brecq"):
        raise FormatError(f"weight_deltas_method={weight_deltas_method!r}: expected adaround, gptq or brecq")
    for i in (weight_deltas or {}):
        if not (0 <= int(i) < len(network.layers) and network.layers[int(i)].kind == "convolutional"):
            raise FormatError(f"weight_deltas for layer {i}: not a convolutional layer of {network.path}")
    for i, v in (bias_shifts or {}).items():
        L = network.layers[int(i)] if 0 <= int(i) < len(network.layers) else None
        if L is None or L.kind != "convolutional":
            raise FormatError(f"bias_shifts for layer {i}: not a convolutional layer of {network.path}")
        v = np.asarray(v)
        if v.shape != (L.filters,) or v.dtype.kind not in "fiu" or not np.isfinite(v).all():
            raise FormatError(f"bias_shifts for layer {i}: expected {L.filters} finite numbers (one per filter), "
                              f"found shape {v.shape} of {v.dtype}")
    if act_zeros is not None and act_fracs is None:
        raise FormatError("act_zeros are given with act_fracs (zero_points=True chooses both)")
    if zero_points and (act_method not in (None, "mse") or set(act_options or {}) - {"clip_budget"}):
        raise FormatError("zero_points choose formats by the mse criterion (act_method 'mse', option clip_budget)")
    if bias_mode not in ("post", "pre"):
        raise FormatError(f"bias_mode={bias_mode!r}: expected 'post' or 'pre'")
    if bias_correction not in (True, False, "auto", "empirical"):
        raise FormatError(f"bias_correction={bias_correction!r}: expected True, False, 'auto' or 'empirical'")
    if weight_rounding not in WEIGHT_ROUNDINGS:
        raise FormatError(f"weight_rounding={weight_rounding!r}: expected one of {', '.join(WEIGHT_ROUNDINGS)}")
    from .gaincorr import check as check_gain
    gain_correction = check_gain(gain_correction)
    if gain_correction is not None and weight_rounding in ("adaround", "brecq"):
        raise FormatError(f"gain_correction with weight_rounding={weight_rounding!r}: "
                          f"{'AdaRound' if weight_rounding == 'adaround' else 'block reconstruction'} already targets "
                          "the float network's output from the quantized inputs; use 'nearest' or 'gptq'")
    grouped = [l for l in network.layers if l.kind == "convolutional" and l.groups > 1]
    chosen = [what for what, on in ((f"weight_rounding={weight_rounding!r}", weight_rounding != "nearest"),
                                    ("gain_correction", gain_correction is not None), ("align", align is not None),
                                    ("act_equalize", act_equalize is not None), ("weight_deltas", bool(weight_deltas)))
              if on]
    if grouped and chosen:
        raise FormatError(f"{network.path}: layer {grouped[0].index} is a grouped convolution "
                          f"(groups={grouped[0].groups}); {', '.join(chosen)} are not implemented for grouped "
                          f"convolutions (round to nearest with analytic or empirical bias correction is)")
    ada = None
    if weight_rounding == "adaround":
        from .adaround import settings_from
        ada = settings_from(adaround)
    elif adaround:
        raise FormatError("adaround settings given but weight_rounding is not 'adaround'")
    brq = None
    if weight_rounding == "brecq":
        from .brecq import check_network, settings_from as brecq_settings
        brq = brecq_settings(brecq)
        check_network(network)
    elif brecq:
        raise FormatError("brecq settings given but weight_rounding is not 'brecq'")
    alignment = None
    if align is not None and act_equalize is not None:
        raise FormatError("give align or act_equalize, not both (each rescales the float network)")
    if dw_equalize and (align is not None or act_equalize is not None):
        raise FormatError("give dw_equalize or align / act_equalize, not both (each rescales the float network)")
    if dw_equalize:
        from .dwequal import prepare as prepare_dw
        alignment = prepare_dw(network, calib_inputs or [], per_channel=per_channel, wbits=wbits, progress=progress)
        if alignment is not None:
            network, calib = alignment.network, alignment.calib
    elif align is not None or act_equalize is not None:
        from .align import Alignment, resolve as resolve_alignment
        if act_equalize is not None and not isinstance(act_equalize, Alignment):
            from .actequal import prepare as prepare_equalization
            alignment = prepare_equalization(network, act_equalize, wbits=wbits, layer_wbits=layer_wbits,
                                             abits=abits, layer_abits=layer_abits, per_channel=per_channel,
                                             inputs=calib_inputs, progress=progress,
                                             clip_budget=(act_options or {}).get("clip_budget")
                                             if act_method in (None, "mse") else None)
        else:
            alignment = resolve_alignment(network, align if align is not None else act_equalize,
                                          direction=align_direction, wbits=wbits, layer_wbits=layer_wbits,
                                          abits=abits, layer_abits=layer_abits, per_channel=per_channel,
                                          inputs=calib_inputs, progress=progress)
        network, calib = alignment.network, alignment.calib
    needs_data = bias_correction == "empirical" or weight_rounding != "nearest" or gain_correction is not None
    if needs_data and not calib_inputs:
        raise FormatError(f"bias_correction={bias_correction!r} / weight_rounding={weight_rounding!r} "
                          f"/ gain_correction={gain_correction!r} need calibration images (calib_inputs)")
    run = None
    if needs_data:
        from .sequential import CalibRun
        run = CalibRun(network, calib_inputs, progress=progress)
    source = "given"
    act_options = dict(act_options or {})
    if act_options and act_fracs is not None:
        raise FormatError("act_options apply when formats are chosen from statistics, not with act_fracs given")
    act_zeros = {int(k): int(v) for k, v in (act_zeros or {}).items()}
    if act_fracs is None:
        from . import calibrate
        if calib is None:
            calib = calibrate.estimate_from_batchnorm(network)
        source = calib.meta.get("method", "images") if hasattr(calib, "meta") else "images"
        if zero_points:
            from .zeropoint import choose_formats_zero
            act_method = "mse"
            act_fracs, act_zeros = choose_formats_zero(calib, network, abits, layer_abits,
                                                       act_options.get("clip_budget", 0.01))
        else:
            if act_method is None:
                act_method = "max" if calib.meta.get("method") == "batchnorm-estimate" else "mse"
            act_fracs = calibrate.choose_formats(calib, network, abits, act_method, **act_options)
            for i, b in layer_abits.items():
                if i in calib:
                    act_fracs[i] = calibrate.choose_frac(calib[i], b, act_method, **act_options)
            if unify_routes:
                act_fracs = unify_route_formats(network, act_fracs, layer_abits, abits)
        missing = [l.index for l in network.layers
                   if l.kind in OWN_FORMAT_KINDS and l.index not in act_fracs]
        if missing:
            where = getattr(calib, "path", None) or "the calibration statistics"
            raise ModelFileError(f"{where}: no statistics for layer {missing[0]} ({network.layers[missing[0]].kind}) "
                                 f"of {network.path}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: "
                                 f"gathered on another network, or edited")

    def out_format(i: int) -> fp.QFormat:
        return fp.QFormat(layer_abits.get(i, abits), int(act_fracs[i]), zero=act_zeros.get(i, 0))

    fmts: Dict[int, fp.QFormat] = {-1: fp.INPUT_FORMAT}
    block_of: Dict[int, List[int]] = {}
    block_ints: Dict[int, np.ndarray] = {}
    if brq is not None:
        from .brecq import blocks
        block_of = {blk[0]: blk for blk in blocks(network, brq.convs)}
    pixel_domain = {-1}          # outputs still in pixel units (Darknet's /255 not yet applied)
    qlayers: List[QLayer] = []
    for layer in network.layers:
        i = layer.index
        mode = layer_rounding.get(i, rounding)
        in_fmts = [fmts[j] for j in layer.inputs]
        for j, f in zip(layer.inputs, in_fmts):
            if f is None:       # a [yolo]/[region] output: per-entry probability/exp codes, no one format
                raise FormatError(f"{network.path}: layer {i} ({layer.kind}) reads the output of detection head "
                                  f"layer {j} ({network.layers[j].kind}): not supported in fixed point "
                                  f"(the float path, --float, runs it as Darknet does)")
        cls = QREGISTRY[layer.kind]
        in_pixels = [j in pixel_domain for j in layer.inputs]
        if layer.kind == "convolutional":
            if layer.num_params() and layer.weights is None:
                raise ShapeError(f"layer {i}: no float weights loaded; cannot quantize")
            out = out_format(i)
            lw = layer_wbits.get(i, wbits)
            mean = None
            if bias_correction is True or (bias_correction == "auto" and lw <= BIAS_CORRECTION_AUTO_BITS):
                mean = _input_mean(calib, network, layer.inputs[0])
                if mean is not None and in_pixels[0]:
                    mean = mean * 255.0                     # folded weights multiply pixels
            in_scale = (1.0 / 255.0) if in_pixels[0] else 1.0
            ql = cls.quantize(layer, in_fmts[0], out, wbits=lw, rounding=mode, per_channel=per_channel,
                              weight_method=weight_method, input_scale=in_scale, input_mean=mean)
            if alignment is not None and i in alignment.scales:
                ql.method = dict(ql.method, **{alignment.kind: alignment.record})
            if i in block_of and run is not None:
                from .brecq import brecq_block
                qls = {i: ql}
                f = ql.out_fmt
                for j in block_of[i][1:]:
                    lj = network.layers[j]
                    if lj.kind == "convolutional":
                        qls[j] = cls.quantize(lj, f, out_format(j),
                                              wbits=layer_wbits.get(j, wbits), rounding=layer_rounding.get(j, rounding),
                                              per_channel=per_channel, weight_method=weight_method)
                        f = qls[j].out_fmt
                block_ints.update(brecq_block(network, block_of[i], qls, run, in_scale, brq))
            if run is not None or (bias_shifts and i in bias_shifts) or (weight_deltas and i in weight_deltas):
                ql = _refine_conv(layer, ql, run, in_scale, weight_rounding, bias_correction,
                                  None if not bias_shifts else bias_shifts.get(i), rounding=mode, adaround=ada,
                                  gain_correction=gain_correction, given=block_ints.pop(i, None),
                                  recorded_delta=None if not weight_deltas else weight_deltas.get(i),
                                  recorded_method=weight_deltas_method, record=refinements, index=i,
                                  bias_mode=bias_mode)
        elif layer.kind == "shortcut":
            if any(in_pixels):
                raise FormatError(f"layer {i}: a shortcut on the raw pixel input is not supported in fixed point")
            ql = cls.quantize(layer, in_fmts, out_format(i), mode)
        elif layer.kind in ("avgpool", "scale_channels"):
            if any(in_pixels):
                raise FormatError(f"layer {i}: [{layer.section.name}] on the raw pixel input is not supported in "
                                  f"fixed point")
            ql = cls.quantize(layer, in_fmts[0] if layer.kind == "avgpool" else in_fmts, out_format(i), mode)
        elif layer.kind == "route":
            if any(in_pixels):
                raise FormatError(f"layer {i}: a route of the raw pixel input is not supported in fixed point")
            ql = cls.quantize(layer, in_fmts, mode)
        else:
            if any(in_pixels) and layer.kind in ("yolo", "region"):
                raise FormatError(f"layer {i}: a detection head directly on the pixel input is not supported")
            extra = {"logit_gain": head_gains[i]} if i in head_gains else {}
            ql = cls.quantize(layer, in_fmts[0], mode, **extra)
            if any(in_pixels):
                pixel_domain.add(i)
        fmts[i] = ql.out_fmt
        qlayers.append(ql)
        if run is not None:
            run.advance(layer, ql)
    options = {"wbits": wbits, "abits": abits, "per_channel": bool(per_channel), "rounding": rounding,
               "layer_rounding": {str(k): v for k, v in sorted(layer_rounding.items())},
               "layer_wbits": {str(k): v for k, v in sorted(layer_wbits.items())},
               "layer_abits": {str(k): v for k, v in sorted(layer_abits.items())},
               "act_method": act_method, "weight_method": weight_method, "formats_source": source,
               "bias_correction": bias_correction, "weight_rounding": weight_rounding,
               **({"bias_mode": bias_mode} if bias_mode != "post" else {}),
               "unify_routes": bool(unify_routes), "darknet": network.darknet,
               "darknet_reason": network.darknet_reason}
    if act_options:
        options["act_options"] = act_options
    if any(act_zeros.values()):
        options["zero_points"] = True
    if run is not None:
        options["calib_inputs"] = len(run)
    if weight_deltas:
        options["recorded_rounding"] = weight_deltas_method
    if gain_correction is not None:
        options["gain_correction"] = gain_correction
    if head_gains:
        options["head_gains"] = {str(k): float(v) for k, v in sorted(head_gains.items())}
    if alignment is not None:
        options[alignment.kind] = alignment.summary()
    if ada is not None:
        from dataclasses import asdict
        options["adaround"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(ada).items()}
    if brq is not None:
        from dataclasses import asdict
        from .brecq import blocks
        options["brecq"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(brq).items()}
        options["brecq"]["blocks"] = [list(b) for b in blocks(network, brq.convs)]
    if cfg_text is None:
        with open(network.path, "r", encoding="utf-8") as fh:
            cfg_text = fh.read()
    return QuantizedModel(network, cfg_text, qlayers, options, names)


def unify_route_formats(network: Network, act_fracs: Mapping[int, int], layer_abits: Mapping[int, int],
                        abits: int) -> Dict[int, int]:
    """Give the convolutions (and shortcuts) whose outputs meet in a route one format: the
    coarsest (smallest ``frac``) of the route's inputs, followed back through maxpool and
    upsample layers (which keep their input format).

    A route aligns its inputs by ``R(x / 2**d)`` (docs/fixed-point.md section 5).  For a
    small ``d`` the round-half-up ties are frequent (half of all values for ``d = 1``) and
    every tie rounds up: the aligned tensor is biased by ``+2**-(d+1)`` of its step on
    average, a systematic error that the following convolutions turn into a shift of the
    detection logits (docs/quantization.md measures it).  Requantizing once, in the
    producing convolution (shifts of 7 bits and more, ties negligible), to the same coarse
    format costs no resolution and carries no such bias.  Producers of different widths are
    left alone."""
    fr = {int(k): int(v) for k, v in act_fracs.items()}

    def producer(i):
        while i >= 0 and network.layers[i].kind in ("maxpool", "upsample"):
            i = network.layers[i].inputs[0]
        return i if i >= 0 and network.layers[i].kind in ("convolutional", "shortcut") else None

    for _ in range(len(network.layers)):
        changed = False
        for l in network.layers:
            if l.kind != "route" or len(l.inputs) < 2:
                continue
            prods = [producer(i) for i in l.inputs]
            if any(p is None or p not in fr for p in prods):
                continue
            if len({layer_abits.get(p, abits) for p in prods}) != 1:
                continue
            f = min(fr[p] for p in prods)
            for p in prods:
                if fr[p] != f:
                    fr[p], changed = f, True
        if not changed:
            break
    return fr


def _refine_conv(layer, ql, run, in_scale: float, weight_rounding: str, bias_correction,
                 recorded_shift, *, rounding: str, adaround=None, gain_correction=None, given=None,
                 recorded_delta=None, recorded_method: str = "adaround", record=None, index=None,
                 bias_mode: str = "post"):
    """Re-choose a convolution's integers on calibration data (``run``) or with recorded
    weight deltas and bias shifts: GPTQ or AdaRound weight rounding (with a gain correction
    if asked), then empirical bias correction."""
    w, b = layer.folded_float_params()
    m = layer.filters
    w = (w * in_scale).reshape(m, -1)
    w_q, method = ql.weights.reshape(m, -1), dict(ql.method or {})
    if recorded_delta is not None:
        if run is not None:
            raise FormatError(f"layer {index}: recorded weight deltas and calibration inputs exclude each other")
        d = np.asarray(recorded_delta)
        if d.size != w_q.size or not np.issubdtype(d.dtype, np.integer) or (d.size and np.abs(d).max() > 1):
            raise FormatError(f"layer {index}: recorded weight deltas: expected {w_q.size} integers in -1..1")
        w_q = w_q.astype(np.int64) + d.reshape(m, -1).astype(np.int64)
        lo, hi = -(1 << (ql.wbits - 1)), (1 << (ql.wbits - 1)) - 1
        if w_q.size and (w_q.min() < lo or w_q.max() > hi):
            raise FormatError(f"layer {index}: recorded weight deltas leave the {ql.wbits}-bit range")
        method["weights"] = recorded_method
    if run is not None and gain_correction is not None:
        from .gaincorr import correct_layer, nearest_round
        from .gptq import DAMP, gptq_round
        if weight_rounding == "gptq":
            def round_fn(t, h):
                return gptq_round(t, ql.w_frac, ql.wbits, h)
        else:
            def round_fn(t, h):
                return nearest_round(t, ql.w_frac, ql.wbits)
        w_q = correct_layer(gain_correction, layer, run, w, ql.w_frac, ql.in_fmt.frac, 1.0 / in_scale, round_fn,
                            damp=DAMP, progress=run.progress, hessian=weight_rounding == "gptq")
        method["weights"] = weight_rounding
        method["gain"] = gain_correction
    elif run is not None and weight_rounding == "gptq":
        from .gptq import gptq_layer
        w_q = gptq_layer(layer, run, w, ql.w_frac, ql.wbits)
        method["weights"] = "gptq"
    elif run is not None and weight_rounding == "adaround":
        from .adaround import adaround_layer
        w_q = adaround_layer(layer, run, w, b, ql.w_frac, ql.wbits, ql.in_fmt.frac,
                             float_input_scale=1.0 / in_scale, settings=adaround)
        method["weights"] = "adaround"
    elif run is not None and weight_rounding == "brecq" and given is not None:
        w_q = given
        method["weights"] = "brecq"
    # The float bias b is re-rounded from scratch: an analytic correction made by
    # cls.quantize for round-to-nearest weights is replaced by the empirical one (or
    # dropped when the weights changed).
    method["bias"] = "nearest"
    def build(bias_float):
        return type(ql).from_integers(layer, ql.in_fmt, ql.out_fmt, w_q, ql.w_frac, bias_float, wbits=ql.wbits,
                                      rounding=rounding, per_channel=ql.per_channel, method=method)
    delta = np.zeros(m)
    if run is not None and bias_correction == "empirical":
        from .sequential import empirical_bias_shift
        delta = empirical_bias_shift(layer, run, build(b), w, b, float_input_scale=1.0 / in_scale, mode=bias_mode)
        method["bias"] = "empirical"
    if recorded_shift is not None:
        delta = delta + np.asarray(recorded_shift, np.float64)
        method["bias"] = "empirical"
    out = build(b + delta)
    if record is not None and run is not None:     # what rebuilds `out` without the data
        record[index] = {"bias_shift": np.array(delta, np.float64),
                         "weight_delta": (out.weights.astype(np.int64) - ql.weights.astype(np.int64)).astype(np.int8)}
    return out


def shift_biases(ql, shift: np.ndarray):
    """``ql`` (a quantized convolution) with ``shift`` (per channel, float units of its
    output) added to its bias: the integer bias moves by the shift rounded at the
    accumulator scale; weights and formats are unchanged."""
    acc = np.exp2((ql.w_frac + ql.in_fmt.frac).astype(np.float64))
    method = dict(ql.method or {})
    method["bias"] = "empirical"
    return type(ql).from_integers(ql.layer, ql.in_fmt, ql.out_fmt, ql.weights, ql.w_frac,
                                  ql.bias_unfolded().astype(np.float64) / acc + np.asarray(shift, np.float64),
                                  wbits=ql.wbits, rounding=ql.rounding, per_channel=ql.per_channel, method=method)
