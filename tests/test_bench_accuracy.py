"""benchmarks/bench_accuracy.py's calibration options without the photo sets or the network:
extra calibration folders add their photos' mirror images (and corner crops), and the options
that would break the split are refused before any heavy work."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_accuracy  # noqa: E402


def _photos(d: Path, n: int, seed: int) -> None:
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(d / f"p{i}.png")


def test_calib_inputs_extra_folders(tmp_path):
    _photos(tmp_path / "sets" / "calib", 2, 0)
    _photos(tmp_path / "calib4", 3, 1)
    net = SimpleNamespace(width=32, height=32)
    sets = str(tmp_path / "sets")
    base = bench_accuracy.calib_inputs(net, sets)
    assert len(base) == 2 * 2                                  # each photo and its mirror image
    more = bench_accuracy.calib_inputs(net, sets, extra=[str(tmp_path / "calib4")])
    assert len(more) == (2 + 3) * 2
    for a, b in zip(base, more):                               # the calib photos come first, unchanged
        assert np.array_equal(a, b)
    crops = bench_accuracy.calib_inputs(net, sets, crops=True, extra=[str(tmp_path / "calib4")])
    assert len(crops) == (2 + 3) * 6                           # original, mirror, four corner crops
    # the mirror of an extra photo is its left-right flip (letterboxing is symmetric here)
    x, xm = more[4], more[5]
    assert x.shape == (3, 32, 32)
    assert np.allclose(x[:, :, ::-1], xm)


@pytest.mark.parametrize("argv, msg", [
    (["--split", "val,train"], "--split"),
    (["--split", "val,val"], "--split"),
    (["--calib-extra", "/nonexistent-calib4", "--method", "gptq"], "not a folder"),
    (["--calib-extra", "{tmp}", "--method", "recipe"], "--calib-extra"),
    (["--calib-crops", "--make-decisions", "x.json"], "--calib-extra"),
    (["--head-refine", "1@x", "--method", "gptq"], "--head-refine"),
    (["--head-refine", "1", "--method", "recipe"], "--head-refine"),
    (["--model", "yolov4-tiny"], "with --make-decisions only"),
    (["--decision-options", "search=0"], "with --make-decisions only"),
    (["--make-decisions", "x.json", "--decision-options", "clip=1"], "KEY=VALUE with KEY in"),
    (["--make-decisions", "x.json", "--decision-options", "search=maybe"], "bad value"),
    (["--make-decisions", "x.json", "--calib-stats", "/nonexistent.json"], "no such file"),
])
def test_refused_before_work(tmp_path, capsys, argv, msg):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        bench_accuracy.main(argv + ["--sets", str(tmp_path / "nosets"), "--cache", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "nosets").exists() and not (tmp_path / "c").exists()


def test_selection_splits_take_val7_to_val9_and_never_test_or_test4():
    import argparse
    assert bench_accuracy._selection_splits("val,val4,val5,val6,val7") == ["val", "val4", "val5", "val6", "val7"]
    assert bench_accuracy._selection_splits("val8,val7") == ["val8", "val7"]
    assert bench_accuracy._selection_splits("val9,val8") == ["val9", "val8"]
    for bad in ("test", "test4", "val7,test4", "val8,test", "val9,test4", "val10"):
        with pytest.raises(argparse.ArgumentTypeError, match="never used to choose"):
            bench_accuracy._selection_splits(bad)


@pytest.mark.parametrize("argv, msg", [
    (["--split", "val9,val10"], "--split: unknown val10"),
    (["--split", "val7", "--shipped-default", "--heads", "A", "--heads-split", "test4"], "selection splits only"),
    (["--split", "val7", "--shipped-default", "--heads", "A", "--heads-split", "val7"], "selection splits only"),
    (["--split", "val8", "--shipped-default", "--heads", "A", "--heads-split", "test"], "selection splits only"),
    (["--split", "val8", "--shipped-default", "--heads", "A", "--heads-split", "val8"], "selection splits only"),
    (["--split", "val9", "--shipped-default", "--heads", "A", "--heads-split", "test4"], "selection splits only"),
    (["--split", "val9", "--shipped-default", "--heads", "A", "--heads-split", "val9"], "selection splits only"),
])
def test_bench_zeropoint_knows_val7_to_val9_and_keeps_test_out_of_the_heads(tmp_path, capsys, argv, msg):
    import bench_zeropoint
    with pytest.raises(SystemExit) as exc:
        bench_zeropoint.main(argv + ["--sets", str(tmp_path / "nosets"), "--cache", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "nosets").exists() and not (tmp_path / "c").exists()


def test_bench_head_noise_redraws_the_error_only(tmp_path, capsys):
    """bench_head_noise.py (round 18): ``shuffled`` keeps each channel's errors (a permutation),
    ``gauss`` draws zero-mean noise of their spread; the held-out splits are refused."""
    import bench_head_noise
    eng = object.__new__(bench_head_noise.NoiseEngine)
    rng = np.random.default_rng(1)
    zf = rng.normal(0, 3, (4, 26, 26))
    zq = zf + rng.normal(0.2, 0.5, zf.shape) * np.arange(1, 5)[:, None, None]
    e = (zq - zf).reshape(4, -1)
    for mode in ("shuffled", "gauss", "gauss-half"):
        eng.mode, eng.rng = mode, np.random.default_rng(0)
        got = (eng.noisy(zf, zq) - zf).reshape(4, -1)
        assert not np.allclose(got, e)
        if mode == "shuffled":
            assert np.allclose(np.sort(got, axis=1), np.sort(e, axis=1), rtol=0, atol=1e-12)
        else:
            k = 0.5 if mode == "gauss-half" else 1.0
            assert np.all(np.abs(got.mean(axis=1)) < 0.2 * k * e.std(axis=1))
            assert np.allclose(got.std(axis=1), k * e.std(axis=1), rtol=0.1)
    with pytest.raises(SystemExit):
        bench_head_noise.main(["--split", "test4", "--cache", str(tmp_path / "c")])
    assert "never used to choose" in capsys.readouterr().err and not (tmp_path / "c").exists()
