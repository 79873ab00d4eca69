"""``mdfi verify``: golden vs DUT comparison, fault injection and the hints that name each fault.

One golden export of the small mini-yolov3 network (128x128, hex only) is shared by the
module; every test builds its own DUT folder from it.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import mdfi
from mdfi import fixedpoint as fp
from mdfi.hw import golden, vectors, verify
from mdfi.cli import main

from conftest import DARKNET, run_python, skimage_image

CONV = 9          # leaky 3x3 convolution, 128x16x16, with saturated outputs at this image
CONV_B = 5        # another leaky convolution (64x32x32)


@pytest.fixture(scope="module")
def gold(tmp_path_factory):
    # the batch-norm estimate and per-layer weights (the generic default before round 11): its
    # layer 9 saturates at this image, which the saturation / wrap-around tests need
    d = tmp_path_factory.mktemp("gold")
    q = str(d.parent / (d.name + "-m.mdfi"))
    assert main(["quantize", "--cfg", str(DARKNET / "mini-yolov3" / "mini-yolov3.cfg"),
                 "--weights", str(DARKNET / "mini-yolov3" / "mini-yolov3.weights"),
                 "--bn-estimate", "--per-layer", "-o", q]) == 0
    model = mdfi.load(q)
    man = golden.export(model, skimage_image("astronaut.png"), str(d), formats=["hex"], thresh=0.9)
    return Gold(str(d), man)


class Gold:
    def __init__(self, folder, manifest):
        self.dir = folder
        self.m = manifest
        self.entries = {e["path"]: e for e in manifest["files"]}

    def entry(self, layer, stage):
        return self.entries[f"l{layer:03d}.{stage}.hex"]

    def read(self, layer, stage):
        e = self.entry(layer, stage)
        n = int(np.prod(e["shape"]))
        v = vectors.read(os.path.join(self.dir, e["path"]), "hex", e["bits"], e["signed"], n)
        return v.reshape(e["shape"])

    def meta(self, layer):
        return self.m["layers"][layer]["meta"]

    def write(self, dut, layer, stage, values, fmt="hex"):
        e = self.entry(layer, stage)
        os.makedirs(dut, exist_ok=True)
        path = os.path.join(dut, f"l{layer:03d}.{stage}.{fmt}")
        vectors.write(path, np.asarray(values), fmt, e["bits"], e["signed"])
        return path

    def requant(self, layer, mode=None, dshift=0):
        """The layer's out recomputed from the golden act stage and shift (docs/fixed-point.md s.4)."""
        meta = self.meta(layer)
        act = self.read(layer, "act").astype(np.int64)
        shift = self.read(layer, "shift").astype(np.int64)[:, None, None] + dshift
        eff = shift + np.where(act < 0, 15, 0) if meta["activation"] == "leaky" else shift
        return fp.requantize(act, eff, mode or meta["rounding"], meta["out_fmt"]["bits"], "linear")


def only_file(report):
    assert len(report.files) == 1, [f.file for f in report.files]
    return report.files[0]


def hint_text(res):
    return " | ".join(h.text for h in res.hints)


# ------------------------------------------------------------------------------------------
def test_requant_helper_reproduces_golden(gold):
    """Sanity of the fault injection itself: the golden rule gives the golden out."""
    for layer in (CONV, CONV_B):
        assert np.array_equal(gold.requant(layer), gold.read(layer, "out"))


def test_round_shift_modes_match_the_spec():
    x = np.array([5, -5, 7, -7, 3, -3, 6, -6, 4], dtype=np.int64)      # /2: 2.5 -2.5 3.5 -3.5 1.5 ...
    s = np.ones_like(x)
    exp = {"half_up": [3, -2, 4, -3, 2, -1, 3, -3, 2], "truncate": [2, -3, 3, -4, 1, -2, 3, -3, 2],
           "trn_zero": [2, -2, 3, -3, 1, -1, 3, -3, 2], "half_even": [2, -2, 4, -4, 2, -2, 3, -3, 2],
           "half_away": [3, -3, 4, -4, 2, -2, 3, -3, 2], "half_zero": [2, -2, 3, -3, 1, -1, 3, -3, 2],
           "half_down": [2, -3, 3, -4, 1, -2, 3, -3, 2]}
    for mode, want in exp.items():
        assert verify.round_shift(x, s, mode).tolist() == want, mode
    rng = np.random.default_rng(1)
    v = rng.integers(-2**40, 2**40, 20000)
    sh = rng.integers(-5, 30, 20000)
    for mode in ("half_up", "truncate"):
        assert np.array_equal(verify.round_shift(v, sh, mode), fp.shift_round(v, sh, mode))


def test_identical_copy_passes(gold, tmp_path, capsys):
    dut = tmp_path / "dut"
    shutil.copytree(gold.dir, dut)
    rep = verify.verify(gold.dir, dut)
    assert rep.exit_status == 0
    assert rep.counts["compared"] == len(gold.m["files"]) and rep.counts["matched"] == rep.counts["compared"]
    assert not rep.not_in_golden
    assert main(["verify", gold.dir, str(dut), "--check-golden"]) == 0
    out = capsys.readouterr().out
    assert "l009.out.hex" in out and "MISMATCH" not in out and "result: PASS" in out
    assert "golden checksums: all files match" in out


def test_a_single_flipped_value_is_isolated(gold, tmp_path, capsys):
    out = gold.read(CONV_B, "out")
    c, y, x = 5, 3, 7
    assert -100 < out[c, y, x] < 100
    bad = out.copy()
    bad[c, y, x] ^= 0x20
    gold.write(tmp_path, CONV_B, "out", bad)
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.status == "mismatch" and res.mismatches == 1 and res.total == out.size
    m = res.first[0]
    assert m.coords == {"channel": c, "y": y, "x": x}
    assert (m.expected, m.found) == (int(out[c, y, x]), int(bad[c, y, x]))
    assert m.index == (c * out.shape[1] + y) * out.shape[2] + x
    assert {"acc", "act"} <= set(m.golden)                    # earlier stages at that element
    kinds = [h.kind for h in res.hints]
    assert "isolated" in kinds and "bitflip" in kinds, hint_text(res)
    assert "bit 5" in hint_text(res)
    assert main(["verify", gold.dir, str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert f"l{CONV_B:03d}.out.hex  MISMATCH  1 of {out.size:,} values differ" in text
    assert f"first at layer {CONV_B} out (channel {c}, y {y}, x {x}" in text
    assert f"expected {m.expected} ({verify.hex_at(m.expected, 8)}), found {m.found}" in text
    assert "isolated" in text


def test_b_truncation_instead_of_half_up(gold, tmp_path, capsys):
    trunc = gold.requant(CONV, mode="truncate")
    golden_out = gold.read(CONV, "out")
    n = int(np.count_nonzero(trunc != golden_out))
    assert n > 100
    gold.write(tmp_path, CONV, "out", trunc)
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.mismatches == n
    assert res.hints[0].kind == "rounding", hint_text(res)
    t = res.hints[0].text
    assert "truncation" in t and "half up" in t and f"{n:,} of {n:,} mismatches are off by one" in t
    assert main(["verify", gold.dir, str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "hint: rounding-mode difference" in text


def test_b2_half_even_at_ties(gold, tmp_path):
    act = gold.read(CONV_B, "act").astype(np.int64)
    shift = gold.read(CONV_B, "shift").astype(np.int64)[:, None, None] + np.where(act < 0, 15, 0)
    rne = np.clip(verify.round_shift(act, shift, "half_even"), -128, 127)   # numpy.rint's rule
    n = int(np.count_nonzero(rne != gold.read(CONV_B, "out")))
    if n == 0:
        pytest.skip("no ties with an odd quotient at this image")
    gold.write(tmp_path, CONV_B, "out", rne)
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.hints[0].kind == "rounding" and "half to even" in res.hints[0].text, hint_text(res)


@pytest.mark.parametrize("k", [1, -1])
def test_c_shift_off_by_one(gold, tmp_path, k):
    gold.write(tmp_path, CONV, "out", gold.requant(CONV, dshift=k))
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.hints[0].kind == "shift", hint_text(res)
    t = res.hints[0].text
    assert f"shift off by {k:+d}" in t and "factor 2" in t


def test_d_wrap_around_instead_of_saturation(gold, tmp_path):
    golden_out = gold.read(CONV, "out")
    sat = np.count_nonzero((golden_out == 127) | (golden_out == -128))
    assert sat > 10                                            # the layer does saturate at this image
    meta = gold.meta(CONV)
    act = gold.read(CONV, "act").astype(np.int64)
    shift = gold.read(CONV, "shift").astype(np.int64)[:, None, None] + np.where(act < 0, 15, 0)
    unsat = fp.shift_round(act, shift, meta["rounding"])
    wrapped = ((unsat + 128) & 255) - 128
    gold.write(tmp_path, CONV, "out", wrapped)
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.mismatches == np.count_nonzero(wrapped != golden_out) > 0
    assert res.hints[0].kind == "wrap", hint_text(res)
    assert "wraps around instead of saturating" in res.hints[0].text


def test_d2_saturation_hint_without_act(gold, tmp_path):
    """Without the act stage the wrap shows as 'mismatches only where golden saturates'."""
    g = tmp_path / "gold"
    shutil.copytree(gold.dir, g)
    man = json.loads((g / "manifest.json").read_text())
    man["files"] = [e for e in man["files"] if e["stage"] != "act"]
    (g / "manifest.json").write_text(json.dumps(man))
    golden_out = gold.read(CONV, "out")
    wrapped = golden_out.copy()
    wrapped[golden_out == 127] = -100
    gold.write(tmp_path / "dut", CONV, "out", wrapped)
    res = only_file(verify.verify(g, tmp_path / "dut"))
    assert res.hints[0].kind == "saturation" and "AP_WRAP vs AP_SAT" in res.hints[0].text, hint_text(res)


def test_e_element_shift_is_addressing(gold, tmp_path):
    out = gold.read(CONV_B, "out")
    gold.write(tmp_path, CONV_B, "out", np.roll(out.reshape(-1), 1))
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.hints[0].kind == "addressing", hint_text(res)
    assert "shifted by 1 element" in res.hints[0].text and "addressing" in res.hints[0].text


def test_e2_row_shift_and_hwc_layout(gold, tmp_path):
    out = gold.read(CONV_B, "out")
    w = out.shape[2]
    gold.write(tmp_path / "row", CONV_B, "out", np.roll(out.reshape(-1), -w))
    res = only_file(verify.verify(gold.dir, tmp_path / "row"))
    assert res.hints[0].kind == "addressing" and "one row" in res.hints[0].text, hint_text(res)
    gold.write(tmp_path / "hwc", CONV_B, "out", out.transpose(1, 2, 0))
    res = only_file(verify.verify(gold.dir, tmp_path / "hwc"))
    assert res.hints[0].kind == "layout" and "HWC" in res.hints[0].text, hint_text(res)


def test_leaky_after_the_shift(gold, tmp_path):
    meta = gold.meta(CONV_B)
    acc = gold.read(CONV_B, "acc").astype(np.int64)
    shift = gold.read(CONV_B, "shift").astype(np.int64)[:, None, None]
    q1 = fp.shift_round(acc, shift, meta["rounding"])
    late = np.clip(np.where(acc < 0, fp.shift_round(q1 * 3277, 15, meta["rounding"]), q1), -128, 127)
    gold.write(tmp_path, CONV_B, "out", late)
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.hints[0].kind == "activation" and "after the requantizing shift" in res.hints[0].text


def test_channel_confinement_and_bias(gold, tmp_path):
    acc = gold.read(CONV_B, "acc")
    bias = gold.read(CONV_B, "bias")
    nob = acc - bias[:, None, None]
    gold.write(tmp_path / "nobias", CONV_B, "acc", nob)
    res = only_file(verify.verify(gold.dir, tmp_path / "nobias"))
    assert res.hints[0].kind == "bias" and "bias not added" in res.hints[0].text, hint_text(res)
    out = gold.read(CONV_B, "out")
    bad = out.copy()
    bad[3] = np.clip(bad[3] + 1, -128, 127)
    bad[7, :2] = np.clip(bad[7, :2] - 1, -128, 127)
    gold.write(tmp_path / "chan", CONV_B, "out", bad)
    res = only_file(verify.verify(gold.dir, tmp_path / "chan"))
    ch = [h for h in res.hints if h.kind == "channels"]
    assert ch and "2 of 64 channels: 3" in ch[0].text and ", 7 (" in ch[0].text, hint_text(res)


def test_f_unreadable_dut_files_are_errors_not_crashes(gold, tmp_path, capsys):
    src = os.path.join(gold.dir, f"l{CONV:03d}.out.hex")
    lines = open(src).read().splitlines()
    lines[16] = "zz"                                           # line 17: not hex
    (tmp_path / f"l{CONV:03d}.out.hex").write_text("\n".join(lines) + "\n")
    (tmp_path / f"l{CONV_B:03d}.out.dat").write_text("1\n2\n3\n")  # wrong count
    gold.write(tmp_path, CONV_B, "acc", gold.read(CONV_B, "acc"))  # one good file
    rep = verify.verify(gold.dir, tmp_path)
    by = {f.file: f for f in rep.files}
    bad = by[f"l{CONV:03d}.out.hex"]
    assert bad.status == "error" and f"l{CONV:03d}.out.hex:17:" in bad.error and "'zz'" in bad.error
    cnt = by[f"l{CONV_B:03d}.out.dat"]
    assert cnt.status == "error" and "holds 3 values, expected 65,536" in cnt.error
    assert by[f"l{CONV_B:03d}.acc.hex"].status == "ok"
    assert rep.counts["errors"] == 2 and rep.exit_status == 1
    assert main(["verify", gold.dir, str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "ERROR" in text and ":17:" in text


def test_value_wider_than_the_width(gold, tmp_path):
    out = gold.read(CONV, "out").astype(np.int32)
    out[0, 0, 1] = 300
    np.save(tmp_path / f"l{CONV:03d}.out.npy", out)
    path = tmp_path / f"l{CONV_B:03d}.out.hex"
    lines = open(os.path.join(gold.dir, path.name)).read().splitlines()
    lines[4] = "1ff"
    path.write_text("\n".join(lines) + "\n")
    rep = verify.verify(gold.dir, tmp_path)
    errs = {f.file: f.error for f in rep.files if f.status == "error"}
    assert "does not fit 8 signed bits" in errs[f"l{CONV:03d}.out.npy"]
    assert f"{path.name}:5" in errs[path.name] and "wider than 8 bits" in errs[path.name]


def test_g_other_format_than_golden(gold, tmp_path):
    out = gold.read(CONV, "out")
    gold.write(tmp_path, CONV, "out", out, fmt="dat")
    with open(os.path.join(tmp_path, f"l{CONV:03d}.out.dat"), "a") as fh:
        fh.write("\r\n")                                       # trailing noise: still the same values
    gold.write(tmp_path, CONV_B, "act", gold.read(CONV_B, "act"), fmt="npy")
    rep = verify.verify(gold.dir, tmp_path)
    assert rep.exit_status == 0 and rep.counts["compared"] == 2
    by = {f.file: f for f in rep.files}
    assert by[f"l{CONV:03d}.out.dat"].golden_file == f"l{CONV:03d}.out.hex"
    bad = out.copy()
    bad[2, 1, 1] += 1 if bad[2, 1, 1] < 127 else -1
    gold.write(tmp_path, CONV, "out", bad, fmt="dat")
    res = [f for f in verify.verify(gold.dir, tmp_path).files if f.format == "dat"][0]
    assert res.mismatches == 1 and res.first[0].coords == {"channel": 2, "y": 1, "x": 1}


def test_h_empty_dut_dir(gold, tmp_path, capsys):
    assert main(["verify", gold.dir, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nothing compared" in err


def test_i_corrupt_or_missing_manifest(gold, tmp_path, capsys):
    g = tmp_path / "g"
    g.mkdir()
    text = open(os.path.join(gold.dir, "manifest.json")).read()
    (g / "manifest.json").write_text(text[: len(text) // 2])
    assert main(["verify", str(g), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "not valid JSON" in err and "Traceback" not in err
    (g / "manifest.json").write_text(json.dumps({"format": "mdfi-golden", "format_version": 7, "files": []}))
    assert main(["verify", str(g), str(tmp_path)]) == 2
    assert "format_version 7" in capsys.readouterr().err
    m = json.loads(text)
    del m["files"][3]["bits"]
    (g / "manifest.json").write_text(json.dumps(m))
    assert main(["verify", str(g), str(tmp_path)]) == 2
    assert "files[3]" in capsys.readouterr().err
    (g / "manifest.json").unlink()
    assert main(["verify", str(g), str(tmp_path)]) == 2
    assert "manifest.json: file not found" in capsys.readouterr().err


def test_filters_unknown_files_and_json(gold, tmp_path, capsys):
    gold.write(tmp_path, CONV, "out", gold.requant(CONV, mode="truncate"))
    gold.write(tmp_path, CONV_B, "out", gold.read(CONV_B, "out"))
    gold.write(tmp_path, CONV_B, "acc", gold.read(CONV_B, "acc"))
    (tmp_path / "l099.out.hex").write_text("00\n")
    (tmp_path / "notes.hex").write_text("00\n")
    (tmp_path / "sim.log").write_text("ignored\n")
    rep = verify.verify(gold.dir, tmp_path, layers=str(CONV_B))
    assert [f.file for f in rep.files] == [f"l{CONV_B:03d}.acc.hex", f"l{CONV_B:03d}.out.hex"]
    assert rep.skipped == [f"l{CONV:03d}.out.hex"] and rep.exit_status == 0
    assert {n for n, _ in rep.not_in_golden} == {"l099.out.hex", "notes.hex"}
    rep = verify.verify(gold.dir, tmp_path, stages="out", max_report=3)
    assert [f.file for f in rep.files] == [f"l{CONV_B:03d}.out.hex", f"l{CONV:03d}.out.hex"]
    assert len(rep.files[1].first) == 3 and rep.exit_status == 1
    assert main(["verify", gold.dir, str(tmp_path), "--json", "--max-report", "2"]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert obj["exit_status"] == 1 and obj["summary"]["mismatched"] == 1
    bad = [f for f in obj["files"] if f["status"] == "mismatch"][0]
    assert bad["layer"] == CONV and len(bad["first"]) == 2 and bad["hints"][0]["kind"] == "rounding"
    assert bad["first"][0]["expected_hex"].startswith("0x") and "channel" in bad["first"][0]["coords"]
    assert main(["verify", gold.dir, str(tmp_path), "--stages", "nope"]) == 2
    assert "--stages" in capsys.readouterr().err


def test_check_golden_reports_a_modified_golden_file(gold, tmp_path, capsys):
    """The golden checksums are checked by default (issue 13 item 8): an edited golden file
    makes the verdict NO VERDICT (exit 2) even though the compared file matches."""
    g = tmp_path / "g"
    shutil.copytree(gold.dir, g)
    with open(g / "l002.in0.hex", "a") as fh:
        fh.write("00\n")
    gold.write(tmp_path / "dut", CONV, "out", gold.read(CONV, "out"))
    assert main(["verify", str(g), str(tmp_path / "dut")]) == 2
    cap = capsys.readouterr()
    assert "l002.in0.hex" in cap.out and "checksum" in cap.err
    assert main(["verify", str(g), str(tmp_path / "dut"), "--check-golden"]) == 2
    capsys.readouterr()
    assert main(["verify", str(g), str(tmp_path / "dut"), "--no-check-golden"]) == 0   # the opt-out
    assert "golden checksums" not in capsys.readouterr().out


def test_cli_subprocess_exit_codes_without_traceback(gold, tmp_path):
    dut = tmp_path / "dut"
    gold.write(dut, CONV, "out", gold.requant(CONV, mode="truncate"))
    (dut / f"l{CONV_B:03d}.out.hex").write_text("garbage\n")
    cmd = ["-m", "mdfi", "verify"]
    r = run_python(cmd + [gold.dir, str(dut)], cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "MISMATCH" in r.stdout and "truncation" in r.stdout and "ERROR" in r.stdout
    assert f"l{CONV_B:03d}.out.hex:1:" in r.stdout
    r = run_python(cmd + [str(tmp_path), str(dut)], cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "manifest.json" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_python(cmd + [gold.dir, str(tmp_path / "empty")], cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "nothing compared" in r.stderr and "Traceback" not in r.stderr


def test_few_off_by_one_values_are_not_called_a_rounding_mode(gold, tmp_path):
    out = gold.read(CONV, "out")
    bad = out.copy().reshape(-1)
    idx = np.flatnonzero(np.abs(bad) < 100)[[10, 500, 9000]]
    bad[idx] += 1
    gold.write(tmp_path, CONV, "out", bad)
    res = only_file(verify.verify(gold.dir, tmp_path))
    kinds = [h.kind for h in res.hints]
    assert res.mismatches == 3 and "isolated" in kinds and "rounding" not in kinds, hint_text(res)


def test_border_confinement(gold, tmp_path):
    out = gold.read(CONV_B, "out")
    bad = out.copy()
    bad[:, :, 0] = np.where(bad[:, :, 0] < 127, bad[:, :, 0] + 1, bad[:, :, 0] - 1)
    gold.write(tmp_path, CONV_B, "out", bad)
    res = only_file(verify.verify(gold.dir, tmp_path))
    border = [h for h in res.hints if h.kind == "border"]
    assert border and "left column x 0" in border[0].text and "padding" in border[0].text, hint_text(res)


def test_input_file_and_layer_filter(gold, tmp_path):
    shutil.copy(os.path.join(gold.dir, "input.hex"), tmp_path / "input.dat")   # wrong format on purpose
    rep = verify.verify(gold.dir, tmp_path)
    assert only_file(rep).status == "error"                 # hex text is not decimal: reported, no crash
    e = gold.entries["input.hex"]
    x = vectors.read(os.path.join(gold.dir, "input.hex"), "hex", 8, False, int(np.prod(e["shape"])))
    vectors.write(tmp_path / "input.dat", x, "dat", 8, False)
    assert verify.verify(gold.dir, tmp_path).exit_status == 0
    rep = verify.verify(gold.dir, tmp_path, layers="0-3")
    assert rep.skipped == ["input.dat"] and rep.exit_status == 2 and "nothing compared" in rep.message
    assert verify.verify(gold.dir, tmp_path, layers="input").exit_status == 0


# ------------------------------------------------------------------------------------------
# issue 13 item 7: every hypothesis at every stage where it is observable
def _propagate(gold, layer, acc):
    """act and out of ``layer`` recomputed by the golden rule from a (changed) accumulator."""
    meta = gold.meta(layer)
    shift = gold.read(layer, "shift").astype(np.int64)[:, None, None]
    act, _ = fp.pre_shift_activation(acc, meta["activation"])
    out = fp.requantize(acc, shift, meta["rounding"], meta["out_fmt"]["bits"], meta["activation"])
    return act, out


@pytest.mark.parametrize("stage", ["acc", "act", "out"])
def test_missing_bias_is_named_at_every_stage(gold, tmp_path, stage):
    acc = gold.read(CONV_B, "acc").astype(np.int64)
    nob = acc - gold.read(CONV_B, "bias")[:, None, None]
    act, out = _propagate(gold, CONV_B, nob)
    gold.write(tmp_path, CONV_B, stage, {"acc": nob, "act": act, "out": out}[stage])
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.status == "mismatch"
    assert res.hints[0].kind == "bias" and "bias not added" in res.hints[0].text, hint_text(res)


def test_missing_bias_from_out_without_acc_dump_in_golden(gold, tmp_path):
    """A golden set without acc (only act): the accumulator is recovered from act."""
    g = tmp_path / "gold"
    shutil.copytree(gold.dir, g)
    man = json.loads((g / "manifest.json").read_text())
    man["files"] = [e for e in man["files"] if e["stage"] != "acc"]
    (g / "manifest.json").write_text(json.dumps(man))
    acc = gold.read(CONV, "acc").astype(np.int64)
    _, out = _propagate(gold, CONV, acc + gold.read(CONV, "bias")[:, None, None])
    gold.write(tmp_path / "dut", CONV, "out", out)
    res = only_file(verify.verify(g, tmp_path / "dut"))
    assert res.hints[0].kind == "bias" and "bias added twice" in res.hints[0].text, hint_text(res)


@pytest.mark.parametrize("stage", ["act", "out"])
def test_narrow_accumulator_wrap_is_named(gold, tmp_path, stage):
    """An accumulator one bit narrower than these values need wraps; seen in act or out."""
    acc = gold.read(CONV, "acc").astype(np.int64)
    need = int(np.abs(acc).max()).bit_length() + 1
    b = need - 1
    from mdfi.hw.verify_hints import wrap
    wrapped = wrap(acc, b)
    assert np.count_nonzero(wrapped != acc) > 0
    act, out = _propagate(gold, CONV, wrapped)
    gold.write(tmp_path, CONV, stage, {"act": act, "out": out}[stage])
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.status == "mismatch"
    assert res.hints[0].kind == "acc_wrap", hint_text(res)
    assert f"accumulator wraps around at {b} bits" in res.hints[0].text


def test_linear_instead_of_leaky_in_act_dump(gold, tmp_path):
    acc = gold.read(CONV_B, "acc").astype(np.int64)
    gold.write(tmp_path, CONV_B, "act", acc)                 # act = acc: the slope was never applied
    res = only_file(verify.verify(gold.dir, tmp_path))
    assert res.hints[0].kind == "activation" and "linear" in res.hints[0].text, hint_text(res)


# ------------------------------------------------------------------------------------------
# issue 13 item 8: like with like
def test_dut_hex_is_compared_with_the_golden_hex(gold, tmp_path):
    """A golden set whose npy disagrees with its hex (both listed): a DUT hex identical to the
    golden hex matches; the inconsistency is caught by the (default) checksum check."""
    g = tmp_path / "gold"
    shutil.copytree(gold.dir, g)
    out = gold.read(CONV, "out")
    e = gold.entry(CONV, "out")
    bad = out.copy()
    bad[0, 0, 0] += 1 if bad[0, 0, 0] < 127 else -1
    vectors.write(g / f"l{CONV:03d}.out.npy", bad, "npy", e["bits"], e["signed"])
    man = json.loads((g / "manifest.json").read_text())
    man["files"].append(dict(e, path=f"l{CONV:03d}.out.npy", format="npy", sha256=None))
    (g / "manifest.json").write_text(json.dumps(man))
    dut = tmp_path / "dut"
    dut.mkdir()
    # not byte-identical (CRLF), so the values are really parsed and compared
    (dut / f"l{CONV:03d}.out.hex").write_bytes((g / f"l{CONV:03d}.out.hex").read_bytes().replace(b"\n", b"\r\n"))
    rep = verify.verify(g, dut)
    assert rep.exit_status == 0 and only_file(rep).golden_file == f"l{CONV:03d}.out.hex"
    # a .dat DUT has no golden .dat: it is compared with another format (npy first) -- and
    # the npy written without a checksum is exactly what would go unnoticed, so say which
    gold.write(dut, CONV, "out", out, fmt="dat")
    res = [f for f in verify.verify(g, dut).files if f.format == "dat"][0]
    assert res.golden_file == f"l{CONV:03d}.out.npy" and res.mismatches == 1


def test_nul_byte_in_a_manifest_path_is_one_line_error(gold, tmp_path, capsys):
    """issue 9 item 9: `verify --check-golden` on a NUL byte in a manifest path."""
    g = tmp_path / "gold"
    shutil.copytree(gold.dir, g)
    man = json.loads((g / "manifest.json").read_text())
    man["files"][2]["path"] = "l000.out\x00.hex"
    (g / "manifest.json").write_text(json.dumps(man))
    gold.write(tmp_path / "dut", CONV, "out", gold.read(CONV, "out"))
    assert main(["verify", str(g), str(tmp_path / "dut"), "--check-golden"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdfi: error: ") and len(err.strip().splitlines()) == 1, err
    assert "files[2]" in err and "plain file name" in err and "\x00" not in err


# ------------------------------------------------------------------------------------------
# issue 9 item 7: symbolic links and files unaccounted for
def test_symlinks_in_the_dut_folder(gold, tmp_path, capsys):
    dut = tmp_path / "dut"
    good = gold.write(dut, CONV, "out", gold.read(CONV, "out"))
    secret = tmp_path / "outside.hex"
    secret.write_text("SECRET-LINE-1\nSECRET-LINE-2\n")
    os.symlink(secret, dut / f"l{CONV_B:03d}.out.hex")              # leads outside: refused, never read
    os.symlink(tmp_path / "nowhere.hex", dut / f"l{CONV_B:03d}.acc.hex")   # dangling
    os.symlink("/etc/passwd", dut / "notes.txt")                    # not a vector name: listed as ignored
    rep = verify.verify(gold.dir, dut)
    by = {f.file: f for f in rep.files}
    assert by[f"l{CONV_B:03d}.out.hex"].status == "error" and "outside the DUT folder" in by[f"l{CONV_B:03d}.out.hex"].error
    assert by[f"l{CONV_B:03d}.acc.hex"].status == "error" and "dangling" in by[f"l{CONV_B:03d}.acc.hex"].error
    assert by[os.path.basename(good)].status == "ok"
    assert rep.exit_status == 1                                     # never a pass with a file unaccounted for
    assert ("notes.txt", "a symbolic link to a file outside the DUT folder") in rep.ignored
    assert main(["verify", gold.dir, str(dut)]) == 1
    text = capsys.readouterr().out
    assert "SECRET" not in text and "root:" not in text
    assert "ignored (not vector files): notes.txt" in text
    # a link that stays inside the folder is followed
    os.remove(dut / f"l{CONV_B:03d}.out.hex")
    os.remove(dut / f"l{CONV_B:03d}.acc.hex")
    os.rename(good, dut / "real.bin")
    os.symlink("real.bin", dut / f"l{CONV:03d}.out.hex")
    rep = verify.verify(gold.dir, dut)
    assert rep.exit_status == 0 and only_file(rep).status == "ok"
    assert {n for n, _ in rep.ignored} == {"notes.txt", "real.bin"}


def test_earliest_failure_counts_files_not_read(gold, tmp_path, capsys):
    """A later layer's file that could not be read (a link leading outside, a FIFO) was named
    `earliest failure in dataflow order` before an earlier layer's wrong values."""
    dut = tmp_path / "dut"
    wrong = gold.read(CONV, "out").copy()
    wrong.flat[0] ^= 1
    gold.write(dut, CONV, "out", wrong)
    os.symlink("/etc/passwd", dut / f"l{CONV + 1:03d}.out.hex")     # a later layer
    rep = verify.verify(gold.dir, dut)
    assert [f.file for f in rep.files] == [f"l{CONV:03d}.out.hex", f"l{CONV + 1:03d}.out.hex"]
    assert rep.earliest_failure().file == f"l{CONV:03d}.out.hex"
    assert main(["verify", gold.dir, str(dut)]) == 1
    assert f"earliest failure in dataflow order: l{CONV:03d}.out.hex" in capsys.readouterr().out


def test_every_name_is_accounted_for(gold, tmp_path, capsys):
    dut = tmp_path / "dut"
    gold.write(dut, CONV, "out", gold.read(CONV, "out"))
    (dut / "sim.log").write_text("log\n")
    (dut / "sub.hex").mkdir()
    (dut / "manifest.json").write_text("{}")
    os.mkfifo(dut / f"l{CONV_B:03d}.out.hex")
    rep = verify.verify(gold.dir, dut)
    assert {n for n, _ in rep.ignored} == {"sim.log", "sub.hex", "manifest.json"}
    fifo = [f for f in rep.files if f.file == f"l{CONV_B:03d}.out.hex"][0]
    assert fifo.status == "error" and "not a regular file" in fifo.error
    assert rep.exit_status == 1
    assert main(["verify", gold.dir, str(dut), "--json"]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert obj["summary"]["ignored"] == 3 and {i["file"] for i in obj["ignored"]} == {"sim.log", "sub.hex",
                                                                                        "manifest.json"}


# ------------------------------------------------------------------------------------------
# issue 9 item 8 (DUT part): a huge DUT text file costs no memory
def test_huge_dut_hex_is_refused_before_reading(gold, tmp_path):
    e = gold.entry(CONV, "out")
    n = int(np.prod(e["shape"]))
    dut = tmp_path / "dut"
    dut.mkdir()
    path = dut / f"l{CONV:03d}.out.hex"
    with open(path, "wb") as fh:                                  # sparse file: size without disk use
        fh.truncate(300 << 20)
    rep = verify.verify(gold.dir, dut)
    f = only_file(rep)
    assert f.status == "error" and "too large for" in f.error and f"{n:,} values" in f.error
    assert vectors.max_text_bytes(n) < 300 << 20


def test_too_many_values_stop_the_reading_with_bounded_memory(gold, tmp_path):
    """A dump with far more lines than the stage holds (but within the size limit) fails at
    the first excess value; memory stays near 8 bytes per expected value plus one piece."""
    import tracemalloc
    e = gold.entry(CONV_B, "out")
    n = int(np.prod(e["shape"]))
    dut = tmp_path / "dut"
    dut.mkdir()
    path = dut / f"l{CONV_B:03d}.out.hex"
    path.write_bytes(b"7f\n" * (40 * n) + b"// trailer\n")          # 7.9 MB, 2.6 M lines
    tracemalloc.start()
    try:
        rep = verify.verify(gold.dir, dut, check_golden=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    f = only_file(rep)
    assert f.status == "error" and f"more than the {n:,} values" in f.error
    assert peak < 60e6, peak
    # the careful (line by line) parser stops at the first excess value too, naming its line
    path.write_bytes(b"// header\n" + b"7f\n" * (3 * n))
    f = only_file(verify.verify(gold.dir, dut, check_golden=False))
    assert f.status == "error" and f"{path}:{n + 2}: more than the {n:,} values" in f.error


def test_sparse_dump_compares_only_its_values(gold, tmp_path, capsys):
    from mdfi.hw.golden_reader import write_hex
    out = gold.read(CONV, "out").reshape(-1)
    e = gold.entry(CONV, "out")
    idx = np.r_[0:100, 5000:5300, out.size - 10:out.size]
    dut = tmp_path / "dut"
    dut.mkdir()
    write_hex(str(dut / f"l{CONV:03d}.out.hex"), out[idx], e["bits"], addresses=idx)
    rep = verify.verify(gold.dir, dut)
    f = only_file(rep)
    assert f.status == "ok" and f.present == idx.size and rep.exit_status == 0
    assert main(["verify", gold.dir, str(dut)]) == 0
    assert f"OK  {idx.size:,} values (sparse dump: {idx.size:,} of {out.size:,} values)" in capsys.readouterr().out
    bad = out[idx].copy()
    bad[150] = bad[150] + 1 if bad[150] < 127 else bad[150] - 1
    write_hex(str(dut / f"l{CONV:03d}.out.hex"), bad, e["bits"], addresses=idx)
    f = only_file(verify.verify(gold.dir, dut))
    assert f.status == "mismatch" and f.mismatches == 1 and f.first[0].index == int(idx[150])
    # an address written twice is an error naming the line
    (dut / f"l{CONV:03d}.out.hex").write_text("@0\n01\n@0\n02\n")
    f = only_file(verify.verify(gold.dir, dut))
    assert f.status == "error" and "written twice" in f.error and ".hex:4:" in f.error


# ------------------------------------------------------------------------------------------
# issue 13 item 6: the sample report in docs/golden-format.md is a real one
def test_the_documented_sample_report_is_real(rtl_golden_nozp, tmp_path, capsys):
    """yolov3-tiny's layer 13 (a leaky 1x1 convolution) on skimage's coffee, exported with
    --no-zero-points and requantized with truncation: the report printed is the one
    docs/golden-format.md shows."""
    rtl_golden = rtl_golden_nozp
    from conftest import REPO
    from mdfi.hw.golden_reader import GoldenSet, write_hex
    g = GoldenSet(str(rtl_golden))
    assert g.layer(13)["kind"] == "convolutional" and g.layer(13)["meta"]["activation"] == "leaky"
    act, shift = g.read(13, "act"), g.read(13, "shift")[:, None, None]
    trunc = np.clip(np.right_shift(act, shift + np.where(act < 0, 15, 0)), -128, 127)
    write_hex(str(tmp_path / "l013.out.hex"), trunc.reshape(-1), 8)
    assert main(["verify", str(rtl_golden), str(tmp_path), "--max-report", "2"]) == 1
    out = capsys.readouterr().out.splitlines()
    doc = (REPO / "docs" / "golden-format.md").read_text()
    block = doc[doc.index("```\nl013.out.hex  MISMATCH") + 4:]
    block = block[:block.index("```")].rstrip("\n").split("\n")
    lines = []
    for line in block:                    # the hint is one line, wrapped in the doc
        if line.startswith("        ") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    start = next(i for i, line in enumerate(out) if line.startswith("l013.out.hex"))
    assert out[start:start + len(lines)] == lines


def test_deeply_nested_or_huge_number_manifest_is_one_line(gold, tmp_path, capsys):
    """issue 9 item 4 for manifests: the hardened JSON reader (mdfi/safejson.py)."""
    g = tmp_path / "g"
    g.mkdir()
    gold.write(tmp_path / "dut", CONV, "out", gold.read(CONV, "out"))
    for text, words in (("[" * 100000 + "]" * 100000, "nested deeper"), ('{"format": ' + "7" * 5000 + "}", "digits")):
        (g / "manifest.json").write_text(text)
        assert main(["verify", str(g), str(tmp_path / "dut")]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and words in err and "manifest.json" in err, err
