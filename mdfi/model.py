"""The Python API: load a model once, detect on images or arrays.

>>> import mdfi
>>> model = mdfi.load("yolov3-tiny")             # doctest: +SKIP
>>> for det in model.detect("dog.jpg"):           # doctest: +SKIP
...     print(det.label, det.confidence, det.box)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
from PIL import Image

from . import zoo
from .detection import Detections
from .errors import ArgumentError, LimitError, MDFIError, MDFIWarning, ShapeError, shown
from .image import decode_image, load_image
from .darknet.network import Network
from .postprocess import Raw, postprocess, settings as post_settings
from .preprocess import network_input, network_pixels
from .readahead import read_ahead, read_ahead_pays
from .darknet.weights import load_weights

if TYPE_CHECKING:  # pragma: no cover
    from .quant.qmodel import QuantizedModel

PathLike = Union[str, "os.PathLike[str]"]
#: What :meth:`Model.detect` takes: a file path, a Pillow image or an HxWx3 uint8 array
#: (:func:`mdfi.image.load_image` lists the accepted arrays).
ImageLike = Union[PathLike, np.ndarray, Image.Image]


@dataclass(frozen=True)
class Prepared:
    """A letterboxed network input and the original image size."""

    tensor: np.ndarray   # (3, net_h, net_w) float32 in [0,1]
    width: int           # original image width
    height: int


class FloatEngine:
    """Darknet's float32 forward pass (NumPy): the float reference path."""

    name = "float"

    def __init__(self, network: Network):
        self.network = network

    def heads(self, x: np.ndarray, thresh: float) -> List[Raw]:
        outs = self.network.forward_float(x, keep="needed")
        return [layer.decode(outs[layer.index], thresh) for layer in self.network.output_layers()]


class Model:
    """A loaded detector.  Build it with :func:`mdfi.load`."""

    def __init__(self, network: Network, names: Sequence[str], engine, *, name: str = ""):
        self.network = network
        self.names = list(names)
        self.engine = engine
        self.name = name or os.path.basename(network.path)

    # -- input -------------------------------------------------------------------------
    @property
    def input_size(self) -> Tuple[int, int]:
        """(width, height) of the network input."""
        return self.network.width, self.network.height

    def prepare(self, image: ImageLike, *, exif: bool = False) -> Prepared:
        """Load ``image`` (path, PIL image or HxWx3 uint8 array) and make the network input
        as the model's Darknet does (letterbox, or AlexeyAB's plain resize)."""
        rgb = self._load_rgb(image, exif)
        h, w = rgb.shape[:2]
        try:
            return Prepared(network_input(rgb, self.network), w, h)
        except MemoryError:
            raise LimitError(f"{_image_name(image)}: not enough memory to prepare a {w}x{h} image") from None

    def _load_rgb(self, image: ImageLike, exif: bool = False, decoded: bool = False):
        """load_image's HxWx3 array; with ``decoded``, decode_image's array or RGB Pillow image."""
        rgb = decode_image(image, exif=exif) if decoded else load_image(image, exif=exif)
        if self.network.channels != 3:
            raise ShapeError(f"{self.name}: the network takes {self.network.channels} channels; "
                             f"only 3-channel (RGB) networks can run on images")
        return rgb

    # -- inference -----------------------------------------------------------------------
    @overload
    def detect(self, image: ImageLike, *, thresh: float = ..., nms: float = ...,
               stats: Optional[dict] = ..., exif: bool = ...) -> Detections: ...

    @overload
    def detect(self, image: Union[List[ImageLike], Tuple[ImageLike, ...]], *, thresh: float = ..., nms: float = ...,
               stats: Optional[dict] = ..., exif: bool = ...) -> List[Detections]: ...

    def detect(self, image: Union[ImageLike, Sequence[ImageLike]], *, thresh: float = 0.25, nms: float = 0.45,
               stats: Optional[dict] = None, exif: bool = False) -> Union[Detections, List[Detections]]:
        """Detections on one image, highest confidence first (a :class:`~mdfi.Detections`
        list, which can draw itself: ``.plot()``); for a list or tuple of images, a list of
        those, one per image.

        ``thresh`` is Darknet's detection threshold (objectness and objectness x class
        probability must exceed it); ``nms`` the IoU above which a lower-scoring box of
        the same class is suppressed.  ``stats`` (fixed point only): a dict that receives
        per-layer saturation counts (see :func:`mdfi.quant.quantize.saturation_report`).
        ``exif=True`` applies the EXIF orientation of photos first (Darknet does not).
        """
        thresh = _check_unit("thresh", thresh)
        nms = _check_unit("nms", nms)
        if stats is not None and not isinstance(stats, dict):
            raise ArgumentError(f"stats: expected a dict, got {type(stats).__name__}")
        if stats is not None and isinstance(self.engine, FloatEngine):
            raise MDFIError("saturation statistics exist for the fixed-point engine only")
        if isinstance(image, (list, tuple)) and any(isinstance(im, (list, tuple)) for im in image):
            return [self.detect(im, thresh=thresh, nms=nms, stats=stats, exif=exif) for im in image]
        if isinstance(image, (list, tuple)):
            # decode image i+1 on one helper thread while image i runs (mdfi.readahead)
            out = []
            for im, ok, decoded in read_ahead(image, lambda im: self._decode(im, bool(exif)),
                                              enabled=read_ahead_pays(_pixel_threads(self.engine))):
                if not ok:
                    raise decoded
                out.append(self._detect_decoded(im, decoded, thresh, nms, stats, bool(exif)))
            return out
        return self._detect_decoded(image, self._decode(image, bool(exif)), thresh, nms, stats, bool(exif))

    def _decode(self, image, exif: bool):
        """The decoding half of :meth:`detect` (thread-safe, GIL released while Pillow decodes):
        a :class:`Prepared` for the float engine, else the decoded RGB photo (array or Pillow)."""
        if isinstance(image, Prepared):
            return image
        if isinstance(self.engine, FloatEngine):
            return self.prepare(image, exif=exif)
        return self._load_rgb(image, exif, decoded=True)

    def _detect_decoded(self, image, decoded, thresh: float, nms: float, stats: Optional[dict], exif: bool):
        """The rest of :meth:`detect` on ``decoded = self._decode(image, exif)``."""
        if isinstance(decoded, Prepared):
            x, width, height = decoded.tensor, decoded.width, decoded.height
        else:
            # the integer engine takes 8-bit pixels: letterbox (or resize) them in one C pass
            # (equal to input_to_u8(prepare(image).tensor), without the float image in between),
            # on the engine's threads, reading a decoded RGB photo where Pillow holds it
            rgb = decoded
            width, height = rgb.size if isinstance(rgb, Image.Image) else (rgb.shape[1], rgb.shape[0])
            try:
                x = network_pixels(rgb, self.network, nthreads=_pixel_threads(self.engine))
            except MemoryError:
                raise LimitError(f"{_image_name(image)}: not enough memory to prepare a {width}x{height} "
                                 f"image") from None
        raws = self.engine.heads(x, thresh, stats=stats) if stats is not None else self.engine.heads(x, thresh)
        dets = postprocess(raws, width, height, self.network.width, self.network.height, thresh, nms, self.names,
                           **post_settings(self.network))
        return Detections(dets, None if isinstance(image, Prepared) else image, exif=exif,
                          num_classes=len(self.names))

    def layer_outputs(self, x: np.ndarray) -> List[np.ndarray]:
        """Every layer's output for a (C,H,W) input tensor.

        Float path: float32 outputs of a float32 input in [0,1].  Fixed point: int32
        outputs (the integers of each layer's format) of a uint8 pixel input, or of a float
        input which is first converted to pixels like :meth:`detect` does."""
        if isinstance(self.engine, FloatEngine):
            return self.network.forward_float(x, keep="all")
        from .quant.quantize import input_to_u8
        x = np.asarray(x)
        return self.engine.run(x if x.dtype == np.uint8 else input_to_u8(x), keep="all")

    @property
    def quantized(self) -> Optional["QuantizedModel"]:
        """The :class:`~mdfi.quant.quantize.QuantizedModel` of a fixed-point model (else None)."""
        return getattr(self.engine, "qmodel", None)

    def __repr__(self) -> str:
        return (f"<mdfi.Model {self.name} {self.network.width}x{self.network.height} "
                f"{len(self.network.layers)} layers engine={self.engine.name}>")


def _pixel_threads(engine) -> int:
    """Threads of the 8-bit letterbox: the engine's (its pool runs it), at most 256."""
    from ._ext._image import MAX_THREADS
    return max(1, min(int(getattr(engine, "threads", 1) or 1), MAX_THREADS))


def _image_name(image) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"


def _check_unit(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"{name}={value!r}: expected a number between 0 and 1")
    if not (0.0 <= float(value) <= 1.0):
        raise ArgumentError(f"{name}={value}: must be between 0 and 1")
    return float(value)


def _check_load_args(model, cfg, weights, names, precision, bits, wbits, abits, per_channel, rounding,
                     engine, threads) -> None:
    """API argument types (issue 9: ``load(3)`` raised TypeError from deep inside)."""
    from .inputs import as_path
    for what, v in (("model", model), ("cfg", cfg), ("weights", weights), ("names", names)):
        if v is not None:
            as_path(v, what)
    for what, v in (("bits", bits), ("wbits", wbits), ("abits", abits), ("threads", threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise ArgumentError(f"{what}={v!r}: expected an integer")
    from .engine import MAX_THREADS
    if threads is not None and not 1 <= int(threads) <= MAX_THREADS:
        raise ArgumentError(f"threads={threads}: expected 1..{MAX_THREADS}")
    for what, v in (("precision", precision), ("rounding", rounding), ("engine", engine)):
        if v is not None and not isinstance(v, str):
            raise ArgumentError(f"{what}={v!r}: expected a string")
    if per_channel is not None and not isinstance(per_channel, (bool, np.bool_)):
        raise ArgumentError(f"per_channel={per_channel!r}: expected True or False")


#: Share of the float path's detections kept at confidence 0.25, and extra detections, per
#: (weight bits, activation bits): yolov3-tiny on the 102 held-out `test` images of
#: benchmarks/accuracy_images.py (314 float detections; never used for calibration or for
#: choosing methods), the default recipe: `python benchmarks/bench_accuracy.py --configs ...`
#: (at most 1,000 detections per image evaluated), docs/quantization.md; w8a8, w6a8, w6a6 and
#: w4a8: the recipe's zero points with shipped AdaRound rounding since round 15
#: (`bench_zeropoint.py --shipped-default`); w4a8 since round 21 with the weights of layers 0, 2,
#: 4, 6, 13, 15 and 22 at 8 bits (13.3 % of the float size).
MEASURED_KEPT = {(16, 16): (99.4, 0.3), (12, 12): (98.4, 1.6), (10, 10): (98.7, 2.5), (8, 8): (96.8, 4.1),
                 (7, 7): (85.0, 15.9), (6, 6): (84.7, 16.6), (5, 5): (0.0, 0.0), (4, 4): (0.0, 0.0),
                 (3, 3): (0.0, 286.3), (6, 8): (93.3, 7.3), (5, 8): (71.7, 11.1),
                 (4, 8): (74.2, 5.4), (3, 8): (1.9, 0.0), (2, 8): (0.6, 26610.5), (8, 4): (0.0, 0.0),
                 (8, 3): (1.0, 18417.2), (8, 2): (27.1, 32457.0)}
#: The same photos, yolov3-tiny's weights quantized as anyone's own (no recipe, the sample photo;
#: w4a8 with round 24's mixed widths): `benchmarks/bench_sample_mixed.py --split test`.
MEASURED_KEPT_NO_RECIPE = {(4, 8): (56.7, 3.2)}


def _warn_low_bits(wbits: Optional[int], abits: Optional[int]) -> None:
    """Warn when the widths lose most detections (measured: activations of 5 bits or fewer,
    or weights of 4 bits or fewer), quoting the measurement."""
    import warnings
    w, a = wbits or 8, abits or 8
    if a > 5 and w > 4:
        return
    if (w, a) in MEASURED_KEPT:
        kept, extra = MEASURED_KEPT[(w, a)]
        cost = f"keeps {kept:g} % of the float path's detections ({extra:,.0f} % extra)"
        if (w, a) in MEASURED_KEPT_NO_RECIPE:
            kept, extra = MEASURED_KEPT_NO_RECIPE[(w, a)]
            cost += f" with its shipped recipe, {kept:g} % ({extra:,.0f} % extra) as weights without a recipe"
    else:
        cost = "was not measured; its neighbours keep almost none of the float path's detections"
    warnings.warn(f"w{w}a{a} fixed point {cost} (yolov3-tiny, 102 held-out images, docs/quantization.md): "
                  f"expect missing or wrong detections; 8 bits is the default, activations below 6 bits "
                  f"and weights below 5 bits lose most detections", MDFIWarning, stacklevel=3)


#: Backend of the fixed-point engine when none is named.
DEFAULT_ENGINE = "c"
PRECISIONS = ("fixed", "float")


def load(model: Optional[PathLike] = None, *, cfg: Optional[PathLike] = None,
         weights: Optional[PathLike] = None, names: Optional[PathLike] = None,
         precision: str = "fixed", bits: Union[int, str, None] = None, wbits: Optional[int] = None,
         abits: Optional[int] = None, per_channel: Optional[bool] = None,
         rounding: Optional[str] = None, engine: Optional[str] = None, threads: Optional[int] = None,
         download: bool = True, cache: bool = True, darknet: Optional[str] = None,
         calib: Union[PathLike, Sequence[ImageLike], None] = None,
         zero_points: Optional[bool] = None, dw_equalize: Optional[bool] = None,
         empirical_bias: Optional[bool] = None) -> Model:
    """Load a detector.

    * ``load()`` / ``load("yolov3-tiny")``: a zoo model in fixed point (8-bit, formats from
      its shipped calibration); its float weights are fetched into the cache on first use
      (see :mod:`mdfi.zoo`).
    * ``load("model.mdfi")``: a quantized model written by ``mdfi quantize``.
    * ``load(cfg="my.cfg", weights="my.weights")``: any Darknet model.
    * ``precision="float"``: Darknet's float32 path instead of fixed point.
    * ``bits`` (or ``wbits``/``abits``): fixed-point widths 2..16 (default 8); ``bits="w4a8"``
      names both (weight bits, activation bits) as ``mdfi eval --bits`` does.
    * ``engine``: ``"c"`` (fast kernels) or ``"ref"`` (NumPy integer reference); both give
      identical integers.  ``threads`` defaults to ``MDFI_THREADS`` or all CPUs.

    ``names`` is a class-name file (one per line; default: COCO).
    ``darknet``: ``"pjreddie"`` or ``"alexeyab"``, the Darknet lineage whose semantics the
    model follows (default: detected from the cfg, :mod:`mdfi.darknet.lineage`).
    ``calib``: calibration photos of your own scenes -- a folder, or a list of image paths,
    HxWx3 uint8 arrays or Pillow images -- for the activation formats (as ``mdfi quantize
    --calib DIR``; the result is cached under the images' digest).  Without it a zoo model
    uses its recipe's shipped statistics and any other model the shipped sample photo's
    (docs/quantization.md, round 11).
    ``zero_points``: activation formats with zero points (docs/fixed-point.md 1.1; as
    ``mdfi quantize --zero-points``; without a recipe's decisions) if True, without if False;
    None (default): as the model's recipe says -- for the zoo's yolov3-tiny and COCO yolov4-tiny
    at w8a8, w6a8, w6a6 and w4a8 from their shipped statistics: zero points with the recipe's
    shipped AdaRound weights and bias shifts (docs/quantization.md "Round 15", "15b"); for a
    model without a recipe at w8a8 or w6a8, calibrated on the shipped sample photo or on
    ``calib``: plain zero points ("Round 25"-"Round 27"); without for every other model, width or calibration
    ("Round 14", :func:`mdfi.quant.recipes.default_zero_points`).
    ``dw_equalize``: power-of-two equalization of the tensors only depthwise convolutions read
    (:mod:`mdfi.quant.dwequal`; as ``mdfi quantize --dw-equalize``) if True, without if False;
    None (default): as the model's recipe says -- on for the zoo's yolo-fastest-1.1-xl at w8a8
    without photos ("Round 29c"), else off.
    ``empirical_bias``: cancel, per output channel, the mean error the quantized network makes
    on the calibration inputs (the shipped sample photo and its mirror, or ``calib``; as
    ``mdfi quantize --bias-correction empirical``) if True, without if False; None (default): as
    the model's recipe says -- on without photos for the zoo's yolo-fastest-1.1 at w8a8 and
    yolo-fastest-1.1-xl at w8a8 and w6a8 ("Round 30", "Round 32") and for every model without a
    recipe that has depthwise convolutions at w8a8 ("Round 31"), else off.
    """
    from .engine import FixedEngine

    if isinstance(bits, str):                     # "w4a8", as `mdfi eval --bits` and the recipes name widths
        from .fixedpoint import parse_width
        try:
            if not bits.startswith("w"):        # "8" stays a type error: an integer is written 8
                raise MDFIError(bits)
            pair = parse_width(bits)
        except MDFIError:
            raise ArgumentError(f"bits={bits!r}: expected an integer 2..16 or a pair such as 'w4a8'") from None
        if wbits is not None or abits is not None:
            raise ArgumentError(f"bits={bits!r}: give bits, or wbits/abits, not both")
        bits, (wbits, abits) = None, pair
    _check_load_args(model, cfg, weights, names, precision, bits, wbits, abits, per_channel, rounding,
                     engine, threads)
    if precision not in PRECISIONS:
        raise MDFIError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if zero_points is not None and not isinstance(zero_points, bool):
        raise ArgumentError(f"zero_points={zero_points!r}: expected True, False or None")
    if dw_equalize is not None and not isinstance(dw_equalize, bool):
        raise ArgumentError(f"dw_equalize={dw_equalize!r}: expected True, False or None")
    if empirical_bias is not None and not isinstance(empirical_bias, bool):
        raise ArgumentError(f"empirical_bias={empirical_bias!r}: expected True, False or None")
    engine = engine or DEFAULT_ENGINE
    if model is not None and _is_mdfi_file(model):
        if precision == "float":
            raise MDFIError(f"{os.fspath(model)} is a quantized model; the float path needs the "
                            f".cfg and .weights it came from")
        if any(v is not None for v in (bits, wbits, abits, per_channel, rounding, cfg, weights, darknet, calib,
                                       zero_points, dw_equalize, empirical_bias)):
            raise MDFIError("a .mdfi file fixes its formats; quantize again with `mdfi quantize` "
                            "to change widths, rounding or calibration")
        from .quant import modelfile
        qm = modelfile.load(model)
        class_names = (zoo.load_names(names) if names is not None else
                       qm.names or zoo.load_names(zoo.names_path(zoo.DEFAULT_MODEL)))
        label = getattr(qm, "name", "") or os.path.basename(os.fspath(model))
        return Model(qm.network, class_names, FixedEngine(qm, engine, threads), name=label)

    cfg_file, weights_file, names_file, label, spec_name = _resolve_files(model, cfg, weights, names, download)
    class_names = zoo.load_names(names_file)

    def load_network() -> Network:
        network = Network.from_cfg(cfg_file, darknet=darknet)
        load_weights(network, weights_file)
        return network

    if precision == "float":
        if (any(v is not None for v in (bits, wbits, abits, per_channel, rounding, calib)) or zero_points
                or dw_equalize or empirical_bias):
            raise MDFIError("bits/rounding/per-channel/calib/zero_points/dw_equalize/empirical_bias options apply to "
                            "the fixed-point path only")
        network = load_network()
        return Model(network, class_names, FloatEngine(network), name=label)
    from .quant import zoo_cache
    _warn_low_bits(wbits or bits, abits or bits)
    qm = zoo_cache.quantized_for(cfg_file, weights_file, spec_name, names=class_names, load_network=load_network,
                                 wbits=wbits or bits, abits=abits or bits, per_channel=per_channel,
                                 rounding=rounding, cache=cache, darknet=darknet,
                                 calib_images=_calib_images(calib), zero_points=zero_points, dw_equalize=dw_equalize,
                                 empirical_bias=empirical_bias)
    return Model(qm.network, class_names, FixedEngine(qm, engine, threads), name=label)


def _calib_images(calib) -> Optional[list]:
    """``load(calib=...)`` as a list of images: a folder's image files (sorted), one image
    file, or the given list."""
    if calib is None:
        return None
    if isinstance(calib, (str, os.PathLike)):
        if os.path.isdir(calib):
            from .quant.calib_inputs import list_images
            return list_images(calib)
        if not os.path.isfile(calib):
            raise MDFIError(f"calib={os.fspath(calib)!r}: no such folder or image file")
        return [calib]
    if isinstance(calib, (list, tuple)):
        for item in calib:
            if not isinstance(item, (str, os.PathLike, np.ndarray, Image.Image)):
                raise ArgumentError(f"calib: {type(item).__name__} in the list; expected image paths, "
                                    f"arrays or Pillow images")
        return list(calib)
    raise ArgumentError(f"calib={type(calib).__name__}: expected a folder, an image path or a list of images")


def _is_mdfi_file(path: PathLike) -> bool:
    p = os.fspath(path)
    if p.endswith(".mdfi"):
        return True
    if os.path.isfile(p):      # regular files only: a FIFO would block the magic-byte read
        try:
            with open(p, "rb") as fh:
                from .quant.modelfile import MAGIC
                return fh.read(len(MAGIC)) == MAGIC
        except OSError:
            return False
    return False


def _resolve_files(model, cfg, weights, names, download):
    """(cfg file, weights file, names file, label, zoo name or None)."""
    if cfg is None:
        spec_name = os.fspath(model) if model is not None else zoo.DEFAULT_MODEL
        _check_model_name(spec_name)
        cfg_file = zoo.cfg_path(spec_name)
        weights_file = weights if weights is not None else zoo.weights_path(spec_name, download=download)
        names_file = names if names is not None else zoo.names_path(spec_name)
        label = spec_name
        if weights is not None:
            # a zoo cfg with the user's weights: the recipe's shipped statistics and decisions
            # were made for the official file and apply only to it
            from .quant import zoo_cache
            spec_name = zoo_cache.recipe_name(spec_name, weights_file)
    else:
        if model is not None:
            raise MDFIError("give either a model name or cfg=/weights=, not both")
        if weights is None:
            raise MDFIError("a cfg needs its weights: pass weights=PATH (CLI: --weights PATH)")
        spec_name = None
        cfg_file, weights_file = cfg, weights
        names_file = names if names is not None else zoo.names_path(zoo.DEFAULT_MODEL)
        label = os.path.splitext(os.path.basename(os.fspath(cfg)))[0]
    return cfg_file, weights_file, names_file, label, spec_name


def _check_model_name(name: str) -> None:
    """A Darknet file given as the model (`--model my.cfg`) said `my.cfg: file not found (looked
    in .../cfg/my.cfg); reinstall mdfi` or `not a plain file name of the mdfi.cfg package data`."""
    if name in zoo.MODELS:
        return
    shown_name = shown(name, 200)
    if name.lower().endswith(".cfg"):
        raise MDFIError(f"model {shown_name!r} is a Darknet .cfg file: give it with its weights (CLI: --cfg "
                        f"{shown_name} --weights FILE; Python: cfg=, weights=)")
    if name.lower().endswith(".weights"):
        raise MDFIError(f"model {shown_name!r} is a Darknet .weights file: give it with its cfg (CLI: --cfg FILE "
                        f"--weights {shown_name}, or --model NAME --weights {shown_name} for a zoo model's cfg)")
    if os.path.isfile(name):
        raise MDFIError(f"{shown_name}: not an MDFI model file (no MDFI magic bytes); --model takes a zoo model "
                        f"name (`mdfi models`) or a FILE.mdfi written by `mdfi quantize`")


def _float_network(model, cfg, weights, names, download, darknet=None):
    """(network with float weights, class names, label, zoo name or None, weights path)."""
    cfg_file, weights_file, names_file, label, spec_name = _resolve_files(model, cfg, weights, names, download)
    network = Network.from_cfg(cfg_file, darknet=darknet)
    load_weights(network, weights_file)
    return network, zoo.load_names(names_file), label, spec_name, weights_file
