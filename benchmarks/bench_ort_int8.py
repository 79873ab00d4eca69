"""ONNX Runtime int8 (static QDQ, per-channel, float scales) on the same split as
bench_accuracy.py: the peer MDFI's power-of-two 8-bit is compared with.

    pip install ".[bench]" onnx onnxruntime
    python benchmarks/bench_ort_int8.py [--split test]

A minimal exporter of yolov3-tiny-style Darknet graphs (convolution with batch norm folded,
leaky, maxpool, nearest upsample, route) lives here (a fuller one is benchmarks/onnx_export.py
on the speed work).  The heads' logistic/exp and the box decoding stay in MDFI's float code,
so both paths share everything after the last convolutions.  Calibration: the ``calib``
photos and their mirror images (the same inputs as MDFI's decisions), MinMax.

``--model yolov4-tiny-10c``: AlexeyAB's yolov4-tiny with the real 10-class weights of
benchmarks/bench_accuracy_v4tiny.py, exported by benchmarks/onnx_export.py (route groups as
channel Slices; the yolo logistic and scale_x_y stay in float, excluded from quantization),
calibrated on the same ``calib`` photos and mirror images as that benchmark (AlexeyAB's
resize, no letterbox; ``--calib-set calib4`` adds person_images.py's calib4), and evaluated
on ``--split test``, ``val``, ``val4`` or ``test4`` (comma-separated for several).  ``--split test4``
(person_images.py's second held-out set) works for both models.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def export(network, path: str) -> list:
    """Write ``network`` (up to its heads) as ONNX; returns the names of the head inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits = [], []
    name = {-1: "input"}
    for l in network.layers:
        i, out = l.index, f"l{l.index}"
        ins = [name[j] for j in l.inputs]
        if l.kind == "convolutional":
            w, b = l.folded_float_params()
            inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                      numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
            conv_out = out if l.activation == "linear" else f"c{i}"
            nodes.append(helper.make_node("Conv", [ins[0], f"w{i}", f"b{i}"], [conv_out],
                                          kernel_shape=[l.size, l.size], strides=[l.stride, l.stride],
                                          pads=[l.padding] * 4, group=l.groups))
            if l.activation == "leaky":
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [out], alpha=0.1))
            elif l.activation != "linear":
                raise SystemExit(f"layer {i}: activation {l.activation} not exported")
        elif l.kind == "maxpool":
            lo = l.padding // 2
            hi = l.padding - lo
            nodes.append(helper.make_node("MaxPool", ins, [out], kernel_shape=[l.size, l.size],
                                          strides=[l.stride, l.stride], pads=[lo, lo, hi, hi]))
        elif l.kind == "upsample":
            inits.append(numpy_helper.from_array(np.array([1, 1, l.stride, l.stride], np.float32), f"s{i}"))
            nodes.append(helper.make_node("Resize", [ins[0], "", f"s{i}"], [out], mode="nearest",
                                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        elif l.kind == "route":
            nodes.append(helper.make_node("Concat", ins, [out], axis=1) if len(ins) > 1
                         else helper.make_node("Identity", ins, [out]))
        elif l.kind == "yolo":
            out = ins[0]
        else:
            raise SystemExit(f"layer {i}: {l.kind} not exported")
        name[i] = out
    heads = [name[l.inputs[0]] for l in network.output_layers()]
    c, h, w = network.input_shape
    graph = helper.make_graph(nodes, "darknet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, h, w])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in heads], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return heads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"))
    ap.add_argument("--split", default="test",
                    help="val, test, test4 (yolov4-tiny-10c also val4, comma-separated)")
    ap.add_argument("--model", default="yolov3-tiny", choices=("yolov3-tiny", "yolov4-tiny-10c"))
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"))
    ap.add_argument("--calib-set", default="calib", choices=("calib", "calib4"))
    ap.add_argument("--variants", default=None, metavar="TAG,...",
                    help="report only these variants (as bench_accuracy.py --variants)")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="also the spread of the agreement mAP over N resamplings of the photos")
    args = ap.parse_args(argv)
    if args.model == "yolov4-tiny-10c":
        if args.variants:
            ap.error("--variants: yolov3-tiny only")
        return v4tiny(args)
    if args.split not in ("val", "test", "test4"):
        ap.error(f"--split for yolov3-tiny: val, test or test4, not {args.split!r}")
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from mdfi.eval import evaluate
    from mdfi.model import _float_network
    from mdfi.postprocess import postprocess
    from bench_accuracy import calib_inputs, float_split, keep_variants, photo_bootstrap

    import person_images
    network, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    person_images.ensure_split(args.split, args.person_sets)
    data = keep_variants(float_split(network, names, person_images.split_dir(args.split, args.sets, args.person_sets),
                                     args.split, args.cache), args.variants)
    tmp = tempfile.mkdtemp(prefix="mdfi-ort-")
    fp32, int8 = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
    heads = export(network, fp32)
    xs = calib_inputs(network, args.sets)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(xs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x[None]}
    t0 = time.perf_counter()
    quantize_static(fp32, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    tq = time.perf_counter() - t0
    yolos = network.output_layers()
    rows = {}
    for tag, path in (("ORT fp32", fp32), ("ORT int8", int8)):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        dets = []
        for _, prep, _ in data:
            outs = sess.run(heads, {"input": prep.tensor[None]})
            raws = [l.decode(l.forward_float([o[0]]), 0.005) for l, o in zip(yolos, outs)]
            dets.append(postprocess(raws, prep.width, prep.height, network.width, network.height, 0.005, 0.45, names))
        r = evaluate.agreement([d[2] for d in data], dets)
        rows[tag] = r
        if args.bootstrap:
            photo_bootstrap(data, dets, args.bootstrap, tag)
        print(f"{tag:<9} mAP {r.map:.4f} kept {r.matched}/{r.n_float} ({100 * r.kept_fraction:.1f}%) extra {r.extra} "
              f"({100 * r.extra_fraction:.1f}%) dconf@.25 {r.mean_dconf:+.4f} bias {r.mean_dconf_ranked:+.4f} "
              f"lower {100 * r.down_fraction_ranked:.0f}% |dconf| {r.mean_abs_dconf:.4f}", flush=True)
    print(f"(static QDQ per-channel u8 activations / s8 weights, MinMax on {len(xs)} calibration inputs; "
          f"quantize_static {tq:.0f} s; {args.split}: {len(data)} images)")
    return 0


def v4tiny(args) -> int:
    """The ONNX Runtime int8 peer of benchmarks/bench_accuracy_v4tiny.py."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    from mdfi.eval import evaluate
    from mdfi.postprocess import postprocess, settings as post_settings
    import onnx_export
    import bench_accuracy_v4tiny as v4
    from bench_accuracy import float_split, photo_bootstrap

    network = Network.from_cfg(os.path.join(v4.FIXTURE, v4.SPEC["cfg"]), warn=False)
    load_weights(network, str(zoo.weights_path(zoo.ModelSpec(**v4.SPEC))))
    names = zoo.load_names(os.path.join(v4.FIXTURE, v4.SPEC["names"]))
    cache = os.path.join(args.cache, "yolov4-tiny-10c")
    import person_images
    splits = args.split.split(",")
    for sp in splits:
        person_images.ensure_split(sp, args.person_sets)
    datas = {sp: float_split(network, names, person_images.split_dir(sp, args.sets, args.person_sets), sp, cache)
             for sp in splits}
    tmp = tempfile.mkdtemp(prefix="mdfi-ort-v4-")
    fp32, int8 = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
    model = onnx_export.to_onnx(network)
    onnx.save(model, fp32)
    err = onnx_export.check_float(network, fp32, datas[splits[0]][0][1].tensor)
    dirs = [os.path.join(args.sets, "calib")] + ([os.path.join(args.person_sets, "calib4")]
                                                 if args.calib_set == "calib4" else [])
    xs = v4.calib_inputs(network, dirs)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(xs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x[None].astype(np.float32)}
    t0 = time.perf_counter()
    quantize_static(fp32, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=onnx_export.head_nodes(model))
    tq = time.perf_counter() - t0
    yolos = [l for l in network.layers if l.kind == "yolo"]
    print(f"yolov4-tiny-10c: ONNX float = MDFI float within {err:.1g}; static QDQ per-channel u8 activations / "
          f"s8 weights, MinMax on {len(xs)} calibration inputs ({args.calib_set} + mirror images), "
          f"quantize_static {tq:.0f} s")
    for tag, path in (("ORT fp32", fp32), ("ORT int8", int8)):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for sp, data in datas.items():
            dets = []
            for _, prep, _ in data:
                outs = sess.run([f"head{l.index}" for l in yolos], {"input": prep.tensor[None].astype(np.float32)})
                raws = [l.decode(o[0], 0.005) for l, o in zip(yolos, outs)]
                dets.append(postprocess(raws, prep.width, prep.height, network.width, network.height, 0.005, 0.45,
                                        names, **post_settings(network)))
            r = evaluate.agreement([d[2] for d in data], dets)
            if args.bootstrap:
                photo_bootstrap(data, dets, args.bootstrap, f"{tag} {sp}")
            print(f"{tag:<9} {sp:<5} mAP {r.map:.4f} kept {r.matched}/{r.n_float} ({100 * r.kept_fraction:.1f}%) "
                  f"extra {r.extra} ({100 * r.extra_fraction:.1f}%) dconf@.25 {r.mean_dconf:+.4f} bias "
                  f"{r.mean_dconf_ranked:+.4f} lower {100 * r.down_fraction_ranked:.0f}% |dconf| "
                  f"{r.mean_abs_dconf:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
