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


# -- shortcuts with zero points (docs/fixed-point.md section 6) ----------------------------------------
SC = 4            # mini-yolov3's first shortcut


@pytest.fixture(scope="module")
def scgold(tmp_path_factory):
    """mini-yolov3 quantized with zero points (random-image statistics): shortcut 4 reads and
    writes zero-point formats; exported with every stage, and with its output only."""
    from conftest import DARKNET
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    from mdfi.quant import calibrate
    from mdfi.quant.quantize import quantize_network
    mini = DARKNET / "mini-yolov3" / "mini-yolov3"
    net = Network.from_cfg(str(mini) + ".cfg", warn=False)
    load_weights(net, str(mini) + ".weights")
    rng = np.random.default_rng(4)
    calib = calibrate.collect(net, [rng.integers(0, 256, (net.height, net.width, 3)).astype(np.uint8)
                                    for _ in range(2)], progress=False)
    qm = quantize_network(net, per_channel=True, calib=calib, zero_points=True)
    sc = qm.layers[SC]
    assert sc.kind == "shortcut" and sc.out_fmt.zero and all(f.zero for f in sc.in_fmts)
    model = Model(net, [f"class{i}" for i in range(80)], FixedEngine(qm, "c", 1))
    d = tmp_path_factory.mktemp("scgold")
    img = np.random.default_rng(9).integers(0, 256, (60, 80, 3)).astype(np.uint8)
    man = golden.export(model, img, str(d / "all"), layers=[SC])
    golden.export(model, img, str(d / "out"), layers=[SC], stages=["out"])
    return d, man


def test_shortcut_zero_points_in_the_manifest_and_a_correct_dump_passes(scgold, tmp_path):
    d, man = scgold
    p = man["layers"][SC]["params"]
    assert p["zero_a"] == _entry(man, f"l{SC:03d}.in0.hex")["zero"] != 0
    assert p["zero_b"] == _entry(man, f"l{SC:03d}.in1.hex")["zero"] != 0
    assert p["zero_out"] == _entry(man, f"l{SC:03d}.out.hex")["zero"] != 0
    shutil.copytree(d / "all", tmp_path / "dut")
    rep = verify.verify(str(d / "all"), str(tmp_path / "dut"))
    assert rep.exit_status == 0 and rep.counts["matched"] == rep.counts["compared"] == len(man["files"])


@pytest.mark.parametrize("which", ["all", "out"])
def test_shortcut_forgotten_output_zero_point_is_named(scgold, tmp_path, which):
    d, man = scgold
    name = f"l{SC:03d}.out.hex"
    e = _entry(man, name)
    z = e["zero"]
    _write(tmp_path, name, e, np.clip(_read(d / "all", name, e).astype(np.int64) - z, -128, 127))
    res = verify.verify(str(d / which), str(tmp_path)).files[0]
    assert res.status == "mismatch"
    assert res.hints[0].kind == "zero_point" and f"zero_out = {z}" in res.hints[0].text, \
        [h.text for h in res.hints]


@pytest.mark.parametrize("forgot", ["both", "a", "b"])
def test_shortcut_input_zero_points_not_subtracted_are_named(scgold, tmp_path, forgot):
    d, man = scgold
    p = man["layers"][SC]["params"]
    fa, fb, fm = p["fa"], p["fb"], p["sum_frac"]
    name = f"l{SC:03d}.acc.hex"
    e = _entry(man, name)
    off = (p["zero_a"] << (fm - fa) if forgot != "b" else 0) + (p["zero_b"] << (fm - fb) if forgot != "a" else 0)
    _write(tmp_path, name, e, _read(d / "all", name, e).astype(np.int64) + off)
    res = verify.verify(str(d / "all"), str(tmp_path)).files[0]
    assert res.status == "mismatch"
    h = res.hints[0]
    assert h.kind == "zero_point" and "shortcut input zero point not subtracted" in h.text, [x.text for x in res.hints]
    same = p["zero_a"] << (fm - fa) == p["zero_b"] << (fm - fb)
    want = {"both": "(zero_a and zero_b;", "a": "(zero_a;", "b": "(zero_b;"}[forgot]
    assert (want if forgot == "both" or not same else "(zero_a or zero_b, equal terms here;") in h.text, h.text


@pytest.mark.parametrize("forgot", ["both", "a", "b"])
def test_shortcut_input_zero_points_fewer_channels(tmp_path, forgot):
    """AlexeyAB's shortcut 7 (b has 16 of a's 24 channels; zero_a = 27 at fa = 4, zero_b = -24
    at fb = 3, distinct terms): zero_b's term only on the first added_elements."""
    from test_c_runner import ab_zero_points_everywhere
    model, _ = ab_zero_points_everywhere()
    i = 7
    man = golden.export(model, np.random.default_rng(2).integers(0, 256, (40, 60, 3)).astype(np.uint8),
                        str(tmp_path / "gold"), layers=[i])
    p = man["layers"][i]["params"]
    assert (p["zero_a"], p["zero_b"], p["added_elements"] < p["a_elements"]) == (27, -24, True)
    fm = p["sum_frac"]
    name = f"l{i:03d}.acc.hex"
    e = _entry(man, name)
    acc = _read(tmp_path / "gold", name, e).astype(np.int64)
    off = np.zeros(acc.size, np.int64)
    if forgot != "b":
        off += p["zero_a"] << (fm - p["fa"])
    if forgot != "a":
        off[:p["added_elements"]] += p["zero_b"] << (fm - p["fb"])
    _write(tmp_path / "dut", name, e, acc + off)
    res = verify.verify(str(tmp_path / "gold"), str(tmp_path / "dut")).files[0]
    h = res.hints[0]
    want = {"both": "(zero_a and zero_b;", "a": "(zero_a;", "b": "(zero_b;"}[forgot]
    assert h.kind == "zero_point" and want in h.text, [x.text for x in res.hints]
