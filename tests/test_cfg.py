"""The cfg parser: shipped cfgs, Darknet's defaults, and errors that name file and line."""

from __future__ import annotations

import json

import pytest

from mdfi import zoo
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import CfgError, LimitError
from mdfi.darknet.network import Network

from conftest import DARKNET

# Published parameter counts (float32 values after the header of the official weights).
PARAMS = {"yolov3-tiny": 8_858_734, "yolov3": 62_001_757, "yolov3-spp": 63_052_381,
          "yolov2-tiny": 11_237_145}
# Detection-head shapes Darknet prints for the published cfgs at their [net] size.
HEADS = {"yolov3-tiny": [(255, 13, 13), (255, 26, 26)],
         "yolov3": [(255, 13, 13), (255, 26, 26), (255, 52, 52)],
         "yolov3-spp": [(255, 19, 19), (255, 38, 38), (255, 76, 76)],   # its cfg is 608x608
         "yolov2-tiny": [(425, 13, 13)]}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_shipped_cfg_params_and_heads(name):
    net = Network.from_cfg(zoo.cfg_path(name), warn=False)
    assert net.num_params() == PARAMS[name]
    assert [l.out_shape for l in net.output_layers()] == HEADS[name]


def _check_against_darknet_shapes(net, layers_json):
    spec = json.loads(layers_json.read_text())["layers"]
    assert len(spec) == len(net.layers)
    for layer, d in zip(net.layers, spec):
        assert layer.kind == d["type"], d
        assert layer.out_shape == (d["out_c"], d["out_h"], d["out_w"]), d
        if d["type"] == "convolutional":
            assert (layer.filters, layer.size, layer.stride, layer.padding) == \
                (d["filters"], d["size"], d["stride"], d["pad"])
            assert layer.batch_normalize == bool(d["batch_normalize"])
            assert layer.activation == d["activation"]
        if d["type"] == "maxpool":
            assert (layer.size, layer.stride, layer.padding) == (d["size"], d["stride"], d["pad"])
        if d["type"] == "route":
            assert layer.inputs == d["route_layers"]
        if d["type"] == "yolo":
            assert layer.mask == d["mask"]
            assert layer.anchors.reshape(-1).tolist() == d["anchors"]


def test_yolov3_tiny_shapes_match_darknet():
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"), warn=False)
    _check_against_darknet_shapes(net, DARKNET / "yolov3-tiny" / "dog_layers.json")


def test_mini_yolov3_shapes_match_darknet():
    net = Network.from_cfg(DARKNET / "mini-yolov3" / "mini-yolov3.cfg", warn=False)
    _check_against_darknet_shapes(net, DARKNET / "mini-yolov3" / "astronaut_layers.json")


def test_yolov3_structure():
    net = Network.from_cfg(zoo.cfg_path("yolov3"), warn=False)
    assert len(net.layers) == 107
    kinds = [l.kind for l in net.layers]
    assert kinds.count("shortcut") == 23 and kinds.count("yolo") == 3 and kinds.count("upsample") == 2
    assert net.layers[86].inputs == [85, 61]      # "layers = -1, 61": relative and absolute
    assert round(net.macs / 1e9, 2) == 32.93      # Darknet prints 65.864 BFLOPs = 2 x MACs


def test_yolov2_tiny_region():
    net = Network.from_cfg(zoo.cfg_path("yolov2-tiny"), warn=False)
    region = net.layers[-1]
    assert region.kind == "region" and region.softmax and region.n == 5 and region.classes == 80
    assert net.layers[11].out_shape == (512, 13, 13)  # size=2 stride=1 maxpool keeps 13x13


# -- syntax and defaults --------------------------------------------------------------------
BASE = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def net_of(text: str) -> Network:
    return Network(parse_cfg_text(BASE + text, "t.cfg"), "t.cfg", warn=False)


def test_comments_blank_lines_spaces_and_training_keys():
    net = net_of("""
# a comment
; another
[convolutional]
batch_normalize = 1
filters =  8   # inline comment
size= 3
stride =1
pad=1
activation = leaky
learning_rate=0.1

[maxpool]
size=2
stride=2
""")
    conv, pool = net.layers
    assert (conv.filters, conv.size, conv.padding, conv.activation) == (8, 3, 1, "leaky")
    assert pool.padding == 1 and pool.out_shape == (8, 16, 16)  # padding defaults to size-1


def test_darknet_defaults():
    net = net_of("[convolutional]\nfilters=4\n[maxpool]\nstride=2\n[upsample]\n")
    conv, pool, up = net.layers
    # conv: size=1, stride=1, no padding, activation=logistic (parse_convolutional defaults)
    assert (conv.size, conv.stride, conv.padding, conv.activation) == (1, 1, 0, "logistic")
    # maxpool: size defaults to stride, padding to size-1
    assert (pool.size, pool.stride, pool.padding) == (2, 2, 1)
    assert up.stride == 2 and up.out_shape == (4, 32, 32)


def test_route_multi_input_and_shortcut():
    net = net_of("""
[convolutional]
filters=4
[convolutional]
filters=6
[route]
layers=-1,0
[convolutional]
filters=4
[shortcut]
from=0
""")
    assert net.layers[2].inputs == [1, 0] and net.layers[2].out_shape == (10, 32, 32)
    assert net.layers[4].inputs == [3, 0]


def test_duplicate_key_first_wins(capsys):
    net = net_of("[convolutional]\nfilters=4\nfilters=8\n")
    assert net.layers[0].filters == 4
    assert "t.cfg:7: duplicate key 'filters'" in capsys.readouterr().err


# -- errors name file and line ----------------------------------------------------------------
@pytest.mark.parametrize("body, line, words", [
    ("[bogus]\n", 5, "unknown section [bogus]"),
    ("[connected]\noutput=10\n", 5, "does not support"),
    ("[convolutional]\nfilters=4\nactivation=swishy\n", 7, "unknown activation 'swishy'"),
    ("[convolutional]\nactivation=tanh\n", 6, "does not support"),
    ("[convolutional]\nfilters 4\n", 6, "malformed line"),
    ("[convolutional]\nfilters=four\n", 6, "expected an integer"),
    ("[route]\n", 5, "missing required key 'layers'"),
    ("[convolutional]\nfilters=4\n[route]\nlayers=-5\n", 8, "resolves to -4"),
    ("[convolutional]\nfilters=4\n[route]\nlayers=1\n", 8, "only layers 0..0"),
    # channel counts may differ (both lineages add the common channels); sizes may not
    # without an explicit lineage (pjreddie resamples, AlexeyAB adds by flat index)
    ("[convolutional]\nfilters=4\n[maxpool]\nsize=2\nstride=2\n[shortcut]\nfrom=-2\n", 11,
     "sizes differ"),
    ("[convolutional]\nfilters=4\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,0\n", 11,
     "shape mismatch"),
    ("[convolutional]\nfilters=10\n[yolo]\nmask=0,1\nclasses=80\nnum=2\n", 7, "needs 170"),
    ("[convolutional]\nfilters=4\nsize=64\n", 5, "kernel size"),
    ("[net]\n", 5, "may only be the first"),
    ("[convolutional\n", 5, "malformed section header"),
])
def test_errors_name_file_and_line(body, line, words):
    with pytest.raises((CfgError, LimitError)) as ei:
        net_of(body)
    msg = str(ei.value)
    assert words in msg
    if isinstance(ei.value, CfgError):
        assert msg.startswith(f"t.cfg:{line}:"), msg
    else:
        assert f"t.cfg:{line}" in msg


def test_first_section_must_be_net():
    with pytest.raises(CfgError, match=r"t.cfg:1: the first section must be \[net\]"):
        Network(parse_cfg_text("[convolutional]\nfilters=1\n", "t.cfg"), "t.cfg")


def test_missing_net_key():
    with pytest.raises(CfgError, match=r"t.cfg:1: \[net\]: missing required key 'channels'"):
        Network(parse_cfg_text("[net]\nwidth=8\nheight=8\n[maxpool]\n", "t.cfg"), "t.cfg")


def test_unreadable_cfg(tmp_path):
    with pytest.raises(CfgError, match="file not found"):
        Network.from_cfg(tmp_path / "nope.cfg")
    p = tmp_path / "bin.cfg"
    p.write_bytes(b"[net]\nwidth=\xff\xfe\n")
    with pytest.raises(CfgError, match=r"bin.cfg:2: not a text file"):
        Network.from_cfg(p)
    with pytest.raises(CfgError, match="is a directory"):
        Network.from_cfg(tmp_path)


def test_absurd_dimensions_refused_before_allocation():
    with pytest.raises(LimitError, match="MDFI_MAX_DIM"):
        Network(parse_cfg_text("[net]\nwidth=1000000\nheight=8\nchannels=3\n[maxpool]\n", "t.cfg"), "t.cfg")
    with pytest.raises(LimitError, match="MDFI_MAX_ACTIVATION_MB"):
        Network(parse_cfg_text("[net]\nwidth=30000\nheight=30000\nchannels=3\n"
                               "[convolutional]\nfilters=1024\n", "t.cfg"), "t.cfg")
