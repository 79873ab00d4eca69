"""benchmarks/convert_yolov7_tiny.py on a yolov7-tiny graph laid out the way WongKinYiu's
PyTorch model is (its ``cfg/training/yolov7-tiny.yaml`` layer list: ELAN concatenations in
``[-1, -2, -3, -4]`` order, SPP, two upsamplings, three 1x1 heads), written here as an ONNX
graph with generated weights (batch norm fused, as in every ONNX export) and run by ONNX
Runtime: the converted Darknet weights must give MDFI's float heads equal to ONNX Runtime's
within 1e-4 relative (max |err| / max |ref|), so the structural matching and the input-channel
permutations are right.  No trained yolov7-tiny could be fetched here (docs/quantization.md,
"yolov7-tiny"); the converter was also checked by hand on a random-weight model built and
exported by WongKinYiu's own code (.pt and ONNX, docs/darknet.md).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import convert_yolov7_tiny as conv  # noqa: E402

SIZE = 128


def _elan(c):
    return [(-1, "Conv", c, 1, 1), (-2, "Conv", c, 1, 1), (-1, "Conv", c, 3, 1), (-1, "Conv", c, 3, 1),
            ([-1, -2, -3, -4], "Concat")]


def torch_layout():
    """The layer list of yolov7-tiny's PyTorch definition: (from, module, filters, k, s)."""
    L = [(-1, "Conv", 32, 3, 2), (-1, "Conv", 64, 3, 2)] + _elan(32) + [(-1, "Conv", 64, 1, 1)]
    for c in (64, 128, 256):
        L += [(-1, "MP")] + _elan(c) + [(-1, "Conv", 2 * c, 1, 1)]                 # 14, 21, 28
    L += [(-1, "Conv", 256, 1, 1), (-2, "Conv", 256, 1, 1), (-1, "SP", 5), (-2, "SP", 9), (-3, "SP", 13),
          ([-1, -2, -3, -4], "Concat"), (-1, "Conv", 256, 1, 1), ([-1, -7], "Concat"), (-1, "Conv", 256, 1, 1)]
    for c, skip in ((128, 21), (64, 14)):                                              # 47, 57
        L += [(-1, "Conv", c, 1, 1), (-1, "Up"), (skip, "Conv", c, 1, 1), ([-1, -2], "Concat")]
        L += _elan(c // 2) + [(-1, "Conv", c, 1, 1)]
    for c, skip in ((128, 47), (256, 37)):                                             # 65, 73
        L += [(-1, "Conv", c, 3, 2), ([-1, skip], "Concat")] + _elan(c // 2) + [(-1, "Conv", c, 1, 1)]
    L += [(57, "Conv", 128, 3, 1), (65, "Conv", 256, 3, 1), (73, "Conv", 512, 3, 1), ([74, 75, 76], "Detect")]
    assert len(L) == 78
    return L


def build_onnx(path, seed=0):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits, outs, chans, names = [], [], [], [], []
    for i, (f, kind, *a) in enumerate(torch_layout()):
        fs = f if isinstance(f, list) else [f]
        src = ["images" if (i == 0 and j == -1) else names[i + j if j < 0 else j] for j in fs]
        cin = [3 if (i == 0) else chans[i + j if j < 0 else j] for j in fs]
        y = f"t{i}"
        if kind == "Conv":
            c, k, s = a
            w = (rng.standard_normal((c, cin[0], k, k)) * np.sqrt(2.0 / (cin[0] * k * k))).astype(np.float32)
            b = (0.1 * rng.standard_normal(c)).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes += [helper.make_node("Conv", [src[0], f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k, k],
                                       strides=[s, s], pads=[k // 2] * 4),
                      helper.make_node("LeakyRelu", [f"c{i}"], [y], alpha=0.1)]
            chans.append(c)
        elif kind in ("MP", "SP"):
            k, s = (2, 2) if kind == "MP" else (a[0], 1)
            nodes.append(helper.make_node("MaxPool", src, [y], kernel_shape=[k, k], strides=[s, s],
                                          pads=[0] * 4 if kind == "MP" else [k // 2] * 4))
            chans.append(cin[0])
        elif kind == "Up":
            inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), f"sc{i}"))
            nodes.append(helper.make_node("Resize", [src[0], "", f"sc{i}"], [y], mode="nearest",
                                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
            chans.append(cin[0])
        elif kind == "Concat":
            nodes.append(helper.make_node("Concat", src, [y], axis=1))
            chans.append(sum(cin))
        else:                                                       # Detect: 1x1 heads, raw outputs
            for h, (x, c) in enumerate(zip(src, cin)):
                w = (rng.standard_normal((255, c, 1, 1)) * np.sqrt(1.0 / c)).astype(np.float32)
                b = (rng.standard_normal(255) - 2).astype(np.float32)
                g = SIZE // (8 << h)
                inits += [numpy_helper.from_array(w, f"hw{h}"), numpy_helper.from_array(b, f"hb{h}"),
                          numpy_helper.from_array(np.array([1, 3, 85, g, g], np.int64), f"hs{h}")]
                nodes += [helper.make_node("Conv", [x, f"hw{h}", f"hb{h}"], [f"hc{h}"], kernel_shape=[1, 1]),
                          helper.make_node("Reshape", [f"hc{h}", f"hs{h}"], [f"hr{h}"]),
                          helper.make_node("Transpose", [f"hr{h}"], [f"head{h}"], perm=[0, 1, 3, 4, 2])]
                outs.append(helper.make_tensor_value_info(f"head{h}", TensorProto.FLOAT, [1, 3, g, g, 85]))
            chans.append(0)
        names.append(y)
    graph = helper.make_graph(nodes, "yolov7_tiny_layout", [helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("v7conv")
    src = str(d / "yolov7-tiny-layout.onnx")
    build_onnx(src)
    cfg = str(d / "yolov7-tiny-128.cfg")
    text = open(conv.DEFAULT_CFG, encoding="utf-8").read()
    text = text.replace("width=416", f"width={SIZE}").replace("height=416", f"height={SIZE}")
    open(cfg, "w", encoding="utf-8").write(text)
    out = str(d / "yolov7-tiny-layout.weights")
    assert conv.main([src, "-o", out, "--cfg", cfg]) == 0
    return src, cfg, out


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_converted_heads_equal_onnxruntime(converted):
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    src, cfg, weights = converted
    x = np.random.default_rng(1).random((3, SIZE, SIZE), dtype=np.float32)
    ref = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"images": x[None]})
    net = Network.from_cfg(cfg, warn=False)
    load_weights(net, weights)
    heads = [l.index - 1 for l in net.layers if l.kind == "yolo"]
    for h in heads:                       # compare the logits (ONNX's raw head outputs)
        net.layers[h].activation = "linear"
    outs = net.forward_float(x, keep="all")
    errs = []
    for h, r in zip(heads, ref):
        r = r[0].transpose(0, 3, 1, 2).reshape(255, r.shape[2], r.shape[3])   # (3,ny,nx,85) -> Darknet
        errs.append(_rel(outs[h], r))
    print("relative error per head:", ["%.1e" % e for e in errs])
    assert max(errs) <= 1e-4, errs


def test_identity_batch_norm_is_exact():
    assert np.sqrt(conv.IDENTITY_VAR + np.float32(1e-5)) == np.float32(1.0)


def test_elan_blocks_are_permuted(converted):
    src, cfg, _ = converted
    s = conv.read_onnx(src)
    net = conv.darknet_net(cfg)
    m = conv.match(net, s)
    perms = [l.index for l in net.layers if l.kind == "convolutional"
             and not np.array_equal(conv.input_permutation(net, m, s, l.index, s.nodes[m[l.index]]),
                                    np.arange(l.in_shapes[0][0]))]
    # the 8 ELAN transitions (cfg layers 8, 16, 24, 32, 56, 68, 77, 86) and the SPP's [-1, -7]
    assert perms == [8, 16, 24, 32, 44, 56, 68, 77, 86]


def test_pt_reader_refuses_other_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo not run",))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"model": Evil()}, protocol=2))
    p = tmp_path / "evil.pt"
    p.write_bytes(buf.getvalue())
    with pytest.raises(conv.ConvertError, match="refuses"):
        conv.read_pt(str(p))
    assert conv.main([str(p), "-o", str(tmp_path / "x.weights")]) == 1


def test_wrong_source_is_a_clear_error(tmp_path):
    p = tmp_path / "notamodel.onnx"
    p.write_bytes(b"\x00\x01garbage")
    assert conv.main([str(p), "-o", str(tmp_path / "x.weights")]) == 1
