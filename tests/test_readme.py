"""Issue 9 items 15 and 16: the README's commands and Python snippets, run as written, from
the root of a checkout that was never built (as after `pip install .`, whose built copy is
the package under test: its folder is on PYTHONPATH, like site-packages).

Every line of every ```bash block runs in order with bash; `pip install` lines are what
.ci/run does before the tests and `pytest` is this test run itself, so those two are the only
lines not run here.  Every ```python block runs with `python` in the same folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SKIPPED_PREFIXES = ("pip install", "pytest")


def readme_blocks(text: str):
    """(language, code) of every fenced block of the README, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def commands(code: str):
    for line in code.splitlines():
        cmd = line.split(" #", 1)[0].strip()            # trailing comments are documentation
        if not cmd or cmd.startswith("#"):
            continue
        # `a && b`: run the parts that are not pip or pytest (the test command's block)
        parts = [p.strip() for p in cmd.split("&&")]
        kept = [p for p in parts if not p.startswith(SKIPPED_PREFIXES)]
        if kept:
            yield " && ".join(kept)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A fresh-clone-like copy of the repository without any build (no compiled extension)."""
    import mdfi
    root = tmp_path_factory.mktemp("clone")
    skip = shutil.ignore_patterns("*.so", "*.pyd", "build", "__pycache__", ".git", "*.c", "out", "golden")
    for name in ("README.md", "csrc", "examples", "cfg", "mdfi", "pyproject.toml", "setup.py"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=skip)
        else:
            shutil.copy2(src, root / name)
    # the generated Cython sources (*.c) were skipped with the build; the C kernels are needed
    for c in (REPO / "csrc").rglob("*.c"):
        dest = root / "csrc" / c.relative_to(REPO / "csrc")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(c, dest)
    assert not list((root / "mdfi").rglob("*.so"))
    installed = Path(mdfi.__file__).resolve().parent.parent      # the built package under test
    assert installed != root
    bindir = root / ".bin"
    bindir.mkdir()
    for name, line in (("mdfi", f"exec {sys.executable} -m mdfi \"$@\""), ("python", f"exec {sys.executable} \"$@\""),
                       ("python3", f"exec {sys.executable} \"$@\"")):
        (bindir / name).write_text(f"#!/bin/sh\n{line}\n")     # (a symlink would lose the venv)
        (bindir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(installed),
               MDFI_THREADS="2")
    return root, env


def test_readme_commands_and_snippets_run_as_written(checkout):
    root, env = checkout
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = readme_blocks(text)
    ran = []
    for lang, code in blocks:
        if lang == "bash":
            for cmd in commands(code):
                if cmd.startswith("bash examples/rtl/") and shutil.which("iverilog") is None:
                    continue                                  # tests/test_rtl.py skips likewise
                if cmd.startswith("make ") and shutil.which("make") is None:
                    continue
                r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=root, env=env, capture_output=True,
                                   text=True, timeout=600)
                assert r.returncode == 0, f"README command failed: {cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
                assert "Traceback" not in r.stderr, r.stderr
                ran.append(cmd)
        elif lang == "python":
            r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                               timeout=600)
            assert r.returncode == 0, f"README snippet failed:\n{code}\n{r.stderr[-3000:]}"
            ran.append("python snippet")
    shutil.rmtree(root / "golden", ignore_errors=True)          # ~180 MB of vectors
    shutil.rmtree(root / "out", ignore_errors=True)
    # the first-hour block ran, in order, and did what it says
    assert ran[:2] == ["mdfi sample", "mdfi detect image.jpg"], ran
    assert (root / "image.jpg").is_file() and (root / "predictions.jpg").is_file()
    assert (root / "annotated.jpg").is_file() and "python snippet" in ran
    assert any(c.startswith("mdfi verify") for c in ran)


def test_first_command_output(checkout, tmp_path):
    """What a new user sees: detections of the sample photo, in Darknet's format."""
    root, env = checkout
    subprocess.run(["bash", "-c", "mdfi sample --force"], cwd=tmp_path, env=env, check=True, capture_output=True)
    r = subprocess.run(["bash", "-c", "mdfi detect image.jpg"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    labels = [line.split(":")[0] for line in r.stdout.splitlines()[1:]]
    assert sorted(set(labels)) == ["cat", "cup", "person"], r.stdout
    assert r.stderr.strip().endswith("wrote predictions.jpg")
