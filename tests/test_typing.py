"""The public API is typed for a user's type checker (mypy), through ``mdfi/py.typed``:
``load`` gives a ``Model``, ``detect`` a ``Detections`` of ``Detection`` (a list of them for a
list of images), ``plot`` a Pillow image.  The expected types are written here, not read off
the code; the check runs mypy on a user's snippet as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("mypy", reason="mypy (the test extra) is not installed")

SNIPPET = '''
import numpy as np
import mdfi

model = mdfi.load("yolov3-tiny", bits="w6a8")
reveal_type(model)
dets = model.detect("photo.jpg", thresh=0.3)
reveal_type(dets)
for d in dets:
    reveal_type(d)
    reveal_type(d.box)
    reveal_type(d.confidence)
    reveal_type(d.label)
reveal_type(model.detect(["a.jpg", np.zeros((4, 4, 3), np.uint8)]))
reveal_type(dets.plot())
reveal_type(model.input_size)
wrong: int = d.confidence
model.detect("photo.jpg", thresh="0.3")
'''

EXPECTED = [
    (6, 'Revealed type is "mdfi.model.Model"'),
    (8, 'Revealed type is "mdfi.detection.Detections"'),
    (10, 'Revealed type is "mdfi.detection.Detection"'),
    (11, 'Revealed type is "tuple[float, float, float, float]"'),
    (12, 'Revealed type is "float"'),
    (13, 'Revealed type is "str"'),
    (14, 'Revealed type is "list[mdfi.detection.Detections]"'),
    (15, 'Revealed type is "PIL.Image.Image"'),
    (16, 'Revealed type is "tuple[int, int]"'),
    (17, "error: Incompatible types in assignment"),
    (18, "error: No overload variant of \"detect\" of \"Model\" matches argument types"),
]


def test_public_api_types_reach_mypy(tmp_path):
    import mdfi
    # the copy being tested (site-packages after `pip install .`: the marker is installed too)
    here = Path(mdfi.__file__).resolve().parent
    assert (here / "py.typed").is_file(), here
    user = tmp_path / "user.py"
    user.write_text(SNIPPET)
    env = dict(os.environ)
    if here.parent == REPO:             # a source checkout (PYTHONPATH=.): mypy reads it from there
        env["MYPYPATH"] = str(REPO)
    else:
        # the installed copy (site-packages, which mypy refuses in MYPYPATH): mypy finds it
        # through this interpreter, and only because mdfi/py.typed was installed beside it
        env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
                        "--python-executable", sys.executable,
                        "--ignore-missing-imports", "--no-error-summary", "--hide-error-context",
                        "--cache-dir", str(tmp_path / "cache"), str(user)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    found = {}
    for line in r.stdout.splitlines():
        m = re.match(r".*user\.py:(\d+): (.*)", line)
        if m:
            found.setdefault(int(m.group(1)), []).append(m.group(2))
    for lineno, text in EXPECTED:
        assert any(text in f for f in found.get(lineno, [])), (lineno, text, r.stdout, r.stderr)
    # nothing else: no error on the correct lines
    errors = {n for n, fs in found.items() if any(f.startswith("error") for f in fs)}
    assert errors == {17, 18}, r.stdout
