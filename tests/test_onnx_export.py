"""benchmarks/onnx_export.py on AlexeyAB graphs: ``[route] groups`` (channel slices) and the
``scale_x_y`` yolo output, against MDFI's float path (skipped without onnx / onnxruntime)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import onnx_export  # noqa: E402

from mdfi.darknet.cfgfile import parse_cfg_text  # noqa: E402
from mdfi.darknet.network import Network  # noqa: E402
from mdfi.darknet.weights import random_weights  # noqa: E402

# yolov4-tiny's CSP block (route groups=2 group_id=1 of one input), plus a grouped route of two
# inputs with group_id=0 and one of three groups (AlexeyAB src/route_layer.c:80-96).
CFG = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=12
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=6
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-3
groups=2
group_id=0

[route]
layers=-4
groups=3
group_id=2

[route]
layers=-1,-2

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
scale_x_y=1.05
"""


def test_route_groups_and_scale_x_y_equal_mdfi_float(tmp_path):
    net = Network(parse_cfg_text(CFG, "groups.cfg"), "groups.cfg", warn=False, darknet="alexeyab")
    random_weights(net, seed=5)
    routes = [l for l in net.layers if l.kind == "route"]
    assert [(l.groups, l.group_id) for l in routes] == [(2, 1), (2, 0), (3, 2), (1, 0)]
    assert [l.out_shape[0] for l in routes] == [6, 9, 4, 13]      # 12/2; (6+12)/2; 12/3; 9+4
    model = onnx_export.to_onnx(net)
    slices = [n for n in model.graph.node if n.op_type == "Slice"]
    assert len(slices) == 4                                        # one per grouped input
    path = tmp_path / "groups.onnx"
    import onnx
    onnx.save(model, str(path))
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.random((3, 32, 32)).astype(np.float32)
        assert onnx_export.check_float(net, str(path), x) <= 1e-4   # raises above 1e-4


def test_route_slices_are_the_group_id_th_of_groups_equal_chunks(tmp_path):
    """Independently of MDFI's route layer: the exported route of one input, run by ONNX
    Runtime, is channels [gid*C/g, (gid+1)*C/g) of its input (written out here by hand)."""
    import onnx
    from onnx import helper
    net = Network(parse_cfg_text(CFG, "groups.cfg"), "groups.cfg", warn=False, darknet="alexeyab")
    random_weights(net, seed=6)
    model = onnx_export.to_onnx(net)
    model.graph.output.extend([helper.make_empty_tensor_value_info("l000_leaky"),
                               helper.make_empty_tensor_value_info("l004_slice0")])
    path = tmp_path / "groups.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(2).random((1, 3, 32, 32)).astype(np.float32)
    conv0, route4 = onnx_export.session(str(path), 1).run(["l000_leaky", "l004_slice0"], {"input": x})
    assert conv0.shape[1] == 12
    np.testing.assert_array_equal(route4, conv0[:, 8:12])                 # groups=3, group_id=2


GROUPED_CFG = """
[net]
width=24
height=24
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
groups=4
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
groups=32
activation=relu

[convolutional]
size=1
stride=1
pad=1
filters=14
groups=2
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
"""


@pytest.mark.parametrize("darknet", ["pjreddie", "alexeyab"])
def test_grouped_convolutions_equal_onnx_runtime(tmp_path, darknet):
    """Grouped convolutions (groups 4, depthwise 32 of 32, a grouped 1x1 head) against ONNX
    Runtime's Conv with ``group=`` (an implementation independent of MDFI's)."""
    import onnx
    net = Network(parse_cfg_text(GROUPED_CFG, "grouped.cfg"), "grouped.cfg", warn=False, darknet=darknet)
    random_weights(net, seed=8)
    assert [l.groups for l in net.layers if l.kind == "convolutional"] == [1, 4, 32, 2]
    model = onnx_export.to_onnx(net)
    assert [a.i for n in model.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"] == \
        [1, 4, 32, 2]
    path = tmp_path / "grouped.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(3)
    for _ in range(3):
        assert onnx_export.check_float(net, str(path), rng.random((3, 24, 24)).astype(np.float32)) <= 1e-5


@pytest.mark.parametrize("cfg,npz,tol", [("mini-enet.cfg", "mini-enet_astronaut_layers.npz", 1e-5),
                                         ("enet-coco-128.cfg", "enet-coco-128_astronaut_selected_layers.npz", 1e-4)])
def test_enet_layers_equal_onnx_runtime(tmp_path, cfg, npz, tol):
    """[avgpool] (GlobalAveragePool), [scale_channels] / [sam] (Mul with broadcasting), swish and
    mish, and AlexeyAB's shortcut over the common channels of maps with different channel counts
    (enet-coco's layer 140: 128 + the first 128 of 576; Slice and Add) against ONNX Runtime."""
    import onnx
    sys.path.insert(0, str(Path(__file__).parent))
    from alexeyab_data import ENET, random_network
    net = random_network(ENET, cfg, darknet="alexeyab")
    model = onnx_export.to_onnx(net)
    ops = {n.op_type for n in model.graph.node}
    assert {"GlobalAveragePool", "Mul", "Sigmoid"} <= ops
    path = tmp_path / "enet.onnx"
    onnx.save(model, str(path))
    assert onnx_export.check_float(net, str(path), np.load(ENET / npz)["input"]) <= tol
