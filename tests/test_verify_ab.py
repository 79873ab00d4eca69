"""``mdfi verify`` on the AlexeyAB stages (issue 13): the hints that name a fault in a table
activation (the lookup index off by one, the code's two's complement used as the index, a
rounding difference in the pre-activation code, seen in ``pre`` and through the table in
``out``) and in a route with groups (another group's channel slice, from every input or from
one; groups ignored).  The network is tests/golden_nets.py::alexeyab_model (random weights);
faults are injected with the standalone golden reader's values and ``write_hex``."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.hw import golden_reader as gr
from mdfi.hw import verify

from golden_nets import alexeyab_model

MISH, SWISH_SC, HARD_MISH = 0, 5, 3           # conv mish, shortcut swish, conv hard_mish
ROUTE1, ROUTE3 = 2, 4                          # groups=2 on one input; on three (one aligned by a shift)


@pytest.fixture(scope="module")
def gold(tmp_path_factory):
    from mdfi.hw import golden
    from conftest import skimage_image
    model, _ = alexeyab_model()
    d = tmp_path_factory.mktemp("gold_ab")
    golden.export(model, skimage_image("astronaut.png")[100:300, 150:400], str(d), thresh=0.9)
    return gr.GoldenSet(str(d))


def _verify(g, dut, layer, stage, values):
    e = g.entry(layer, stage)
    dut.mkdir(exist_ok=True)
    gr.write_hex(str(dut / e["path"]), np.asarray(values).reshape(-1), e["bits"])
    rep = verify.verify(g.folder, str(dut))
    assert len(rep.files) == 1
    res = rep.files[0]
    assert res.status == "mismatch" and res.mismatches > 0
    return res


def _lut_index(g, i):
    pre = g.read(i, "pre")
    P = g.layer(i)["params"]["table"]["pre_bits"]
    return pre + (1 << (P - 1)), g.read(i, "act_lut"), P


@pytest.mark.parametrize("layer, k", [(MISH, 1), (SWISH_SC, -1)])
def test_table_read_one_entry_off(gold, tmp_path, layer, k):
    idx, T, _ = _lut_index(gold, layer)
    dut = T[np.clip(idx + k, 0, T.size - 1)]
    assert np.count_nonzero(dut != gold.read(layer, "out")) > 50
    res = _verify(gold, tmp_path / "dut", layer, "out", dut)
    assert res.hints[0].kind == "lut_index", [h.text for h in res.hints]
    assert f"lookup index off by {k:+d}" in res.hints[0].text
    assert "act_lut index" in res.first[0].golden                  # the golden code and its index shown


def test_table_indexed_by_twos_complement(gold, tmp_path):
    idx, T, P = _lut_index(gold, HARD_MISH)
    dut = T[(gold.read(HARD_MISH, "pre")) & ((1 << P) - 1)]
    res = _verify(gold, tmp_path / "dut", HARD_MISH, "out", dut)
    assert res.hints[0].kind == "lut_index" and "two's complement" in res.hints[0].text, res.hints


def _pre_truncated(g, i):
    acc = g.read(i, "acc")
    s = g.read(i, "shift")[:, None, None]
    P = g.layer(i)["params"]["table"]["pre_bits"]
    return np.clip(acc >> s, -(1 << (P - 1)), (1 << (P - 1)) - 1)            # floor instead of half up


def test_rounding_of_the_pre_code_in_pre_and_out_dumps(gold, tmp_path):
    pre = _pre_truncated(gold, MISH)
    assert np.all(gold.read(MISH, "shift") > 0)
    res = _verify(gold, tmp_path / "pre", MISH, "pre", pre)
    assert res.hints[0].kind == "rounding" and "truncation" in res.hints[0].text, res.hints
    assert "in the pre-activation code" in res.hints[0].text
    _, T, P = _lut_index(gold, MISH)
    res = _verify(gold, tmp_path / "out", MISH, "out", T[pre + (1 << (P - 1))])
    assert res.hints[0].kind == "rounding" and "seen through the activation table" in res.hints[0].text, res.hints


def _slices(g, i, group, only=None):
    L = g.layer(i)
    G, gid = L["params"]["groups"], L["params"]["group_id"]
    parts = []
    for k, sh in enumerate(L["params"]["shifts"]):
        x = g.read(i, f"in{k}")
        c = x.shape[0]
        grp = group if only in (None, k) else gid
        part = x[grp * c // G:(grp + 1) * c // G]
        parts.append(part if sh == 0 else np.clip((part + (1 << (sh - 1))) >> sh, -128, 127))
    return np.concatenate(parts)


def test_route_slice_from_the_wrong_group(gold, tmp_path):
    assert gold.layer(ROUTE1)["params"]["group_id"] == 1
    res = _verify(gold, tmp_path / "a", ROUTE1, "out", _slices(gold, ROUTE1, 0))
    assert res.hints[0].kind == "route_group", [h.text for h in res.hints]
    assert "group 0 of 2 of every input" in res.hints[0].text
    assert "channel 8" in res.first[0].golden["note"]               # golden: group 1 = channels 8..15 of layer 1
    # three inputs, only the second one from the wrong group
    res = _verify(gold, tmp_path / "b", ROUTE3, "out", _slices(gold, ROUTE3, 1, only=1))
    assert res.hints[0].kind == "route_group" and "input 1 (layer 2)" in res.hints[0].text, res.hints
    assert np.array_equal(_slices(gold, ROUTE3, 0), gold.read(ROUTE3, "out"))       # the injection's own check


def test_route_groups_ignored(gold, tmp_path):
    L = gold.layer(ROUTE3)
    whole = []
    for k, sh in enumerate(L["params"]["shifts"]):
        x = gold.read(ROUTE3, f"in{k}")
        whole.append(x if sh == 0 else np.clip((x + (1 << (sh - 1))) >> sh, -128, 127))
    dut = np.concatenate(whole)[:L["out_shape"][0]]
    res = _verify(gold, tmp_path / "dut", ROUTE3, "out", dut)
    assert res.hints[0].kind == "route_group" and "groups ignored" in res.hints[0].text, res.hints


def test_table_hint_from_pre_codes_alone(gold, tmp_path):
    """A golden set exported with ``--stages pre,out`` (no accumulator): the lookup hint still
    comes, from the golden codes."""
    import json
    import shutil
    g2 = tmp_path / "g2"
    shutil.copytree(gold.folder, g2)
    man = json.loads((g2 / "manifest.json").read_text())
    man["files"] = [e for e in man["files"] if not (e["layer"] == SWISH_SC and e["stage"] == "acc")]
    (g2 / "manifest.json").write_text(json.dumps(man))
    (g2 / f"l{SWISH_SC:03d}.acc.hex").unlink()
    g = gr.GoldenSet(str(g2))
    idx, T, _ = _lut_index(g, SWISH_SC)
    res = _verify(g, tmp_path / "dut", SWISH_SC, "out", T[np.clip(idx - 2, 0, T.size - 1)])
    assert res.hints[0].kind == "lut_index" and "off by -2" in res.hints[0].text, res.hints
