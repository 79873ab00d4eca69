"""The .weights reader: header versions, exact sizes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import WeightsError
from mdfi.darknet.network import Network
from mdfi.darknet.weights import load_weights, random_weights, write_weights

CFG = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\n" \
      "pad=1\nactivation=leaky\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"


def small_net():
    return Network(parse_cfg_text(CFG, "s.cfg"), "s.cfg", warn=False)


def test_param_count_and_order(tmp_path):
    net = small_net()
    # conv0: 4 biases + 3*4 bn + 4*3*3*3 weights; conv1: 2 biases + 2*4 weights
    assert net.num_params() == 4 + 12 + 108 + 2 + 8
    values = np.arange(net.num_params(), dtype="<f4")
    p = tmp_path / "w.weights"
    p.write_bytes(np.array([0, 2, 0], "<i4").tobytes() + np.array([7], "<u8").tobytes() + values.tobytes())
    hdr = load_weights(net, p)
    assert (hdr.major, hdr.minor, hdr.seen, hdr.header_bytes) == (0, 2, 7, 20)
    c0, c1 = net.layers
    assert c0.biases.tolist() == [0, 1, 2, 3]
    assert c0.scales.tolist() == [4, 5, 6, 7]
    assert c0.rolling_mean.tolist() == [8, 9, 10, 11]
    assert c0.rolling_variance.tolist() == [12, 13, 14, 15]
    assert c0.weights.shape == (4, 3, 3, 3) and c0.weights[0, 0, 0, 0] == 16
    assert c1.biases.tolist() == [124, 125] and c1.weights.reshape(-1).tolist() == list(range(126, 134))


def test_old_header_has_32bit_seen(tmp_path):
    net = small_net()
    values = np.ones(net.num_params(), dtype="<f4")
    p = tmp_path / "old.weights"
    p.write_bytes(np.array([0, 1, 0, 99], "<i4").tobytes() + values.tobytes())  # version 0.1
    hdr = load_weights(net, p)
    assert hdr.header_bytes == 16 and hdr.seen == 99


@pytest.mark.parametrize("delta, word", [(-4, "truncated"), (-1, "truncated"), (4, "extra bytes")])
def test_size_errors_state_expected_and_found(tmp_path, delta, word):
    net = small_net()
    random_weights(net)
    p = tmp_path / "w.weights"
    write_weights(net, p)
    data = p.read_bytes()
    p.write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)
    expected = 20 + 4 * net.num_params()
    with pytest.raises(WeightsError) as ei:
        load_weights(small_net(), p)
    msg = str(ei.value)
    assert word in msg and f"expected {expected:,} bytes" in msg and f"found {expected + delta:,} bytes" in msg
    assert str(p) in msg


def test_wrong_cfg_for_real_weights(tiny_weights_path):
    net = small_net()
    with pytest.raises(WeightsError, match=r"expected 556 bytes .* found 35,434,956 bytes"):
        load_weights(net, tiny_weights_path)


def test_tiny_files(tmp_path):
    p = tmp_path / "empty.weights"
    p.write_bytes(b"")
    with pytest.raises(WeightsError, match="too short for a Darknet weights header"):
        load_weights(small_net(), p)
    with pytest.raises(WeightsError, match="file not found"):
        load_weights(small_net(), tmp_path / "missing.weights")


def test_non_finite_parameters_rejected(tmp_path):
    net = small_net()
    random_weights(net)
    net.layers[1].weights[0, 0, 0, 0] = np.nan
    p = tmp_path / "nan.weights"
    write_weights(net, p)
    with pytest.raises(WeightsError, match=r"layer 1 \(convolutional\) has 1 non-finite"):
        load_weights(small_net(), p)


def test_write_read_roundtrip(tmp_path):
    net = small_net()
    random_weights(net, seed=3)
    p = tmp_path / "rt.weights"
    write_weights(net, p)
    net2 = small_net()
    load_weights(net2, p)
    for a, b in zip(net.layers, net2.layers):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.biases, b.biases)
