"""The shipped rounding file (``mdfi/data/MODEL.wWaA.rounding.npz``, docs/quantization.md
"Round 15"): a zoo recipe's AdaRound weights as one bit per weight off round-half-up plus a
sign bit, its empirical bias shifts, and what it was made at -- written by
``benchmarks/make_rounding.py``, read and checked at load (:mod:`mdfi.quant.recipes` applies
it).  The format only; which file a model uses is the recipe's business."""

from __future__ import annotations

import hashlib
import json

from ..errors import ModelFileError

ROUNDING_FORMAT = "mdfi-rounding"


def write_rounding(path, refinements: dict, meta: dict) -> None:
    """Write ``quantize_network(refinements=...)``'s record as a shipped rounding file: per
    convolution the weights whose integer differs from round-half-up (a bit mask over the
    weights in C order) and the sign of each difference (one bit per set mask bit), and the
    empirical bias shifts (float64, exact); ``meta`` (JSON) names what made it and the
    :func:`integer_digest` the file must reproduce."""
    import numpy as np
    arrays = {"meta": np.array(json.dumps(dict(meta, format=ROUNDING_FORMAT, version=1), sort_keys=True))}
    for i, r in sorted(refinements.items()):
        d = np.asarray(r["weight_delta"]).reshape(-1)
        if d.size and np.abs(d).max() > 1:
            raise ValueError(f"layer {i}: a weight moved by more than one step from round-half-up")
        arrays[f"n{i}"] = np.array(d.size, np.int64)
        arrays[f"mask{i}"] = np.packbits(d != 0)
        arrays[f"sign{i}"] = np.packbits(d[d != 0] < 0)
        arrays[f"shift{i}"] = np.asarray(r["bias_shift"], np.float64)
    np.savez_compressed(path, **arrays)


def read_rounding(source) -> tuple:
    """(meta, weight_deltas, bias_shifts) of a rounding file (:func:`write_rounding`);
    ``source`` a path or a resource."""
    import io
    import zipfile
    import numpy as np
    from ..layers.yolo import LOGIT_GAIN_RANGE
    name = str(source)
    try:
        raw = source.read_bytes() if hasattr(source, "read_bytes") else open(source, "rb").read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            from ..safejson import parse
            meta = parse(str(z["meta"]))          # depth- and digit-limited (a RecursionError before)
            if not isinstance(meta, dict) or meta.get("format") != ROUNDING_FORMAT:
                raise ValueError("not a rounding file")
            deltas, shifts = {}, {}
            for key in z.files:
                if not key.startswith("n"):
                    continue
                i = int(key[1:])
                n = int(z[key])
                mask, sign = z[f"mask{i}"], z[f"sign{i}"]
                # the bit counts before unpacking: n = 10**12 asked for 931 GiB
                if n < 0 or mask.ndim != 1 or mask.size != (n + 7) // 8:
                    raise ValueError(f"layer {i}: a mask of {mask.size} bytes for {n} weights")
                nz = np.unpackbits(mask, count=n).astype(bool)
                k = int(nz.sum())
                if sign.ndim != 1 or sign.size != (k + 7) // 8:
                    raise ValueError(f"layer {i}: {sign.size} bytes of signs for {k} moved weights")
                neg = np.unpackbits(sign, count=k).astype(bool)
                d = nz.astype(np.int8)
                d[np.flatnonzero(nz)[neg]] = -1
                deltas[i] = d
                shifts[i] = np.asarray(z[f"shift{i}"], np.float64)
                if shifts[i].ndim != 1 or not np.isfinite(shifts[i]).all():
                    raise ValueError(f"layer {i}: bias shifts must be finite per-channel numbers")
            gains, (lo, hi) = meta.get("head_gains", {}), LOGIT_GAIN_RANGE
            if not isinstance(gains, dict) or not all(
                    k.isdigit() and isinstance(v, float) and lo <= v <= hi for k, v in gains.items()):
                raise ValueError(f"head_gains must map layer numbers to gains in {lo}..{hi}")
            widths = meta.get("layer_abits", {})
            if not isinstance(widths, dict) or not all(
                    k.isdigit() and type(v) is int and 2 <= v <= 16 for k, v in widths.items()):
                raise ValueError("layer_abits must map layer numbers to widths in 2..16")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise ModelFileError(f"{name}: damaged shipped rounding file ({e})") from None
    return meta, deltas, shifts


#: the ``quantize_network`` keyword arguments a rounding file may set (:func:`rounding_kwargs`)
ROUNDING_KWARGS = ("weight_deltas", "bias_shifts", "layer_wbits", "head_gains", "layer_abits")


def rounding_kwargs(meta: dict, deltas: dict, shifts: dict) -> dict:
    """``quantize_network`` keyword arguments of a rounding file (:func:`read_rounding`):
    ``weight_deltas``, ``bias_shifts`` and, when it records them, the per-layer weight widths
    it was made at ``layer_wbits`` (round 15c, 21), the heads' logit gains ``head_gains`` and
    per-layer output widths ``layer_abits`` (round 18)."""
    kw = {"weight_deltas": deltas, "bias_shifts": shifts}
    if meta.get("layer_wbits"):             # the weight widths the rounding was made at
        kw["layer_wbits"] = {int(k): int(v) for k, v in meta["layer_wbits"].items()}
    if meta.get("head_gains"):
        kw["head_gains"] = {int(k): float(v) for k, v in meta["head_gains"].items()}
    if meta.get("layer_abits"):             # the output widths the rounding was made at (round 18b)
        kw["layer_abits"] = {int(k): int(v) for k, v in meta["layer_abits"].items()}
    return kw


def integer_digest(qm) -> str:
    """sha256 of a quantized model's convolution integers (weights, their fracs, biases) in
    layer order: what a shipped rounding file must reproduce."""
    import numpy as np
    h = hashlib.sha256()
    for i, ql in enumerate(qm.layers):
        if getattr(ql, "kind", None) != "convolutional":
            continue
        h.update(f"{i}:".encode())
        for a in (ql.weights, ql.w_frac, ql.bias):
            h.update(np.ascontiguousarray(np.asarray(a, np.int64)).astype("<i8").tobytes())
    return h.hexdigest()
