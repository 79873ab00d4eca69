"""Dataset-scale jobs (docs/scale.md): exact merging of statistics, resumable results files,
and the same bytes whichever way a job runs -- one process, local worker processes, a Dask
``LocalCluster`` (those tests skip when dask[distributed] is not installed)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DARKNET, skimage_image
from mdfi.scale import pipeline
from mdfi.quant.calibrate import TensorStats, _exact_from_text, _exact_to_text
from mdfi.cli import main
from mdfi.errors import MDFIError
from mdfi.scale.imagejobs import folder_names, list_inputs

MINI = DARKNET / "mini-yolov3"
MINI_ARGS = ["--cfg", str(MINI / "mini-yolov3.cfg"), "--weights", str(MINI / "mini-yolov3.weights")]
NO_DASK = "dask[distributed] is not installed (pip install '.[cluster]')"


# ============================================================================ exact statistics


def _stats(parts):
    s = TensorStats()
    for x in parts:
        s.update(x)
        s.update_channels(x)
    return s


def _parts(seed=1, n=12):
    rng = np.random.default_rng(seed)
    # per-image (C,H,W) tensors with a wide dynamic range per channel: float64 sums of them
    # depend on the order of the additions
    parts = [(rng.standard_normal((4, 8, 8)) * 10.0 ** rng.integers(-8, 9, (4, 1, 1))).astype(np.float32)
             for _ in range(n)]
    parts[3][0, 0, 0] = -0.0
    parts[5][:] = np.abs(parts[5])
    parts[5][1, 2, 3] = 0.0
    return parts


def test_tensorstats_merge_is_exact_associative_and_commutative():
    parts = _parts()
    ref = _stats(parts)
    ref_json = json.dumps(ref.to_dict())
    rng = np.random.default_rng(7)
    for _ in range(25):
        order = rng.permutation(len(parts))
        cuts = sorted(rng.choice(np.arange(1, len(parts)), size=int(rng.integers(1, 7)), replace=False))
        pieces = [_stats([parts[i] for i in g]) for g in np.split(order, cuts)]
        while len(pieces) > 1:                      # merge as a random tree
            i = int(rng.integers(len(pieces) - 1))
            a, b = pieces.pop(i), pieces.pop(i)
            pieces.insert(i, a.merge(b) if rng.random() < 0.5 else b.merge(a))
        assert json.dumps(pieces[0].to_dict()) == ref_json
        assert pieces[0].to_dict(exact=True) == ref.to_dict(exact=True)
    # The test can fail: plain float64 sums of the same per-image sums depend on the order.
    sums = [x.reshape(4, -1).sum(axis=1, dtype=np.float64) for x in parts]
    fwd, rev = np.zeros(4), np.zeros(4)
    for s in sums:
        fwd = fwd + s
    for s in sums[::-1]:
        rev = rev + s
    assert not np.array_equal(fwd, rev)
    # exact sum, rounded once
    exact = [sum(__import__("fractions").Fraction(float(s[c])) for s in sums) for c in range(4)]
    assert ref.channel_sum.tolist() == [float(e) for e in exact]


def test_negative_zero_does_not_depend_on_merge_order():
    a = np.array([[[-0.0, 1.0]]], np.float32)        # min is -0.0
    b = np.array([[[0.0, 2.0]]], np.float32)         # min is 0.0
    ab, ba = _stats([a]).merge(_stats([b])), _stats([b]).merge(_stats([a]))
    assert json.dumps(ab.to_dict()) == json.dumps(ba.to_dict())
    assert repr(ab.min) == "0.0"


def test_exact_form_round_trips():
    rng = np.random.default_rng(3)
    st = _stats(_parts(5, 6))
    back = TensorStats.from_dict(json.loads(json.dumps(st.to_dict(exact=True))))
    assert back.to_dict(exact=True) == st.to_dict(exact=True) and back == st
    for v in [0, 1, -1, 3 << 1000, -(5 << 3)] + [int(x) for x in rng.integers(-2**62, 2**62, 20)]:
        assert _exact_from_text(_exact_to_text(v), "t") == v
    assert _exact_to_text(3 << 1072) == "3p-2"
    for bad in ["", "p", "zz", "1p99999", "0p3", "1p-2000", 5, None, "1" * 800]:
        with pytest.raises(ValueError):
            _exact_from_text(bad, "t")
    d = st.to_dict(exact=True)
    d["channel_mean"] = [0.0] * 4
    with pytest.raises(ValueError, match="not both"):
        TensorStats.from_dict(d)


# ============================================================================ inputs, results files


def test_list_inputs_folder_list_and_single(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for n in ("b.jpg", "a.png"):
        (imgs / n).write_bytes(b"x")
    (imgs / "notes.txt").write_text("x")
    (imgs / "sub.png").mkdir()
    assert list_inputs(str(imgs)) == [("a.png", str(imgs / "a.png")), ("b.jpg", str(imgs / "b.jpg"))]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n\nimgs/a.png\n  {imgs / 'b.jpg'}  \n")
    assert list_inputs(str(lst)) == [("imgs/a.png", str(tmp_path / "imgs" / "a.png")),
                                      (str(imgs / "b.jpg"), str(imgs / "b.jpg"))]
    assert list_inputs(str(imgs / "a.png")) == [("a.png", str(imgs / "a.png"))]
    lst.write_text("imgs/a.png\nimgs/a.png\n")
    with pytest.raises(MDFIError, match=r"list.txt:2: 'imgs/a.png' is listed twice"):
        list_inputs(str(lst))
    lst.write_text("# nothing\n")
    with pytest.raises(MDFIError, match="names no images"):
        list_inputs(str(lst))
    with pytest.raises(MDFIError, match="no such image folder"):
        list_inputs(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MDFIError, match="no image files"):
        list_inputs(str(tmp_path / "empty"))


def test_folder_names_are_safe_and_unique():
    names = folder_names(["a/x.png", "b/x.png", "X.jpg", "y.png", "../.hidden.png", "index.png", "dir/ü.png"])
    assert len(set(n.lower() for n in names.values())) == len(names)
    assert names["y.png"] == "y"
    for k in ("a/x.png", "b/x.png", "X.jpg", "index.png"):
        assert names[k].rsplit("-", 1)[0] in ("x", "X", "index") and len(names[k].rsplit("-", 1)[1]) == 8
    assert names["../.hidden.png"] == "_.hidden" and names["dir/ü.png"] == "_"
    assert all("/" not in n and n not in (".", "..") for n in names.values())


def test_results_file_resumes_drops_a_cut_line_and_refuses_another_job(tmp_path):
    path = tmp_path / "r.jsonl"
    rf = pipeline.ResultsFile(str(path), {"job": "eval", "digest": "abc"})
    rf.write(pipeline.canonical({"image": "a.png", "v": 1}))
    rf.write(pipeline.canonical({"image": "b.png", "v": 2}))
    rf.close()
    with open(path, "a") as fh:
        fh.write('{"image":"c.png","v"')             # a crash in the middle of a line
    rf = pipeline.ResultsFile(str(path), {"job": "eval", "digest": "abc"})
    assert rf.done == {"a.png", "b.png"}
    rf.write(pipeline.canonical({"image": "c.png", "v": 3}))
    rf.close()
    assert [r["image"] for r in rf.records()] == ["a.png", "b.png", "c.png"]
    before = path.read_bytes()
    with pytest.raises(pipeline.JobError, match="a eval job with other models or options"):
        pipeline.ResultsFile(str(path), {"job": "eval", "digest": "other"})
    other = tmp_path / "o.jsonl"
    other.write_text("hello\n")
    with pytest.raises(pipeline.JobError, match="not an MDFI results file"):
        pipeline.ResultsFile(str(other), {"job": "eval", "digest": "abc"})
    assert path.read_bytes() == before and other.read_text() == "hello\n"


def test_progress_rate_and_eta():
    import io
    t = [0.0]
    s = io.StringIO()
    p = pipeline.RateProgress(10, "eval", stream=s, clock=lambda: t[0], log_interval=0.0)
    for _ in range(4):
        t[0] += 0.5
        p.step()
    p.step(error=True)
    p.done()
    lines = s.getvalue().splitlines()
    assert lines[3] == "eval: 4/10 images, 2.00 images/s, ETA 3s"
    assert lines[4].endswith(", 1 error") and lines[-1] == "eval: 5 images in 2s (2.50 images/s), 1 error"


# ============================================================================ map_evaluations


def test_map_evaluations_same_results_every_way(tmp_path):
    import scale_helpers
    shared = {"factor": b"3"}
    tasks = list(range(7))
    want = [{"task": t, "value": 3 * t} for t in tasks]
    assert pipeline.map_evaluations(scale_helpers.setup, scale_helpers.evaluate, tasks, shared=shared,
                                    workers=1, label=None) == want
    assert pipeline.map_evaluations("scale_helpers:setup", "scale_helpers:evaluate", tasks, shared=shared,
                                    workers=2, label=None) == want
    with pytest.raises(pipeline.JobError, match="worker error on 1: RuntimeError: boom"):
        pipeline.map_evaluations(scale_helpers.setup, scale_helpers.evaluate, [1, "boom"], shared=shared,
                                 workers=1, label=None)
    with pytest.raises(pipeline.JobError, match="module-level functions"):
        pipeline.map_evaluations(lambda s, p, t: None, scale_helpers.evaluate, tasks, workers=1)
    with pytest.raises(pipeline.JobError, match="cannot be imported"):
        pipeline.map_evaluations("scale_helpers:nope", scale_helpers.evaluate, tasks, workers=1)


def test_corrupted_job_bytes_are_refused():
    job = pipeline.pack_job(pipeline.Job(name="t", setup="scale_helpers:setup", run="scale_helpers:run_with_pid",
                                         shared={"factor": b"3"}))
    bad = job.blob[:-1] + b"4"
    with pytest.raises(pipeline.JobError, match="factor: checksum mismatch"):
        pipeline.unpack_job(bad, job.digest)
    assert pipeline.run_batch(bad, job.digest, [{"key": "0", "task": 1}], 1) == {
        "failure": "job blob: factor: checksum mismatch (corrupted in transit?)"}


# ============================================================================ the CLI jobs, every way


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale_images")
    for name, size in (("astronaut.png", (96, 80)), ("chelsea.png", (120, 90)), ("coffee.png", (64, 100))):
        Image.fromarray(skimage_image(name)).resize(size).save(d / name)
    (d / "broken.jpg").write_bytes(b"not a jpeg at all")
    return d


@pytest.fixture(scope="module")
def dask_address():
    distributed = pytest.importorskip("distributed", reason=NO_DASK)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", memory_limit=0)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def deadline():
    """A hung cluster test fails after two minutes instead of hanging CI."""
    def fail(*_):
        raise TimeoutError("scale test took longer than 120 s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


MODES = ["workers2", "cluster", "cluster-ship", "local"]


def _mode_args(mode, request):
    if mode == "workers1":
        return ["--workers", "1"]
    if mode == "workers2":
        return ["--workers", "2"]
    if mode == "local":
        pytest.importorskip("distributed", reason=NO_DASK)
        return ["--cluster", "local", "--workers", "2"]
    address = request.getfixturevalue("dask_address")
    return ["--cluster", address] + (["--ship-images"] if mode == "cluster-ship" else [])


def _sorted_lines(path: Path):
    head, *rest = path.read_text().splitlines()
    return [head] + sorted(rest)


@pytest.fixture(scope="module")
def tiny160(tmp_path_factory, tiny_weights_path):
    """yolov3-tiny with its real weights at a 160x160 input: real detections, a fifth of the
    work of 416x416 (the eval tests run it a few times)."""
    import re
    from mdfi import zoo
    text = Path(zoo.cfg_path("yolov3-tiny")).read_text()
    text = re.sub(r"(?m)^height=\d+", "height=160", re.sub(r"(?m)^width=\d+", "width=160", text))
    cfg = tmp_path_factory.mktemp("tiny160") / "tiny160.cfg"
    cfg.write_text(text)
    return ["--cfg", str(cfg), "--weights", str(tiny_weights_path)]


def _run_eval(images, model_args, out: Path, mode_args, capsys, bits="8,w6a8"):
    assert main(["eval", "--images", str(images), *model_args, "--bits", bits, "--results", str(out), "--json",
                 *mode_args]) == 0
    cap = capsys.readouterr()
    return json.loads(cap.out), cap.err


@pytest.fixture(scope="module")
def eval_reference(images, tiny160, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_ref") / "ref.jsonl"
    assert main(["eval", "--images", str(images), *tiny160, "--bits", "8,w6a8", "--results", str(out),
                 "--workers", "1"]) == 0
    return out


@pytest.mark.parametrize("mode", ["workers2", "cluster"])
def test_eval_same_bytes_every_way(mode, images, tiny160, eval_reference, tmp_path, capsys, request, deadline):
    capsys.readouterr()
    out = tmp_path / "r.jsonl"
    report, err = _run_eval(images, tiny160, out, _mode_args(mode, request), capsys)
    assert _sorted_lines(out) == _sorted_lines(eval_reference)
    recs = [json.loads(l) for l in out.read_text().splitlines()[1:]]
    assert sorted(r["image"] for r in recs) == ["astronaut.png", "broken.jpg", "chelsea.png", "coffee.png"]
    assert "not an image" in next(r for r in recs if r["image"] == "broken.jpg")["error"]
    assert all(r["fixed"]["w8a8"] and r["saturation"]["w6a8"] for r in recs if "error" not in r)
    assert report["images"] == 3 and report["errors"][0]["image"] == "broken.jpg"
    assert set(report["agreement"]) == {"w8a8", "w6a8"} and set(report["saturation"]) == {"w8a8", "w6a8"}
    assert "eval: 4 images in" in err and "skipped broken.jpg" in err


def test_eval_resumes_after_an_interruption(images, tiny160, eval_reference, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "r.jsonl"
    lines = eval_reference.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:40])       # one result and a cut line
    report, err = _run_eval(images, tiny160, out, ["--workers", "1"], capsys)
    assert _sorted_lines(out) == _sorted_lines(eval_reference) and "1 done before" in err
    # a rerun has nothing left to do: the file does not change, the report is the same
    before = out.read_bytes()
    report2, err2 = _run_eval(images, tiny160, out, ["--workers", "2"], capsys)
    assert "time_ms" not in report2                 # nothing was run, so nothing was timed
    report.pop("time_ms", None)                     # (times differ from run to run)
    assert out.read_bytes() == before and report2 == report and "4 done before" in err2
    # other options: refused, the file is left alone
    assert main(["eval", "--images", str(images), *tiny160, "--bits", "8", "--results", str(out)]) == 2
    assert "holds a eval job with other models or options" in capsys.readouterr().err
    assert out.read_bytes() == before


@pytest.fixture(scope="module")
def calib_reference(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("calib_ref") / "ref.json"
    assert main(["calibrate", "--images", str(images), *MINI_ARGS, "--augment", "-o", str(out),
                 "--workers", "1"]) == 0
    return out


def test_calibrate_matches_sequential_collect(images, calib_reference, mini_net, tmp_path):
    from mdfi.quant import calibrate
    ok = [images / n for n in ("astronaut.png", "chelsea.png", "coffee.png")]
    calibrate.collect(mini_net, [str(p) for p in ok], progress=False, augment=True,
                      source=str(images)).to_json(tmp_path / "seq.json")
    assert (tmp_path / "seq.json").read_bytes() == calib_reference.read_bytes()
    # what was written is what is read back (the per-channel means included)
    calibrate.CalibStats.from_json(calib_reference).to_json(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == calib_reference.read_bytes()


@pytest.mark.parametrize("mode", MODES)
def test_calibrate_same_bytes_every_way(mode, images, calib_reference, tmp_path, capsys, request, deadline):
    out = tmp_path / "c.json"
    results = tmp_path / "c.jsonl"
    assert main(["calibrate", "--images", str(images), *MINI_ARGS, "--augment", "-o", str(out),
                 "--results", str(results), *_mode_args(mode, request)]) == 0
    assert out.read_bytes() == calib_reference.read_bytes()
    assert "calibrate: skipped broken.jpg" in capsys.readouterr().err
    assert len(results.read_text().splitlines()) == 5


@pytest.fixture(scope="module")
def golden_reference(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden_ref") / "g"
    assert main(["golden", "--images", str(images), *MINI_ARGS, "--thresh", "0.95", "--layers", "0,1,34",
                 "--format", "hex", "-o", str(out), "--workers", "1"]) == 0
    return out


def _tree(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "index.jsonl"}


@pytest.mark.parametrize("mode", ["workers2", "cluster"])
def test_golden_same_bytes_every_way(mode, images, golden_reference, tmp_path, request, deadline):
    out = tmp_path / "g"
    assert main(["golden", "--images", str(images), *MINI_ARGS, "--thresh", "0.95", "--layers", "0,1,34",
                 "--format", "hex", "-o", str(out), *_mode_args(mode, request)]) == 0
    assert _tree(out) == _tree(golden_reference)
    index = json.loads((out / "index.json").read_text())
    assert [e["image"] for e in index["images"]] == ["astronaut.png", "broken.jpg", "chelsea.png", "coffee.png"]
    assert index["exported"] == 3 and index["errors"] == 1
    for e in index["images"]:
        if "folder" in e:
            from mdfi.hw.verify import verify
            assert verify(str(out / e["folder"]), str(out / e["folder"])).exit_status == 0
    assert sorted(p.name for p in out.iterdir()) == [".shared-params", "astronaut", "chelsea", "coffee",
                                                     "index.json", "index.jsonl"]
    # the parameter files are one copy, hard-linked into each image's folder
    w = [out / f / "l000.weights.hex" for f in ("astronaut", "chelsea", "coffee")]
    assert len({p.stat().st_ino for p in w}) == 1 and w[0].stat().st_nlink == 4


def test_golden_refuses_a_foreign_folder(images, tmp_path, capsys):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "mine.txt").write_text("keep me")
    assert main(["golden", "--images", str(images), *MINI_ARGS, "-o", str(tmp_path / "g"), "--workers", "1"]) == 2
    assert "is not an `mdfi golden --images` folder" in capsys.readouterr().err
    assert (tmp_path / "g" / "mine.txt").read_text() == "keep me"


# ============================================================================ failures


def test_unreachable_scheduler_is_one_line(images, capsys):
    assert main(["eval", "--images", str(images), "--cluster", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mdfi: error: ")
    assert "Dask" in err
    assert main(["calibrate", "--images", str(images), "-o", "x.json", "--cluster", "not an address"]) == 2
    assert "expected 'local' or a Dask scheduler address" in capsys.readouterr().err


def test_killed_worker_still_gives_every_result_once(tmp_path, deadline):
    """Kill one worker process of a LocalCluster while it runs a task: the scheduler runs its
    tasks again elsewhere and every result arrives exactly once."""
    distributed = pytest.importorskip("distributed", reason=NO_DASK)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", memory_limit=0)
    try:
        with distributed.Client(cluster) as client:
            pids = sorted(client.run(os.getpid).values())
        job = pipeline.Job(name="kill", setup="scale_helpers:setup", run="scale_helpers:run_with_pid", batch=1,
                           shared={"factor": b"2"}, params={"dir": str(tmp_path), "delay": 0.4})
        calls = []
        killed = []

        def on_result(key, text):
            calls.append(json.loads(text))
            if not killed:
                victim = next(p for p in pids if p != calls[0]["pid"])   # busy with its next task
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        items = ({"key": str(i), "task": i} for i in range(10))
        pipeline.execute(job, items, on_result, cluster=cluster.scheduler_address)
    finally:
        cluster.close()
    assert sorted(int(c["image"]) for c in calls) == list(range(10))           # all, once each
    assert all(c["result"] == {"task": int(c["image"]), "value": 2 * int(c["image"])} for c in calls)
    by = {int(c["image"]): c["pid"] for c in calls}
    started = [f.name.split("-")[1:] for f in tmp_path.iterdir() if f.name.startswith("start-")]
    rerun = [int(t) for t, p in started if int(p) == killed[0] and by[int(t)] != killed[0]]
    assert rerun, f"the killed worker {killed[0]} was running none of the tasks: {started}"



def test_local_worker_death_reruns_its_batch(tmp_path, capfd):
    job = pipeline.Job(name="die", setup="scale_helpers:setup", run="scale_helpers:run_die_once", batch=2,
                       shared={"factor": b"5"}, params={"dir": str(tmp_path)})
    got = []
    pipeline.execute(job, ({"key": str(i), "task": i} for i in range(8)),
                     lambda key, text: got.append(json.loads(text)), workers=2)
    assert (tmp_path / "died").exists() and "a worker process died" in capfd.readouterr().err
    assert sorted((int(r["image"]), r["result"]) for r in got) == [(i, 5 * i) for i in range(8)]


def test_evaluate_models_api_for_searches(images, tiny160, tmp_path):
    """Candidates of a search (here: two rounding modes) evaluated in one pass over the images."""
    from mdfi.quant import calibrate
    from mdfi.eval.run import evaluate_models
    from mdfi.model import _float_network
    from mdfi.quant.quantize import quantize_network
    cfg, weights = tiny160[1], tiny160[3]
    net, names, *_ = _float_network(None, cfg, weights, None, True)
    calib = calibrate.estimate_from_batchnorm(net)
    models = {r: quantize_network(net, wbits=8, abits=8, rounding=r, calib=calib) for r in ("half_up", "truncate")}
    run = evaluate_models(cfg, weights, models, str(images), names=names, workers=2, progress=False)
    assert set(run.agreement) == {"half_up", "truncate"} and run.keys == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert run.errors[0][0] == "broken.jpg" and run.saturation == {}
    assert all(r.n_images == 3 for r in run.agreement.values())


def test_eval_keeps_the_most_confident_detections_per_image():
    """A width that has lost the model finds tens of thousands of boxes per image: the eval
    record keeps the most confident MAX_EVAL_DETECTIONS (bounded memory) and says how many
    were dropped; below the cap nothing changes."""
    from types import SimpleNamespace
    from mdfi.scale import imagejobs
    dets = [SimpleNamespace(confidence=c) for c in (0.1, 0.9, 0.5, 0.9, 0.3)]
    kept, dropped = imagejobs.top_detections(dets, 3)
    assert dropped == 2 and [d.confidence for d in kept] == [0.9, 0.5, 0.9]   # original order
    kept, dropped = imagejobs.top_detections(dets, 5)
    assert dropped == 0 and kept == dets
    assert imagejobs.MAX_EVAL_DETECTIONS >= 100                               # COCO keeps 100


def test_eval_record_reports_dropped_detections(monkeypatch, tmp_path):
    from types import SimpleNamespace
    from mdfi.scale import imagejobs
    monkeypatch.setattr(imagejobs, "MAX_EVAL_DETECTIONS", 2)
    many = [SimpleNamespace(class_id=0, confidence=c, box=(0.0, 0.0, 1.0, 1.0)) for c in (0.2, 0.8, 0.6)]
    model = SimpleNamespace(detect=lambda prep, **kw: list(many))
    ctx = {"params": {"gt_thresh": 0.25, "min_thresh": 0.005, "nms": 0.45, "stats": False},
           "float": SimpleNamespace(detect=lambda prep, **kw: many[1:2]), "fixed": {"w2a2": model}}
    rec = imagejobs.eval_infer(ctx, {"key": "a.jpg"}, SimpleNamespace(width=10, height=10))
    assert [d[1] for d in rec["fixed"]["w2a2"]] == [0.8, 0.6]
    assert rec["dropped"] == {"w2a2": 1} and len(rec["float"]) == 1


def test_eval_reports_the_time_of_each_width(images, tiny160, tmp_path, capsys):
    """`mdfi eval` says what each width costs in time on this machine (median per image, the
    ratio to w8a8, the CPU, engine, SIMD path and threads), and keeps the times out of the
    results file (its bytes do not depend on the run)."""
    from mdfi._ext import _conv
    capsys.readouterr()
    out = tmp_path / "r.jsonl"
    report, _ = _run_eval(images, tiny160, out, ["--workers", "1", "--no-stats"], capsys, bits="8,w4a8")
    med = report["time_ms"]["median"]
    assert set(med) == {"w8a8", "w4a8"} and all(v > 0 for v in med.values())
    (machine,) = report["time_ms"]["machines"]
    assert machine["engine"] == "c" and machine["path"] == _conv.simd_path() and machine["threads"] >= 1
    assert '"ms"' not in out.read_text() and '"machine"' not in out.read_text()
    assert main(["eval", "--images", str(images), *tiny160, "--bits", "8,w4a8", "--no-stats"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("time per image")][0]
    assert "median of 3" in line and f"({machine['path']})" in line and "x w8a8)" in line
