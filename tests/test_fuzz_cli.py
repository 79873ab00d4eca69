"""Bad inputs on the command line: one line on stderr, status 2, no traceback (issue 6; the rules and
shared helpers: fuzz_common.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mdfi.cli import main

from conftest import run_python

import fuzz_common
from fuzz_common import (MINI_CFG, MINI_WEIGHTS, MINI_WEIGHT_BYTES, split_model, join_model, TARGETED,
                         png_with_header, image_bytes)

# fixtures shared with the other test_fuzz_* modules (defined in fuzz_common.py)
work = fuzz_common.work
model_files = fuzz_common.model_files
golden_dir = fuzz_common.golden_dir


# ================================================================================================
# 6. the command line: one line on stderr, status 2, no traceback
@pytest.fixture(scope="module")
def bad_inputs(work, model_files, golden_dir):
    d = work / "bad"
    d.mkdir()
    (d / "bad.cfg").write_text(MINI_CFG.read_text().replace("filters=32", "filters=10000000", 1))
    (d / "nul.cfg").write_bytes(MINI_CFG.read_bytes().replace(b"stride=2", b"stride=\x002", 1))
    (d / "short.weights").write_bytes(MINI_WEIGHT_BYTES[:-4])
    (d / "nan.weights").write_bytes(MINI_WEIGHT_BYTES[:20] + np.full((len(MINI_WEIGHT_BYTES) - 20) // 4, np.nan,
                                                                       "<f4").tobytes())
    (d / "huge.png").write_bytes(png_with_header(100_000, 100_000))
    (d / "trunc.png").write_bytes(image_bytes("png-rgb")[:60])
    (d / "trunc.tif").write_bytes(image_bytes("tiff-rgb")[:60])        # Pillow warns, then fails
    (d / "trunc.mdfi").write_bytes(model_files["mini"][:1000])
    header, data = split_model(model_files["mini"])
    TARGETED["w_frac huge"](header)
    (d / "wfrac.mdfi").write_bytes(join_model(header, data))
    g = d / "golden"
    g.mkdir()
    m = json.loads((golden_dir / "manifest.json").read_text())
    m["files"][0]["bits"] = "8"
    (g / "manifest.json").write_text(json.dumps(m))
    (d / "dut").mkdir()
    (d / "image.png").write_bytes(image_bytes("png-rgb"))
    return d


def _cli_cases(d: Path):
    cfg, w, img = str(MINI_CFG), str(MINI_WEIGHTS), str(d / "image.png")
    det = ["detect", "--float", "--out", "none"]
    return {
        "cfg filters": (det + [img, "--cfg", str(d / "bad.cfg"), "--weights", w], str(d / "bad.cfg")),
        "cfg NUL": (det + [img, "--cfg", str(d / "nul.cfg"), "--weights", w], str(d / "nul.cfg") + ":"),
        "weights short": (det + [img, "--cfg", cfg, "--weights", str(d / "short.weights")], "short.weights"),
        "weights NaN": (det + [img, "--cfg", cfg, "--weights", str(d / "nan.weights")], "nan.weights"),
        "image huge": (det + [str(d / "huge.png"), "--cfg", cfg, "--weights", w], "MDFI_MAX_IMAGE_PIXELS"),
        "image truncated": (det + [str(d / "trunc.png"), "--cfg", cfg, "--weights", w], "trunc.png"),
        "tiff truncated": (det + [str(d / "trunc.tif"), "--cfg", cfg, "--weights", w], "trunc.tif"),
        "mdfi truncated": (["info", str(d / "trunc.mdfi")], "trunc.mdfi"),
        "mdfi w_frac": (["info", str(d / "wfrac.mdfi")], "wfrac.mdfi"),
        "mdfi detect": (["detect", img, "--model", str(d / "wfrac.mdfi"), "--out", "none"], "wfrac.mdfi"),
        "manifest": (["verify", str(d / "golden"), str(d / "dut")], "manifest.json"),
        "golden dir missing": (["verify", str(d / "nope"), str(d / "dut")], "nope"),
    }


def _assert_cli_stderr(err: str, words: str):
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdfi: error: "), err
    assert words in lines[0], err


@pytest.mark.parametrize("case", ["cfg filters", "cfg NUL", "weights short", "weights NaN", "image huge",
                                  "image truncated", "tiff truncated", "mdfi truncated", "mdfi w_frac", "mdfi detect", "manifest",
                                  "golden dir missing"])
def test_cli_bad_inputs_in_process(bad_inputs, capsys, monkeypatch, tmp_path, case):
    monkeypatch.setenv("MDFI_HOME", str(tmp_path))
    argv, words = _cli_cases(bad_inputs)[case]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    _assert_cli_stderr(err, words)


@pytest.mark.parametrize("case", ["cfg filters", "tiff truncated", "mdfi w_frac"])
def test_cli_bad_inputs_subprocess(bad_inputs, tmp_path, case):
    argv, words = _cli_cases(bad_inputs)[case]
    env = dict(os.environ, MDFI_HOME=str(tmp_path))
    r = run_python(["-m", "mdfi", *argv], cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    _assert_cli_stderr(r.stderr, words)
