"""Never unpickle, never eval, never block on a FIFO or device (issue 6; shared helpers: fuzz_common.py)."""

from __future__ import annotations

import os
import re
import sys
import tokenize
from pathlib import Path

import pytest

from mdfi.errors import MDFIError

from conftest import REPO

from fuzz_common import MINI_DIR


# ================================================================================================
# 7. never unpickle, never eval
_FORBIDDEN_NAMES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _code_tokens(path: Path):
    with open(path, "rb") as fh:
        return [t for t in tokenize.tokenize(fh.readline)
                if t.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE,
                                  tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
                and not (sys.version_info >= (3, 12) and t.type in (tokenize.FSTRING_START,
                                                                     tokenize.FSTRING_MIDDLE,
                                                                     tokenize.FSTRING_END))]


def find_unsafe_code(path: Path):
    """Uses of pickle, eval/exec and numpy.load without allow_pickle=False (comments and
    docstrings excluded)."""
    toks = _code_tokens(path)
    bad = []
    for i, t in enumerate(toks):
        prev = toks[i - 1].string if i else ""
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        where = f"{path.relative_to(REPO) if REPO in path.parents else path.name}:{t.start[0]}"
        if t.type == tokenize.NAME and t.string in _FORBIDDEN_NAMES:
            bad.append(f"{where}: uses {t.string}")
        if t.type == tokenize.NAME and t.string in ("eval", "exec", "__import__", "compile") and nxt == "(" \
                and prev != ".":
            bad.append(f"{where}: calls {t.string}()")
        if t.string == "allow_pickle" and nxt == "=" and toks[i + 2].string != "False":
            bad.append(f"{where}: allow_pickle={toks[i + 2].string}")
        if t.string == "load" and prev == "." and i >= 2 and toks[i - 2].string in ("np", "numpy") and nxt == "(":
            depth, j, args = 0, i + 1, []
            while j < len(toks):
                s = toks[j].string
                depth += s in "([{" and toks[j].type == tokenize.OP
                depth -= s in ")]}" and toks[j].type == tokenize.OP
                args.append(s)
                if depth == 0:
                    break
                j += 1
            if "allow_pickle=False" not in "".join(args):
                bad.append(f"{where}: numpy.load without allow_pickle=False")
        if t.string == "import" and prev == "numpy" and nxt == "load":
            bad.append(f"{where}: imports numpy.load by name")
    return bad


def test_find_unsafe_code_catches_what_it_should(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text('"""pickle and eval( in a docstring are fine."""\n# pickle in a comment too\n'
                 "import pickle\nx = eval('1')\nnp.load(f)\nnp.load(f, allow_pickle=True)\n"
                 "np.load(f, allow_pickle=False)\nm.eval()\n")
    found = find_unsafe_code(p)
    assert [f.split(": ", 1)[1] for f in found] == [
        "uses pickle", "calls eval()", "numpy.load without allow_pickle=False",
        "numpy.load without allow_pickle=False", "allow_pickle=True"], found


def test_package_never_unpickles_or_evals():
    sources = sorted((REPO / "mdfi").rglob("*.py"))
    assert len(sources) > 20
    bad = [b for p in sources for b in find_unsafe_code(p)]
    assert not bad, "\n".join(bad)
    # Cython sources: a plain text check (no eval/exec/pickle, np.load only with allow_pickle=False).
    for p in sorted((REPO / "mdfi").rglob("*.pyx")):
        code = "\n".join(l.split("#", 1)[0] for l in p.read_text().splitlines())
        assert not re.search(r"\bpickle\b|\beval\s*\(|\bexec\s*\(|\bmarshal\b", code), p
        assert "np.load(" not in code or "allow_pickle=False" in code, p


# -- special files: never opened, never block ---------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("kind", ["cfg", "weights", "mdfi", "image", "names", "calib", "vector", "manifest"])
def test_fifos_and_devices_are_refused_without_blocking(tmp_path, kind):
    import mdfi.quant.calibrate as calibrate_mod
    from mdfi.hw import vectors as vec_mod
    from mdfi.hw import verify as verify_mod
    from mdfi import zoo as zoo_mod
    from mdfi.image import load_image
    from mdfi.quant.modelfile import load as load_mdfi
    from mdfi.darknet.network import Network as Net
    from mdfi.darknet.weights import load_weights as lw
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    mini = Net.from_cfg(MINI_DIR / "mini-yolov3.cfg", warn=False) if kind == "weights" else None
    calls = {
        "cfg": lambda p: Net.from_cfg(p),
        "weights": lambda p: lw(mini, p),
        "mdfi": lambda p: load_mdfi(p),
        "image": lambda p: load_image(p),
        "names": lambda p: zoo_mod.load_names(p),
        "calib": lambda p: calibrate_mod.CalibStats.from_json(p),
        "vector": lambda p: vec_mod.read(p, "hex", 8, True, 4),
    }
    targets = [fifo, "/dev/zero"] if os.path.exists("/dev/zero") else [fifo]
    for target in targets:
        if kind == "manifest":
            d = tmp_path / f"g{len(str(target))}"
            d.mkdir()
            os.symlink(target, d / "manifest.json")
            with pytest.raises(MDFIError, match="not a regular file"):
                verify_mod.load_manifest(str(d))
            continue
        with pytest.raises(MDFIError, match="not a regular file"):
            calls[kind](str(target))
