"""Shipped weight rounding (docs/quantization.md "Round 15"): a model refined on calibration
data (AdaRound weights, empirical bias correction) is rebuilt without the data from what
``quantize_network(refinements=...)`` records -- ``weight_deltas`` (each weight's integer minus
its round-half-up integer) and ``bias_shifts`` -- integer for integer, through the shipped file
format of :func:`mdfi.quant.recipes.write_rounding`; and the zoo recipes ship such files whose
recorded integer digest the default models reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.darknet.weights import random_weights
from mdfi.errors import FormatError, ModelFileError
from mdfi.quant import recipes
from mdfi.quant.quantize import quantize_network

HEAD = "[net]\nwidth=16\nheight=16\nchannels=3\n"
TOY = ("[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=leaky\n"
       "[maxpool]\nsize=2\nstride=2\n"
       "[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=leaky\n"
       "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n")


def _net(seed=5):
    net = Network(parse_cfg_text(HEAD + TOY, "toy.cfg"), "toy.cfg", warn=False)
    random_weights(net, seed)
    return net


def _inputs(n=5, seed=2):
    rng = np.random.default_rng(seed)
    return [rng.random((3, 16, 16)).astype(np.float32) for _ in range(n)]


def _calib(net, xs):
    from mdfi.quant import calibrate
    return calibrate.collect(net, [np.moveaxis((x * 255).round().astype(np.uint8), 0, -1) for x in xs],
                             progress=False)


def _same(qa, qb):
    assert len(qa.layers) == len(qb.layers)
    for la, lb in zip(qa.layers, qb.layers):
        for key, arr in la.arrays().items():
            assert np.array_equal(arr, lb.arrays()[key]), (la.index, key)


@pytest.mark.parametrize("zero_points", [False, True])
def test_refined_model_is_rebuilt_from_its_record_through_the_file(tmp_path, zero_points):
    net, xs = _net(), _inputs()
    calib = _calib(net, xs)
    common = dict(wbits=8, abits=8, per_channel=True, calib=calib, act_method="mse", zero_points=zero_points,
                  cfg_text=HEAD + TOY)
    rec: dict = {}
    ada = quantize_network(net, weight_rounding="adaround", bias_correction="empirical", calib_inputs=xs,
                           adaround={"iters": 150}, refinements=rec, **common)
    near = quantize_network(net, **common)
    convs = [l.index for l in net.layers if l.kind == "convolutional"]
    assert sorted(rec) == convs
    moved = 0
    for i in convs:
        d = rec[i]["weight_delta"]
        # the record is the difference of the two models' integers, computed independently here
        assert np.array_equal(d.astype(np.int64), ada.layers[i].weights.astype(np.int64)
                              - near.layers[i].weights.astype(np.int64))
        moved += int((d != 0).sum())
        assert rec[i]["bias_shift"].shape == (net.layers[i].filters,)
    assert moved > 0                                   # AdaRound moved some weights off nearest
    path = tmp_path / "toy.rounding.npz"
    recipes.write_rounding(path, rec, {"model": "toy", "integer_digest": recipes.integer_digest(ada)})
    meta, deltas, shifts = recipes.read_rounding(path)
    assert meta["model"] == "toy" and meta["format"] == recipes.ROUNDING_FORMAT
    for i in convs:
        assert np.array_equal(deltas[i], rec[i]["weight_delta"].reshape(-1))
        assert np.array_equal(shifts[i], rec[i]["bias_shift"])           # float64, exact
    again = quantize_network(net, weight_deltas=deltas, bias_shifts=shifts, **common)
    _same(ada, again)
    assert recipes.integer_digest(again) == meta["integer_digest"] != recipes.integer_digest(near)
    assert again.options["recorded_rounding"] == "adaround"
    for i in convs:                                    # the model file records how they were made
        assert again.layers[i].method == ada.layers[i].method
        assert (again.layers[i].method["weights"], again.layers[i].method["bias"]) == ("adaround", "empirical")


def test_weight_deltas_are_checked():
    net = _net()
    kw = dict(wbits=8, abits=8, per_channel=True, cfg_text=HEAD + TOY)
    n0 = net.layers[0].weights.size
    with pytest.raises(FormatError, match="-1..1"):
        quantize_network(net, weight_deltas={0: np.full(n0, 2, np.int8)}, **kw)
    with pytest.raises(FormatError, match="-1..1"):
        quantize_network(net, weight_deltas={0: np.zeros(n0 - 1, np.int8)}, **kw)
    with pytest.raises(FormatError, match="not a convolutional layer"):
        quantize_network(net, weight_deltas={1: np.zeros(4, np.int8)}, **kw)
    with pytest.raises(FormatError, match="weight_rounding 'nearest' only"):
        quantize_network(net, weight_deltas={0: np.zeros(n0, np.int8)}, weight_rounding="gptq",
                         calib_inputs=_inputs(2), **kw)
    # a delta that would leave the 8-bit range: push the largest weight of a channel up
    near = quantize_network(net, **kw)
    w = near.layers[0].weights.reshape(-1)
    d = np.zeros(n0, np.int8)
    d[int(np.argmax(w))] = 1
    if w.max() == 127:
        with pytest.raises(FormatError, match="8-bit range"):
            quantize_network(net, weight_deltas={0: d}, **kw)


def test_damaged_rounding_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelFileError, match="damaged shipped rounding file"):
        recipes.read_rounding(bad)
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "x"}'))
    with pytest.raises(ModelFileError, match="damaged shipped rounding file"):
        recipes.read_rounding(tmp_path / "other.npz")


def _rewritten(tmp_path, change) -> str:
    """The shipped yolov3-tiny w8a8 rounding file with ``change(arrays)`` applied."""
    from importlib.resources import files
    with np.load(str(files("mdfi.data").joinpath("yolov3-tiny.w8a8.rounding.npz")), allow_pickle=False) as z:
        arrays = dict(z)
    change(arrays)
    out = tmp_path / "bad.npz"
    np.savez(out, **arrays)
    return str(out)


@pytest.mark.parametrize("change, words", [
    (lambda a: a.update(n0=np.array(10 ** 12)), "a mask of 54 bytes for 1000000000000 weights"),   # was 931 GiB
    (lambda a: a.update(n0=np.array(-5)), "for -5 weights"),
    (lambda a: a.update(sign0=a["sign0"][:-1]), "bytes of signs for"),
    (lambda a: a.update(shift0=np.full(16, np.nan)), "bias shifts must be finite"),
    (lambda a: a.update(meta=np.array("[" * 5000 + "]" * 5000)), "nested deeper than 64 levels"),   # RecursionError
])
def test_damaged_rounding_file_contents(tmp_path, change, words):
    with pytest.raises(ModelFileError, match="damaged shipped rounding file") as ei:
        recipes.read_rounding(_rewritten(tmp_path, change))
    assert words in str(ei.value) and "\n" not in str(ei.value)


def test_bias_shifts_are_checked():
    """A bias shift of the wrong length was a NumPy broadcasting ValueError."""
    net = _net()
    kw = dict(wbits=8, abits=8, per_channel=True, cfg_text=HEAD + TOY)
    with pytest.raises(FormatError, match="expected 8 finite numbers"):
        quantize_network(net, bias_shifts={0: np.zeros(3)}, **kw)
    with pytest.raises(FormatError, match="expected 8 finite numbers"):
        quantize_network(net, bias_shifts={0: np.full(8, np.inf)}, **kw)
    with pytest.raises(FormatError, match="not a convolutional layer"):
        quantize_network(net, bias_shifts={1: np.zeros(8)}, **kw)


SHIPPED = [(m, t) for m in ("yolov3-tiny", "yolov4-tiny") for t in sorted(recipes.RECIPES[m]["zero_points"])]


def test_both_zoo_recipes_ship_their_8_bit_rounding():
    assert ("yolov3-tiny", "w8a8") in SHIPPED and ("yolov4-tiny", "w8a8") in SHIPPED


@pytest.mark.parametrize("model,tag", SHIPPED)
def test_zoo_recipes_ship_a_small_rounding_file(model, tag):
    from importlib.resources import files
    from mdfi import zoo
    name = recipes.RECIPES[model]["zero_points"][tag]["rounding"]
    assert name == f"{model}.{tag}.rounding.npz"
    res = files("mdfi.data").joinpath(name)
    assert len(res.read_bytes()) < 1_600_000
    meta, deltas, shifts = recipes.read_rounding(res)
    assert meta["model"] == model and meta["weights_sha256"] == zoo.get_spec(model).sha256
    assert f"w{meta['wbits']}a{meta['abits']}" == tag
    net = Network.from_cfg(zoo.cfg_path(model), warn=False)
    convs = [l for l in net.layers if l.kind == "convolutional"]
    # the per-layer weight widths it was made at (rounds 15c, 21, 21b) are the ones loading
    # applies: rounding_kwargs passes them on, wider than the file's width, on convolutions
    lw = {int(k): int(v) for k, v in (meta.get("layer_wbits") or {}).items()}
    assert recipes.rounding_kwargs(meta, deltas, shifts).get("layer_wbits", {}) == lw
    assert set(lw) <= {l.index for l in convs} and all(v == 8 > meta["wbits"] for v in lw.values())
    assert sorted(deltas) == [l.index for l in convs] == sorted(shifts)
    for l in convs:
        assert deltas[l.index].size == l.filters * l.kernel_volume
        assert shifts[l.index].shape == (l.filters,)
    moved = sum(int((d != 0).sum()) for d in deltas.values()) / sum(d.size for d in deltas.values())
    assert 0.01 < moved < 0.5


def test_yolov3_tiny_default_is_round_15s_model(tiny_weights_path, tmp_path, capsys):
    """mdfi.load("yolov3-tiny") at 8 bits: zero points on the shipped statistics with the shipped
    AdaRound weights and bias shifts, reproducing the integers AdaRound made when the file was
    recorded; `mdfi quantize` gives the same model, --no-zero-points the recipe's decisions."""
    import mdfi
    from mdfi.cli import main
    qm = mdfi.load("yolov3-tiny", threads=1, cache=False).quantized
    assert qm.options.get("zero_points") and qm.options["recorded_rounding"] == "adaround"
    assert "AdaRound weights and empirical bias shifts shipped in mdfi/data/yolov3-tiny.w8a8.rounding.npz" \
        in qm.options["formats_source"]
    assert recipes.integer_digest(qm) == recipes.shipped_rounding_meta("yolov3-tiny")["integer_digest"]
    out = tmp_path / "v3.mdfi"
    assert main(["quantize", "--model", "yolov3-tiny", "-o", str(out)]) == 0
    _same(qm, mdfi.load(out).quantized)
    plain = tmp_path / "v3-clip.mdfi"          # an option the rounding was not made for: not applied
    assert main(["quantize", "--model", "yolov3-tiny", "--zero-points", "--layer-abits", "0=16", "-o", str(plain)]) == 0
    wide = mdfi.load(plain).quantized
    assert wide.options.get("zero_points") and "recorded_rounding" not in wide.options
    old = mdfi.load("yolov3-tiny", threads=1, cache=False, zero_points=False).quantized
    assert not old.options.get("zero_points") and "decisions" in old.options["formats_source"]
    assert "recorded_rounding" not in old.options


def test_a_rounding_that_does_not_reproduce_its_integers_is_refused(tiny_weights_path, monkeypatch):
    import mdfi
    meta = dict(recipes.shipped_rounding_meta("yolov3-tiny"), integer_digest="0" * 64)
    monkeypatch.setattr(recipes, "shipped_rounding_meta", lambda spec, tag="w8a8": meta)
    with pytest.raises(ModelFileError, match="does not reproduce the integers"):
        mdfi.load("yolov3-tiny", threads=1, cache=False)


def test_a_forced_lineage_is_named_not_the_rounding_file(tiny_weights_path):
    """`--model yolov3-tiny --darknet alexeyab` said the shipped rounding file does not
    reproduce its integers (blaming the file), not that the recipe is for another lineage."""
    import mdfi
    with pytest.raises(FormatError, match="--darknet alexeyab: yolov3-tiny's shipped recipe .* does not apply"):
        mdfi.load("yolov3-tiny", darknet="alexeyab", threads=1, cache=False)


@pytest.mark.parametrize("tag", [t for t in recipes.ZERO_POINT_WIDTHS if t != "w8a8"])
def test_yolov3_tiny_low_widths_use_their_shipped_rounding(tiny_weights_path, tag):
    """Round 15b: at w6a8, w6a6 and w4a8 the recipe's model is zero points with that width's
    shipped AdaRound rounding and bias shifts, reproducing the recorded integers."""
    import mdfi
    w, a = (int(x) for x in tag[1:].split("a"))
    import contextlib
    from mdfi.errors import MDFIWarning
    # 4-bit weights still warn, quoting the measured numbers of this model (mdfi.model.MEASURED_KEPT)
    with pytest.warns(MDFIWarning, match=f"{tag} fixed point keeps") if w <= 4 else contextlib.nullcontext():
        qm = mdfi.load("yolov3-tiny", wbits=w, abits=a, threads=1, cache=False).quantized
    assert (qm.options["wbits"], qm.options["abits"]) == (w, a)
    assert qm.options.get("zero_points") and qm.options["recorded_rounding"] == "adaround"
    assert f"mdfi/data/yolov3-tiny.{tag}.rounding.npz" in qm.options["formats_source"]
    assert recipes.integer_digest(qm) == recipes.shipped_rounding_meta("yolov3-tiny", tag)["integer_digest"]
    # round 21: the w4a8 model keeps 8-bit weights in layers 0, 2, 4, 6, 13, 15 and 22 (its
    # rounding file records them); the other widths are uniform
    wide = {0, 2, 4, 6, 13, 15, 22} if tag == "w4a8" else set()
    convs = [l for l in qm.layers if l.kind == "convolutional"]
    assert {l.index for l in convs if l.wbits != w} == wide and all(l.wbits == 8 for l in convs if l.index in wide)


def test_a_missing_rounding_file_is_refused(monkeypatch):
    entry = dict(recipes.RECIPES["yolov3-tiny"], zero_points={"w8a8": {"rounding": "nowhere.w8a8.rounding.npz"}})
    monkeypatch.setitem(recipes.RECIPES, "yolov3-tiny", entry)
    with pytest.raises(ModelFileError, match="nowhere.w8a8.rounding.npz: missing: the installation is incomplete"):
        recipes.zero_point_kwargs("yolov3-tiny", True)
    assert recipes.zero_point_kwargs("yolov3-tiny", True, plain=False) == {"zero_points": True, "act_method": "mse"}


def test_rounding_kwargs_names_every_key_it_can_set():
    """recipes.ROUNDING_KWARGS is what a benchmark drops before applying another rounding file
    (bench_zeropoint.py --candidate): every key rounding_kwargs can return, nothing else."""
    full = recipes.rounding_kwargs({"head_gains": {"16": 1.05}, "layer_abits": {"14": 16}, "layer_wbits": {"0": 8}},
                                   {}, {})
    assert set(full) == set(recipes.ROUNDING_KWARGS)
    assert full["head_gains"] == {16: 1.05} and full["layer_abits"] == {14: 16} and full["layer_wbits"] == {0: 8}
    assert set(recipes.rounding_kwargs({}, {}, {})) == {"weight_deltas", "bias_shifts"}
