"""Fuzzing the Darknet ``.weights`` reader (issue 6; the rules and shared helpers: fuzz_common.py)."""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mdfi.errors import LimitError, WeightsError
from mdfi.darknet.network import Network
from mdfi.darknet.weights import load_weights

import fuzz_common
from fuzz_common import fuzz, MINI_CFG, fresh, attempt, note, assert_user_error, MINI_WEIGHT_BYTES

# fixtures shared with the other test_fuzz_* modules (defined in fuzz_common.py)
work = fuzz_common.work


# ================================================================================================
# 2. Darknet .weights (with the mini-yolov3 cfg)
@lru_cache(maxsize=None)
def _mini_network() -> Network:
    return Network.from_cfg(MINI_CFG, warn=False)


def weights_verdict(data: bytes, nparams: int):
    """What load_weights must say about ``data``, from an independent reading of the format."""
    if len(data) < 16:
        return "too short", None
    major, minor, revision = struct.unpack_from("<iii", data)
    if min(major, minor, revision) < 0:
        return "negative version", None
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    hb = 20 if wide else 16
    if len(data) < hb:
        return "too short", None
    expected = hb + 4 * nparams
    if len(data) != expected:
        return "size", expected
    values = np.frombuffer(data, "<f4", offset=hb)
    if not np.isfinite(values).all():
        return "non-finite", None
    if _untrained(_mini_network(), values):
        return "untrained", None
    return "ok", hb


def _untrained(net, values) -> bool:
    """A negative batch-norm variance, or a folded weight or bias of 2**39 or more (beyond
    every fixed-point format): issue 9 item 2, written out here independently of
    mdfi.darknet.weights.check_trained."""
    off = 0
    for layer in net.layers:
        n = layer.num_params()
        if not n:
            continue
        f = layer.filters
        chunk = values[off:off + n].astype(np.float64)
        off += n
        bias = np.abs(chunk[:f])
        if layer.batch_normalize:
            scale, mean, var, w = chunk[f:2 * f], chunk[2 * f:3 * f], chunk[3 * f:4 * f], chunk[4 * f:]
            if (var < 0).any():
                return True
            k = np.abs(scale) / (np.sqrt(var) + 1e-6)
            bias = bias + np.abs(mean) * k
        else:
            w, k = chunk[f:], np.ones(f)
        top = max((np.abs(w.reshape(f, -1)).max(axis=1) * k).max(), bias.max())
        if not np.isfinite(top) or top >= 2.0 ** 39:
            return True
    return False


def check_weights_bytes(work: Path, data: bytes):
    net = _mini_network()
    path = fresh(work, "w") / "mini.weights"
    path.write_bytes(data)
    verdict, info = weights_verdict(data, net.num_params())
    header, exc = attempt(lambda: load_weights(net, path))
    if verdict == "ok":
        note("accepted")
        assert exc is None, f"valid file refused: {exc!r}"
        assert header.header_bytes == info
        return
    msg = assert_user_error(exc, path, (WeightsError, LimitError))
    if verdict == "size":
        assert f"expected {info:,} bytes" in msg and f"found {len(data):,} bytes" in msg, msg
    elif verdict == "non-finite":
        assert "non-finite" in msg and "NaN" in msg, msg
    elif verdict == "untrained":
        assert "not the weights of a trained model" in msg, msg
    elif verdict == "too short":
        assert "too short" in msg, msg
    else:
        assert "negative" in msg, msg


@fuzz(100)
@given(st.integers(0, len(MINI_WEIGHT_BYTES)), st.binary(max_size=9))
@example(0, b"")
@example(15, b"")
@example(19, b"")
@example(len(MINI_WEIGHT_BYTES) - 1, b"")
@example(len(MINI_WEIGHT_BYTES), b"\0")
@example(len(MINI_WEIGHT_BYTES), b"\0\0\0\0")
def test_weights_truncated_or_extended(work, cut, extra):
    check_weights_bytes(work, MINI_WEIGHT_BYTES[:cut] + extra)


@fuzz(120)
@given(st.lists(st.tuples(st.integers(0, 19), st.integers(0, 255)), min_size=1, max_size=6))
@example([(0, 0xff), (1, 0xff), (2, 0xff), (3, 0xff)])            # major = -1
@example([(0, 0x00), (4, 0x02)])                                  # 0.2: 64-bit seen
@example([(4, 0x01)])                                             # 0.1: 32-bit seen (size changes)
@example([(0, 0xe8), (1, 0x03)])                                  # major 1000: 32-bit seen
@example([(12, 0xff), (13, 0xff), (14, 0xff), (15, 0xff), (16, 0xff), (17, 0xff), (18, 0xff), (19, 0xff)])
def test_weights_header_flips(work, flips):
    data = bytearray(MINI_WEIGHT_BYTES)
    for pos, byte in flips:
        data[pos] = byte
    check_weights_bytes(work, bytes(data))


@fuzz(100)
@given(st.lists(st.tuples(st.integers(0, 1 << 30),
                          st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf"), 3.4e38, -0.0,
                                                     1e-45]),
                                    st.floats(width=32))),
                min_size=1, max_size=5),
       st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), max_size=4))
def test_weights_float_data_nan_inf_and_flips(work, values, flips):
    data = bytearray(MINI_WEIGHT_BYTES)
    n = (len(data) - 20) // 4
    for pos, v in values:
        struct.pack_into("<f", data, 20 + 4 * (pos % n), v)
    for pos, byte in flips:
        data[20 + pos % (len(data) - 20)] = byte
    check_weights_bytes(work, bytes(data))


def test_weights_all_nan_inf_empty_and_directory(work):
    n = _mini_network().num_params()
    head = MINI_WEIGHT_BYTES[:20]
    check_weights_bytes(work, head + np.full(n, np.nan, "<f4").tobytes())
    check_weights_bytes(work, head + np.full(n, np.inf, "<f4").tobytes())
    check_weights_bytes(work, b"")
    d = fresh(work, "w") / "dir.weights"
    d.mkdir()
    with pytest.raises(WeightsError) as ei:
        load_weights(_mini_network(), d)
    assert_user_error(ei.value, d)
    with pytest.raises(WeightsError) as ei:
        load_weights(_mini_network(), d.parent / "missing.weights")
    assert_user_error(ei.value, d.parent / "missing.weights")
