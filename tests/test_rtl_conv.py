"""The convolution engine example (examples/rtl/mdfi_conv.v) against MDFI golden vectors, in
Icarus Verilog: bit-exact on real yolov3-tiny layers (3x3 on the 8-bit pixel input, 3x3
inside the network, 1x1 with a partial channel tile), every output channel of the rows it
computes (each row a full set of output tiles); the faulty engine (accumulator registers one
bit narrower than the values need) is caught by ``mdfi verify`` with the accumulator-wrap
hint; random shapes (stride 2, kernel 5, odd sizes) and worst-case values against the
NumPy integer reference, where a register one bit below the *declared* width fails.

Simulation cost is kept small by computing a few output rows (sparse dumps, which ``mdfi
verify`` compares value by value).  Skipped without ``iverilog``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_python
from mdfi import fixedpoint as fx

RTL = REPO / "examples" / "rtl"

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) not on PATH: apt-get install -y iverilog")


def _load_conv_tb():
    spec = importlib.util.spec_from_file_location("conv_tb", RTL / "conv_tb.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tb = _load_conv_tb()


def _verify(golden: Path, dut: Path, *extra: str):
    r = run_python(["-m", "mdfi", "verify", str(golden), str(dut), "--json", *extra], cwd=dut, timeout=120)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip().startswith("{") else r


# (export fixture, layer, rows FIRST:STEP:COUNT): each row is every channel tile x every x tile
CASES = [("rtl_golden_conv", 0, (0, 415, 2)),     # 3x3, unsigned pixels, top and bottom rows (padding)
         ("rtl_golden_conv", 2, (0, 207, 2)),     # 3x3, 16 -> 32 channels, top and bottom rows
         ("rtl_golden", 18, (0, 12, 2))]          # 1x1, 256 -> 128 channels, leaky
# (layer 15, 512 -> 255 channels with a partial last channel tile, costs 4x more per row: it
#  runs in examples/rtl/run.sh; partial tiles are covered by the random shapes below)


@pytest.mark.parametrize("fixture, layer, rows", CASES, ids=["l000-3x3-u8", "l002-3x3", "l018-1x1"])
def test_engine_is_bit_exact_on_real_layers(request, tmp_path, fixture, layer, rows):
    golden = request.getfixturevalue(fixture)
    cfg = tb.layer_config(str(golden), layer)
    vvp = tb.compile_tb(cfg, tmp_path / "build")
    dut = tmp_path / "dut"
    res = tb.simulate(cfg, vvp, dut / f"l{layer:03d}.out.hex", rows=rows)
    n = rows[2] * cfg["ow"] * cfg["m"]
    assert res["outputs"] == n
    status, rep = _verify(golden, dut)
    assert status == 0, rep
    f = rep["files"][0]
    assert f["status"] == "ok" and f["present"] == n and f["total"] == cfg["m"] * cfg["oh"] * cfg["ow"]
    # the same check without mdfi verify: every dumped value equals the golden one
    gold = cfg["golden"].read(layer, "out").reshape(-1)
    addr, vals = _read_sparse(res["out"], cfg["out_bits"])
    assert len(set(addr)) == n and np.array_equal(gold[addr], vals)
    oy = {a // cfg["ow"] % cfg["oh"] for a in addr}
    assert oy == {rows[0] + k * rows[1] for k in range(rows[2])}
    assert {a // (cfg["oh"] * cfg["ow"]) for a in addr} == set(range(cfg["m"]))      # every channel


def test_real_layers_have_zero_points(rtl_golden_conv, rtl_golden):
    """The default model's layers run above carry zero points (so the engine's bit-exactness is not
    vacuous): an output zero point on each, a nonzero padding value on the padded 3x3 layers."""
    for golden, layer, padded in ((rtl_golden_conv, 0, False), (rtl_golden_conv, 2, True),
                                  (rtl_golden_conv, 4, True), (rtl_golden, 18, False)):
        cfg = tb.layer_config(str(golden), layer)
        assert cfg["zero_out"] != 0, layer
        assert (cfg["pad_value"] != 0 and cfg["pad"] > 0) == padded, (layer, cfg["pad_value"])


@pytest.mark.parametrize("ignore", ["pad_value", "zero_out"])
def test_ignoring_a_zero_point_is_caught(rtl_golden_conv, tmp_path, ignore):
    """Layer 2 (3x3, pad 1) with the engine told pad_value=0 (or zero_out=0): the border rows
    differ from golden, and mdfi verify reports the mismatch."""
    layer, rows = 2, (0, 207, 2)
    cfg = tb.layer_config(str(rtl_golden_conv), layer)
    assert cfg[ignore] != 0
    pad_value = cfg["pad_value"]
    cfg = dict(cfg, **{ignore: 0})
    vvp = tb.compile_tb(cfg, tmp_path / "build")
    dut = tmp_path / "dut"
    res = tb.simulate(cfg, vvp, dut / f"l{layer:03d}.out.hex", rows=rows)
    gold = cfg["golden"].read(layer, "out").reshape(-1)
    addr, vals = _read_sparse(res["out"], cfg["out_bits"])
    bad = gold[addr] != vals
    assert bad.sum() > 100, bad.sum()
    if ignore == "pad_value":       # only the taps outside the image: the image border
        x = addr % cfg["ow"]
        edge = (x == 0) | (x == cfg["ow"] - 1) | (addr // cfg["ow"] % cfg["oh"] == 0) \
            | (addr // cfg["ow"] % cfg["oh"] == cfg["oh"] - 1)
        assert not bad[~edge].any()
    status, rep = _verify(rtl_golden_conv, dut)
    assert status == 1, rep
    # border rows only: the padding hypothesis is tested on the dumped values (recomputed with 0-padding)
    hints = [h for f in rep["files"] if f["status"] == "mismatch" for h in f["hints"]]
    named = [h for h in hints if h["kind"] == "padding"]
    if ignore == "pad_value":
        assert named and f"pad_value = {pad_value}" in named[0]["text"] and "sparse dump" in named[0]["text"], hints
    else:
        assert not named, hints


def _read_sparse(path: Path, bits: int):
    addr, vals, pos = [], [], 0
    for line in path.read_text().split():
        if line.startswith("@"):
            pos = int(line[1:], 16)
            continue
        v = int(line, 16)
        vals.append(v - (1 << bits) if v >= 1 << (bits - 1) else v)
        addr.append(pos)
        pos += 1
    return np.array(addr), np.array(vals)


def test_narrow_accumulator_is_caught_with_the_wrap_hint(rtl_golden, tmp_path):
    layer, rows = 18, (0, 1, 1)
    cfg = tb.layer_config(str(rtl_golden), layer)
    need = tb.needed_acc_bits(cfg, rows)
    assert need < cfg["acc_bits"] - 1             # real data never reaches the declared width
    # The narrowest-but-one register that still wraps a fair number of these accumulators
    # (how many reach the top bit depends on the formats the recipe chose).
    first, step, count = rows
    acc = np.abs(cfg["golden"].read(layer, "acc")[:, first:first + step * (count - 1) + 1:step].astype(np.int64))
    narrow = next(b for b in range(need - 1, 1, -1) if np.count_nonzero(acc >= (1 << (b - 1))) >= 20)
    vvp = tb.compile_tb(cfg, tmp_path / "build", narrow=narrow)
    dut = tmp_path / "dut"
    tb.simulate(cfg, vvp, dut / f"l{layer:03d}.out.hex", rows=rows)
    status, rep = _verify(rtl_golden, dut)
    assert status == 1, rep
    f = rep["files"][0]
    assert f["status"] == "mismatch" and f["mismatches"] > 10
    assert f["hints"][0]["kind"] == "acc_wrap", f["hints"]
    assert f"accumulator wraps around at {narrow} bits" in f["hints"][0]["text"]


# ------------------------------------------------------------------------------------------
# beyond the golden layers: shapes yolov3-tiny does not have, and the declared width
def _reference(x, w, bias, shift, stride, pad, act, rounding, out_bits, pad_value=0, zero_out=0):
    m, c, k, _ = w.shape
    _, h, wd = x.shape
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    xp = np.full((c, h + 2 * pad, wd + 2 * pad), pad_value, np.int64)
    xp[:, pad:pad + h, pad:pad + wd] = x
    acc = np.zeros((m, oh, ow), np.int64) + bias[:, None, None]
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride]
            acc += np.einsum("mc,chw->mhw", w[:, :, ky, kx].astype(np.int64), patch)
    return acc, fx.requantize(acc, shift[:, None, None], rounding, out_bits, act, zero=zero_out)


def _write_case(d: Path, x, w, bias, shift, acc_bits):
    from mdfi.hw import vectors
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, v, bits in (("in", x, 8), ("weights", w, 8), ("bias", bias, acc_bits), ("shift", shift, 8)):
        files[name] = d / f"{name}.hex"
        files[name].write_bytes(vectors.to_hex_bytes(v, bits))
    return files


@pytest.mark.parametrize("c, h, w, m, k, stride, pad, act, rounding, unsigned, pad_value, zero_out", [
    (5, 11, 13, 11, 3, 2, 1, "leaky", "half_up", 1, 0, 0),     # stride 2, odd sizes, M not a multiple of 8
    (3, 9, 10, 9, 5, 1, 2, "relu", "truncate", 0, 0, 0),       # 5x5, pad 2
    (4, 7, 7, 3, 2, 2, 0, "linear", "half_up", 0, 0, 0),       # even kernel, no padding
    (4, 8, 9, 10, 3, 1, 1, "leaky", "half_up", 0, -105, -39),  # zero points (docs/fixed-point.md 1.1)
    (3, 7, 6, 5, 5, 2, 2, "linear", "truncate", 1, 200, 127),  # unsigned pixels padded with 200, z = qmax
])
def test_random_shapes_against_the_reference(tmp_path, c, h, w, m, k, stride, pad, act, rounding, unsigned,
                                             pad_value, zero_out):
    rng = np.random.default_rng(c * 100 + k)
    x = rng.integers(0, 256, (c, h, w)) if unsigned else rng.integers(-128, 128, (c, h, w))
    wt = rng.integers(-128, 128, (m, c, k, k))
    acc_bits = fx.accumulator_bits(8, 8, c * k * k, in_signed=not unsigned)
    bias = rng.integers(-(1 << (acc_bits - 4)), 1 << (acc_bits - 4), m)
    shift = rng.integers(-2, 14, m)
    acc, out = _reference(x, wt, bias, shift, stride, pad, act, rounding, 8, pad_value, zero_out)
    cfg = dict(layer=0, c=c, h=h, w=w, m=m, k=k, stride=stride, pad=pad, act=act, rounding=rounding,
               acc_bits=acc_bits, out_bits=8, in_unsigned=unsigned, oh=out.shape[1], ow=out.shape[2],
               pad_value=pad_value, zero_out=zero_out)
    files = _write_case(tmp_path / "case", x, wt, bias, shift, acc_bits)
    vvp = tb.compile_tb(cfg, tmp_path / "build", tm=4, tp=4)
    res = tb.simulate(cfg, vvp, tmp_path / "dut.hex", files=files)
    addr, vals = _read_sparse(res["out"], 8)
    assert np.array_equal(np.sort(addr), np.arange(out.size))
    got = np.empty(out.size, np.int64)
    got[addr] = vals
    assert np.array_equal(got, out.reshape(-1))


def test_worst_case_values_need_the_declared_width(tmp_path):
    """All weights and pixels at their extremes and the largest bias: |acc| reaches the proven bound
    (docs/fixed-point.md section 3.2), the engine is exact, and registers one bit below the
    declared acc_bits wrap -- which no real layer's data shows (see the test above)."""
    c, h, w, m, k = 8, 4, 4, 4, 3
    acc_bits = fx.accumulator_bits(8, 8, c * k * k, in_signed=False)
    x = np.full((c, h, w), 255)
    wt = np.full((m, c, k, k), -128)
    wt[1] = 127
    # the quantizer's bias bound: |bias| <= 2^(acc_bits-1) - 1 - Pmax keeps every sum in range
    limit = (1 << (acc_bits - 1)) - 1 - fx.product_bound(8, 8, c * k * k, in_signed=False)
    bias = np.array([-limit, limit, -5, 5])
    shift = np.full(m, acc_bits - 9)
    acc, out = _reference(x, wt, bias, shift, 1, 1, "linear", "half_up", 8)
    assert int(np.abs(acc).max()).bit_length() + 1 == acc_bits          # the top bit is used
    cfg = dict(layer=0, c=c, h=h, w=w, m=m, k=k, stride=1, pad=1, act="linear", rounding="half_up",
               acc_bits=acc_bits, out_bits=8, in_unsigned=1, oh=h, ow=w)
    files = _write_case(tmp_path / "case", x, wt, bias, shift, acc_bits)
    for narrow, exact in ((None, True), (acc_bits - 1, False)):
        vvp = tb.compile_tb(cfg, tmp_path / "build", narrow=narrow, tm=4, tp=4)
        res = tb.simulate(cfg, vvp, tmp_path / f"dut{narrow}.hex", files=files)
        addr, vals = _read_sparse(res["out"], 8)
        got = np.empty(out.size, np.int64)
        got[addr] = vals
        assert np.array_equal(got, out.reshape(-1)) == exact, narrow
