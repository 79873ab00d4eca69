"""Shipped quantization recipes: how a zoo model (or a model without a recipe) is quantized by default.

A *recipe* says how a zoo model is quantized by default: which calibration statistics
(shipped in ``mdfi/data/``, reproducible by the command in ``docs/quantization.md``), whether
weights get per-channel formats, and the format-selection methods.  Weights themselves are
never shipped: the integer model is derived from the official float weights on first use
and cached as a ``.mdfi`` file in ``$MDFI_HOME/quantized/`` (:mod:`mdfi.quant.zoo_cache`).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Callable, Optional, Sequence, Union

from ..errors import FormatError, ModelFileError
from ..darknet.network import Network
from .quantize import quantize_network
from .roundingfile import (ROUNDING_FORMAT, ROUNDING_KWARGS, integer_digest, read_rounding,  # noqa: F401
                           rounding_kwargs, write_rounding)

#: The widths whose recipe model is zero points with shipped AdaRound rounding: w8a8 by round 15's
#: rule, w6a8 / w6a6 / w4a8 by round 15b's (docs/quantization.md), for both zoo recipes.
ZERO_POINT_WIDTHS = ("w8a8", "w6a8", "w6a6", "w4a8")
#: Per zoo model: shipped calibration statistics and the settings that meet the accuracy
#: targets (docs/quantization.md has the measurements behind them).
RECIPES = {
    # Round 15 (docs/quantization.md, its rule on `val5`): at 8 bits, zero-point formats (mse on
    # the shipped statistics) with AdaRound weights and empirical bias correction -- round 13's
    # best 8-bit model -- are the default; the rounding ships as `rounding` (made by
    # benchmarks/make_rounding.py); round 15b the same at w6a8, w6a6 and w4a8.  `zero_points` is
    # keyed by the widths it was chosen at.  zero_points=False / --no-zero-points: the recipe's
    # decisions at 8 bits, round-half-up weights elsewhere.
    "yolov3-tiny": {"calib": "yolov3-tiny.calib.json", "per_channel": True,
                    "act_method": "mse", "weight_method": "mse",
                    "decisions": "yolov3-tiny.decisions.json",
                    "zero_points": {t: {"rounding": f"yolov3-tiny.{t}.rounding.npz"} for t in ZERO_POINT_WIDTHS}},
    # the official COCO model: mse formats with a 0.03 % clip budget and full head shifts
    # (no format search), chosen on `val` by the rule committed first (docs/quantization.md);
    # round 14 made zero points (same clip budget) its 8-bit default, round 15 the same as
    # yolov3-tiny's above (no clip budget: round 13's model, as measured)
    "yolov4-tiny": {"calib": "yolov4-tiny.calib.json", "per_channel": True,
                    "act_method": "mse", "weight_method": "mse",
                    "decisions": "yolov4-tiny.decisions.json",
                    # (round 15c: the 4-bit model's first-layer weights at 8 bits, recorded in its rounding file)
                    "zero_points": {t: {"rounding": f"yolov4-tiny.{t}.rounding.npz"} for t in ZERO_POINT_WIDTHS}},
}
# per-channel weights for every model: chosen for models without a recipe by the rule of
# docs/quantization.md "Round 11" (yolov3-tiny, yolov4-tiny COCO and 10-class on val / val4)
DEFAULTS = {"wbits": 8, "abits": 8, "rounding": "half_up", "per_channel": True,
            "act_method": None, "weight_method": "mse"}       # None: by statistics source
def width_tag(opts: dict) -> str:
    """``"w8a8"``: the weight and activation widths of ``opts`` (:func:`resolve`)."""
    return f"w{opts['wbits']}a{opts['abits']}"


def _zero_point_entry(spec_name: Optional[str], opts: Optional[dict] = None) -> Optional[dict]:
    """The recipe's ``zero_points`` entry for the widths of ``opts`` (per-channel weights and
    round-half-up requantization, as measured), or None."""
    o = opts or resolve(spec_name)
    if not (bool(o["per_channel"]) and o.get("rounding", "half_up") == "half_up"):
        return None
    entry = (RECIPES.get(spec_name or "", {}).get("zero_points") or {}).get(width_tag(o))
    return entry if isinstance(entry, dict) else None


#: Widths at which a model without a recipe calibrated on the shipped sample photo gets zero
#: points by default (docs/quantization.md "Round 25": rule 25 on val6-val9 pooled; "Round 26":
#: w6a8, with round 24b's mixed widths chosen on the zero-point build; per-channel weights and
#: round-half-up requantization, as measured).
SAMPLE_ZERO_POINT_WIDTHS = ("w8a8", "w6a8")
#: The same with the user's calibration photos (``--calib DIR``, ``mdfi.load(calib=...)``,
#: statistics gathered from photos): docs/quantization.md "Round 27" (w8a8, w6a8).
PHOTO_ZERO_POINT_WIDTHS = ("w8a8", "w6a8")


def default_zero_points(spec_name: Optional[str], source: str, opts: Optional[dict] = None) -> bool:
    """Whether zero points are the default for ``spec_name`` whose statistics come from
    ``source`` (:func:`statistics_source`): ``"shipped"`` -- a recipe's statistics, with a
    recipe ``zero_points`` entry for the widths of ``opts`` (from :func:`resolve`;
    per-channel, round-half-up, as measured); ``"sample"`` -- a model without a recipe on the
    shipped sample photo, at :data:`SAMPLE_ZERO_POINT_WIDTHS` (rounds 25-26; round 25 a second
    trial of round 14's rule on more photos); ``"photos"`` -- a model without a recipe on the
    user's photos, at :data:`PHOTO_ZERO_POINT_WIDTHS` (round 27).  The batch-norm estimate: no
    (docs/quantization.md "Round 14")."""
    if source in ("sample", "photos"):
        o = opts or resolve(spec_name)
        widths = SAMPLE_ZERO_POINT_WIDTHS if source == "sample" else PHOTO_ZERO_POINT_WIDTHS
        return (spec_name not in RECIPES and bool(o["per_channel"]) and o.get("rounding", "half_up") == "half_up"
                and width_tag(o) in widths)
    return source == "shipped" and _zero_point_entry(spec_name, opts) is not None


#: Zoo models whose default integer model equalizes its depthwise inputs by powers of two
#: (:mod:`mdfi.quant.dwequal`), at these widths, when calibrated on the shipped sample photo with
#: zero points: docs/quantization.md round 29c (Yolo-Fastest 1.1-xl, chosen on ``val8``).
DW_EQUALIZE = {"yolo-fastest-1.1-xl": ("w8a8",)}


def default_dw_equalize(spec_name: Optional[str], source: str, opts: dict, zero_points: bool) -> bool:
    """Whether a model is quantized with ``dw_equalize`` unless told otherwise (:data:`DW_EQUALIZE`)."""
    return source == "sample" and bool(zero_points) and width_tag(opts) in DW_EQUALIZE.get(spec_name or "", ())


def calibration_inputs(network: Network, images: Optional[Sequence] = None, augment: Optional[bool] = None) -> list:
    """The float network inputs of ``images`` (the calibration photos), else of the shipped
    sample photo and its mirror image (what the statistics of a model without photos come
    from): the inputs of ``dw_equalize`` and of the empirical bias correction by default.
    ``augment``: with the mirror images (default: for the sample photo only)."""
    from ..image import load_image
    from ..preprocess import network_input
    from .calib_inputs import calibration_variants
    rgbs = [load_image(i) for i in images] if images is not None else [sample_rgb()]
    aug = images is None if augment is None else augment
    return [network_input(v, network) for r in rgbs for v in calibration_variants(r, augment=aug)]


def photo_bias_inputs(network: Network, on: bool, images: Optional[Sequence]) -> dict:
    """With calibration photos and the empirical bias correction, the photos and their mirror
    images serve it and ``dw_equalize`` alike, as ``mdfi quantize --calib DIR --bias-correction
    empirical`` reads them (``calibrate.load_inputs``); ``{}`` otherwise."""
    if not on or images is None:
        return {}
    return {"calib_inputs": calibration_inputs(network, images, augment=True)}


def dw_equalize_kwargs(network: Network, on: bool, images: Optional[Sequence] = None) -> dict:
    """``quantize_network`` keyword arguments of ``dw_equalize`` (its inputs:
    :func:`calibration_inputs`); ``{}`` when ``on`` is false."""
    if not on:
        return {}
    return {"dw_equalize": True, "calib_inputs": calibration_inputs(network, images)}


DW_EQUALIZE_STORY = "depthwise inputs equalized by powers of two (docs/quantization.md round 29)"

#: Zoo models whose default at these widths cancels, per output channel, the mean error the
#: quantized network makes on the inputs its formats come from (``bias_correction="empirical"``
#: on the shipped sample photo and its mirror; no photos, no shipped data), with zero points:
#: docs/quantization.md round 30 (Yolo-Fastest 1.1 and 1.1-xl at w8a8, chosen on ``val6`` + ``val7``)
#: and round 32 (1.1-xl at w6a8, chosen on ``val9``).
EMPIRICAL_BIAS = {"yolo-fastest-1.1": ("w8a8",), "yolo-fastest-1.1-xl": ("w8a8", "w6a8")}


#: ... and every model without a recipe that has a depthwise convolution, at these widths:
#: docs/quantization.md round 31 (both Yolo-Fastest models as anyone's own weights, ``val4`` + ``val5``).
EMPIRICAL_BIAS_DEPTHWISE = ("w8a8",)


def has_depthwise(network: Network) -> bool:
    """Whether a convolution of ``network`` reads one input channel per group (groups > 1)."""
    return any(l.kind == "convolutional" and l.groups > 1 and l.group_channels == 1 for l in network.layers)


def rgb_depthwise(network: Network) -> bool:
    """Round 31's condition on the network: depthwise layers, and RGB input (the sample photo's;
    a network of other channels takes the batch-norm estimate, no photo)."""
    return network.channels == 3 and has_depthwise(network)


def default_empirical_bias(spec_name: Optional[str], source: str, opts: dict, zero_points: bool,
                           depthwise: Union[bool, Callable[[], bool]] = False) -> bool:
    """Whether a model is quantized with the empirical bias correction unless told otherwise,
    without photos and with zero points: :data:`EMPIRICAL_BIAS` for the zoo models it names,
    :data:`EMPIRICAL_BIAS_DEPTHWISE` for models without a recipe whose network has a depthwise
    convolution (``depthwise``: that fact, or a function telling it, called only when needed)."""
    if source != "sample" or not zero_points:
        return False
    tag = width_tag(opts)
    if (spec_name or "") in EMPIRICAL_BIAS:
        return tag in EMPIRICAL_BIAS[spec_name or ""]
    if spec_name in RECIPES or tag not in EMPIRICAL_BIAS_DEPTHWISE:
        return False
    return bool(depthwise() if callable(depthwise) else depthwise)


def check_empirical_bias(qkw: dict, what: str = "empirical_bias", shipped: bool = False) -> None:
    """A recipe's shipped statistics come with its own bias corrections (its rounding files'
    ``weight_deltas`` / ``bias_shifts``, its decisions' head shifts): refused together with the
    empirical bias correction (one line), before any heavy work when ``shipped`` says so."""
    if shipped or "weight_deltas" in qkw or "bias_shifts" in qkw:
        from ..errors import MDFIError
        raise MDFIError(f"{what}: this model's recipe ships its own bias corrections with its statistics "
                        "(docs/quantization.md rounds 15-16); give calibration photos (calib= / --calib) or load "
                        "the weights as your own (--cfg / --weights) to measure new ones")


def empirical_bias_kwargs(network: Network, on: bool, qkw: dict, images: Optional[Sequence] = None,
                          what: str = "empirical_bias", shipped: bool = False) -> dict:
    """``quantize_network`` keyword arguments of the empirical bias correction, to update ``qkw``
    (the other arguments) with: ``bias_correction="empirical"`` and, unless ``qkw`` has them,
    :func:`calibration_inputs`; ``{}`` when ``on`` is false.  Refused with a recipe's shipped
    statistics (``shipped``) and their bias corrections (:func:`check_empirical_bias`)."""
    if not on:
        return {}
    check_empirical_bias(qkw, what, shipped)
    kw: dict = {"bias_correction": "empirical"}
    if qkw.get("calib_inputs") is None:
        kw["calib_inputs"] = calibration_inputs(network, images)
    return kw


EMPIRICAL_BIAS_STORY = ("biases corrected for the mean error measured on the same inputs "
                        "(docs/quantization.md rounds 30-32)")


def statistics_source(spec_name: Optional[str], *, photos: bool, bn_estimate: bool = False) -> str:
    """Where a quantization's activation statistics come from, as :func:`default_zero_points`
    names it: calibration photos (or their statistics) given, the batch-norm estimate, the
    recipe's shipped statistics, else the shipped sample photo."""
    if photos:
        return "photos"
    if bn_estimate:
        return "bn-estimate"
    return "shipped" if has_shipped_calibration(spec_name) else "sample"


def zero_point_kwargs(spec_name: Optional[str], shipped_stats: bool, opts: Optional[dict] = None,
                      plain: bool = True) -> dict:
    """``quantize_network`` keyword arguments of zero-point formats: ``mse``, with the recipe's
    options when its shipped statistics are used at widths it has a ``zero_points`` entry for
    (:func:`default_zero_points`): its clip budget, and its shipped weight rounding and bias
    shifts (:func:`shipped_rounding`) unless ``plain`` is False (the caller changes formats
    or methods the rounding was not made for)."""
    kw = {"zero_points": True, "act_method": "mse"}
    o = opts or resolve(spec_name)
    entry = _zero_point_entry(spec_name, o) if shipped_stats else None
    if entry is None:
        return kw
    if entry.get("clip_budget") is not None:
        kw["act_options"] = {"clip_budget": float(entry["clip_budget"])}
    if plain and entry.get("rounding"):
        kw.update(shipped_rounding(spec_name, width_tag(o)))      # with the layer widths it was made at
    return kw


def zero_point_story(spec_name: Optional[str], zkw: dict, default: bool = True, opts: Optional[dict] = None) -> str:
    """What ``formats_source`` adds for a recipe's zero-point model built with ``zkw``
    (:func:`zero_point_kwargs`) at the widths of ``opts``."""
    entry = _zero_point_entry(spec_name, opts) or {}
    if "weight_deltas" in zkw and entry.get("rounding"):
        wide = zkw.get("layer_abits") or {}
        extra = (f"; {'/'.join(sorted({str(b) for b in wide.values()}))}-bit outputs at layers "
                 f"{', '.join(map(str, sorted(wide)))} (round 18b)") if wide else ""
        return (f"zero points, AdaRound weights and empirical bias shifts shipped in mdfi/data/{entry['rounding']} "
                f"({'the recipe default, ' if default else ''}docs/quantization.md round 15){extra}")
    return f"zero points ({'the recipe default, ' if default else ''}docs/quantization.md round 14)"


def _rounding_resource(spec_name: Optional[str], tag: str = "w8a8"):
    entry = (RECIPES.get(spec_name or "", {}).get("zero_points") or {}).get(tag) or {}
    if not entry.get("rounding"):
        return None
    res = files("mdfi.data").joinpath(entry["rounding"])
    return res if res.is_file() else None


def shipped_rounding(spec_name: Optional[str], tag: str = "w8a8") -> dict:
    """``quantize_network`` keyword arguments of a recipe's shipped weight rounding and bias
    shifts at the widths ``tag`` (:func:`rounding_kwargs`), or ``{}`` when it
    ships none (a recipe entry whose file is missing: an incomplete installation, refused)."""
    res = _rounding_resource(spec_name, tag)
    if res is None:
        name = ((RECIPES.get(spec_name or "", {}).get("zero_points") or {}).get(tag) or {}).get("rounding")
        if name:
            raise ModelFileError(f"mdfi/data/{name}: missing: the installation is incomplete (reinstall mdfi, "
                                 f"or give --no-zero-points)")
        return {}
    return rounding_kwargs(*read_rounding(res))


def shipped_rounding_meta(spec_name: Optional[str], tag: str = "w8a8") -> Optional[dict]:
    res = _rounding_resource(spec_name, tag)
    return None if res is None else read_rounding(res)[0]


def check_rounding(spec_name: Optional[str], qm, darknet: Optional[str] = None) -> None:
    """Refuse a model built with the recipe's shipped rounding whose integers differ from the
    ones the rounding was recorded from (another MDFI's quantizer, or a damaged file; or the
    lineage forced with ``darknet``, named then: it was blamed on the file)."""
    tag = width_tag(qm.options)
    meta = shipped_rounding_meta(spec_name, tag)
    if meta and meta.get("integer_digest") and integer_digest(qm) != meta["integer_digest"]:
        name = f"mdfi/data/{RECIPES[spec_name]['zero_points'][tag]['rounding']}"
        if darknet is not None:
            raise FormatError(f"--darknet {darknet}: {spec_name}'s shipped recipe ({name}) was made in the model's "
                              f"own Darknet lineage and does not apply in this one (drop --darknet, or give "
                              f"--no-zero-points, or quantize on your photos: --calib DIR)")
        raise ModelFileError(f"{name}: the shipped rounding "
                             f"does not reproduce the integers it was recorded from (give --no-zero-points, or "
                             f"quantize on your photos: --calib DIR)")


def _calib_resource(spec_name: Optional[str]):
    recipe = RECIPES.get(spec_name or "")
    if not recipe:
        return None
    res = files("mdfi.data").joinpath(recipe["calib"])
    return res if res.is_file() else None


def has_shipped_calibration(spec_name: Optional[str]) -> bool:
    """Whether ``spec_name`` is a recipe with shipped calibration statistics."""
    return _calib_resource(spec_name) is not None


def shipped_calibration(spec_name: Optional[str]):
    """The shipped :class:`~mdfi.quant.calibrate.CalibStats` of a zoo model, or None."""
    from . import calibrate
    res = _calib_resource(spec_name)
    return None if res is None else calibrate.CalibStats.from_json(res)


#: The photo a model without a recipe is calibrated on when the user gives none (with its mirror
#: image): chosen over the batch-norm estimate by docs/quantization.md "Round 11".
SAMPLE_PHOTO = "sample.jpg"


def sample_calibration(network: Network):
    """Statistics of the shipped sample photo (``mdfi/data/sample.jpg``) and its mirror image
    through ``network``'s float forward pass: what a model without a recipe is calibrated on
    when no calibration photos are given (two forward passes; docs/quantization.md, round 11)."""
    from . import calibrate
    return calibrate.collect(network, [sample_rgb()], progress=False, augment=True,
                             source=f"mdfi/data/{SAMPLE_PHOTO} and its mirror image")


def sample_rgb():
    """The shipped sample photo as an ``(H, W, 3)`` uint8 RGB array."""
    import io
    import numpy as np
    from PIL import Image
    with Image.open(io.BytesIO(_sample_bytes())) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _sample_bytes() -> bytes:
    try:
        return files("mdfi.data").joinpath(SAMPLE_PHOTO).read_bytes()
    except OSError as e:
        raise ModelFileError(f"mdfi/data/{SAMPLE_PHOTO}: {e.strerror or e}: the installation is incomplete "
                             f"(reinstall mdfi, or give calibration photos: --calib DIR)") from None


def default_calibration(spec_name: Optional[str], network: Network,
                        announce: Optional[Callable[[str], None]] = None):
    """(statistics, one-line description) when the user gives no calibration photos: the
    recipe's shipped statistics, else those of the shipped sample photo
    (:func:`sample_calibration`; the batch-norm estimate for a network whose input is not
    RGB).  ``announce(description)`` is called before the statistics are gathered."""
    say = announce or (lambda _text: None)
    calib = shipped_calibration(spec_name)
    if calib is not None:
        how = f"shipped calibration statistics of {spec_name} (docs/quantization.md)"
        say(how)
        return calib, how
    if network.channels != 3:                   # the sample photo is RGB
        from . import calibrate
        how = (f"no calibration photos given: activation formats estimated from batch-norm statistics "
               f"(the shipped sample photo is RGB; this network's input has {network.channels} channel(s))")
        say(how)
        return calibrate.estimate_from_batchnorm(network), how
    how = (f"no calibration photos given: activation formats from the shipped sample photo "
           f"mdfi/data/{SAMPLE_PHOTO} and its mirror image (`mdfi quantize --calib DIR` calibrates "
           f"on photos of your own scenes)")
    say(how)
    return sample_calibration(network), how


def sample_mixed_applies(spec_name: Optional[str], opts: dict) -> bool:
    """Whether a model quantized with ``opts`` gets round 24's mixed weight widths by default
    (:func:`with_sample_mixed_widths`): no recipe, and widths the rule was decided at."""
    from .mixed import SAMPLE_MIXED_EXTRA
    return spec_name not in RECIPES and (opts["wbits"], opts["abits"]) in SAMPLE_MIXED_EXTRA


def with_sample_mixed_widths(spec_name: Optional[str], network: Network, opts: dict, qkw: dict) -> dict:
    """``qkw`` (the ``quantize_network`` keyword arguments a caller is about to use) with round
    24's ``layer_wbits`` added when a model without a recipe is quantized at the widths of its
    rule and no widths are given: the layers whose weights stay at 8 bits, chosen on the
    shipped sample photo and its mirror image (:func:`mdfi.quant.mixed.sample_mixed_widths`,
    each candidate built as ``qkw`` with base weight width 8).  Else ``qkw`` unchanged."""
    if qkw.get("layer_wbits") or not sample_mixed_applies(spec_name, opts) or network.channels != 3:
        return qkw                                          # (the sample photo is RGB)
    from .mixed import sample_mixed_widths
    mixed = sample_mixed_widths(network, lambda lw: quantize_network(network, **dict(qkw, wbits=8, layer_wbits=lw)),
                                opts["wbits"], opts["abits"])
    return dict(qkw, layer_wbits=mixed) if mixed else qkw


def _decisions_resource(spec_name: Optional[str]):
    name = RECIPES.get(spec_name or "", {}).get("decisions")
    if not name:
        return None
    res = files("mdfi.data").joinpath(name)
    return res if res.is_file() else None


def shipped_decisions(spec_name: Optional[str], network: Network, opts: dict, layer_abits=None,
                      calib=None) -> dict:
    """``quantize_network`` keyword arguments of the recipe's shipped data-driven decisions
    (activation formats searched by their effect on the heads, head bias shifts; made by
    ``benchmarks/bench_accuracy.py --make-decisions`` from the calibration photos) for the
    widths in ``opts``, or ``{}`` when none were shipped for them.

    ``layer_abits`` ({layer: width}, some activations wider than ``opts["abits"]``): the
    entry made for exactly those widths, else (with ``calib``, the statistics) the uniform
    entry with the wide layers' formats chosen at their width
    (:func:`mdfi.quant.formats.widen_formats`; head shifts as shipped).  The result then
    holds ``layer_abits`` too."""
    from .formats import decision_layer_abits, decisions_to_kwargs, widen_formats
    res = _decisions_resource(spec_name)
    if res is None:
        return {}
    want = {int(k): int(v) for k, v in (layer_abits or {}).items() if int(v) != opts["abits"]}
    try:
        doc = json.loads(res.read_text(encoding="utf-8"))
        configs = doc["configs"]
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{res}: damaged recipe decisions file") from None
    uniform = None
    for d in configs:
        if (d.get("wbits"), d.get("abits"), d.get("per_channel")) == (opts["wbits"], opts["abits"],
                                                                       bool(opts["per_channel"])) \
                and opts.get("rounding", "half_up") == "half_up":
            la = decision_layer_abits(d)
            if la == want:
                return decisions_to_kwargs(network, d)
            if not la:
                uniform = d
    if uniform is None or calib is None:
        return {}
    kw = decisions_to_kwargs(network, uniform)
    kw["act_fracs"] = widen_formats(network, calib, kw["act_fracs"], want, opts["abits"],
                                    opts.get("act_method") or "mse")
    kw["layer_abits"] = want
    return kw


def describe_source(spec_name: Optional[str], decisions_used: bool, calib=None) -> Optional[str]:
    """``formats_source`` of a model quantized without calibration photos given (``mdfi info``
    shows it): the recipe's shipped files, or the shipped sample photo for a model without a
    recipe (:func:`default_calibration`; None when ``calib``, the statistics used, is the
    batch-norm estimate: the model records that itself)."""
    recipe = RECIPES.get(spec_name or "")
    if not recipe or _calib_resource(spec_name) is None:
        if calib is not None and calib.method == "batchnorm-estimate":
            return None
        return f"statistics of the shipped sample photo mdfi/data/{SAMPLE_PHOTO} and its mirror image " \
               f"(no calibration photos given; docs/quantization.md round 11)"
    how = f"recipe {spec_name}: shipped statistics mdfi/data/{recipe['calib']}"
    if decisions_used:
        how += f" and decisions mdfi/data/{recipe['decisions']}"
    return how + " (docs/quantization.md)"


def resolve(spec_name: Optional[str], **given) -> dict:
    """Options for a quantization: explicit arguments > the model's recipe > defaults."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in RECIPES.get(spec_name or "", {}).items() if k in DEFAULTS})
    opts.update({k: v for k, v in given.items() if v is not None})
    return opts
