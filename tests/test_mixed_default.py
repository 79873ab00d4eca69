"""Round 24 (docs/quantization.md): a model without a recipe quantized at w4a8 keeps 8-bit
weights in the layers the sensitivity method picks on the shipped sample photo, under a budget
of the uniform 4-bit size + 0.9 % of the float size -- the same from `mdfi quantize`,
`mdfi.load` and `mdfi eval`; other widths, explicit widths and recipes are untouched."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from conftest import DARKNET

MINI = DARKNET / "mini-yolov3"
CFG, WEIGHTS = MINI / "mini-yolov3.cfg", MINI / "mini-yolov3.weights"


# --- the greedy choice, on a synthetic network whose sensitivities are known ------------------

class _Layer:
    def __init__(self, index, filters, volume):
        self.index, self.kind, self.filters, self.kernel_volume = index, "convolutional", filters, volume


class _Model:
    def __init__(self, layers, widths):
        self._bits = sum(l.filters * l.kernel_volume * widths.get(l.index, 8) + 32 * l.filters for l in layers)
        self.layers = {l.index: types.SimpleNamespace(acc_bits=32) for l in layers}
        self.widths = dict(widths)

    def param_bytes(self):
        return self._bits // 8


def test_choose_widths_narrows_the_cheapest_error_per_byte_first():
    from mdfi.quant.mixed import choose_widths
    # four layers of 1,000 weights each; narrowing layer i alone to 4 bits costs COST[i]
    layers = [_Layer(i, 10, 100) for i in range(4)]
    net = types.SimpleNamespace(layers=layers, num_params=lambda: 4 * 1010)
    cost = {0: 9.0, 1: 1.0, 2: 3.0, 3: 2.0}

    def objective(m):
        return sum(cost[i] for i, w in m.widths.items() if w == 4)
    build = lambda lw: _Model(layers, lw)                                    # noqa: E731
    bytes_at = lambda n4: (4 * 1000 * 8 - n4 * 1000 * 4 + 4 * 10 * 32) // 8    # noqa: E731  n4 layers at 4 bits
    float_bytes = 4 * 4 * 1010
    # a budget that fits two narrowed layers but not one: the two cheapest, layers 1 and 3
    widths = choose_widths(net, build, objective, base_bits=8, budget=bytes_at(2) / float_bytes,
                           candidates=(4,), progress=False)
    assert widths == {1: 4, 3: 4}
    widths = choose_widths(net, build, objective, base_bits=8, budget=(bytes_at(3) + 1) / float_bytes,
                           candidates=(4,), progress=False)
    assert widths == {1: 4, 3: 4, 2: 4}


def test_head_objective_min_cells_takes_the_top_objectness_cells(tiny_net):
    """Fewer object cells than ``min_cells``: the cells of highest float objectness instead,
    a superset of the cells above the threshold (yolov3-tiny on the sample photo pair)."""
    from mdfi.quant.formats import OBJECT_THRESH, HeadObjective
    from mdfi.quant.mixed import sample_inputs
    xs = sample_inputs(tiny_net)
    plain = HeadObjective(tiny_net, xs)
    assert plain.n_cells > 0 and plain.thresh == OBJECT_THRESH
    wide = HeadObjective(tiny_net, xs, min_cells=plain.n_cells + 7)
    assert wide.n_cells == plain.n_cells + 7 and wide.thresh < OBJECT_THRESH
    for per_p, per_w in zip(plain.cells, wide.cells):
        for p, w in zip(per_p, per_w):
            cells_w = set(zip(w[0].tolist(), w[1].tolist(), w[2].tolist()))
            assert set(zip(p[0].tolist(), p[1].tolist(), p[2].tolist())) <= cells_w
    assert HeadObjective(tiny_net, xs, min_cells=plain.n_cells).n_cells == plain.n_cells


# --- the default, through every entry point ---------------------------------------------------

def _quantize(tmp_path_factory, wbits: int):
    from mdfi.cli import main
    from mdfi.quant import modelfile
    out = tmp_path_factory.mktemp(f"w{wbits}") / f"mini-w{wbits}.mdfi"
    assert main(["quantize", "--cfg", str(CFG), "--weights", str(WEIGHTS), "--wbits", str(wbits), "-o", str(out)]) == 0
    return modelfile.load(out)


@pytest.fixture(scope="module")
def mini_w4(tmp_path_factory):
    return _quantize(tmp_path_factory, 4)


def _conv_widths(qm):
    return {ql.index: ql.wbits for ql in qm.layers if ql.kind == "convolutional"}


@pytest.mark.parametrize("wbits", [4, 6])
def test_quantize_without_recipe_keeps_8bit_layers_within_the_budget(wbits, mini_w4, mini_net, tmp_path_factory):
    from mdfi.quant.mixed import SAMPLE_MIXED_EXTRA
    qm = mini_w4 if wbits == 4 else _quantize(tmp_path_factory, wbits)
    widths = _conv_widths(qm)
    eight = sorted(i for i, w in widths.items() if w == 8)
    assert eight and set(widths.values()) == {wbits, 8}
    assert {int(k): int(v) for k, v in qm.options["layer_wbits"].items()} == {i: 8 for i in eight}
    # the budget: uniform 4-bit size + 0.9 % of the float size, and used (the greedy stopped as
    # soon as the size fit)
    float_bytes = 4 * mini_net.num_params()
    convs = {l.index: l for l in mini_net.layers if l.kind == "convolutional"}
    weights_bits = lambda ws: sum(convs[i].filters * convs[i].kernel_volume * w for i, w in ws.items())   # noqa
    extra = weights_bits(widths) - weights_bits({i: wbits for i in widths})
    budget = SAMPLE_MIXED_EXTRA[(wbits, 8)] * float_bytes * 8
    assert 0 < extra <= budget
    largest = max(convs[i].filters * convs[i].kernel_volume for i, w in widths.items() if w == wbits)
    assert extra + (8 - wbits) * largest > budget        # (true of the last layer narrowed)


def test_explicit_widths_other_widths_and_api_agree(mini_w4, tmp_path, capsys, monkeypatch):
    import mdfi
    from mdfi.cli import main
    from mdfi.quant import modelfile
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "home"))
    # mdfi.load quantizes the same integers (and its cache key differs from the uniform model's)
    qm = mdfi.load(cfg=CFG, weights=WEIGHTS, wbits=4, abits=8).engine.qmodel
    assert _conv_widths(qm) == _conv_widths(mini_w4)
    for a, b in zip(qm.layers, mini_w4.layers):
        if a.kind == "convolutional":
            assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    # other activation widths and explicit widths: unchanged behaviour
    for wbits, extra, expect in ((4, ["--abits", "6"], None), (4, ["--layer-wbits", "0=8"], {0: 8}),
                                 (6, ["--abits", "6"], None)):          # w6a6: round 24b failed there
        out = tmp_path / "x.mdfi"
        assert main(["quantize", "--cfg", str(CFG), "--weights", str(WEIGHTS), "--wbits", str(wbits), *extra,
                     "-o", str(out)]) == 0
        widths = _conv_widths(modelfile.load(out))
        assert {i: w for i, w in widths.items() if w != wbits} == (expect or {})
        out.unlink()
    capsys.readouterr()


def test_eval_w4a8_without_recipe_reports_the_mixed_size(mini_w4, tmp_path, capsys):
    from PIL import Image
    from mdfi.cli import main
    from conftest import skimage_image
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_image("chelsea.png")).save(photos / "chelsea.jpg")
    assert main(["eval", "--cfg", str(CFG), "--weights", str(WEIGHTS), "--images", str(photos),
                 "--bits", "w4a8", "--no-stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["param_bytes"]["w4a8"] == mini_w4.param_bytes()
