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

from .errors import WeightsError
from .limits import require_regular_file
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
    spath = os.fspath(path)
    expected_params = network.num_params()
    try:
        require_regular_file(spath, WeightsError)
        size = os.path.getsize(spath)
        with open(spath, "rb") as fh:
            head = fh.read(20)
            header = parse_header(head, spath)
            _check_size(network, header, size, spath)
            fh.seek(header.header_bytes)
            values = np.fromfile(fh, dtype="<f4", count=expected_params)
    except FileNotFoundError:
        raise WeightsError(f"{spath}: file not found") from None
    except IsADirectoryError:
        raise WeightsError(f"{spath}: is a directory, expected a .weights file") from None
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
    values = values.astype(np.float32)  # native byte order
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


def write_weights(network: Network, path: PathLike, *, major: int = 0, minor: int = 2,
                  revision: int = 0, seen: int = 0) -> None:
    """Write the network's parameters in Darknet's format (used for generated weights)."""
    parts = []
    for layer in network.layers:
        if layer.num_params() == 0:
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
        f = layer.filters
        fan_in = layer.kernel_volume
        vals = [rng.normal(0, 0.1, f)]  # biases
        if layer.batch_normalize:
            vals += [rng.uniform(0.5, 1.5, f), rng.normal(0, 0.1, f), rng.uniform(0.5, 2.0, f)]
        vals.append(rng.normal(0, np.sqrt(2.0 / fan_in), f * fan_in))
        layer.set_params(np.concatenate(vals).astype(np.float32))
