"""``mdfi verify`` on a zero-point export (yolov3-tiny quantized with --zero-points,
docs/golden-format.md "Zero points"): a correct dump passes, a corrupted one fails, and the
two faults a zero point invites are named -- the output zero point forgotten (found =
golden - zero_out), and the padding written as 0 instead of the input's zero point
(mismatches only on the border)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from mdfi.hw import golden, vectors, verify

from conftest import skimage_image

CONV = 2          # 3x3 leaky convolution, pad 1, input zero point and output zero point nonzero


@pytest.fixture(scope="module")
def zmodel(tiny_net):
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    from mdfi.quant import recipes
    from mdfi.quant.quantize import quantize_network
    qm = quantize_network(tiny_net, wbits=8, abits=8, per_channel=True, act_method="mse", zero_points=True,
                          calib=recipes.shipped_calibration("yolov3-tiny"))
    assert qm.layers[CONV].in_fmt.zero and qm.layers[CONV].out_fmt.zero
    return Model(tiny_net, [f"class{i}" for i in range(80)], FixedEngine(qm, "c", 2))


@pytest.fixture(scope="module")
def zgold(zmodel, tmp_path_factory):
    d = tmp_path_factory.mktemp("zgold")
    man = golden.export(zmodel, skimage_image("astronaut.png"), str(d / "all"), layers=[0, 1, CONV, 17, 20])
    golden.export(zmodel, skimage_image("astronaut.png"), str(d / "out"), layers=[CONV], stages=["out"])
    return d, man


def _read(folder, name, e):
    return vectors.read(os.path.join(folder, name), "hex", e["bits"], e["signed"], int(np.prod(e["shape"])))


def _entry(man, name):
    return next(e for e in man["files"] if e["path"] == name)


def _write(dut, name, e, values):
    os.makedirs(dut, exist_ok=True)
    vectors.write(os.path.join(dut, name), np.asarray(values).reshape(-1), "hex", e["bits"], e["signed"])


def test_manifest_carries_the_zero_points(zgold):
    d, man = zgold
    e = _entry(man, f"l{CONV:03d}.out.hex")
    z = man["layers"][CONV]["meta"]["out_fmt"]["zero"]
    assert e["zero"] == z != 0 and e["ap_type"].endswith(f"{-z:+d}")
    assert "zero" not in _entry(man, f"l{CONV:03d}.acc.hex")
    assert man["layers"][CONV]["params"]["pad_value"] == _entry(man, f"l{CONV:03d}.in0.hex")["zero"]


def test_correct_dump_passes_and_corrupted_fails(zgold, tmp_path):
    d, man = zgold
    dut = tmp_path / "dut"
    shutil.copytree(d / "all", dut)
    rep = verify.verify(str(d / "all"), str(dut))
    assert rep.exit_status == 0 and rep.counts["matched"] == rep.counts["compared"] == len(man["files"])
    name = f"l{CONV:03d}.out.hex"
    e = _entry(man, name)
    v = _read(d / "all", name, e)
    v[1000] = v[1000] + 1 if v[1000] < 127 else v[1000] - 1
    _write(dut, name, e, v)
    rep = verify.verify(str(d / "all"), str(dut))
    assert rep.exit_status == 1 and rep.counts["mismatched"] == 1


@pytest.mark.parametrize("which", ["all", "out"])       # with the acc/act stages exported, and without
def test_forgotten_output_zero_point_is_named(zgold, tmp_path, which):
    d, man = zgold
    name = f"l{CONV:03d}.out.hex"
    e = _entry(man, name)
    z = e["zero"]
    bad = np.clip(_read(d / "all", name, e).astype(np.int64) - z, -128, 127)
    _write(tmp_path, name, e, bad)
    res = verify.verify(str(d / which), str(tmp_path)).files[0]
    assert res.status == "mismatch"
    kinds = [h.kind for h in res.hints]
    assert kinds[0] == "zero_point", [h.text for h in res.hints]
    assert f"zero_out = {z}" in res.hints[0].text


def test_padding_with_zero_instead_of_the_zero_point_is_on_the_border(zgold, tmp_path):
    from mdfi.layers.convolutional import conv2d_int_ref
    d, man = zgold
    L = man["layers"][CONV]
    x = _read(d / "all", f"l{CONV:03d}.in0.hex", _entry(man, f"l{CONV:03d}.in0.hex")).reshape(L["in_shapes"][0])
    ws = _entry(man, f"l{CONV:03d}.weights.hex")
    w = _read(d / "all", ws["path"], ws).reshape(ws["shape"])
    b = _read(d / "all", f"l{CONV:03d}.bias.hex", _entry(man, f"l{CONV:03d}.bias.hex"))
    s = _read(d / "all", f"l{CONV:03d}.shift.hex", _entry(man, f"l{CONV:03d}.shift.hex"))
    name = f"l{CONV:03d}.out.hex"
    e = _entry(man, name)
    kw = dict(size=3, stride=1, padding=1, rounding="half_up", bits=8, activation="leaky", zero_out=e["zero"])
    good = conv2d_int_ref(x, w, b, s, pad_value=L["params"]["pad_value"], **kw)
    assert np.array_equal(good.reshape(-1), _read(d / "all", name, e))
    bad = conv2d_int_ref(x, w, b, s, pad_value=0, **kw)
    _write(tmp_path, name, e, bad)
    res = verify.verify(str(d / "all"), str(tmp_path)).files[0]
    assert res.status == "mismatch"
    border = [h for h in res.hints if h.kind == "border"]
    assert border and f"pad_value = {L['params']['pad_value']}" in border[0].text, [h.text for h in res.hints]
