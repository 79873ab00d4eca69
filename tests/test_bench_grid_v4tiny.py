"""benchmarks/bench_grid.py's --model choices and benchmarks/bench_accuracy_v4tiny.py's weight-method
tokens and statistics options, without the photo sets or the network: bad input is refused with
one line before any heavy work (round 10, docs/quantization.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_accuracy_v4tiny  # noqa: E402
import bench_grid  # noqa: E402


def test_grid_models():
    assert "yolov4-tiny" in bench_grid.MODELS and "yolov4-tiny" in bench_grid.ZOO_MODELS
    assert "yolov4-tiny-10c" not in bench_grid.ZOO_MODELS


@pytest.mark.parametrize("argv, msg", [
    (["--model", "yolov5"], "invalid choice"),
    (["--model", "yolov4-tiny", "--calib-set", "calib4"], "yolov4-tiny-10c only"),
    (["--model", "yolov3-tiny", "--calib-set", "calib4"], "yolov4-tiny-10c only"),
    (["--model", "yolov4-tiny", "--weights", "/nonexistent.weights"], "no such file"),
    (["--model", "yolov3-tiny", "--weights", "{tmp}"], "--weights"),
    (["--model", "yolov4-tiny-10c", "--modes", "a-pot-recipe"], "a-pot-recipe"),
    (["--model", "yolov4-tiny-10c", "--modes", "w-float+a-pot-recipe"], "a-pot-recipe"),
    (["--model", "yolov4-tiny", "--modes", "w-gptq"], "--modes"),
    (["--model", "yolov4-tiny", "--split", "train"], "--split"),
    (["--model", "yolov3-tiny", "--abits", "1"], "--abits"),
    (["--model", "yolov3-tiny", "--wbits", "17"], "--wbits"),
    (["--model", "yolov3-tiny", "--abits", "6", "--modes", "a-pot-recipe"], "8-bit activations only"),
])
def test_grid_refused_before_work(tmp_path, capsys, argv, msg):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        bench_grid.main(argv + ["--sets", str(tmp_path / "nosets"), "--person-sets", str(tmp_path / "nop"),
                                "--cache", str(tmp_path / "c")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and ": error: " in err.strip().splitlines()[-1]
    assert not (tmp_path / "nosets").exists() and not (tmp_path / "c").exists()


def test_v4tiny_weight_tokens():
    w, a, opts, emp = bench_accuracy_v4tiny.parse_config("clip0.03+shift1+gptq+alignmse")
    assert (w, a, emp) == (8, 8, False)
    assert opts == dict(search=False, clip_budget=0.03, shift_strength=1.0, weight_rounding="gptq", align="mse")
    wm = bench_accuracy_v4tiny.data_methods(opts)
    assert wm == dict(weight_rounding="gptq", align="mse")
    assert opts == dict(search=False, clip_budget=0.03, shift_strength=1.0)   # choose_decisions' options only
    assert bench_accuracy_v4tiny.data_methods(bench_accuracy_v4tiny.parse_config("recipe")[2]) == {}
    for bad in ("clip0.03+gptqx", "clip0.03+alignfoo"):
        with pytest.raises(ValueError):
            bench_accuracy_v4tiny.parse_config(bad)


@pytest.mark.parametrize("argv, msg", [
    (["--calib-stats", "shipped"], "with --coco only"),
    (["--coco", "--calib-stats", "/nonexistent.json"], "no such file"),
    (["--coco", "--calib-stats", "shipped", "--calib-set", "calib4"], "not both"),
    (["--coco", "--configs", "clip0.03+gptqx"], "unknown config"),
    (["--coco", "--save-dir", "/nonexistent-dir"], "no such folder"),
    (["--coco", "--save-dir", "{tmp}", "--models", "x.mdfi"], "--save-dir"),
])
def test_v4tiny_refused_before_work(tmp_path, capsys, argv, msg):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        bench_accuracy_v4tiny.main(argv + ["--sets", str(tmp_path / "nosets"), "--person-sets",
                                           str(tmp_path / "nop"), "--cache", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "nosets").exists() and not (tmp_path / "c").exists()


def test_pot_asym_format_hand_cases():
    """a-pot-asym (round 12): the power-of-two step and zero point, checked against values worked
    out by hand.  Values spread over [-1, 14]: 15 units need 240 steps of 1/16 (<= 255 codes), so
    the unsigned format keeps step 1/16 with a zero point near 16, one bit finer than the signed
    symmetric format, which must hold 14 in 127 steps (step 1/8)."""
    from mdfi.quant import calibrate
    from mdfi.quant.calib_stats import TensorStats
    x = np.concatenate([np.linspace(-1.0, 14.0, 20001), np.zeros(100)])
    st = TensorStats.from_array(x)
    step, zp = bench_grid.pot_asym_format(st, 8)
    assert step == 1 / 16
    assert zp == int(zp) and 0 <= zp <= 255
    lo, hi = -zp * step, (255 - zp) * step
    assert lo <= -1.0 + step / 2 and hi >= 14.0 - step / 2          # nothing beyond the clip budget clips
    assert calibrate.choose_frac(st, 8, "mse") == 3                  # the symmetric signed format: 1/8
    # a non-negative tensor: zero point 0 or close to it, and the whole [0, 255 * step] range used
    st = TensorStats.from_array(np.linspace(0.0, 3.9, 5000))
    step, zp = bench_grid.pot_asym_format(st, 8)
    assert step == 1 / 64 and zp <= 6                                # 3.9 / (1/64) = 249.6 codes
    # 4 bits: 15 codes over [-1, 14] -> step 1 (15 steps), zero point 1
    step, zp = bench_grid.pot_asym_format(TensorStats.from_array(np.linspace(-1.0, 14.0, 20001)), 4)
    assert (step, zp) == (1.0, 1.0)
    # nothing clipped (a-pot-asym-max): one rare value at 17 sets the step, 1/8 for [-1, 17]; with the
    # budget, clipping it to 15.9 costs less squared error than the coarser step over all others
    x = np.concatenate([np.linspace(-1.0, 14.0, 20001), [17.0]])
    step, zp = bench_grid.pot_asym_format(TensorStats.from_array(x), 8, clip_budget=0.0)
    assert step == 1 / 8 and -zp * step <= -1.0 and (255 - zp) * step >= 17.0
    assert bench_grid.pot_asym_format(TensorStats.from_array(x), 8)[0] == 1 / 16   # the budget clips it
    # an all-zero tensor does not fail
    assert bench_grid.pot_asym_format(TensorStats.from_array(np.zeros(10)), 8) == (1.0, 0.0)
