"""A [yolo] head's logit gain (docs/fixed-point.md section 7 "Logit gain", docs/quantization.md
round 18): the objectness/class table is sigmoid(g*t), x and y go through the x/y table
(sigmoid(t), scale 1), everything else is unchanged; recorded in the model file and refused
when it cannot be right.  The expected tables are written here from the documented formula
(floor(v + 1/2) of float64 values), not taken from mdfi.layers.heads.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.errors import FormatError, ModelFileError
from mdfi.layers import heads
from mdfi.layers.yolo import QYolo
from mdfi.quant import modelfile
from mdfi.quant.quantize import quantize_network

from test_cengine import assert_layers_equal
from test_hostile import _rewrite_header


def documented_logistic(fmt, gain):
    t = (np.arange(fmt.min, fmt.max + 1, dtype=np.float64) - fmt.zero) * 2.0 ** -fmt.frac
    with np.errstate(over="ignore"):
        return np.clip(np.floor(1.0 / (1.0 + np.exp(-(gain * t))) * 32768 + 0.5), 0, 32768).astype(np.int64)


@pytest.mark.parametrize("bits, frac, zero, gain", [(8, 4, 0, 1.05), (8, 3, -17, 1.0625), (6, 2, 5, 0.9),
                                                    (12, 7, 0, 1.3), (16, 11, 100, 1.01)])
def test_table_rule(bits, frac, zero, gain):
    fmt = fp.QFormat(bits, frac, zero=zero)
    assert np.array_equal(heads.logistic_table(fmt, gain).astype(np.int64), documented_logistic(fmt, gain))
    assert np.array_equal(heads.logistic_table(fmt, 1.0).astype(np.int64), documented_logistic(fmt, 1.0))
    # the x/y table of a classic head (scale 1) holds the gain-free logistic values
    assert np.array_equal(heads.xy_table(fmt, 1.0, False).astype(np.int64), documented_logistic(fmt, 1.0))


@pytest.fixture(scope="module")
def gained(tiny_net):
    from mdfi.quant import recipes
    calib = recipes.shipped_calibration("yolov3-tiny")
    plain = quantize_network(tiny_net, per_channel=True, calib=calib, act_method="mse")
    qm = quantize_network(tiny_net, per_channel=True, calib=calib, act_method="mse", head_gains={16: 1.05, 23: 1.0625})
    return plain, qm


def test_only_the_confidences_change(gained):
    plain, qm = gained
    for i, g in ((16, 1.05), (23, 1.0625)):
        a, b = plain.layers[i], qm.layers[i]
        assert (a.logit_gain, b.logit_gain, a.scaled, b.scaled) == (1.0, g, False, True)
        assert b.meta()["logit_gain"] == g and "logit_gain" not in a.meta()
        assert np.array_equal(b.logistic.astype(np.int64), documented_logistic(b.in_fmt, g))
        assert not np.array_equal(a.logistic, b.logistic)
        sel = b.table_select().reshape(b.layer.n, b.layer.entries)
        assert (sel[:, 0:2] == 2).all() and (sel[:, 2:4] == 1).all() and (sel[:, 4:] == 0).all()
        x = np.arange(b.in_fmt.min, b.in_fmt.max + 1)
        x = np.resize(x, (b.layer.n * b.layer.entries, 3, 4)).astype(np.int32)
        oa, ob = (q.forward_ref([x]).reshape(b.layer.n, b.layer.entries, -1) for q in (a, b))
        assert np.array_equal(oa[:, :4], ob[:, :4])                 # x, y, w, h: the same integers
        assert not np.array_equal(oa[:, 4:], ob[:, 4:])
    assert qm.options["head_gains"] == {"16": 1.05, "23": 1.0625}
    assert "logit gain 1.05" in qm.layers[16].describe_formats()


def test_c_engine_equals_reference(gained, tiny_net):
    x = np.random.default_rng(5).integers(0, 256, tiny_net.input_shape).astype(np.uint8)
    assert_layers_equal(gained[1], x)


def test_model_file_round_trip_and_refusals(gained, tmp_path):
    qm = gained[1]
    path = tmp_path / "g.mdfi"
    modelfile.save(qm, path)
    back = modelfile.load(path)
    for i in (16, 23):
        assert back.layers[i].logit_gain == qm.layers[i].logit_gain
        assert np.array_equal(back.layers[i].logistic, qm.layers[i].logistic)
        assert np.array_equal(back.layers[i].xy, qm.layers[i].xy)
    assert json.loads(path.read_bytes()[20:20 + int.from_bytes(path.read_bytes()[12:16], "little")]
                      )["format_version"] == modelfile.FORMAT_VERSION_GAIN      # older MDFIs refuse it
    for bad in ("3.5", '"1.05"', "true"):
        p = tmp_path / "bad.mdfi"
        _rewrite_header(path, p, lambda h: h.replace(b'"logit_gain":1.05', b'"logit_gain":' + bad.encode()))
        assert p.read_bytes() != path.read_bytes()
        with pytest.raises(ModelFileError, match="bad.mdfi.*layer 16.*logit gain"):
            modelfile.load(p)


def test_refused_where_it_cannot_be_right(tiny_net):
    with pytest.raises(FormatError, match="layer 15: not a \\[yolo\\]"):
        quantize_network(tiny_net, head_gains={15: 1.05})
    with pytest.raises(FormatError, match="outside"):
        quantize_network(tiny_net, head_gains={16: 4.0})
    layer = copy.copy(tiny_net.layers[16])
    layer.new_coords = True
    with pytest.raises(FormatError, match="new_coords"):
        QYolo(layer, fp.QFormat(8, 4), "half_up", logit_gain=1.05)
