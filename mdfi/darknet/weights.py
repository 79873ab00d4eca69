"""Darknet ``.weights`` reader (load_weights_upto in src/parser.c).

Layout, little-endian:

* ``int32 major, minor, revision``;
* ``seen``: 64-bit (size_t) when ``major*10 + minor >= 2`` and both are below 1000,
  else 32-bit (int);
* then, for each convolutional layer in cfg order: ``float32 biases[n]``; if the layer has
  batch_normalize: ``scales[n], rolling_mean[n], rolling_variance[n]``; then
  ``weights[n][c][size][size]``.

The file must hold exactly that many bytes: a short file or bytes left over are errors
that state the expected and found sizes (Darknet itself silently reads short files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..errors import WeightsError
from .network import Network

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int
    header_bytes: int


def parse_header(data: bytes, path: str) -> WeightsHeader:
    if len(data) < 16:
        raise WeightsError(f"{path}: file is {len(data)} bytes, too short for a Darknet weights header "
                           f"(at least 16 bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data[:12], dtype="<i4"))
    if major < 0 or minor < 0 or revision < 0:
        raise WeightsError(f"{path}: header version {major}.{minor}.{revision} is not a Darknet weights "
                           f"header (negative version numbers)")
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    if wide:
        if len(data) < 20:
            raise WeightsError(f"{path}: file is {len(data)} bytes, too short for a version "
                               f"{major}.{minor} header (20 bytes)")
        seen = int(np.frombuffer(data[12:20], dtype="<u8")[0])
        hb = 20
    else:
        seen = int(np.frombuffer(data[12:16], dtype="<u4")[0])
        hb = 16
    return WeightsHeader(major, minor, revision, seen, hb)


def load_weights(network: Network, path: PathLike) -> WeightsHeader:
    """Read ``path`` and attach every layer's parameters to ``network``."""
    from ..inputs import as_path, open_input
    spath = as_path(path, "weights file")
    expected_params = network.num_params()
    fd, size = open_input(spath, WeightsError, what="Darknet .weights file")
    try:
        with os.fdopen(fd, "rb") as fh:
            head = fh.read(20)
            header = parse_header(head, spath)
            _check_size(network, header, size, spath)
            fh.seek(header.header_bytes)
            values = np.fromfile(fh, dtype="<f4", count=expected_params)
    except MemoryError:
        raise WeightsError(f"{spath}: not enough memory to read {expected_params:,} parameters") from None
    except OSError as exc:
        raise WeightsError(f"{spath}: cannot read: {exc.strerror or exc}") from None
    _attach(network, values, spath)
    return header


def load_weights_bytes(network: Network, data: bytes, name: str = "<bytes>") -> WeightsHeader:
    """Like :func:`load_weights` for the bytes of a ``.weights`` file (e.g. sent to a
    worker); ``name`` stands for the file in messages."""
    header = parse_header(bytes(data[:20]), name)
    _check_size(network, header, len(data), name)
    values = np.frombuffer(data, dtype="<f4", count=network.num_params(), offset=header.header_bytes)
    _attach(network, values, name)
    return header


def _check_size(network: Network, header: WeightsHeader, size: int, spath: str) -> None:
    expected_params = network.num_params()
    expected = header.header_bytes + 4 * expected_params
    if size != expected:
        found_params = (size - header.header_bytes) / 4
        what = "truncated" if size < expected else "has extra bytes"
        raise WeightsError(
            f"{spath}: file {what}: expected {expected:,} bytes ({header.header_bytes}-byte header "
            f"+ {expected_params:,} float32 values for {os.path.basename(network.path)}), found "
            f"{size:,} bytes ({found_params:,.2f} values); wrong cfg for these weights?")


def _attach(network: Network, values: np.ndarray, spath: str) -> None:
    expected_params = network.num_params()
    if values.size != expected_params:  # file changed under us
        raise WeightsError(f"{spath}: expected {expected_params:,} float32 values, read {values.size:,}")
    try:
        values = values.astype(np.float32)  # native byte order
    except MemoryError:
        raise WeightsError(f"{spath}: not enough memory to read {expected_params:,} parameters") from None
    off = 0
    for layer in network.layers:
        n = layer.num_params()
        if n == 0:
            continue
        chunk = values[off:off + n]
        bad = int(np.count_nonzero(~np.isfinite(chunk)))
        if bad:
            raise WeightsError(f"{spath}: layer {layer.index} ({layer.kind}) has {bad} non-finite "
                               f"parameters (NaN/Inf) at float offsets {off}..{off + n - 1}")
        layer.set_params(chunk)
        off += n
    check_trained(network, spath)


#: Largest magnitude a folded weight or bias may have: what the widest fixed-point format
#: (16 bits, at least -24 fractional bits) can hold, 2**39.  Beyond it no format represents
#: the value (and no trained model comes near: yolov3-tiny's largest folded weight is 21).
MAX_PARAM_MAGNITUDE = float(2 ** 39)
#: Folded weights / biases beyond these get a warning (trained Darknet detectors stay two to
#: three orders of magnitude below).
WARN_WEIGHT_MAGNITUDE = 1e4
WARN_BIAS_MAGNITUDE = 1e5


def check_trained(network: Network, path: str) -> None:
    """Refuse parameters no trained model has, naming the file and layer: a negative
    batch-norm variance (Darknet would take its square root: NaN everywhere after it) and
    folded weights or biases beyond :data:`MAX_PARAM_MAGNITUDE`.  Warn (stderr) about
    magnitudes far beyond trained models'."""
    import sys
    warned = 0
    for layer in network.layers:
        if getattr(layer, "weights", None) is None or not hasattr(layer, "folded_float_params"):
            continue
        where = f"{path}: layer {layer.index} ({layer.kind})"
        n = layer.weights.shape[0]
        k = np.ones(n)
        if getattr(layer, "batch_normalize", False):
            var = layer.rolling_variance.astype(np.float64)
            neg = np.flatnonzero(var < 0)
            if neg.size:
                raise WeightsError(f"{where}: batch-norm variance of filter {int(neg[0])} is {var[neg[0]]:.6g} "
                                   f"({neg.size} negative in all): not the weights of a trained model "
                                   f"(or not weights for this cfg)")
            k = np.abs(layer.scales.astype(np.float64)) / (np.sqrt(var) + 1e-6)
            bias = np.abs(layer.biases.astype(np.float64)) + np.abs(layer.rolling_mean.astype(np.float64)) * k
        else:
            bias = np.abs(layer.biases.astype(np.float64))
        w_max = np.abs(layer.weights.reshape(n, -1)).max(axis=1).astype(np.float64) * k if layer.weights.size else k * 0
        for what, values, warn_at in (("weights", w_max, WARN_WEIGHT_MAGNITUDE), ("biases", bias, WARN_BIAS_MAGNITUDE)):
            top = float(values.max()) if values.size else 0.0
            if not np.isfinite(top) or top >= MAX_PARAM_MAGNITUDE:
                raise WeightsError(f"{where}: {what} of magnitude {top:.3g} (batch norm folded in) are beyond "
                                   f"every fixed-point format (2^39): not the weights of a trained model")
            if top > warn_at and warned < 5:
                warned += 1
                print(f"warning: {where}: {what} up to {top:.3g} (batch norm folded in); trained Darknet "
                      f"models stay below {warn_at:.0e}: are these the right weights for this cfg?",
                      file=sys.stderr)


def write_weights(network: Network, path: PathLike, *, major: int = 0, minor: int = 2,
                  revision: int = 0, seen: int = 0) -> None:
    """Write the network's parameters in Darknet's format (used for generated weights)."""
    parts = []
    for layer in network.layers:
        if layer.num_params() == 0:
            continue
        if layer.kind != "convolutional":          # AlexeyAB [shortcut] weights_type weights
            parts.append(layer.weights.reshape(-1))
            continue
        parts.append(layer.biases)
        if getattr(layer, "batch_normalize", False):
            parts += [layer.scales, layer.rolling_mean, layer.rolling_variance]
        parts.append(layer.weights.reshape(-1))
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    with open(os.fspath(path), "wb") as fh:
        fh.write(np.asarray([major, minor, revision], dtype="<i4").tobytes())
        fh.write(np.asarray([seen], dtype="<u8" if wide else "<u4").tobytes())
        for p in parts:
            fh.write(np.asarray(p, dtype="<f4").tobytes())


def random_weights(network: Network, seed: int = 0) -> None:
    """Attach random but well-conditioned parameters (for tests and benchmarks of networks
    whose real weights are unavailable, e.g. YOLOv3 here).  He-style weight scaling keeps
    activations in a realistic range through deep networks."""
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        n = layer.num_params()
        if n == 0:
            continue
        if layer.kind != "convolutional":          # AlexeyAB [shortcut] weights_type weights
            layer.set_params(rng.uniform(0.5, 1.5, n).astype(np.float32))
            continue
        f = layer.filters
        fan_in = layer.kernel_volume
        vals = [rng.normal(0, 0.1, f)]  # biases
        if layer.batch_normalize:
            vals += [rng.uniform(0.5, 1.5, f), rng.normal(0, 0.1, f), rng.uniform(0.5, 2.0, f)]
        vals.append(rng.normal(0, np.sqrt(2.0 / fan_in), f * fan_in))
        layer.set_params(np.concatenate(vals).astype(np.float32))
