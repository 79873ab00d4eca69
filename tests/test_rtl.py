"""The worked RTL example (examples/rtl/): Verilog requantize stage vs MDFI golden vectors.

Runs Icarus Verilog on ``examples/rtl/tb_requant.v``: the correct ``mdfi_requant`` must
reproduce ``lNNN.out.hex`` byte for byte on yolov3-tiny's layer 13 (1x1 conv, leaky) and
layer 15 (1x1 conv, linear), of the default model (output zero points, which a module
ignoring ``zero_out`` fails) and of a ``--no-zero-points`` export; the faulty
``mdfi_requant_trunc`` (truncates instead of rounding half up) must differ.  A corner-case test checks the module against the arithmetic reference
on every 8-bit shift, all activations and both rounding modes.  Skipped without ``iverilog``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_python
from mdfi import fixedpoint as fx
from mdfi.hw import vectors

REPO = Path(__file__).resolve().parent.parent
RTL = REPO / "examples" / "rtl"
LAYERS = (13, 15)            # yolov3-tiny: 1x1 conv leaky (256ch), 1x1 conv linear (255ch)

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) not on PATH: apt-get install -y iverilog")


@pytest.fixture(scope="module")
def golden(rtl_golden) -> Path:
    """Golden hex vectors of layers 13 and 15 (and 18), every stage (tests/conftest.py)."""
    return rtl_golden


def _layer(golden: Path, index: int) -> dict:
    man = json.loads((golden / "manifest.json").read_text())
    lay = next(l for l in man["layers"] if l["index"] == index)
    bits = {f["stage"]: f["bits"] for f in man["files"]
            if f["layer"] == index and f["format"] == "hex"}
    c, h, w = lay["out_shape"]
    return dict(c=c, h=h, w=w, acc_bits=bits["acc"], out_bits=bits["out"],
                act=lay["meta"]["activation"], rounding=lay["meta"]["rounding"],
                zero_out=int((lay.get("params") or {}).get("zero_out", 0)))


def _simulate(build: Path, module: str, acc: Path, shift: Path, out: Path, *, acc_bits: int,
              out_bits: int, c: int, hw: int, act: str, rounding: str, zero_out: int = 0) -> None:
    """Compile tb_requant with ``module`` as the DUT and run it; writes ``out``."""
    build.mkdir(parents=True, exist_ok=True)
    vvp = build / f"{module}_{acc_bits}_{out_bits}_{c}_{hw}.vvp"
    if not vvp.exists():
        subprocess.run(["iverilog", "-g2005", "-Wall", f"-DDUT={module}", "-s", "tb_requant",
                        f"-Ptb_requant.ACC_BITS={acc_bits}", f"-Ptb_requant.OUT_BITS={out_bits}",
                        f"-Ptb_requant.C={c}", f"-Ptb_requant.HW={hw}", "-o", str(vvp),
                        str(RTL / "tb_requant.v"), str(RTL / "mdfi_requant.v"),
                        str(RTL / "mdfi_requant_trunc.v")],
                       check=True, capture_output=True, text=True, timeout=60)
    res = subprocess.run(["vvp", "-n", str(vvp), f"+acc={acc}", f"+shift={shift}",
                          f"+out={out}", f"+act={act}", f"+rounding={rounding}", f"+zero_out={zero_out}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "tb_requant: DONE" in res.stdout, res.stdout + res.stderr


def _run_layer(golden: Path, work: Path, module: str, index: int, zero_out=None) -> Path:
    """``zero_out``: override the layer's output zero point (None: the export's)."""
    p = _layer(golden, index)
    out = work / module / f"l{index:03d}.out.hex"
    out.parent.mkdir(parents=True, exist_ok=True)
    _simulate(work / "build", module, golden / f"l{index:03d}.acc.hex",
              golden / f"l{index:03d}.shift.hex", out, acc_bits=p["acc_bits"],
              out_bits=p["out_bits"], c=p["c"], hw=p["h"] * p["w"], act=p["act"],
              rounding=p["rounding"], zero_out=p["zero_out"] if zero_out is None else zero_out)
    return out


HAVE_VERIFY = importlib.util.find_spec("mdfi.hw.verify") is not None


def _mdfi_verify(golden: Path, dut_dir: Path) -> subprocess.CompletedProcess:
    return run_python(["-m", "mdfi", "verify", str(golden), str(dut_dir)], cwd=dut_dir, timeout=120)


def test_golden_layers_are_the_intended_ones(golden, rtl_golden_nozp):
    assert _layer(golden, 13)["act"] == "leaky"
    assert _layer(golden, 15)["act"] == "linear"
    # the default model has output zero points on these layers (so the tests below cannot pass
    # with a module that ignores zero_out); the --no-zero-points export has none
    for i in LAYERS + (18,):
        assert _layer(golden, i)["zero_out"] != 0, i
        assert _layer(rtl_golden_nozp, i)["zero_out"] == 0, i


@pytest.mark.parametrize("index", LAYERS)
@pytest.mark.parametrize("export", ["default", "nozp"])
def test_correct_module_is_bit_exact(golden, rtl_golden_nozp, tmp_path, index, export):
    golden = golden if export == "default" else rtl_golden_nozp
    out = _run_layer(golden, tmp_path, "mdfi_requant", index)
    p = _layer(golden, index)
    ref = golden / f"l{index:03d}.out.hex"
    assert len(out.read_bytes().splitlines()) == p["c"] * p["h"] * p["w"]
    assert out.read_bytes() == ref.read_bytes()
    if HAVE_VERIFY:
        res = _mdfi_verify(golden, out.parent)
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("index", LAYERS)
def test_faulty_module_is_caught(golden, tmp_path, index):
    out = _run_layer(golden, tmp_path, "mdfi_requant_trunc", index)
    ref = golden / f"l{index:03d}.out.hex"
    assert out.read_bytes() != ref.read_bytes()
    p = _layer(golden, index)
    n = p["c"] * p["h"] * p["w"]
    got = vectors.read(out, "hex", p["out_bits"], True, n)
    want = vectors.read(ref, "hex", p["out_bits"], True, n)
    diff = got - want
    # the truncation signature: never above, at most one LSB below, and on many values
    assert diff.max() == 0 and diff.min() == -1
    assert (diff != 0).mean() > 0.2
    if HAVE_VERIFY:
        res = _mdfi_verify(golden, out.parent)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "rounding" in res.stdout.lower(), res.stdout     # the rounding-mode hint


@pytest.mark.parametrize("index", LAYERS)
def test_ignoring_zero_out_is_caught(golden, tmp_path, index):
    """A requantizer without the output zero point (zero_out forced to 0) fails the default
    model's vectors, and mdfi verify says so (with its forgotten-zero-point hint)."""
    p = _layer(golden, index)
    assert p["zero_out"] != 0
    out = _run_layer(golden, tmp_path, "mdfi_requant", index, zero_out=0)
    n = p["c"] * p["h"] * p["w"]
    got = vectors.read(out, "hex", p["out_bits"], True, n)
    want = vectors.read(golden / f"l{index:03d}.out.hex", "hex", p["out_bits"], True, n)
    assert (got != want).mean() > 0.5
    if HAVE_VERIFY:
        res = _mdfi_verify(golden, out.parent)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "output zero point not added" in res.stdout, res.stdout


def test_run_sh(golden, tmp_path):
    """The example's one-shot script, on the vectors exported above (the default model)."""
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    env = dict(os.environ, MDFI_RTL_GOLDEN=str(golden),
               MDFI_RTL_WORK=str(tmp_path / "work"), PYTHON=sys.executable)
    res = subprocess.run(["bash", str(RTL / "run.sh")], env=env, capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RESULT: PASS" in res.stdout
    for i in LAYERS:
        assert f"PASS layer {i}: mdfi_requant bit-exact" in res.stdout
        assert f"PASS layer {i}: fault caught" in res.stdout
    # the conv engine part (layers 0 and 2 are not in this export: skipped, said so)
    assert "layer 0: not in the golden export(s): skipped" in res.stdout
    assert "PASS layer 18: mdfi_conv bit-exact" in res.stdout
    assert "PASS layer 18: narrow accumulator caught, with the accumulator-wrap hint" in res.stdout
    assert f"zero_out {_layer(golden, 13)['zero_out']}" in res.stdout


def test_run_sh_without_zero_points(rtl_golden_nozp, tmp_path):
    """run.sh on the --no-zero-points export: zero-free layers still work (requantizer only)."""
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    env = dict(os.environ, MDFI_RTL_GOLDEN=str(rtl_golden_nozp), MDFI_RTL_WORK=str(tmp_path / "work"),
               PYTHON=sys.executable, MDFI_RTL_CONV="none")
    res = subprocess.run(["bash", str(RTL / "run.sh")], env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    for i in LAYERS:
        assert f"PASS layer {i}: mdfi_requant bit-exact" in res.stdout
        assert f"PASS layer {i}: fault caught" in res.stdout
    assert "zero_out 0" in res.stdout


def _exact(acc: int, s: int, rounding: str, bits: int, act: str, zero: int = 0) -> int:
    """docs/fixed-point.md sections 1.1 and 4 with Python integers: exact for any shift."""
    if act == "relu" and acc < 0:
        acc = 0
    if act == "leaky" and acc < 0:
        acc, s = acc * fx.LEAKY_MULT, s + fx.LEAKY_SHIFT
    y = ((acc + ((1 << (s - 1)) if rounding == "half_up" else 0)) >> s) if s > 0 else acc << -s
    return min(max(y + zero, fx.qmin(bits)), fx.qmax(bits))


@pytest.mark.parametrize("act", ["linear", "leaky", "relu"])
def test_corner_cases(tmp_path, act):
    """Every 8-bit shift (including left shifts and shifts past the operand width), ties,
    saturation and the extreme accumulators, both rounding modes, against the exact
    formula; and the 48-bit / 16-bit extreme configuration against mdfi.fixedpoint.  Each with
    output zero points at both ends of the output range (docs/fixed-point.md 1.1)."""
    rng = np.random.default_rng(7)
    # (a) ACC_BITS=12, OUT_BITS=5: every shift in [-128, 127]
    ab, ob = 12, 5
    accs = np.unique(np.concatenate([np.arange(-40, 41), [-2048, -2047, 2047, 2046],
                                     rng.integers(-2048, 2048, 40)]))
    shifts = np.arange(-128, 128)
    # (b) ACC_BITS=48, OUT_BITS=16: MDFI's shift range, wide accumulators of every magnitude
    ab2, ob2 = 48, 16
    shifts2 = np.arange(fx.MIN_SHIFT, fx.MAX_SHIFT + 1)
    hw2 = 64
    mag = rng.integers(0, ab2, shifts2.size * hw2)
    accs2 = rng.integers(-(1 << 47), 1 << 47, shifts2.size * hw2) >> mag
    accs2[:4] = [-(1 << 47), (1 << 47) - 1, -1, 0]
    cases = [(ab, ob, np.tile(accs, shifts.size), shifts, accs.size),
             (ab2, ob2, accs2, shifts2, hw2)]
    for k, (a_bits, o_bits, acc, sh, hw) in enumerate(cases):
        (tmp_path / f"c{k}.acc.hex").write_bytes(vectors.to_hex_bytes(acc, a_bits))
        (tmp_path / f"c{k}.shift.hex").write_bytes(vectors.to_hex_bytes(sh, 8))
        s_all = np.repeat(sh, hw)
        zeros = (0, fx.qmin(o_bits), fx.qmax(o_bits)) if k == 0 else (0, -12345)
        for rounding in ("half_up", "truncate"):
            for zero in zeros:
                out = tmp_path / f"c{k}_{rounding}_{zero}.out.hex"
                _simulate(tmp_path / "build", "mdfi_requant", tmp_path / f"c{k}.acc.hex",
                          tmp_path / f"c{k}.shift.hex", out, acc_bits=a_bits, out_bits=o_bits,
                          c=sh.size, hw=hw, act=act, rounding=rounding, zero_out=zero)
                if k == 0:
                    want = np.array([_exact(int(a), int(s), rounding, o_bits, act, zero)
                                     for a, s in zip(acc, s_all)])
                else:
                    want = fx.requantize(acc, s_all, rounding, o_bits, act, zero=zero)
                assert out.read_bytes() == vectors.to_hex_bytes(want, o_bits), (k, act, rounding, zero)


def test_unsupported_layers_are_refused_naming_the_layer():
    """What the engine still does not implement (a table activation, wider activations, an unknown
    key) is refused with one message naming the layer; zero points are accepted."""
    spec = importlib.util.spec_from_file_location("conv_tb_refuse", RTL / "conv_tb.py")
    tb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tb)
    base = dict(record="layer", index=7, kind="conv", act="leaky", in_type="s8", wbits="8",
                pad_value="-105", zero_out="-39")
    tb.check_supported(base)
    assert tb.zero_points(base) == (-105, -39) and tb.zero_points(dict(base, pad_value="0", zero_out="0")) == (0, 0)
    for bad, what in ((dict(act="mish", pre_bits="12", pre_frac="8", lut="l007.act_lut.hex"), "act=mish"),
                      (dict(in_type="s16"), "in_type=s16"), (dict(groups="2"), "groups=2")):
        with pytest.raises(ValueError, match=r"^layer 7: not implemented by the RTL example: .*" + what):
            tb.check_supported(dict(base, **bad))
