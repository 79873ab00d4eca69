"""``mdfi verify`` on a zero-point export (yolov3-tiny quantized with --zero-points,
docs/golden-format.md "Zero points"): a correct dump passes, a corrupted one fails, and the
two faults a zero point invites are named -- the output zero point forgotten (found =
golden - zero_out), and the padding written as 0 instead of the input's zero point (the
layer recomputed with 0-padding at the dumped positions: dense, border rows only, sparse)."""

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


def _conv_inputs(d, man, layer):
    """Golden input, weights, bias and shifts of convolution ``layer`` (from the export's files)."""
    L = man["layers"][layer]
    name = f"l{layer:03d}"
    x = _read(d / "all", f"{name}.in0.hex", _entry(man, f"{name}.in0.hex")).reshape(L["in_shapes"][0])
    ws = _entry(man, f"{name}.weights.hex")
    w = _read(d / "all", ws["path"], ws).reshape(ws["shape"])
    b = _read(d / "all", f"{name}.bias.hex", _entry(man, f"{name}.bias.hex"))
    s = _read(d / "all", f"{name}.shift.hex", _entry(man, f"{name}.shift.hex"))
    return x, w, b, s


def _recomputed(d, man, layer, **changes):
    """Layer ``layer``'s output by the reference convolution (conv2d_int_ref), the golden
    arithmetic with ``changes`` (pad_value=0, rounding=...): the device's values, derived
    independently of mdfi verify."""
    from mdfi.layers.convolutional import conv2d_int_ref
    L = man["layers"][layer]
    p, meta = L["params"], L["meta"]
    e = _entry(man, f"l{layer:03d}.out.hex")
    kw = dict(size=p["size"], stride=p["stride"], padding=p["pad"], rounding=meta["rounding"], bits=e["bits"],
              activation=p["activation"], zero_out=e.get("zero", 0), pad_value=p.get("pad_value", 0),
              groups=p.get("groups", 1))
    kw.update(changes)
    return conv2d_int_ref(*_conv_inputs(d, man, layer), **kw).reshape(-1).astype(np.int64)


def _positions(shape, which):
    """Flat CHW indices a dump holds: every value, the top and bottom rows of every channel
    (an RTL bench's ``--rows edges``), or a sparse set with border and interior values."""
    c, h, w = shape
    flat = np.arange(c * h * w)
    y, x = flat // w % h, flat % w
    if which == "dense":
        return flat
    if which == "border_rows":
        return flat[(y == 0) | (y == h - 1)]
    rng = np.random.default_rng(7)
    border = flat[(y == 0) | (y == h - 1) | (x == 0) | (x == w - 1)]
    interior = flat[(y > 0) & (y < h - 1) & (x > 0) & (x < w - 1)]
    return np.sort(np.r_[rng.choice(border, 700, replace=False), rng.choice(interior, 2000, replace=False)])


def _dump(dut, name, e, values, idx):
    """Write ``values`` at positions ``idx`` (a plain file when dense, else a sparse $readmemh dump)."""
    from mdfi.hw.golden_reader import write_hex
    os.makedirs(dut, exist_ok=True)
    n = int(np.prod(e["shape"]))
    write_hex(os.path.join(dut, name), np.asarray(values)[idx], e["bits"], addresses=None if idx.size == n else idx)


def _on_border(idx, shape):
    _, h, w = shape
    y, x = idx // w % h, idx % w
    return (y == 0) | (y == h - 1) | (x == 0) | (x == w - 1)


def test_zero_padding_dump_is_border_confined(zgold):
    """The premise: padding with 0 instead of pad_value changes the border only, and not all of it."""
    d, man = zgold
    e = _entry(man, f"l{CONV:03d}.out.hex")
    gold, bad = _read(d / "all", e["path"], e), _recomputed(d, man, CONV, pad_value=0)
    assert np.array_equal(_recomputed(d, man, CONV), gold)
    diff = np.flatnonzero(gold != bad)
    assert diff.size > 1000 and np.all(_on_border(diff, e["shape"]))
    assert diff.size < np.count_nonzero(_on_border(np.arange(gold.size), e["shape"]))


@pytest.mark.parametrize("which", ["dense", "border_rows", "sparse"])
def test_padding_with_zero_instead_of_the_zero_point_is_named(zgold, tmp_path, which):
    """A device that pads with 0: named in a dense dump, a dump of the border rows only (where
    confinement to the border says nothing), and a sparse dump of border and interior values."""
    d, man = zgold
    name = f"l{CONV:03d}.out.hex"
    e = _entry(man, name)
    pv = man["layers"][CONV]["params"]["pad_value"]
    idx = _positions(e["shape"], which)
    bad = _recomputed(d, man, CONV, pad_value=0)
    _dump(tmp_path, name, e, bad, idx)
    res = verify.verify(str(d / "all"), str(tmp_path)).files[0]
    gold = _read(d / "all", name, e)
    assert res.status == "mismatch" and res.mismatches == np.count_nonzero(gold[idx] != bad[idx]) > 0
    assert res.hints[0].kind == "padding", [h.text for h in res.hints]
    assert f"pad_value = {pv}" in res.hints[0].text and f"{res.mismatches:,} of {res.mismatches:,}" in res.hints[0].text
    assert ("sparse dump" in res.hints[0].text) == (which != "dense")
    assert not any(h.kind == "border" for h in res.hints)          # said once, by the padding hint


@pytest.mark.parametrize("stage", ["acc", "act"])
def test_padding_with_zero_is_named_in_the_earlier_stages(zgold, tmp_path, stage):
    """The accumulator (and leaky act) of the device padding with 0, border rows only: golden
    acc minus pad_value times the weights the padding taps meet, recomputed independently."""
    from mdfi.fixedpoint import pre_shift_activation
    from mdfi.layers.convolutional import im2col
    d, man = zgold
    x, w, b, _ = _conv_inputs(d, man, CONV)
    p = man["layers"][CONV]["params"]
    acc = (w.reshape(w.shape[0], -1).astype(np.int64) @ im2col(x, 3, 1, 1, pad_value=0).astype(np.int64)
           + b[:, None]).reshape(-1)
    name = f"l{CONV:03d}.{stage}.hex"
    e = _entry(man, name)
    gold = _read(d / "all", name, e)
    bad = acc if stage == "acc" else pre_shift_activation(acc, p["activation"])[0]
    idx = _positions(e["shape"], "border_rows")
    assert np.any(gold[idx] != bad[idx])
    _dump(tmp_path, name, e, bad, idx)
    res = verify.verify(str(d / "all"), str(tmp_path)).files[0]
    assert res.hints[0].kind == "padding" and f"pad_value = {p['pad_value']}" in res.hints[0].text, \
        [h.text for h in res.hints]


@pytest.mark.parametrize("which", ["dense", "border_rows", "sparse"])
@pytest.mark.parametrize("cause", ["zero_pad_plus_one", "golden_plus_one", "truncate"])
def test_other_border_differences_are_not_named_zero_padding(zgold, tmp_path, which, cause):
    """Negative controls on the same positions: the 0-padded dump with +1 on a few border values
    (0-padding no longer explains every value), the golden values with +1 on some border values,
    and a rounding change (truncation) on the border values -- all differences on the border,
    none of them the padding."""
    d, man = zgold
    name = f"l{CONV:03d}.out.hex"
    e = _entry(man, name)
    shape = e["shape"]
    gold = _read(d / "all", name, e).astype(np.int64)
    idx = _positions(shape, which)
    edge = idx[_on_border(idx, shape)]
    if cause == "truncate":
        bad = gold.copy()
        bad[edge] = _recomputed(d, man, CONV, rounding="truncate")[edge]
    else:
        bad = _recomputed(d, man, CONV, pad_value=0) if cause == "zero_pad_plus_one" else gold.copy()
        some = edge[::37]
        bad[some] = np.where(bad[some] < 127, bad[some] + 1, bad[some] - 1)
    assert np.any(bad[idx] != gold[idx])
    _dump(tmp_path, name, e, bad, idx)
    res = verify.verify(str(d / "all"), str(tmp_path)).files[0]
    assert res.status == "mismatch"
    texts = [h.text for h in res.hints]
    assert not any(h.kind == "padding" for h in res.hints), texts
    # the border hint may say what it is not, never suggest it
    assert all("padding with 0" not in t or "(not padding with 0 instead of pad_value" in t for t in texts), texts


def test_layer_without_zero_point_padding_is_not_named(zgold, tmp_path):
    """Layer 0 (3x3, pad 1, unsigned pixels: pad_value 0): a dump differing on the border rows
    (padded with 128 instead) is no zero-point padding fault, and the hint does not say one."""
    d, man = zgold
    L = man["layers"][0]
    assert L["kind"] == "convolutional" and L["params"]["pad"] == 1 and not L["params"].get("pad_value")
    name = "l000.out.hex"
    e = _entry(man, name)
    gold = _read(d / "all", name, e)
    assert np.array_equal(_recomputed(d, man, 0, pad_value=0), gold)
    bad = _recomputed(d, man, 0, pad_value=128)
    for which in ("dense", "border_rows"):
        idx = _positions(e["shape"], which)
        assert np.any(bad[idx] != gold[idx])
        _dump(tmp_path / which, name, e, bad, idx)
        res = verify.verify(str(d / "all"), str(tmp_path / which)).files[0]
        texts = [h.text for h in res.hints]
        assert res.status == "mismatch" and not any(h.kind == "padding" for h in res.hints), texts
        assert not any("pad_value" in t for t in texts), texts


def test_zero_padding_without_the_golden_input_is_a_border_question(zgold, tmp_path):
    """Exported with the outputs only (no in0, and the producer not exported): the padding
    cannot be recomputed, and a dense dump still gets the border hint's question."""
    d, man = zgold
    name = f"l{CONV:03d}.out.hex"
    e = _entry(man, name)
    _dump(tmp_path, name, e, _recomputed(d, man, CONV, pad_value=0), _positions(e["shape"], "dense"))
    res = verify.verify(str(d / "out"), str(tmp_path)).files[0]
    assert not any(h.kind == "padding" for h in res.hints)
    border = [h for h in res.hints if h.kind == "border"]
    pv = man["layers"][CONV]["params"]["pad_value"]
    assert border and f"pad_value = {pv}" in border[0].text and border[0].text.endswith("?"), \
        [h.text for h in res.hints]


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
