"""Export a Darknet network (mdfi.darknet.network.Network) to ONNX, float and int8 (static QDQ), for
the ONNX Runtime columns of benchmarks/bench_speed.py.

    pip install ".[bench]"
    python benchmarks/onnx_export.py --model yolov3-tiny --out /tmp/onnx      # float + int8
    python benchmarks/onnx_export.py --model yolov3 --out /tmp/onnx           # generated weights

The graph is built with the onnx helper API from MDFI's own parsed network (the same cfg
and weights every engine of the benchmark runs):

* ``[convolutional]``: Conv with batch norm folded into the weights and bias (float64, as
  MDFI's quantizer folds it: ``k = scale/(sqrt(var) + 1e-6)``), then LeakyRelu(0.1) / Relu /
  Sigmoid;
* ``[maxpool]``: MaxPool with Darknet's asymmetric padding (origin ``-padding/2``, the rest
  at the bottom/right; padded taps do not take part, as in ONNX);
* ``[upsample]``: Resize nearest (asymmetric, floor) by the stride; ``[route]``: Concat;
  AlexeyAB's ``[route] groups``/``group_id``: a Slice of every input on the channel axis (the
  ``group_id``-th of ``groups`` equal slices, ``mdfi.layers.route.Route.slices``), then Concat;
  ``[shortcut]``: Add (+ activation);
* ``[yolo]``: the logistic on x, y, objectness and classes (Where over a constant channel
  mask), and in AlexeyAB's lineage ``x*scale_x_y - (scale_x_y-1)/2`` on x, y (Mul and Add by
  per-channel constants, 1 and 0 elsewhere), so the graph ends where MDFI's integer network
  ends (its yolo tables).

Check: the float graph (ONNX Runtime) must equal MDFI's float forward within 1e-4 on a real
photo (``--check``, on by default); the export refuses a network it cannot express.

int8: ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel, u8
activations x s8 weights (the configuration ONNX Runtime's VNNI kernels run), MinMax
calibration on a few scikit-image photos (the calibration photos of
benchmarks/calibration_images.py; the benchmark's timing input is a different image).  The
yolo logistic stays in float (as in MDFI, whose heads are lookup tables).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

#: photos used to calibrate the int8 model (scikit-image names, see calibration_images.py)
CALIB_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


class ExportError(Exception):
    pass


def _act(nodes, name: str, x: str, act: str) -> str:
    from onnx import helper
    if act == "linear":
        return x
    y = f"{name}_{act}"
    if act == "leaky":
        nodes.append(helper.make_node("LeakyRelu", [x], [y], name=y, alpha=0.1))
    elif act == "relu":
        nodes.append(helper.make_node("Relu", [x], [y], name=y))
    elif act == "logistic":
        nodes.append(helper.make_node("Sigmoid", [x], [y], name=y))
    elif act == "swish":                    # x * logistic(x) (AB src/activations.c:143)
        nodes.append(helper.make_node("Sigmoid", [x], [f"{y}_s"], name=f"{y}_s"))
        nodes.append(helper.make_node("Mul", [x, f"{y}_s"], [y], name=y))
    elif act == "mish":                     # x * tanh(softplus(x)); AB's softplus threshold 20 moves
        nodes.append(helper.make_node("Softplus", [x], [f"{y}_sp"], name=f"{y}_sp"))     # nothing in float32
        nodes.append(helper.make_node("Tanh", [f"{y}_sp"], [f"{y}_t"], name=f"{y}_t"))
        nodes.append(helper.make_node("Mul", [x, f"{y}_t"], [y], name=y))
    else:
        raise ExportError(f"activation {act!r} has no ONNX export here")
    return y


def to_onnx(net, opset: int = 13):
    """The float ONNX ModelProto of ``net`` (weights loaded); one output per [yolo] head,
    named ``head<index>``, shape (1, C, H, W)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    names: List[str] = []                 # tensor name of every layer's output

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def inp(i):
        return "input" if i == -1 else names[i]

    for l in net.layers:
        base = f"l{l.index:03d}"
        if l.kind == "convolutional":
            w, b = l.folded_float_params()
            x = inp(l.inputs[0])
            y = f"{base}_conv"
            nodes.append(helper.make_node(
                "Conv", [x, const(f"{base}_w", w.astype(np.float32)), const(f"{base}_b", b.astype(np.float32))],
                [y], name=y, kernel_shape=[l.size, l.size], strides=[l.stride, l.stride],
                pads=[l.padding] * 4, group=l.groups))
            names.append(_act(nodes, base, y, l.activation))
        elif l.kind == "maxpool":
            c, h, w = l.in_shape
            _, oh, ow = l.out_shape
            lo = l.padding // 2
            hi_h = max(0, (oh - 1) * l.stride + l.size - lo - h)
            hi_w = max(0, (ow - 1) * l.stride + l.size - lo - w)
            y = f"{base}_maxpool"
            nodes.append(helper.make_node("MaxPool", [inp(l.inputs[0])], [y], name=y,
                                          kernel_shape=[l.size, l.size], strides=[l.stride, l.stride],
                                          pads=[lo, lo, hi_h, hi_w]))
            names.append(y)
        elif l.kind == "upsample":
            if l.scale != 1.0:
                raise ExportError(f"layer {l.index}: upsample scale={l.scale}")
            y = f"{base}_upsample"
            nodes.append(helper.make_node(
                "Resize", [inp(l.inputs[0]), "", const(f"{base}_scales", np.array([1, 1, l.stride, l.stride],
                                                                                     np.float32))],
                [y], name=y, mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
            names.append(y)
        elif l.kind == "route":
            parts = [inp(i) for i in l.inputs]
            if getattr(l, "groups", 1) > 1:       # AlexeyAB: the group_id-th of `groups` channel slices
                sliced = []
                for k, (src, (a, b)) in enumerate(zip(parts, l.slices())):
                    y = f"{base}_slice{k}"
                    nodes.append(helper.make_node(
                        "Slice", [src, const(f"{y}_starts", np.array([a], np.int64)),
                                  const(f"{y}_ends", np.array([b], np.int64)),
                                  const(f"{y}_axes", np.array([1], np.int64))], [y], name=y))
                    sliced.append(y)
                parts = sliced
            if len(parts) == 1:
                names.append(parts[0])
            else:
                y = f"{base}_route"
                nodes.append(helper.make_node("Concat", parts, [y], name=y, axis=1))
                names.append(y)
        elif l.kind == "shortcut":
            if l.alpha != 1.0 or l.beta != 1.0:
                raise ExportError(f"layer {l.index}: shortcut alpha/beta other than 1")
            if len(l.inputs) != 2:
                raise ExportError(f"layer {l.index}: shortcut of {len(l.inputs) - 1} from-layers")
            (cp, hp, wp), (cf, hf, wf) = [net.layers[i].out_shape for i in l.inputs]
            if (hp, wp) != (hf, wf):
                raise ExportError(f"layer {l.index}: shortcut between maps of different sizes")
            y = f"{base}_add"
            prev, frm = inp(l.inputs[0]), inp(l.inputs[1])

            def channels(src, a, b, tag):
                out = f"{base}_{tag}"
                nodes.append(helper.make_node(
                    "Slice", [src, const(f"{out}_starts", np.array([a], np.int64)),
                              const(f"{out}_ends", np.array([b], np.int64)),
                              const(f"{out}_axes", np.array([1], np.int64))], [out], name=out))
                return out
            # AlexeyAB adds by flat index over the common channels and keeps the previous layer's
            # shape (src/blas.c shortcut_multilayer_cpu; mdfi/layers/shortcut.py)
            if cf > cp:
                frm = channels(frm, 0, cp, "from_head")
            if cf < cp:
                nodes.append(helper.make_node("Add", [channels(prev, 0, cf, "prev_head"), frm], [f"{y}_head"],
                                              name=f"{y}_head"))
                nodes.append(helper.make_node("Concat", [f"{y}_head", channels(prev, cf, cp, "prev_tail")], [y],
                                              name=y, axis=1))
            else:
                nodes.append(helper.make_node("Add", [prev, frm], [y], name=y))
            names.append(_act(nodes, base, y, l.activation))
        elif l.kind == "avgpool":               # AB src/avgpool_layer.c: the mean of each channel
            y = f"{base}_avgpool"
            nodes.append(helper.make_node("GlobalAveragePool", [inp(l.inputs[0])], [y], name=y))
            names.append(y)
        elif l.kind == "scale_channels":        # [scale_channels] / [sam]: previous layer x from layer
            a, b = inp(l.inputs[0]), inp(l.inputs[1])
            if l.mode == "spatial":             # the previous layer is C=1 x H x W already
                pass
            elif l.mode == "channels" and tuple(net.layers[l.inputs[0]].out_shape[1:]) != (1, 1):
                raise ExportError(f"layer {l.index}: a channel scale of shape {net.layers[l.inputs[0]].out_shape}")
            y = f"{base}_scale"
            nodes.append(helper.make_node("Mul", [b, a], [y], name=y))
            names.append(_act(nodes, base, y, l.activation))
        elif l.kind == "yolo":
            c = l.out_shape[0]
            x = inp(l.inputs[0])
            s = f"{base}_sigmoid"
            nodes.append(helper.make_node("Sigmoid", [x], [s], name=s))
            mask = const(f"{base}_mask", l.logistic_mask().reshape(1, c, 1, 1))
            y = f"head{l.index}"
            if net.darknet == "alexeyab":       # x, y <- x*scale_x_y + shift (layers/yolo.py, scal_add_cpu)
                xy = l.xy_mask().reshape(1, c, 1, 1)
                wy = f"{base}_where"
                nodes.append(helper.make_node("Where", [mask, s, x], [wy], name=wy))
                my = f"{base}_scale"
                nodes.append(helper.make_node("Mul", [wy, const(f"{my}_k", np.where(
                    xy, np.float32(l.scale_x_y), np.float32(1)).astype(np.float32))], [my], name=my))
                nodes.append(helper.make_node("Add", [my, const(f"{base}_shift_b", np.where(
                    xy, l.xy_shift, np.float32(0)).astype(np.float32))], [y], name=f"{base}_shift"))
            else:
                nodes.append(helper.make_node("Where", [mask, s, x], [y], name=f"{base}_where"))
            names.append(y)
        else:
            raise ExportError(f"layer {l.index}: [{l.kind}] has no ONNX export here")
    c, h, w = net.input_shape
    heads = [l for l in net.layers if l.kind == "yolo"]
    graph = helper.make_graph(
        nodes, os.path.basename(net.path),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(f"head{l.index}", TensorProto.FLOAT, [1, *l.out_shape]) for l in heads],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="mdfi-benchmarks")
    model.ir_version = min(model.ir_version, 8)          # readable by older runtimes too
    onnx.checker.check_model(model)
    return model


def head_nodes(model) -> List[str]:
    """Names of the yolo head nodes (kept in float by the quantizer)."""
    return [n.name for n in model.graph.node if n.name.endswith(("_sigmoid", "_where", "_scale", "_shift"))]


def session(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def calibration_inputs(net, photos: Sequence[str] = CALIB_PHOTOS) -> List[np.ndarray]:
    from calibration_images import photo
    from mdfi.preprocess import image_to_input
    return [image_to_input(np.ascontiguousarray(photo(p)[..., :3]), net.width, net.height)[None] for p in photos]


def quantize_int8(float_path: str, out_path: str, inputs: Sequence[np.ndarray], exclude: Sequence[str]) -> None:
    """Static QDQ quantization: per-channel s8 weights, u8 activations, MinMax calibration."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x.astype(np.float32)} for x in inputs])

        def get_next(self):
            return next(self.it, None)

    quantize_static(float_path, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude))


def check_float(net, path: str, x: np.ndarray, tol: float = 1e-4) -> float:
    """Max |ONNX Runtime float - MDFI float| over the heads, relative to the largest head
    value when that exceeds 1 (generated weights give large activations, where float32
    summation order alone moves values by more than 1e-4 absolute); raises above ``tol``."""
    sess = session(path, 1)
    got = sess.run(None, {"input": x[None].astype(np.float32)})
    outs = net.forward_float(x, keep="needed")
    heads = [l for l in net.layers if l.kind == "yolo"]
    err = max(float(np.abs(g[0] - outs[l.index]).max()) for g, l in zip(got, heads))
    scale = max(1.0, max(float(np.abs(outs[l.index]).max()) for l in heads))
    if not err / scale <= tol:
        raise ExportError(f"ONNX float differs from MDFI's float path by {err:.3g} (scale {scale:.3g}; > {tol})")
    return err / scale


def export(net, out_dir: str, name: str, *, int8: bool = True, check_image=None, log=print):
    """Write ``name``.float.onnx (and ``name``.int8.onnx); returns their paths."""
    import onnx
    os.makedirs(out_dir, exist_ok=True)
    fpath = os.path.join(out_dir, f"{name}.float.onnx")
    qpath = os.path.join(out_dir, f"{name}.int8.onnx")
    model = to_onnx(net)
    onnx.save(model, fpath)
    if check_image is not None:
        err = check_float(net, fpath, check_image)
        log(f"[{name}] ONNX float == MDFI float within {err:.2g} (max abs difference over the heads, "
            f"relative to the largest head value if above 1)")
    if int8:
        quantize_int8(fpath, qpath, calibration_inputs(net), head_nodes(model))
        log(f"[{name}] wrote {qpath} (static QDQ, per-channel u8s8, MinMax on {len(CALIB_PHOTOS)} photos)")
    return fpath, (qpath if int8 else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Darknet -> ONNX (float and int8 QDQ)")
    ap.add_argument("--model", default="yolov3-tiny", help="zoo name (yolov3-tiny: official weights; "
                    "others: generated weights, as bench_speed.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from bench_speed import check_image, load_models
    import tempfile
    _, _, net, _ = load_models(args.model, tempfile.mkdtemp(prefix="mdfi-onnx-"), quantize=False)
    export(net, args.out, args.model, int8=not args.no_int8,
           check_image=None if args.no_check else check_image(net),
           log=lambda m: print(m, file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
