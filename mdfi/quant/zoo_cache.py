"""The cache of quantized models: a zoo model (or any cfg/weights pair) quantized by its recipe
(:mod:`mdfi.quant.recipes`) on first use and kept as a ``.mdfi`` file in
``$MDFI_HOME/quantized/``, named by everything its integers depend on (the source record).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Callable, Optional, Sequence

from .. import __version__
from ..darknet.network import Network
from ..errors import ModelFileError
from .quantize import QuantizedModel, quantize_network
from .recipes import (DW_EQUALIZE_STORY, EMPIRICAL_BIAS_STORY, RECIPES, _calib_resource, _decisions_resource,
                      _rounding_resource, _sample_bytes, check_empirical_bias, check_rounding, default_calibration,
                      default_dw_equalize, default_empirical_bias, default_zero_points, describe_source,
                      dw_equalize_kwargs, empirical_bias_kwargs, has_shipped_calibration, photo_bias_inputs, resolve,
                      rgb_depthwise, sample_mixed_applies, shipped_decisions, statistics_source, width_tag,
                      with_sample_mixed_widths, zero_point_kwargs, zero_point_story)


def weights_digest(weights_file) -> str:
    """sha256 of a weights file, read through :mod:`mdfi.inputs` (regular files only)."""
    from ..errors import WeightsError
    from ..inputs import open_input
    fd, _ = open_input(weights_file, WeightsError, what="Darknet .weights file")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise WeightsError(f"{os.fspath(weights_file)}: cannot read: {exc.strerror or exc}") from None
    return h.hexdigest()


def recipe_name(spec_name: Optional[str], weights_file) -> Optional[str]:
    """``spec_name`` when its recipe applies to ``weights_file``, else None (with a note on
    stderr).  A recipe's shipped statistics and decisions were derived from the zoo's official
    weights (its sha256); on other weights under the same cfg (a fine-tuned or retrained
    model) they would be wrong formats, so such a model is quantized without the recipe."""
    from .. import zoo
    if spec_name not in RECIPES:
        return spec_name
    official = zoo.get_spec(spec_name).sha256
    if official is None or weights_digest(weights_file) == official:
        return spec_name
    print(f"note: {os.fspath(weights_file)} is not the official {spec_name} weights file (sha256 differs): "
          f"the {spec_name} recipe's shipped calibration does not apply to it (calibrate these weights "
          f"on images: mdfi quantize --calib DIR)", file=sys.stderr)
    return None


def cache_source(cfg_file, weights_file, spec_name: Optional[str], opts: dict):
    """(source record, cfg text, label) of a quantization: the record names everything the
    integer model depends on -- MDFI version, sha256 of the cfg text, of the weights file
    and of the shipped calibration, and the options -- and is stored in the cached file's
    header, so a cached model is used only when its record is equal (a swapped or stale
    file is quantized again)."""
    from ..darknet.cfgfile import read_cfg_text
    cfg_text = read_cfg_text(cfg_file)                  # validated: regular file, size, UTF-8
    res = _calib_resource(spec_name)
    calib_sha = hashlib.sha256(res.read_bytes() if res is not None else _sample_bytes()).hexdigest()
    # the recipe's shipped decisions and the rounding of these widths are part of the calibration
    # (only this width's file is hashed: ~1 MB, not all 6.4 MB, on every load)
    for extra in (_decisions_resource(spec_name), _rounding_resource(spec_name, width_tag(opts))):
        if extra is not None:
            calib_sha = f"{calib_sha}+{hashlib.sha256(extra.read_bytes()).hexdigest()}"
    source = {"mdfi": __version__, "cfg_sha256": hashlib.sha256(cfg_text.encode("utf-8")).hexdigest(),
              "weights_sha256": weights_digest(weights_file), "calib_sha256": calib_sha,
              "opts": {k: opts[k] for k in sorted(opts)}}
    label = spec_name or os.path.splitext(os.path.basename(os.fspath(cfg_file)))[0]
    return source, cfg_text, label


def cache_path(cfg_file, weights_file, spec_name: Optional[str], opts: dict):
    """(path of the cached quantized model, source record, cfg text, label)."""
    from .. import zoo
    source, cfg_text, label = cache_source(cfg_file, weights_file, spec_name, opts)
    key = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
    tag = f"w{opts['wbits']}a{opts['abits']}{'-pc' if opts['per_channel'] else ''}"
    return zoo.cache_dir() / "quantized" / f"{label}-{tag}-{key}.mdfi", source, cfg_text, label


def calib_images_digest(images: Sequence) -> str:
    """sha256 naming calibration images in order: each file's bytes, or an array's or a Pillow
    image's pixels with their shape (the cache key of a model calibrated on them)."""
    import numpy as np
    from PIL import Image
    from ..errors import ImageError
    h = hashlib.sha256()
    for item in images:
        if isinstance(item, np.ndarray):
            h.update(f"array {item.dtype.str} {item.shape}".encode())
            h.update(np.ascontiguousarray(item).tobytes())
        elif isinstance(item, Image.Image):
            h.update(f"pil {item.mode} {item.size}".encode())
            h.update(item.tobytes())
        else:
            name = os.fspath(item)
            if not os.path.isfile(name):        # a FIFO or device would block the read
                raise ImageError(f"{name}: calibration image not found (or not a regular file)")
            try:
                with open(name, "rb") as fh:
                    h.update(b"file ")
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            except OSError as e:
                raise ImageError(f"{name}: cannot read calibration image: {e.strerror or e}") from None
    return h.hexdigest()


def quantized_for(cfg_file, weights_file, spec_name: Optional[str], *, names: Sequence[str],
                  load_network: Callable[[], Network], wbits=None, abits=None, per_channel=None,
                  rounding=None, cache: bool = True, darknet=None,
                  calib_images: Optional[Sequence] = None, zero_points: Optional[bool] = None,
                  dw_equalize: Optional[bool] = None, empirical_bias: Optional[bool] = None) -> QuantizedModel:
    """Quantize a model with its recipe, reusing a cached ``.mdfi`` when it matches.

    ``load_network()`` returns the float network with its weights; it is only called when
    the cache misses (reading a 35-250 MB weights file is most of a cold start).
    ``calib_images`` (image paths, arrays or Pillow images): calibrate the activation formats
    on these instead of the recipe's statistics or the sample photo (``mse`` formats, no
    shipped decisions); the images' digest is part of the cache key.  ``zero_points``:
    activation formats with zero points (``mse``, no shipped decisions; part of the key);
    None: :func:`default_zero_points`.  ``dw_equalize``: power-of-two equalization of the
    depthwise inputs (:mod:`mdfi.quant.dwequal`; part of the key); None:
    :func:`default_dw_equalize`.  ``empirical_bias``: the empirical bias correction on the
    calibration inputs (:func:`empirical_bias_kwargs`; part of the key); None:
    :func:`default_empirical_bias`.
    """
    from . import modelfile
    opts = resolve(spec_name, wbits=wbits, abits=abits, per_channel=per_channel, rounding=rounding)
    key_opts = dict(opts, darknet=darknet) if darknet is not None else opts
    if calib_images is not None:
        calib_images = list(calib_images)
        if not calib_images:
            from ..errors import MDFIError
            raise MDFIError("calib: no calibration images given (an empty list)")
        key_opts = dict(key_opts, calib_images=calib_images_digest(calib_images))
    stats_src = statistics_source(spec_name, photos=calib_images is not None)
    shipped = stats_src == "shipped"
    auto_zero = zero_points is None
    if auto_zero:
        zero_points = default_zero_points(spec_name, stats_src, opts)
    zkw = zero_point_kwargs(spec_name, shipped, opts) if zero_points else {}
    if zkw:             # the recipe's zero-point options are part of the key (round 13's entries had none)
        key_opts = dict(key_opts, zero_points=zkw.get("act_options", True))
        if "weight_deltas" in zkw:
            key_opts = dict(key_opts, rounding="shipped")
    if dw_equalize is None:
        dw_equalize = default_dw_equalize(spec_name, stats_src, opts, zero_points)
    if dw_equalize:
        key_opts = dict(key_opts, dw_equalize=True)
    if empirical_bias is None:          # (the cfg alone says whether a layer is depthwise: no weights read)
        empirical_bias = default_empirical_bias(spec_name, stats_src, opts, zero_points,
                                                lambda: rgb_depthwise(Network.from_cfg(cfg_file, darknet=darknet)))
    if empirical_bias:
        check_empirical_bias(zkw, shipped=shipped)          # before any heavy work
        key_opts = dict(key_opts, empirical_bias=True)
    if sample_mixed_applies(spec_name, opts):       # round 24's default widths are part of the key
        key_opts = dict(key_opts, layer_wbits="sample-photo-sensitivity")
    path, source, cfg_text, label = cache_path(cfg_file, weights_file, spec_name, key_opts)
    if cache and path.is_file():
        try:
            qm = modelfile.load(path)
            if getattr(qm, "source", None) == source and qm.cfg_text == cfg_text:
                qm.names = list(names)
                return qm
            print(f"note: {path} does not belong to these inputs (swapped or stale cache entry): "
                  f"quantizing again", file=sys.stderr)
        except ModelFileError:
            pass                        # damaged cache entry: quantize again below
    network = load_network()            # (its errors are one line: no status before them)
    if dw_equalize:
        from .dwequal import eligible
        if not eligible(network):
            print(f"note: {label}: no tensor that only depthwise convolutions read: dw_equalize changes nothing",
                  file=sys.stderr, flush=True)
    progress = _FirstUse(label, opts, path if cache else None)
    if calib_images is not None:
        from . import calibrate
        progress.end()                  # calibrate.collect shows its own progress
        calib = calibrate.collect(network, calib_images, progress=True)
        decided: dict = {}
        how: Optional[str] = f"calibrated on the {len(calib_images)} image(s) given to mdfi.load(calib=...)"
        act_method = None                       # mse for the statistics of images
    else:
        progress.stage("activation statistics")
        calib, _ = default_calibration(spec_name, network, None if has_shipped_calibration(spec_name) else
                                       lambda text: (progress.end(), print(f"note: {label}: {text}", file=sys.stderr, flush=True)))
        if auto_zero and calib.method == "batchnorm-estimate":
            zero_points = False             # a non-RGB network: the estimate, not the sample photo
        decided = {} if zero_points else shipped_decisions(spec_name, network, opts)
        how = describe_source(spec_name, bool(decided), calib)
        act_method = opts["act_method"]
    if zero_points:
        decided = dict(zkw)
        act_method = decided.pop("act_method")
        if how and shipped:
            how += "; " + zero_point_story(spec_name, zkw, auto_zero, opts)
    qkw = dict(wbits=opts["wbits"], abits=opts["abits"], per_channel=opts["per_channel"], rounding=opts["rounding"],
               calib=calib, act_method=act_method, weight_method=opts["weight_method"], cfg_text=cfg_text,
               names=names, **decided)
    if sample_mixed_applies(spec_name, opts):
        progress.stage("choosing the layers whose weights stay 8-bit")
    qkw = with_sample_mixed_widths(spec_name, network, opts, qkw)     # round 24: w4a8 / w6a8 without a recipe
    qkw.update(dw_equalize_kwargs(network, dw_equalize, calib_images))
    if dw_equalize:
        how = f"{how}; {DW_EQUALIZE_STORY}" if how else DW_EQUALIZE_STORY
    qkw.update(photo_bias_inputs(network, empirical_bias, calib_images))
    qkw.update(empirical_bias_kwargs(network, empirical_bias, qkw, calib_images))
    if empirical_bias:
        how = f"{how}; {EMPIRICAL_BIAS_STORY}" if how else EMPIRICAL_BIAS_STORY
    progress.stage("integer weights and formats")
    qm = quantize_network(network, **qkw)
    if "weight_deltas" in decided:
        check_rounding(spec_name, qm, darknet)
    if how:
        qm.options["formats_source"] = how
    qm.name = label
    qm.source = source
    if cache:
        progress.stage("saving it to the cache")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            modelfile.save(qm, path, model_name=label, source=source)
        except (OSError, ModelFileError):
            pass                        # a read-only cache only costs speed
    progress.done()
    return qm


class _FirstUse:
    """The status of a cache miss in :func:`quantized_for` (seconds to a minute for big
    models; nothing else is printed meanwhile): on a terminal one line rewritten per stage and
    a closing line with the time; in a log one line when it starts."""

    def __init__(self, label: str, opts: dict, path) -> None:
        import time
        from ..progress import StatusLine
        self.clock = time.monotonic
        self.t0 = self.clock()
        self.line = StatusLine(interval_log=float("inf"))
        self.head = (f"quantizing {label} to w{opts['wbits']}a{opts['abits']} (first use"
                     + (f"; cached in {path.parent}" if path is not None else "") + ")")
        self.shown = False

    def stage(self, what: str) -> None:
        self.line.update(f"{self.head}: {what} ...")
        self.shown = True

    def end(self) -> None:
        self.line.end_line()

    def done(self) -> None:
        if self.shown and self.line.tty:
            self.line.write(f"{self.head}: done in {self.clock() - self.t0:.1f} s", final=True)
