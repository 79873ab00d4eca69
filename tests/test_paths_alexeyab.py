"""Issue 12, "every SIMD path bit-identical to the reference on whole networks ... and the newer
models as they land": the AlexeyAB-lineage models on *every* convolution path this CPU runs.

tests/test_alexeyab_fixed.py proves the C engine equal to the NumPy integer reference on these
models with the automatically chosen path (and scalar once); here each model runs once per
path of ``_conv.PATHS`` (scalar, scalar8, avx2, avx512bw, avxvnni, avx512vnni, amx, ... —
skipped, naming the missing feature, where the CPU lacks it), every layer compared with
``array_equal``:

* yolov4-tiny, real 10-class weights (route groups, CSP blocks, two scale_x_y heads), 8-bit,
  without and with zero points (the default a model without recipe gets since round 25);
* yolov7-tiny (the fixture's seeded random weights at 192x192: logistic-table head
  convolutions, new_coords heads, SPP max pools);
* mini-alexeyab (every table activation, shortcuts between channel counts) at 8, 16 (acc64, the
  split path of 16-bit layers) and 5 bits, and golden_nets' every-kind network with mixed
  8/12-bit layers;
* mini-grouped (grouped convolutions: groups 8, 4, 32 and depthwise, strided, 1x1, with swish
  and mish tables; tests/test_grouped.py) at 8 bits with and without zero points, 16 and 5 bits;
* Yolo-Fastest 1.1 at 160x160 (seeded random weights; depthwise 3x3 and 5x5 layers, [dropout]) at
  8 bits with zero points;
* mini-enet ([avgpool], [scale_channels] per channel and per position, [sam]; tests/test_enet.py)
  at 8 bits with and without zero points, 16 and 5 bits, and AlexeyAB's enet-coco.cfg
  (EfficientNet-B0 + YOLOv3 head: 16 squeeze-and-excitation blocks) at 128x128 at 8 bits.

The aarch64 twin (NEON, neondot, under qemu): tests/test_aarch64.py's runner tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from mdfi._ext import _conv
from mdfi.cengine import CRunner
from mdfi.quant.quantize import input_to_u8, quantize_network

from alexeyab_data import AB, V7, astronaut_input, random_network, tiny_network
from test_cengine import _on_path

MINI = AB / "mini-alexeyab.cfg"


def _case(qm, x_u8):
    return qm, x_u8, qm.forward_ref(x_u8)


@pytest.fixture(scope="module")
def cases():
    """Built on first use (each model's NumPy reference once for all paths)."""
    store = {}

    def get(name):
        if name not in store:
            store[name] = BUILDERS[name]()
        return store[name]
    return get


def _v4tiny(zero_points: bool):
    net = tiny_network()
    kw = dict(act_method="mse", zero_points=True) if zero_points else {}
    qm = quantize_network(net, per_channel=True, cfg_text="", **kw)
    if zero_points:
        assert any(ql.out_fmt.zero for ql in qm.layers), "no zero point was chosen"
    return _case(qm, input_to_u8(astronaut_input(net)))


def _v7tiny():
    net = random_network(V7, "yolov7-tiny-192.cfg")
    qm = quantize_network(net, cfg_text="")
    assert sum(bool(getattr(ql, "lut", False)) for ql in qm.layers) == 3
    return _case(qm, input_to_u8(astronaut_input(net)))


def _mini(bits: int, rounding: str):
    from test_c_runner import _random_net
    text = MINI.read_text()
    net = _random_net(text, MINI.name, bits)
    qm = quantize_network(net, wbits=bits, abits=bits, per_channel=True, rounding=rounding, cfg_text=text)
    x = np.random.default_rng(bits).integers(0, 256, net.input_shape).astype(np.uint8)
    return _case(qm, x)


def _every_kind():
    from golden_nets import alexeyab_model
    _, qm = alexeyab_model(bits=8, rounding="truncate", layer_abits={3: 12, 8: 12})
    x = np.random.default_rng(7).integers(0, 256, qm.network.input_shape).astype(np.uint8)
    return _case(qm, x)


def _grouped(**kw):
    from test_grouped import mini_network
    net = mini_network()
    qm = quantize_network(net, per_channel=True, cfg_text="", **kw)
    x = np.random.default_rng(5).integers(0, 256, net.input_shape).astype(np.uint8)
    return _case(qm, x)


def _yolo_fastest():
    from alexeyab_data import GROUPED
    net = random_network(GROUPED, "yolo-fastest-1.1-160.cfg")
    qm = quantize_network(net, per_channel=True, cfg_text="", act_method="mse", zero_points=True)
    return _case(qm, input_to_u8(astronaut_input(net)))


def _enet(cfg="mini-enet.cfg", seed=11, **kw):
    from alexeyab_data import ENET
    net = random_network(ENET, cfg)
    qm = quantize_network(net, per_channel=True, cfg_text="", **kw)
    x = np.random.default_rng(seed).integers(0, 256, net.input_shape).astype(np.uint8)
    return _case(qm, x)


BUILDERS = {
    "yolov4-tiny-10c": lambda: _v4tiny(False),
    "yolov4-tiny-10c-zp": lambda: _v4tiny(True),
    "yolov7-tiny-192": _v7tiny,
    "mini-alexeyab-8": lambda: _mini(8, "half_up"),
    "mini-alexeyab-16": lambda: _mini(16, "half_up"),
    "mini-alexeyab-5": lambda: _mini(5, "truncate"),
    "every-kind-8-12": _every_kind,
    "mini-grouped-8": lambda: _grouped(),
    "mini-grouped-zp": lambda: _grouped(act_method="mse", zero_points=True),
    "mini-grouped-16": lambda: _grouped(wbits=16, abits=16),
    "mini-grouped-5": lambda: _grouped(wbits=5, abits=5, rounding="truncate"),
    "yolo-fastest-160-zp": _yolo_fastest,
    "mini-enet-8": lambda: _enet(),
    "mini-enet-zp": lambda: _enet(act_method="mse", zero_points=True),
    "mini-enet-16": lambda: _enet(wbits=16, abits=16),
    "mini-enet-5": lambda: _enet(wbits=5, abits=5, rounding="truncate"),
    "enet-coco-128": lambda: _enet("enet-coco-128.cfg", 12),
}


@pytest.mark.parametrize("model", list(BUILDERS))
@pytest.mark.parametrize("path", _conv.PATHS)
def test_alexeyab_models_every_path(path, model, cases):
    if path not in _conv.available_simd_paths():
        pytest.skip(f"path {path} not available on this CPU/build ({_conv.cpu_features()})")
    qm, x, ref = cases(model)
    out = _on_path(path, lambda: CRunner(qm, 2).run(x))
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if a.shape != b.shape or not np.array_equal(a, b)]
    assert not bad, f"{model} on {path}: layers differ: {bad}"


@pytest.mark.parametrize("model", list(BUILDERS))
def test_routes_in_place_give_the_same_heads(model, cases):
    """run(keep="needed") places route inputs in their route's buffer and makes one-input routes
    views (mdfi/cengine.py _plan_inplace_routes): the heads equal the NumPy reference's, run
    after run with alternating inputs (a stale or overlapping slice would show), at 1 and 2
    threads; and the routes of these models are really elided."""
    qm, x, ref = cases(model)
    x2 = np.random.default_rng(99).integers(0, 256, x.shape).astype(np.uint8)
    ref2 = qm.forward_ref(x2)
    heads = [l.index for l in qm.network.output_layers()]
    routes = [ql.index for ql in qm.layers if ql.kind == "route"]
    for threads in (1, 2):
        runner = CRunner(qm, threads)
        if model.startswith(("yolov4", "yolov7")):
            assert len(runner._placed) >= len(routes) // 2, (runner._placed, routes)
        for want, inp in ((ref, x), (ref2, x2), (ref, x)):
            got = runner.run(inp, keep="needed")
            assert all(np.array_equal(got[h], want[h]) for h in heads), model
