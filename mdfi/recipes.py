"""Shipped quantization recipes and the cache of quantized zoo models.

A *recipe* says how a zoo model is quantized by default: which calibration statistics
(shipped in ``mdfi/data/``, reproducible by the command in ``docs/quantization.md``), whether
weights get per-channel formats, and the format-selection methods.  Weights themselves are
never shipped: the integer model is derived from the official float weights on first use
and cached as a ``.mdfi`` file in ``$MDFI_HOME/quantized/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.resources import files
from typing import Callable, Optional, Sequence

from . import __version__
from .errors import ModelFileError
from .network import Network
from .quantize import QuantizedModel, quantize_network

#: Per zoo model: shipped calibration statistics and the settings that meet the accuracy
#: targets (docs/quantization.md has the measurements behind them).
RECIPES = {
    "yolov3-tiny": {"calib": "yolov3-tiny.calib.json", "per_channel": True,
                    "act_method": "mse", "weight_method": "mse"},
}
DEFAULTS = {"wbits": 8, "abits": 8, "rounding": "half_up", "per_channel": False,
            "act_method": None, "weight_method": "mse"}       # None: by statistics source


def _calib_resource(spec_name: Optional[str]):
    recipe = RECIPES.get(spec_name or "")
    if not recipe:
        return None
    res = files("mdfi.data").joinpath(recipe["calib"])
    return res if res.is_file() else None


def shipped_calibration(spec_name: Optional[str]):
    """The shipped :class:`~mdfi.calibrate.CalibStats` of a zoo model, or None."""
    from . import calibrate
    res = _calib_resource(spec_name)
    return None if res is None else calibrate.CalibStats.from_json(res)


def resolve(spec_name: Optional[str], **given) -> dict:
    """Options for a quantization: explicit arguments > the model's recipe > defaults."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in RECIPES.get(spec_name or "", {}).items() if k in DEFAULTS})
    opts.update({k: v for k, v in given.items() if v is not None})
    return opts


def cache_path(cfg_file, weights_file, spec_name: Optional[str], opts: dict):
    """Where the quantized model of these inputs is cached.  The key covers the MDFI
    version, the cfg text, the weights file (path, size, mtime), the calibration file's
    bytes and the options, so any change quantizes again."""
    from . import zoo
    with open(os.fspath(cfg_file), "r", encoding="utf-8") as fh:
        cfg_text = fh.read()
    st = os.stat(os.fspath(weights_file))
    res = _calib_resource(spec_name)
    calib_sha = hashlib.sha256(res.read_bytes()).hexdigest() if res is not None else None
    key_src = json.dumps({"mdfi": __version__, "cfg": cfg_text,
                          "weights": [os.path.abspath(os.fspath(weights_file)), st.st_size, st.st_mtime_ns],
                          "calib": calib_sha, "opts": opts}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    label = spec_name or os.path.splitext(os.path.basename(os.fspath(cfg_file)))[0]
    tag = f"w{opts['wbits']}a{opts['abits']}{'-pc' if opts['per_channel'] else ''}"
    return zoo.cache_dir() / "quantized" / f"{label}-{tag}-{key}.mdfi", cfg_text, label


def quantized_for(cfg_file, weights_file, spec_name: Optional[str], *, names: Sequence[str],
                  load_network: Callable[[], Network], wbits=None, abits=None, per_channel=None,
                  rounding=None, cache: bool = True, darknet=None) -> QuantizedModel:
    """Quantize a model with its recipe, reusing a cached ``.mdfi`` when it matches.

    ``load_network()`` returns the float network with its weights; it is only called when
    the cache misses (reading a 35-250 MB weights file is most of a cold start).
    """
    from . import modelfile
    opts = resolve(spec_name, wbits=wbits, abits=abits, per_channel=per_channel, rounding=rounding)
    key_opts = dict(opts, darknet=darknet) if darknet is not None else opts
    path, cfg_text, label = cache_path(cfg_file, weights_file, spec_name, key_opts)
    if cache and path.is_file():
        try:
            qm = modelfile.load(path)
            qm.names = list(names)
            return qm
        except ModelFileError:
            pass                        # damaged cache entry: quantize again below
    network = load_network()
    calib = shipped_calibration(spec_name)
    if calib is None:
        print(f"note: no calibration statistics for {label}: activation formats are estimated from "
              f"batch-norm statistics (less accurate; `mdfi quantize --calib DIR` calibrates on images)",
              file=sys.stderr)
    qm = quantize_network(network, wbits=opts["wbits"], abits=opts["abits"], per_channel=opts["per_channel"],
                          rounding=opts["rounding"], calib=calib, act_method=opts["act_method"],
                          weight_method=opts["weight_method"], cfg_text=cfg_text, names=names)
    qm.name = label
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            modelfile.save(qm, path, model_name=label)
        except (OSError, ModelFileError):
            pass                        # a read-only cache only costs speed
    return qm
