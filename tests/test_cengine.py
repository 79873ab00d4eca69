"""The C engine equals the NumPy integer reference, layer by layer, for whole networks.

Covers yolov3-tiny (real weights), the synthetic mini-yolov3 (stride-2 convs, shortcut,
SPP max-pools, 4-input route, three heads), yolov2-tiny's region softmax, and a reorg
network; widths 2..16, both rounding modes, per-layer and per-channel weight formats,
1/2/3 threads, and SIMD vs the portable scalar path.
"""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import zoo
from mdfi._ext import _conv
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.cengine import CRunner
from mdfi.darknet.network import Network
from mdfi.quant.quantize import input_to_u8, quantize_network
from mdfi.darknet.weights import random_weights

from conftest import DARKNET
from golden_nets import REORG_NET


def assert_layers_equal(qm, x, threads=2):
    ref = qm.forward_ref(x)
    out = CRunner(qm, threads).run(x)
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if a.shape != b.shape or not np.array_equal(a, b)]
    assert not bad, f"layers differ: {bad}"


@pytest.fixture(scope="module")
def dog_u8():
    return input_to_u8(np.load(DARKNET / "yolov3-tiny" / "dog_heads.npz")["input"])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_yolov3_tiny_8bit_all_layers(tiny_net, dog_u8, threads):
    import mdfi
    qm = mdfi.load("yolov3-tiny", engine="ref").quantized
    assert_layers_equal(qm, dog_u8, threads)


def test_yolov3_tiny_scalar_path_equals_simd(tiny_net, dog_u8):
    import mdfi
    qm = mdfi.load("yolov3-tiny", engine="ref").quantized
    simd = CRunner(qm, 2).run(dog_u8)
    before = _conv.simd_path()
    try:
        assert _conv.set_simd_path("scalar") == "scalar"
        scalar = CRunner(qm, 2).run(dog_u8)
    finally:
        _conv.set_simd_path(before)
    assert all(np.array_equal(a, b) for a, b in zip(simd, scalar))


@pytest.fixture(scope="module")
def tiny_ref(tiny_net, dog_u8):
    import mdfi
    qm = mdfi.load("yolov3-tiny", engine="ref").quantized
    return qm, qm.forward_ref(dog_u8)


def _on_path(path, fn):
    """fn() with every kernel on `path` (skipped, naming the feature, where the CPU lacks it)."""
    if path not in _conv.available_simd_paths():
        pytest.skip(f"path {path} not available on this CPU/build ({_conv.cpu_features()})")
    before = _conv.simd_path()
    try:
        assert _conv.set_simd_path(path) == path
        return fn()
    finally:
        _conv.set_simd_path(before)


@pytest.mark.parametrize("path", _conv.PATHS)
def test_yolov3_tiny_every_path(path, tiny_ref, dog_u8):
    """Every code path, whole network, every layer equal to the NumPy reference."""
    qm, ref = tiny_ref
    out = _on_path(path, lambda: CRunner(qm, 2).run(dog_u8))
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
    assert not bad, f"{path}: layers differ: {bad}"


@pytest.fixture(scope="module")
def yolov3_small():
    """yolov3 (every layer kind and channel count of the real network) at 96x96 with generated
    weights, 8-bit, and its NumPy reference outputs."""
    text = zoo.cfg_path("yolov3").read_text()
    for key in ("width", "height"):
        text = "\n".join(f"{key}=96" if line.strip().startswith(f"{key}=") else line for line in text.splitlines())
    net = _small(text, "yolov3-96.cfg", seed=1)
    qm = quantize_network(net, per_channel=True, cfg_text=text)
    x = np.random.default_rng(3).integers(0, 256, net.input_shape).astype(np.uint8)
    return qm, x, qm.forward_ref(x)


@pytest.mark.parametrize("path", _conv.PATHS)
def test_yolov3_generated_every_path(path, yolov3_small):
    qm, x, ref = yolov3_small
    # with the 23 shortcuts fused into their convolutions (the unfused steps: every other test)
    out = _on_path(path, lambda: CRunner(qm, 3, fuse=True).run(x))
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
    assert not bad, f"{path}: layers differ: {bad}"


@pytest.mark.parametrize("threads", [1, 2])
def test_yolov3_fused_shortcuts(yolov3_small, threads):
    """With fuse=True each of yolov3's 23 shortcuts runs in its convolution's epilogue
    (CRunner.fused); the planned buffers of keep="needed" (twice: reused) and the hook path
    give the reference."""
    qm, x, ref = yolov3_small
    runner = CRunner(qm, threads, fuse=True)
    assert len(runner.fused) == 23 and all(qm.layers[j].kind == "shortcut" for j in runner.fused.values())
    assert CRunner(qm, threads).fused == {}
    heads = [l.index for l in qm.network.output_layers()]
    for _ in range(2):
        out = runner.run(x, keep="needed")
        assert all(np.array_equal(out[i], ref[i]) for i in heads)
    seen = {}
    runner.run(x, keep="needed", hook=lambda i, o: seen.__setitem__(i, o.copy()))
    assert sorted(seen) == list(range(len(ref)))
    assert not [i for i in seen if not np.array_equal(seen[i], ref[i])]


@pytest.fixture(scope="module")
def mini_input():
    return input_to_u8(np.load(DARKNET / "mini-yolov3" / "astronaut_heads.npz")["input"])


@pytest.mark.parametrize("wbits, abits, per_channel, rounding", [
    (8, 8, False, "half_up"), (8, 8, True, "truncate"), (4, 4, True, "half_up"), (2, 2, False, "truncate"),
    (16, 16, True, "half_up"), (12, 10, False, "truncate"), (4, 8, True, "half_up"), (6, 16, False, "half_up"),
])
def test_mini_yolov3_all_layers(mini_net, mini_input, wbits, abits, per_channel, rounding):
    text = (DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text()
    qm = quantize_network(mini_net, wbits=wbits, abits=abits, per_channel=per_channel, rounding=rounding,
                          cfg_text=text, layer_rounding={5: "truncate" if rounding == "half_up" else "half_up"})
    assert_layers_equal(qm, mini_input)


def _small(cfg_text, name, seed=0):
    net = Network(parse_cfg_text(cfg_text, name), name, warn=False)
    random_weights(net, seed)
    return net


@pytest.mark.parametrize("bits", [8, 5, 16])
def test_yolov2_tiny_region_softmax(bits):
    text = zoo.cfg_path("yolov2-tiny").read_text().replace("width=416", "width=96").replace("height=416", "height=64")
    net = _small(text, "yolov2-tiny-96.cfg")
    qm = quantize_network(net, wbits=bits, abits=bits, cfg_text=text)
    x = np.random.default_rng(bits).integers(0, 256, net.input_shape).astype(np.uint8)
    assert_layers_equal(qm, x)


@pytest.mark.parametrize("bits", [8, 3, 14])
def test_reorg_network(bits):
    net = _small(REORG_NET, "reorg.cfg", seed=bits)
    qm = quantize_network(net, wbits=bits, abits=bits, per_channel=True, cfg_text=REORG_NET)
    x = np.random.default_rng(bits).integers(0, 256, net.input_shape).astype(np.uint8)
    assert_layers_equal(qm, x)


def test_needed_reuses_buffers_and_returns_heads(mini_net):
    """run(keep="needed") writes intermediate outputs into planned, reused buffers and
    returns fresh head arrays: equal to keep="all" run after run (inputs alternating, so a
    stale buffer would show), for 1 and 2 threads; a hook gets every layer's own array."""
    text = (DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text()
    qm = quantize_network(mini_net, wbits=8, abits=8, cfg_text=text)
    rng = np.random.default_rng(5)
    xs = [rng.integers(0, 256, mini_net.input_shape).astype(np.uint8) for _ in range(2)]
    heads = {l.index for l in mini_net.output_layers()}
    for threads in (1, 2):
        runner = CRunner(qm, threads)
        full = [runner.run(x) for x in xs]
        kept = []
        for rep in range(2):
            for k, x in enumerate(xs):
                got = runner.run(x, keep="needed")
                assert [i for i, o in enumerate(got) if o is not None] == sorted(heads)
                assert all(np.array_equal(got[i], full[k][i]) for i in heads)
                kept.append((k, got))
        for k, got in kept:                                  # earlier results are not overwritten
            assert all(np.array_equal(got[i], full[k][i]) for i in heads)
        seen = {}
        runner.run(xs[0], keep="needed", hook=lambda i, o: seen.__setitem__(i, o))
        assert all(np.array_equal(seen[i], full[0][i]) for i in range(len(qm.layers)))


def test_one_runner_shared_by_python_threads(mini_net):
    """A model loaded once and used from several Python threads (a web server's pool): the
    kernels release the GIL and the runner's scratch and planned buffers are shared, so runs
    must not interleave.  Every thread's heads equal the sequential result for its input."""
    import threading
    text = (DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text()
    qm = quantize_network(mini_net, wbits=8, abits=8, cfg_text=text)
    rng = np.random.default_rng(11)
    xs = [rng.integers(0, 256, mini_net.input_shape).astype(np.uint8) for _ in range(4)]
    heads = sorted(l.index for l in mini_net.output_layers())
    runner = CRunner(qm, 2)
    want = [runner.run(x, keep="needed") for x in xs]
    bad: list = []

    def worker(k: int) -> None:
        for _ in range(15):
            got = runner.run(xs[k], keep="needed")
            if not all(np.array_equal(got[i], want[k][i]) for i in heads):
                bad.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, f"corrupted results in threads {sorted(set(bad))}"
