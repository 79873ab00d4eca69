"""Darknet lineages and the cfg key audit (mdfi/darknet/lineage.py, mdfi/darknet/cfgkeys.py, docs/darknet.md).

* every shipped and fixture cfg parses, with the expected lineage, without a key left
  unread (no "unused key" warning) and with a fixed-point implementation of every layer;
* the audit table in docs/darknet.md is the one the code applies;
* detection markers, the explicit override, and the refusals: keys that change the
  arithmetic, keys only the other lineage reads, activations the lineage does not know.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from mdfi.darknet import cfgkeys
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import CfgError
from mdfi.darknet.network import Network
from mdfi.quant.quantize import fixed_point_refusal

SHIPPED = sorted((REPO / "cfg").glob("*.cfg"))
FIXTURE_CFGS = sorted(FIXTURES.rglob("*.cfg"))
EXPECTED = {"yolov4-tiny": "alexeyab", "yolov4": "alexeyab", "yolov7-tiny": "alexeyab", "yolov3-tiny": "pjreddie",
            "yolov3": "pjreddie", "yolov3-spp": "pjreddie", "yolov2-tiny": "pjreddie", "mini-yolov3": "pjreddie",
            "yolov4-tiny-10c": "alexeyab", "yolov7-tiny-192": "alexeyab", "yolov4-192": "alexeyab",
            "mini-alexeyab": "alexeyab", "mini-grouped": "alexeyab", "yolo-fastest-1.1": "alexeyab",
            "yolo-fastest-1.1-xl": "alexeyab", "yolo-fastest-1.1-160": "alexeyab",
            "mini-enet": "alexeyab", "enet-coco-128": "alexeyab",
            # AlexeyAB's cfg without an AlexeyAB-only key: detected as pjreddie (docs/darknet.md)
            "csresnext50-panet-spp-96": "pjreddie"}


@pytest.mark.parametrize("path", SHIPPED + FIXTURE_CFGS, ids=lambda p: p.name)
def test_every_shipped_and_fixture_cfg(path, capsys):
    net = Network.from_cfg(path)
    assert "unused key" not in capsys.readouterr().err
    assert net.darknet == EXPECTED[path.stem]
    assert fixed_point_refusal(net) == ""


def test_shipped_alexeyab_cfgs_are_the_80_class_coco_models():
    for name, size, kind in (("yolov4-tiny", 416, "greedynms"), ("yolov4", 608, "greedynms"),
                             ("yolov7-tiny", 416, "diounms")):
        net = Network.from_cfg(REPO / "cfg" / f"{name}.cfg", warn=False)
        assert (net.width, net.height) == (size, size) and not net.letter_box
        assert {l.classes for l in net.output_layers()} == {80}
        assert net.nms_settings()[0] == kind
    from mdfi import zoo
    for name in ("yolo-fastest-1.1", "yolo-fastest-1.1-xl"):     # depthwise convolutions, [dropout]
        net = Network.from_cfg(zoo.cfg_path(name), warn=False)
        assert zoo.get_spec(name).size == 20 + 4 * net.num_params() and zoo.get_spec(name).sha256
        assert {l.groups for l in net.layers if l.kind == "convolutional"} > {1}
        assert sum(l.describe().startswith("dropout") for l in net.layers) >= 18
    for name in ("yolov4-tiny", "yolov4", "yolov7-tiny"):
        spec = zoo.get_spec(name)
        net = Network.from_cfg(zoo.cfg_path(name), warn=False)
        assert spec.size == 20 + 4 * net.num_params()         # size follows from the cfg
        assert spec.urls
        # yolov4-tiny's checksum is the official file's (its PyPI copy was verified against it)
        assert (spec.sha256 is None) == (name != "yolov4-tiny")


def test_docs_list_the_audit_the_code_applies():
    doc = (REPO / "docs" / "darknet.md").read_text()
    start = doc.index("<!-- cfgkeys-audit")
    block = doc[doc.index("\n", start) + 1:doc.index("<!-- /cfgkeys-audit -->")]
    assert block == cfgkeys.markdown()


def test_audit_covers_every_key_the_layers_read():
    """Parsing the shipped cfgs marks keys read by the layer modules; each of those must be
    in the audit as implemented (so the audit cannot silently miss a key MDFI uses)."""
    for path in SHIPPED + FIXTURE_CFGS:
        net = Network.from_cfg(path, warn=False)
        from mdfi.darknet.cfgfile import read_cfg
        secs = read_cfg(path)
        Network(secs, str(path), warn=False)
        for sec in secs:
            for key, opt in sec.options.items():
                assert opt.used, (path.name, sec.name, key)
                k = cfgkeys.lookup(sec.name, key)
                assert k is not None, (path.name, sec.name, key)


def _net(body: str, darknet=None, head="[net]\nwidth=32\nheight=32\nchannels=3\n"):
    return Network(parse_cfg_text(head + body, "t.cfg"), "t.cfg", warn=False, darknet=darknet)


CONV = "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"


@pytest.mark.parametrize("body, marker", [
    (CONV + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n", "groups"),
    ("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\n", "activation=mish"),
    (CONV + CONV + "[shortcut]\nfrom=-1,-2\n", "several layers"),
    ("[convolutional]\nfilters=4\nsize=3\nstride_x=2\nstride_y=1\npad=1\nactivation=leaky\n", "stride_x"),
])
def test_alexeyab_markers(body, marker):
    net = _net(body)
    assert net.darknet == "alexeyab" and marker in net.darknet_reason and "t.cfg:" in net.darknet_reason


def test_net_keys_mark_the_lineage_too():
    net = Network(parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\nmosaic=1\n" + CONV, "t.cfg"), "t.cfg",
                  warn=False)
    assert net.darknet == "alexeyab" and "mosaic" in net.darknet_reason
    assert _net(CONV).darknet == "pjreddie" and _net(CONV).letter_box
    lb = Network(parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\nletter_box=1\n" + CONV, "t.cfg"), "t.cfg")
    assert lb.darknet == "alexeyab" and lb.letter_box


def test_override_and_its_refusals():
    assert _net(CONV, "alexeyab").darknet == "alexeyab" and not _net(CONV, "alexeyab").letter_box
    with pytest.raises(CfgError, match=r"only AlexeyAB's Darknet reads this key .*parser.c:1091.*--darknet alexeyab"):
        _net(CONV + "[route]\nlayers=-1\ngroups=2\n", "pjreddie")
    with pytest.raises(CfgError, match="pjreddie's Darknet does not know it"):
        _net("[convolutional]\nfilters=4\nactivation=mish\n", "pjreddie")
    with pytest.raises(CfgError, match="only pjreddie's Darknet reads this key"):
        _net(CONV + CONV + "[shortcut]\nfrom=-2\nalpha=0.5\n", "alexeyab")
    _net(CONV + CONV + "[shortcut]\nfrom=-2\nalpha=1\n", "alexeyab")      # the default is harmless
    with pytest.raises(CfgError, match="darknet='foo'"):
        _net(CONV, "foo")


@pytest.mark.parametrize("body, words", [
    (CONV + "dontload=1\n", "dontload=1: not supported by MDFI: the layer's weights are skipped"),
    ("[convolutional]\nfilters=4\nantialiasing=1\nactivation=mish\n", "antialiasing=1"),
    ("[convolutional]\nfilters=4\nflipped=1\n", "flipped=1"),
    ("[convolutional]\nfilters=4\nshare_index=0\nactivation=mish\n", "share_index=0"),
    (CONV + "[maxpool]\nsize=2\nstride=2\nantialiasing=1\n", "antialiasing=1"),
    (CONV + CONV + "[shortcut]\nfrom=-2\nweights_type=per_channel\nweights_normalization=softmax\n",
     "weights_normalization=softmax"),
    (CONV + "[route]\nlayers=-1\ngroups=3\n", "not divisible by 3"),
    (CONV + "[route]\nlayers=-1\ngroups=2\ngroup_id=2\n", "group_id=2"),
    (CONV + CONV + "[shortcut]\nfrom=-2\nactivation=relu6\nweights_type=none\n", "computes 0 there"),
    ("[convolutional]\nfilters=4\nsize=3\ndilation=2\nactivation=mish\n", "dilation=2"),
    ("[convolutional]\nfilters=4\nsize=1\nstride_x=1\nstride_y=2\nactivation=mish\n", "unstrided"),
    (CONV + "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n[yolo]\nmask=0,1\nnum=2\nclasses=2\n"
     "nms_kind=cornersnms\n", "nms_kind=cornersnms"),
])
def test_refusals_name_the_key_and_why(body, words):
    with pytest.raises(CfgError) as ei:
        _net(body, "alexeyab")
    msg = str(ei.value)
    assert words in msg and "t.cfg:" in msg


def test_training_keys_are_ignored_silently(capsys):
    body = ("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\nassisted_excitation=1\nstopbackward=1\n"
            "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n[yolo]\nmask=0,1\nnum=2\nclasses=2\n"
            "iou_loss=ciou\ncounters_per_class=1,2\nmax_delta=5\njitter=.3\n")
    net = Network(parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\nmosaic=1\nema_alpha=0.99\n" + body, "t.cfg"),
                  "t.cfg")
    assert net.darknet == "alexeyab"
    assert capsys.readouterr().err == ""
    Network(parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\n" + CONV + "frobnicate=1\n", "t.cfg"), "t.cfg")
    assert "unused key 'frobnicate'" in capsys.readouterr().err


def test_float_semantics_differ_where_darknet_does():
    """The same cfg and weights give pjreddie's or AlexeyAB's numbers by lineage: BN epsilon
    after vs inside the root (and AB's fused BN) and the logistic in double vs float."""
    from mdfi.darknet.weights import random_weights
    body = "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=logistic\n"
    a, b = _net(body, "pjreddie"), _net(body, "alexeyab")
    random_weights(a, 3)
    b.layers[0].set_params(np.concatenate([a.layers[0].biases, a.layers[0].scales, a.layers[0].rolling_mean,
                                           np.full(4, 1e-5, np.float32), a.layers[0].weights.reshape(-1)]))
    a.layers[0].rolling_variance = np.full(4, 1e-5, np.float32)
    x = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    ya, yb = a.forward_float(x)[0], b.forward_float(x)[0]
    # var = 1e-5: pjreddie divides by sqrt(1e-5) + 1e-6, AlexeyAB by sqrt(2e-5): 1.4x apart
    assert np.abs(ya - yb).max() > 0.01
