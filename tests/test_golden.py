"""`mdfi golden`: the manifest is complete and true, the stages are consistent with each
other and with `mdfi detect`, and export -> standalone C model -> `mdfi verify` matches."""

from __future__ import annotations

import errno
import hashlib
import os
import json
import subprocess

import numpy as np
import pytest

import mdfi
from mdfi import fixedpoint as fp
from mdfi.hw import golden, vectors
from mdfi.cli import main
from mdfi.errors import MDFIError

from conftest import DARKNET, run_python, skimage_image

MINI_CFG = DARKNET / "mini-yolov3" / "mini-yolov3.cfg"
MINI_W = DARKNET / "mini-yolov3" / "mini-yolov3.weights"
REQUIRED = {"path", "layer", "stage", "format", "shape", "layout", "bits", "signed", "frac", "ap_type", "q",
            "rounding", "saturation", "sha256"}


@pytest.fixture(scope="module")
def mini():
    # the zero-free chain (zero points, the default since round 25: test_verify_zeropoint.py)
    return mdfi.load(cfg=MINI_CFG, weights=MINI_W, zero_points=False)


@pytest.fixture(scope="module")
def export(mini, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    golden.export(mini, skimage_image("astronaut.png"), str(out), thresh=0.95, formats=["hex", "npy", "dat"])
    return out


def test_manifest_lists_every_file_with_true_checksums(export):
    man = json.loads((export / "manifest.json").read_text())
    assert man["format"] == "mdfi-golden" and man["format_version"] == 1 and man["mdfi_version"] == mdfi.__version__
    listed = {f["path"] for f in man["files"]}
    on_disk = {p.name for p in export.iterdir()} - {"manifest.json", "model.txt", "detections.json"}
    assert listed == on_disk
    for f in man["files"]:
        assert REQUIRED <= set(f), f
        assert hashlib.sha256((export / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    # every layer of the 35-layer network, in all three formats, with its stages
    stages = {(f["layer"], f["stage"]) for f in man["files"]}
    for i, layer in enumerate(man["layers"]):
        assert (i, "out") in stages and (i, "in0") in stages
        if layer["kind"] in ("convolutional", "shortcut"):
            assert (i, "acc") in stages and (i, "act") in stages
        if layer["kind"] == "convolutional":
            assert {(i, "weights"), (i, "bias"), (i, "shift")} <= stages
    assert {f["format"] for f in man["files"]} == {"hex", "npy", "dat"}


def test_formats_hold_the_same_values(export):
    man = json.loads((export / "manifest.json").read_text())
    by_key = {}
    for f in man["files"]:
        n = int(np.prod(f["shape"])) if f["shape"] else 1
        v = vectors.read(export / f["path"], f["format"], f["bits"], f["signed"], n)
        by_key.setdefault((f["layer"], f["stage"]), []).append(v)
    for key, vs in by_key.items():
        assert all(np.array_equal(vs[0], v) for v in vs[1:]), key


def test_golden_reader_reads_every_format(export):
    """mdfi/hw/golden_reader.py (the standalone reader for test benches) agrees with mdfi.hw.vectors."""
    from mdfi.hw.golden_reader import GoldenSet, read_vector
    g = GoldenSet(str(export))
    man = json.loads((export / "manifest.json").read_text())
    for f in man["files"][::7]:
        want = vectors.read(export / f["path"], f["format"], f["bits"], f["signed"], int(np.prod(f["shape"])))
        got = read_vector(str(export / f["path"]), f["format"], f["bits"], f["signed"], f["shape"])
        assert got.shape == tuple(f["shape"]) and np.array_equal(got.reshape(-1), want), f["path"]
    assert np.array_equal(g.read(4, "acc", "dat"), g.read(4, "acc", "hex"))
    assert g.input().shape == (3, 128, 128) and g.layer(4)["kind"] == "shortcut"
    assert g.detections()["detections"] and g.model_lines()[0]["record"] == "mdfi-model"


def test_stages_are_consistent(export):
    """out == requantize(acc) with the layer's shifts, and each input is its producer's out."""
    man = json.loads((export / "manifest.json").read_text())
    read = lambda name, f: vectors.read(export / name, "npy", f["bits"], f["signed"], int(np.prod(f["shape"])))
    files = {(f["layer"], f["stage"]): f for f in man["files"] if f["format"] == "npy"}
    for i, layer in enumerate(man["layers"]):
        meta = layer["meta"]
        if layer["kind"] == "convolutional":
            acc = read(f"l{i:03d}.acc.npy", files[(i, "acc")]).reshape(files[(i, "acc")]["shape"])
            shift = read(f"l{i:03d}.shift.npy", files[(i, "shift")])
            out = read(f"l{i:03d}.out.npy", files[(i, "out")]).reshape(acc.shape)
            ref = fp.requantize(acc, shift[:, None, None], meta["rounding"], meta["out_fmt"]["bits"],
                                meta["activation"])
            assert np.array_equal(out, ref), i
        for k, src in enumerate(layer["inputs"]):
            x = read(f"l{i:03d}.in{k}.npy", files[(i, f"in{k}")])
            prod = read("input.npy", files[(-1, "out")]) if src == -1 else read(f"l{src:03d}.out.npy", files[(src, "out")])
            assert np.array_equal(x, prod), (i, k)


def test_detections_match_mdfi_detect(export, mini):
    rec = json.loads((export / "detections.json").read_text())
    dets = mini.detect(skimage_image("astronaut.png"), thresh=0.95)
    assert [{k: v for k, v in d.items() if k != "exact"} for d in rec["detections"]] == [d.to_dict() for d in dets]
    # the exact values: float32 confidence and boxes written bit for bit
    assert [d["exact"]["confidence"] for d in rec["detections"]] == [d.confidence for d in dets]
    assert [d["exact"]["rel_box"] for d in rec["detections"]] == [list(d.rel_box) for d in dets]


def test_layer_and_format_selection(mini, tmp_path):
    golden.export(mini, skimage_image("astronaut.png"), str(tmp_path), layers=[0, 4], formats=["hex"], thresh=0.95)
    names = {p.name for p in tmp_path.iterdir()}
    assert "l000.out.hex" in names and "l004.acc.hex" in names and "l001.out.hex" not in names
    assert "l001.weights.hex" in names            # parameters of every layer (the C model needs them)
    assert not any(n.endswith(".npy") for n in names)
    with pytest.raises(MDFIError, match="outside the model's layers"):
        golden.parse_layers("3,40", 35)
    with pytest.raises(MDFIError, match=r"'5-2' runs backwards \(write 2-5\)"):
        golden.parse_layers("5-2", 35)
    with pytest.raises(MDFIError, match="--format"):
        golden.parse_formats("hex,bin")


def test_hex_is_canonical_twos_complement(tmp_path):
    p = tmp_path / "x.hex"
    vectors.write(p, np.array([-3, 0, 127, -128]), "hex", 29, True)
    # 29 bits -> 8 hex digits; -3 and -128 as 29-bit two's complement
    assert p.read_text() == "1ffffffd\n00000000\n0000007f\n1fffff80\n"


def test_float_model_is_refused(tmp_path, tiny_weights_path):
    with pytest.raises(MDFIError, match="fixed-point"):
        golden.export(mdfi.load(precision="float"), skimage_image("coffee.png"), str(tmp_path))


def test_cli_golden_then_verify_itself(tmp_path, capsys, tiny_weights_path):
    img = tmp_path / "c.png"
    from PIL import Image
    Image.fromarray(skimage_image("coffee.png")).save(img)
    g = tmp_path / "g"
    assert main(["golden", str(img), "-o", str(g), "--layers", "13-16", "--format", "hex"]) == 0
    assert "layer(s) of yolov3-tiny" in capsys.readouterr().err
    assert main(["verify", str(g), str(g)]) == 0


def test_export_c_runner_verify_chain(export, tmp_path):
    """export -> standalone C model -> mdfi verify: every layer's output matches."""
    from test_c_runner import _have_compiler
    if not _have_compiler():
        pytest.skip("no C compiler / make")
    build = tmp_path / "build"
    subprocess.run(["make", "-C", str(DARKNET.parents[2] / "csrc"), f"BUILD={build}", "runner"], check=True,
                   capture_output=True, timeout=600)
    out = tmp_path / "dut"
    subprocess.run([str(build / "mdfi_run"), str(export), str(out), "--threads", "2"], check=True,
                   capture_output=True, timeout=300)
    r = run_python(["-m", "mdfi", "verify", str(export), str(out)], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "35 file(s) compared: 35 matched" in r.stdout


# ------------------------------------------------------------------------------------------
# issue 13 item 9 (size, default) and issue 9 item 5 (I/O errors, half-written exports)
MINI_ARGS = ["--cfg", str(MINI_CFG), "--weights", str(MINI_W)]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    p = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_image("astronaut.png")).save(p)
    return p


def _golden_cli(photo, out, *extra):
    return main(["golden", str(photo), "-o", str(out), *MINI_ARGS, "--thresh", "0.95", *extra])


def _tree(d):
    return sorted(p.name for p in d.iterdir())


def test_size_is_printed_before_writing_and_default_is_hex(photo, tmp_path, capsys):
    out = tmp_path / "g"
    assert _golden_cli(photo, out, "--dry-run") == 0
    # (a "note:" on how the model is calibrated, and the first-use "quantizing ..." line, come
    # first when it is not cached yet)
    err = "\n".join(x for x in capsys.readouterr().err.splitlines() if not x.startswith(("note: ", "quantizing ")))
    assert "mdfi golden:" in err and "files, about" in err and "MB" in err and not out.exists()
    assert _golden_cli(photo, out) == 0
    err2 = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("note: ")]
    assert err2[0] == err.strip()                     # the same estimate, printed before anything else
    names = _tree(out)
    assert not any(n.endswith((".npy", ".dat")) for n in names)     # default: hex + manifest only
    n_files = int(err.split("mdfi golden: ")[1].split(" files")[0].replace(",", ""))
    assert n_files == len(names)
    # the vector files' size is exact (hex); the total adds manifest, model.txt, detections.json
    est_hex = float(err.split("(hex ")[1].split(" MB")[0].replace(",", "")) * 1e6
    real_hex = sum((out / n).stat().st_size for n in names if n.endswith(".hex"))
    assert abs(est_hex - real_hex) <= 0.05e6, (est_hex, real_hex)
    est = float(err.split("about ")[1].split(" MB")[0].replace(",", "")) * 1e6
    real = sum((out / n).stat().st_size for n in names)
    assert abs(est - real) <= 0.05 * real, (real, est)
    assert _golden_cli(photo, tmp_path / "s", "--stages", "out", "--format", "hex,npy") == 0
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert {f["stage"] for f in man["files"] if f["layer"] >= 0} == {"out", "weights", "bias", "shift",
                                                                     "logistic_lut", "exp_lut"}
    assert man["stages"] == ["out"] and man["formats"] == ["hex", "npy"]


def test_output_folder_errors_are_one_line(photo, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    cases = {str(a_file): "exists and is not a folder", str(a_file / "sub"): "is not a folder",
             str(foreign): "holds no MDFI golden export"}
    for out, msg in cases.items():
        assert _golden_cli(photo, out) == 2, out
        err = capsys.readouterr().err
        assert err.startswith("mdfi: error: ") and len(err.strip().splitlines()) == 1 and msg in err, err
    assert a_file.read_text() == "keep me\n" and _tree(foreign) == ["notes.txt"]
    # an error before writing (here: no such image) creates nothing, not even the parents
    assert main(["golden", str(tmp_path / "nope.png"), "-o", str(tmp_path / "new" / "deep" / "g"), *MINI_ARGS]) == 2
    assert "nope.png" in capsys.readouterr().err and not (tmp_path / "new").exists()
    if os.geteuid() != 0:                             # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert _golden_cli(photo, ro / "g") == 2
            assert "permission denied" in capsys.readouterr().err
        finally:
            ro.chmod(0o700)


def test_an_earlier_export_is_replaced_whole(photo, tmp_path, capsys):
    out = tmp_path / "g"
    assert _golden_cli(photo, out, "--layers", "0-3", "--format", "hex,dat") == 0
    assert (out / "l001.out.dat").exists()
    assert _golden_cli(photo, out, "--layers", "5") == 0
    names = _tree(out)
    assert "l001.out.dat" not in names and "l005.out.hex" in names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]       # no partial/old folders left
    (out / "my-notes.txt").write_text("x")
    assert _golden_cli(photo, out) == 2
    assert "not part of its earlier MDFI export (my-notes.txt)" in capsys.readouterr().err


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_export_leaves_nothing_half_written(mini, photo, tmp_path, monkeypatch, exc):
    out = tmp_path / "g"
    golden.export(mini, str(photo), str(out), layers=[0], thresh=0.95)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = golden._Writer.tensor

    def failing(self, f, arr):
        calls["n"] += 1
        if calls["n"] == 20:
            raise exc
        return real(self, f, arr)
    monkeypatch.setattr(golden._Writer, "tensor", failing)
    if isinstance(exc, OSError):
        with pytest.raises(MDFIError, match="no space left on the device .*nothing was changed"):
            golden.export(mini, str(photo), str(out), thresh=0.95)
    else:
        with pytest.raises(KeyboardInterrupt):
            golden.export(mini, str(photo), str(out), thresh=0.95)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before        # the earlier export, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["g"]                      # the partial folder is gone


def test_file_size_limit_in_a_child_is_one_line_and_cleans_up(photo, tmp_path):
    """A real write error (EFBIG under RLIMIT_FSIZE, as a full disk would give ENOSPC)."""
    resource = pytest.importorskip("resource")
    out = tmp_path / "g"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    r = run_python(["-m", "mdfi", "golden", str(photo), "-o", str(out), *MINI_ARGS, "--thresh", "0.95"],
                   cwd=tmp_path, preexec_fn=limit, timeout=300)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("mdfi: error: ") and "file too large" in last and "Traceback" not in r.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_golden_help_and_model_files(tmp_path, photo, capsys):
    """`mdfi golden --help` says that --model takes .mdfi files too, and it does."""
    with pytest.raises(SystemExit) as exc:
        main(["golden", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--model NAME|FILE.mdfi" in text and ".mdfi file" in text and "--dry-run" in text
    assert "--stages" in text and "default hex" in text
    model = tmp_path / "mini.mdfi"
    assert main(["quantize", *MINI_ARGS, "-o", str(model)]) == 0
    out = tmp_path / "g"
    assert main(["golden", str(photo), "--model", str(model), "-o", str(out), "--layers", "0",
                 "--stages", "out", "--thresh", "0.95"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["model"]["name"] == "mini-yolov3" and (out / "l000.out.hex").exists()
