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
from typing import Optional, Sequence

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
            "act_method": "mse", "weight_method": "mse"}


def shipped_calibration(spec_name: Optional[str]):
    """The shipped :class:`~mdfi.calibrate.CalibStats` of a zoo model, or None."""
    from . import calibrate
    recipe = RECIPES.get(spec_name or "")
    if not recipe:
        return None
    res = files("mdfi.data").joinpath(recipe["calib"])
    if not res.is_file():
        return None
    return calibrate.CalibStats.from_json(res)


def resolve(spec_name: Optional[str], **given) -> dict:
    """Options for a quantization: explicit arguments > the model's recipe > defaults."""
    opts = dict(DEFAULTS)
    opts.update({k: v for k, v in RECIPES.get(spec_name or "", {}).items() if k in DEFAULTS})
    opts.update({k: v for k, v in given.items() if v is not None})
    return opts


def quantized_for(network: Network, spec_name: Optional[str], weights_file, *, names: Sequence[str],
                  wbits=None, abits=None, per_channel=None, rounding=None, cache: bool = True) -> QuantizedModel:
    """Quantize ``network`` with its recipe, reusing a cached ``.mdfi`` when it matches."""
    from . import calibrate, modelfile, zoo
    opts = resolve(spec_name, wbits=wbits, abits=abits, per_channel=per_channel, rounding=rounding)
    calib = shipped_calibration(spec_name)
    with open(network.path, "r", encoding="utf-8") as fh:
        cfg_text = fh.read()
    st = os.stat(os.fspath(weights_file))
    key_src = json.dumps({"mdfi": __version__, "cfg": cfg_text, "weights": [os.path.abspath(os.fspath(weights_file)),
                          st.st_size, st.st_mtime_ns], "calib": calib.digest() if calib else None,
                          "opts": opts}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    label = spec_name or os.path.splitext(os.path.basename(network.path))[0]
    tag = f"w{opts['wbits']}a{opts['abits']}{'-pc' if opts['per_channel'] else ''}"
    path = zoo.cache_dir() / "quantized" / f"{label}-{tag}-{key}.mdfi"
    if cache and path.is_file():
        try:
            qm = modelfile.load(path)
            qm.network = network        # same cfg; keep the one holding float weights
            return qm
        except ModelFileError:
            pass                        # damaged cache entry: quantize again below
    if calib is None:
        print(f"note: no calibration statistics for {label}: activation formats are estimated from "
              f"batch-norm statistics (less accurate; `mdfi quantize --calib DIR` calibrates on images)",
              file=sys.stderr)
    qm = quantize_network(network, wbits=opts["wbits"], abits=opts["abits"], per_channel=opts["per_channel"],
                          rounding=opts["rounding"], calib=calib, act_method=opts["act_method"],
                          weight_method=opts["weight_method"], cfg_text=cfg_text, names=names)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            modelfile.save(qm, path, model_name=label)
        except (OSError, ModelFileError):
            pass                        # a read-only cache only costs speed
    return qm
