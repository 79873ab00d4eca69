#!/usr/bin/env python3
"""Convert WongKinYiu's YOLOv7-tiny (a PyTorch ``.pt`` checkpoint or an ONNX export) to
Darknet ``.weights`` for AlexeyAB's ``cfg/yolov7-tiny.cfg``.

    python benchmarks/convert_yolov7_tiny.py SRC -o OUT.weights [--cfg CFG] [--cfg-out OUT.cfg]

* ``.pt``: read without PyTorch: the checkpoint is a zip of a pickle and raw storages; the
  pickle is read by a restricted unpickler that builds only plain records (module classes
  become attribute bags), tensors become NumPy arrays, and any other global (a function, an
  unknown class outside ``torch.nn`` / ``models.*``) is refused.  The model's
  ``nn.Sequential`` (``Conv`` = conv+BN+LeakyReLU(0.1), ``MP``, ``SP``, ``Concat``,
  ``nn.Upsample``, ``Detect`` / ``IDetect``) is walked through each module's ``f`` (from)
  indices.  Batch norm is kept unfused (PyTorch's eps, 1e-3 in YOLOv7, is folded into the
  variance so that Darknet's ``sqrt(var + .00001)`` gives the same number); ``IDetect``'s
  ImplicitA / ImplicitM fold exactly into the head convolutions' weights and biases.
* ``.onnx`` (needs the ``onnx`` package): ``Conv`` / ``LeakyRelu`` / ``MaxPool`` / ``Concat``
  / ``Resize`` nodes; batch norm is fused in such exports, so each conv is written with the
  identity batch norm (scale 1, mean 0, variance ``1 - 1e-5`` rounded to float32, for which
  ``sqrt(var + 1e-5)`` is exactly 1.0 in float32).  The anchors are read from the decode
  constants of a ``--grid`` export; a plain export holds none (then the cfg's anchors are
  kept, or pass ``--anchors``).  Exports of the unfused model (IDetect's ImplicitA ``Add`` /
  ImplicitM ``Mul`` around the head convolutions, or ``BatchNormalization`` nodes) and fp16
  exports (``Cast``) are read too.

The layer correspondence is not hard-coded: both graphs are matched structurally from the
input (same kind, kernel, stride, filters and matched inputs; equal candidates are told
apart by their consumers), and each convolution's input channels are permuted where
Darknet's ``[route]`` concatenates in a different order than PyTorch's ``Concat`` (the ELAN
blocks: Darknet ``-5,-3,-2,-1`` against PyTorch ``[-1,-2,-3,-4]``).  When the source's
anchors differ from the cfg's, ``--cfg-out`` writes a copy of the cfg with the source's
anchors (the conversion refuses to go on silently with the wrong ones).

Progress and one-line errors go to stderr; exit status 1 on an error.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

DEFAULT_CFG = os.path.join(os.path.dirname(HERE), "cfg", "yolov7-tiny.cfg")
DARKNET_EPS = 1e-5
#: float32 variance for which Darknet's sqrt(var + .00001) is exactly 1.0 (checked at import)
IDENTITY_VAR = np.float32(1.0 - 1e-5)
assert np.sqrt(IDENTITY_VAR + np.float32(DARKNET_EPS)) == np.float32(1.0)


class ConvertError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[convert_yolov7_tiny] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- source graph

@dataclass
class Node:
    kind: str                      # input, conv, maxpool, upsample, concat
    inputs: List[str]
    name: str = ""
    weight: Optional[np.ndarray] = None      # conv: (out, in, k, k) float32
    bias: Optional[np.ndarray] = None
    bn: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]] = None  # gamma, beta, mean, var, eps
    act: str = "linear"            # conv: leaky (0.1) or linear
    size: int = 0
    stride: int = 1
    channels: int = 0              # output channels

    def sig(self) -> tuple:
        if self.kind == "conv":
            return ("conv", self.weight.shape[0], self.weight.shape[2], self.stride, self.act)
        if self.kind in ("maxpool", "upsample"):
            return (self.kind, self.size, self.stride)
        return (self.kind,)


@dataclass
class Source:
    nodes: Dict[str, Node]
    input: str
    anchors: Optional[np.ndarray] = None     # (3, 3, 2) pixels, per head P3, P4, P5
    fused_bn: bool = False
    what: str = ""
    extra: Dict[str, object] = field(default_factory=dict)

    def consumers(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = collections.defaultdict(list)
        for nid, n in self.nodes.items():
            for i in n.inputs:
                out[i].append(nid)
        return out


# ------------------------------------------------------------------ .pt (torch-free reading)

class _Bag:
    """Stands for any pickled module object: its state goes into ``__dict__``."""

    _cls = "?"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:      # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self):
        return f"<{self._cls}>"


_BAG_CLASSES: Dict[Tuple[str, str], type] = {}


def _bag(module: str, name: str) -> type:
    key = (module, name)
    if key not in _BAG_CLASSES:
        _BAG_CLASSES[key] = type(name, (_Bag,), {"_cls": f"{module}.{name}"})
    return _BAG_CLASSES[key]


_STORAGE_DTYPES = {"HalfStorage": np.float16, "FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES.get(name)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    arr = storage
    n = int(np.prod(size)) if len(size) else 1
    if n == 0:
        return np.zeros(size, dtype=arr.dtype)
    item = arr.itemsize
    return np.lib.stride_tricks.as_strided(arr[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride)).copy()


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


def _bound_method(obj, name):
    """Stands for ``getattr(obj, name)`` in the pickle (a bound method stored as an attribute,
    e.g. ``forward = fuseforward`` after YOLOv7's ``fuse()``): only the name is kept."""
    return ("bound-method", str(name))


class _PtUnpickler(pickle.Unpickler):
    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self.zf, self.prefix = zf, prefix
        self.storages: Dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "torch" and name == "Size":
            return tuple
        if module == "torch" and name in ("float16", "float32", "float64", "int64", "int32", "bool"):
            return name
        if module in ("builtins", "__builtin__") and name == "getattr":
            return _bound_method          # a fused module's ``forward = fuseforward`` (not looked up)
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "slice"):
            return {"set": set, "frozenset": frozenset, "slice": slice}[name]
        if module.startswith("torch.nn.modules.") or module.startswith("models.") or module == "__main__":
            return _bag(module, name)
        raise ConvertError(f"the checkpoint's pickle asks for {module}.{name}, which this reader refuses "
                           f"(only module records, tensors and plain containers are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ConvertError(f"unexpected persistent id in the checkpoint: {pid!r:.80}")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4])
        dtype = getattr(stype, "dtype", None)
        if dtype is None:
            raise ConvertError(f"storage type {getattr(stype, 'name', stype)!r} is not supported")
        if key not in self.storages:
            try:
                raw = self.zf.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise ConvertError(f"the checkpoint has no storage record data/{key}") from None
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            if arr.size < numel:
                raise ConvertError(f"storage data/{key} holds {arr.size} values, {numel} expected")
            self.storages[key] = arr.astype(dtype)
        return self.storages[key]


def load_pt(path: str):
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ConvertError(f"{path}: not a zip-format PyTorch checkpoint (legacy pre-1.6 .pt files are "
                           f"not supported)") from None
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ConvertError(f"{path}: expected one data.pkl record in the zip, found {len(pkl)}")
        prefix = pkl[0][: -len("data.pkl")]
        return _PtUnpickler(io.BytesIO(zf.read(pkl[0])), zf, prefix).load()


def _mods(obj) -> "collections.OrderedDict":
    return getattr(obj, "_modules", None) or collections.OrderedDict()


def _param(obj, name):
    v = (getattr(obj, "_parameters", {}) or {}).get(name)
    if v is None:
        v = (getattr(obj, "_buffers", {}) or {}).get(name)
    return None if v is None else np.asarray(v)


def _pair(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ConvertError(f"non-square kernel/stride {v} is not supported")
        return int(v[0])
    return int(v)


def read_pt(path: str) -> Source:
    ckpt = load_pt(path)
    model = ckpt
    if isinstance(ckpt, dict):
        model = ckpt.get("ema") or ckpt.get("model")
        if model is None:
            raise ConvertError(f"{path}: checkpoint has no 'model' or 'ema' entry (keys: {sorted(ckpt)[:8]})")
    seq = _mods(model).get("model")
    if seq is None:
        raise ConvertError(f"{path}: the model object has no 'model' Sequential (is this a YOLOv7 checkpoint?)")
    layers = list(_mods(seq).values())
    nodes: Dict[str, Node] = {"input": Node("input", [], name="images", channels=3)}
    anchors = None
    out_of: List[str] = []

    def src_of(i: int, f) -> List[str]:
        res = []
        for j in (f if isinstance(f, (list, tuple)) else [f]):
            j = int(j)
            if i == 0 and j == -1:
                res.append("input")
            else:
                k = i + j if j < 0 else j
                if not 0 <= k < len(out_of):
                    raise ConvertError(f"model.{i}: input index {j} is out of range")
                res.append(out_of[k])
        return res

    fused = None
    for i, mod in enumerate(layers):
        cls = type(mod).__name__
        f = getattr(mod, "f", -1)
        ins = src_of(i, f)
        nid = f"model.{i}"
        if cls in ("Conv",):
            conv = _mods(mod).get("conv")
            bn = _mods(mod).get("bn")
            act = _mods(mod).get("act")
            w = _param(conv, "weight").astype(np.float32)
            b = _param(conv, "bias")
            if _pair(getattr(conv, "groups", 1)) != 1:
                raise ConvertError(f"{nid}: grouped convolution is not in yolov7-tiny.cfg")
            if type(act).__name__ != "LeakyReLU" or abs(float(getattr(act, "negative_slope", 0)) - 0.1) > 1e-9:
                raise ConvertError(f"{nid}: activation {type(act).__name__} is not LeakyReLU(0.1) "
                                   f"(a yolov7-tiny-silu model does not fit the cfg)")
            bnp = None
            if bn is not None:
                bnp = tuple(_param(bn, k).astype(np.float64) for k in ("weight", "bias", "running_mean",
                                                                       "running_var")) + (float(bn.eps),)
            fused = (bn is None) if fused is None else fused
            nodes[nid] = Node("conv", ins, name=nid, weight=w,
                              bias=None if b is None else b.astype(np.float64), bn=bnp, act="leaky",
                              size=w.shape[2], stride=_pair(conv.stride), channels=w.shape[0])
            if _pair(conv.padding) != w.shape[2] // 2:
                raise ConvertError(f"{nid}: padding {conv.padding} is not 'same'")
        elif cls == "MP":
            m = _mods(mod).get("m")
            nodes[nid] = Node("maxpool", ins, name=nid, size=_pair(m.kernel_size), stride=_pair(m.stride))
        elif cls == "SP":
            m = _mods(mod).get("m")
            nodes[nid] = Node("maxpool", ins, name=nid, size=_pair(m.kernel_size), stride=_pair(m.stride))
        elif cls == "Upsample":
            sf = getattr(mod, "scale_factor", None)
            if getattr(mod, "mode", "nearest") != "nearest" or sf is None or float(sf) != 2.0:
                raise ConvertError(f"{nid}: Upsample must be nearest x2, found {getattr(mod, 'mode', '?')} x{sf}")
            nodes[nid] = Node("upsample", ins, name=nid, size=2, stride=2)
        elif cls == "Concat":
            if int(getattr(mod, "d", 1)) != 1:
                raise ConvertError(f"{nid}: Concat along dimension {mod.d}, not channels")
            nodes[nid] = Node("concat", ins, name=nid)
        elif cls in ("Detect", "IDetect"):
            convs = list(_mods(_mods(mod)["m"]).values())
            # after IDetect.fuse() the implicit terms are already in the convs (forward = fuseforward)
            implicit = cls == "IDetect" and getattr(mod, "forward", None) != ("bound-method", "fuseforward")
            ia = list(_mods(_mods(mod)["ia"]).values()) if implicit else [None] * len(convs)
            im = list(_mods(_mods(mod)["im"]).values()) if implicit else [None] * len(convs)
            for k, (c, a, m) in enumerate(zip(convs, ia, im)):
                w = _param(c, "weight").astype(np.float64)
                b = _param(c, "bias").astype(np.float64)
                if a is not None:          # conv(x + ia) = W x + (b + W ia)
                    b = b + np.einsum("oi,i->o", w[:, :, 0, 0], _param(a, "implicit").reshape(-1).astype(np.float64))
                if m is not None:          # im * conv(.)
                    s = _param(m, "implicit").reshape(-1).astype(np.float64)
                    w, b = w * s[:, None, None, None], b * s
                hid = f"{nid}.m.{k}"
                nodes[hid] = Node("conv", [ins[k]], name=hid, weight=w.astype(np.float32), bias=b, act="linear",
                                  size=w.shape[2], stride=1, channels=w.shape[0])
            ag = _param(mod, "anchor_grid")
            if ag is not None:
                anchors = ag.reshape(len(convs), -1, 2).astype(np.float64)
            else:
                st = np.asarray(getattr(mod, "stride")).reshape(-1, 1, 1)
                anchors = _param(mod, "anchors").reshape(len(convs), -1, 2) * st
            out_of.append(nid)
            continue
        else:
            raise ConvertError(f"{nid}: module {cls} is not part of yolov7-tiny")
        out_of.append(nid)
    if anchors is None:
        raise ConvertError(f"{path}: no Detect / IDetect head found")
    return Source(nodes, "input", anchors=anchors, fused_bn=bool(fused), what=f"PyTorch checkpoint {path}")


# ---------------------------------------------------------------------------------- .onnx

def read_onnx(path: str) -> Source:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ConvertError("reading .onnx needs the 'onnx' package (pip install onnx)") from None
    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ConvertError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    g = model.graph
    consts: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    init_names = set(consts)
    inputs = [i.name for i in g.input if i.name not in init_names]
    if len(inputs) != 1:
        raise ConvertError(f"{path}: expected one graph input, found {inputs}")
    producer: Dict[str, str] = {inputs[0]: "input"}       # tensor name -> node id
    nodes: Dict[str, Node] = {"input": Node("input", [], name=inputs[0], channels=3)}
    alias: Dict[str, str] = {}
    implicit_a: Dict[str, Tuple[str, np.ndarray]] = {}
    anchors = []

    def src(t: str) -> str:
        t = alias.get(t, t)
        if t not in producer:
            raise ConvertError(f"{path}: tensor {t} comes from an operator this converter does not follow")
        return producer[t]

    def attr(n, name, default=None):
        for a in n.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    for k, n in enumerate(g.node):
        op = n.op_type
        if op == "Constant":
            v = consts[n.output[0]]
            if v.shape == (1, 3, 1, 1, 2):                     # 4 * anchor_grid of a --grid export
                anchors.append(v.reshape(3, 2) / 4.0)
            continue
        nid = n.name or f"{op}_{k}"
        if op == "Conv":
            if n.input[0] in implicit_a:                  # conv(x + a) = W x + (b + W a), 1x1 only
                xin, a = implicit_a[n.input[0]]
                w0 = consts[n.input[1]]
                if w0.shape[2:] != (1, 1):
                    raise ConvertError(f"{nid}: a per-channel Add before a {w0.shape[2]}x{w0.shape[3]} conv")
                b0 = consts[n.input[2]].astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
                consts[n.input[2] if len(n.input) > 2 and n.input[2] else f"{nid}.bias"] = \
                    b0 + np.einsum("oi,i->o", w0[:, :, 0, 0].astype(np.float64), a)
                if not (len(n.input) > 2 and n.input[2]):
                    n.input.append(f"{nid}.bias")
                n.input[0] = xin
            if int(attr(n, "group", 1)) != 1:
                raise ConvertError(f"{nid}: grouped convolution is not in yolov7-tiny.cfg")
            w = consts[n.input[1]].astype(np.float32)
            b = consts[n.input[2]].astype(np.float64) if len(n.input) > 2 and n.input[2] else None
            ks = list(attr(n, "kernel_shape", w.shape[2:]))
            st = list(attr(n, "strides", [1, 1]))
            pads = list(attr(n, "pads", [0, 0, 0, 0]))
            if len(set(ks)) != 1 or len(set(st)) != 1 or set(pads) != {ks[0] // 2}:
                raise ConvertError(f"{nid}: kernel {ks} stride {st} pads {pads} do not fit the cfg")
            nodes[nid] = Node("conv", [src(n.input[0])], name=nid, weight=w, bias=b, act="linear",
                              size=ks[0], stride=st[0], channels=w.shape[0])
            producer[n.output[0]] = nid
        elif op == "LeakyRelu":
            p = src(n.input[0])
            if nodes[p].kind != "conv" or abs(float(attr(n, "alpha", 0.01)) - 0.1) > 1e-6:
                raise ConvertError(f"{nid}: LeakyRelu(alpha={attr(n, 'alpha', 0.01)}) after {nodes[p].kind}, "
                                   f"expected LeakyRelu(0.1) after a conv")
            nodes[p].act = "leaky"
            producer[n.output[0]] = p
        elif op == "MaxPool":
            ks = list(attr(n, "kernel_shape"))
            st = list(attr(n, "strides", [1, 1]))
            nodes[nid] = Node("maxpool", [src(n.input[0])], name=nid, size=ks[0], stride=st[0])
            producer[n.output[0]] = nid
        elif op in ("Resize", "Upsample"):
            sc = None
            for t in n.input[1:]:
                if t and t in consts and consts[t].size == 4 and consts[t].dtype.kind == "f":
                    sc = consts[t]
            if attr(n, "mode", b"nearest") not in (b"nearest", "nearest") or (
                    sc is not None and list(np.asarray(sc, dtype=float).ravel()) != [1.0, 1.0, 2.0, 2.0]):
                raise ConvertError(f"{nid}: {op} is not a nearest x2 upsample (scales {sc})")
            if sc is None:       # scales computed in the graph (no constant folding): taken as x2, the
                log(f"{nid}: {op} scales are computed in the graph; taken as the cfg's x2")   # cfg's
            nodes[nid] = Node("upsample", [src(n.input[0])], name=nid, size=2, stride=2)
            producer[n.output[0]] = nid
        elif op == "Concat":
            try:
                ins = [src(t) for t in n.input]
            except ConvertError:
                continue                 # the decode part's concats (grid, outputs): not followed
            if int(attr(n, "axis", 1)) != 1:
                continue
            nodes[nid] = Node("concat", ins, name=nid)
            producer[n.output[0]] = nid
        elif op in ("Identity", "Cast"):
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
        elif op == "BatchNormalization":            # an export without constant folding
            p = src(n.input[0])
            node = nodes[p]
            if node.kind != "conv" or node.act != "linear" or node.bn is not None:
                raise ConvertError(f"{nid}: BatchNormalization not directly after a convolution")
            gamma, beta, mean, var = (consts[t].astype(np.float64) for t in n.input[1:5])
            if node.bias is not None:                  # W x + b - mean
                mean, node.bias = mean - node.bias, None
            node.bn = (gamma, beta, mean, var, float(attr(n, "epsilon", 1e-5)))
            producer[n.output[0]] = p
        elif op in ("Add", "Mul") and any(t in consts for t in n.input):
            # IDetect's ImplicitA (x + a before a head conv) and ImplicitM (m * conv) in an
            # export of the unfused model
            t = [t for t in n.input if t not in consts]
            c = [consts[t] for t in n.input if t in consts]
            if len(t) != 1 or c[0].ndim != 4 or c[0].shape[0] != 1 or c[0].shape[2:] != (1, 1):
                continue                                   # decode arithmetic after the heads
            vec = c[0].reshape(-1).astype(np.float64)
            if op == "Add":
                implicit_a[n.output[0]] = (alias.get(t[0], t[0]), vec)
                producer[n.output[0]] = src(t[0])
            else:
                p = src(t[0])
                node = nodes[p]
                if node.kind != "conv" or node.act != "linear" or node.bn is not None or node.size != 1:
                    raise ConvertError(f"{nid}: a per-channel Mul that is not IDetect's ImplicitM on a head conv")
                node.weight = (node.weight.astype(np.float64) * vec[:, None, None, None]).astype(np.float32)
                node.bias = (node.bias if node.bias is not None else np.zeros(vec.size)) * vec
                producer[n.output[0]] = p
        else:
            continue                     # Reshape / Transpose / Sigmoid / decode: after the heads
    src_anchors = np.stack(anchors).astype(np.float64) if len(anchors) == 3 else None
    return Source(nodes, "input", anchors=src_anchors, fused_bn=True, what=f"ONNX export {path}")


# ------------------------------------------------------------------------ darknet side

def darknet_net(cfg: str):
    from mdfi.darknet.network import Network
    return Network.from_cfg(cfg, warn=False)


def match(net, src: Source):
    """Darknet layer index -> source node id, for every conv / maxpool / upsample / route."""
    layers = net.layers
    consumers_dk: Dict[int, List[int]] = collections.defaultdict(list)
    for l in layers:
        for i in l.inputs:
            consumers_dk[i].append(l.index)
    cons_src = src.consumers()
    m: Dict[int, str] = {-1: src.input}
    used = set()

    def dk_consumer_sig(i: int) -> List[tuple]:
        out = []
        for c in consumers_dk.get(i, []):
            lc = layers[c]
            if lc.kind == "route" and len(lc.inputs) == 1:
                out += dk_consumer_sig(c)
            else:
                out.append(dk_sig(lc))
        return sorted(out)

    def dk_sig(l) -> tuple:
        if l.kind == "convolutional":
            act = {"leaky": "leaky", "logistic": "linear", "linear": "linear"}.get(l.activation, l.activation)
            return ("conv", l.filters, l.size, l.stride, act)
        if l.kind == "maxpool":
            return ("maxpool", l.size, l.stride)
        if l.kind == "upsample":
            return ("upsample", 2, l.stride)
        if l.kind == "route":
            return ("concat",)
        return (l.kind,)

    def src_consumer_sig(nid: str) -> List[tuple]:
        return sorted(src.nodes[c].sig() for c in cons_src.get(nid, []))

    for l in layers:
        if l.kind == "yolo":
            continue
        if l.kind == "route":
            if len(l.inputs) == 1:
                m[l.index] = m[l.inputs[0]]
                continue
            want = sorted(m[i] for i in l.inputs)
            cands = [nid for nid, n in src.nodes.items() if n.kind == "concat" and sorted(n.inputs) == want]
            if len(cands) != 1:
                raise ConvertError(f"cfg layer {l.index} (route {l.inputs}): {len(cands)} matching source "
                                   f"concatenations (the source is not yolov7-tiny's graph?)")
            m[l.index] = cands[0]
            continue
        if l.kind not in ("convolutional", "maxpool", "upsample"):
            raise ConvertError(f"cfg layer {l.index}: {l.kind} is not handled")
        x = m[l.inputs[0]]
        sig = dk_sig(l)
        cands = [nid for nid, n in src.nodes.items()
                 if nid not in used and n.inputs == [x] and n.sig() == sig]
        if len(cands) > 1:
            csig = dk_consumer_sig(l.index)
            cands = [c for c in cands if src_consumer_sig(c) == csig]
        if len(cands) != 1:
            raise ConvertError(f"cfg layer {l.index} ({l.kind} {sig}): {len(cands)} matching source layers "
                               f"after {src.nodes[x].name or x} (the source is not yolov7-tiny's graph?)")
        m[l.index] = cands[0]
        used.add(cands[0])
    return m


def layout_dk(net, m, i: int) -> List[Tuple[str, int]]:
    l = net.layers[i] if i >= 0 else None
    if l is not None and l.kind == "route":
        out = []
        for j in l.inputs:
            out += layout_dk(net, m, j)
        return out
    c = 3 if i < 0 else l.out_shape[0]
    return [(m[i], c)]


def layout_src(src: Source, nid: str, net, m) -> List[Tuple[str, int]]:
    n = src.nodes[nid]
    if n.kind == "concat":
        out = []
        for j in n.inputs:
            out += layout_src(src, j, net, m)
        return out
    inv = {v: k for k, v in m.items()}
    k = inv[nid]
    return [(nid, 3 if k < 0 else net.layers[k].out_shape[0])]


def input_permutation(net, m, src: Source, i: int, node: Node) -> np.ndarray:
    dk = layout_dk(net, m, net.layers[i].inputs[0])
    sl = layout_src(src, node.inputs[0], net, m)
    offs, o = {}, 0
    for nid, c in sl:
        offs[nid] = (o, c)
        o += c
    perm = []
    for nid, c in dk:
        so, sc = offs[nid]
        if sc != c:
            raise ConvertError(f"cfg layer {i}: input block of {c} channels against {sc} in the source")
        perm += list(range(so, so + c))
    if sorted(perm) != list(range(o)):
        raise ConvertError(f"cfg layer {i}: input channels do not map one to one onto the source's")
    return np.asarray(perm)


def cfg_anchors(net) -> np.ndarray:
    heads = [l for l in net.layers if l.kind == "yolo"]
    a = np.asarray(heads[0].anchors, dtype=np.float64).reshape(-1, 2)
    return np.stack([a[list(h.mask)] for h in heads])


def write_cfg_with_anchors(cfg: str, out: str, anchors: np.ndarray) -> None:
    flat = ", ".join(f"{int(round(v))}" if abs(v - round(v)) < 1e-6 else f"{v:.6g}"
                     for v in anchors.reshape(-1))
    text = open(cfg, encoding="utf-8").read()
    new, n = re.subn(r"(?m)^(\s*anchors\s*=).*$", lambda mo: f"{mo.group(1)} {flat}", text)
    if n == 0:
        raise ConvertError(f"{cfg}: no anchors= line to replace")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(new)


def convert(src: Source, cfg: str, out: str, *, cfg_out: Optional[str] = None,
            anchors: Optional[np.ndarray] = None) -> dict:
    net = darknet_net(cfg)
    m = match(net, src)
    log(f"matched {sum(1 for l in net.layers if l.kind == 'convolutional')} convolutions of {os.path.basename(cfg)} "
        f"to {src.what}")
    chunks = []
    nperm = 0
    identity_bn = 0
    for l in net.layers:
        if l.kind != "convolutional":
            continue
        node = src.nodes[m[l.index]]
        w = node.weight.astype(np.float32)
        perm = input_permutation(net, m, src, l.index, node)
        if not np.array_equal(perm, np.arange(perm.size)):
            w = w[:, perm]
            nperm += 1
        n = w.shape[0]
        if w.shape[1] != l.in_shapes[0][0] or n != l.filters or w.shape[2] != l.size:
            raise ConvertError(f"cfg layer {l.index}: weights {w.shape} do not fit the cfg's "
                               f"{l.filters}x{l.in_shapes[0][0]}x{l.size}x{l.size}")
        bias = node.bias if node.bias is not None else np.zeros(n)
        if l.batch_normalize:
            if node.bn is not None:
                gamma, beta, mean, var, eps = node.bn
                if node.bias is not None and np.any(node.bias != 0):
                    raise ConvertError(f"cfg layer {l.index}: the source conv has both a bias and a batch norm")
                # Darknet: (x - mean) / sqrt(var + .00001) * scale + bias; PyTorch eps folded into var
                chunks += [beta, gamma, mean, var + (eps - DARKNET_EPS)]
            else:
                chunks += [bias, np.ones(n), np.zeros(n), np.full(n, IDENTITY_VAR, dtype=np.float64)]
                identity_bn += 1
        else:
            if node.bn is not None:
                raise ConvertError(f"cfg layer {l.index}: the source has a batch norm where the cfg has none")
            chunks.append(bias)
        chunks.append(w)
    values = np.concatenate([np.asarray(c, dtype=np.float64).ravel().astype(np.float32) for c in chunks])
    if values.size != net.num_params():
        raise ConvertError(f"wrote {values.size} values, the cfg takes {net.num_params()}")
    if not np.all(np.isfinite(values)):
        raise ConvertError("non-finite parameter in the converted weights")
    have = cfg_anchors(net)
    src_anchors = anchors if anchors is not None else src.anchors
    anchors_note = "cfg's"
    if src_anchors is not None and not np.allclose(src_anchors, have, atol=1e-3):
        if cfg_out is None:
            raise ConvertError(f"the source's anchors {np.round(src_anchors.reshape(-1), 2).tolist()} differ from "
                               f"{os.path.basename(cfg)}'s {have.reshape(-1).tolist()}: pass --cfg-out NEW.cfg "
                               f"to write a cfg with the source's anchors")
        write_cfg_with_anchors(cfg, cfg_out, src_anchors)
        anchors_note = f"{'given (--anchors)' if anchors is not None else 'source' + chr(39) + 's'}, written to {cfg_out}"
    elif src_anchors is None:
        log("the source holds no anchors (an ONNX export without --grid): the cfg's anchors are kept; pass "
            "--anchors if the model was trained with others")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as fh:
        fh.write(np.asarray([0, 2, 5], dtype="<i4").tobytes())
        fh.write(np.asarray([0], dtype="<u8").tobytes())
        fh.write(values.astype("<f4").tobytes())
    log(f"wrote {out}: {values.size:,} parameters; input channels permuted in {nperm} convolutions; "
        f"{identity_bn} identity batch norms (batch norm fused in the source); anchors: {anchors_note}")
    return {"params": int(values.size), "permuted": nperm, "identity_bn": identity_bn,
            "anchors": (src_anchors if src_anchors is not None else have).tolist()}


def read_source(path: str) -> Source:
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"PK":
        log(f"reading PyTorch checkpoint {path} (torch-free, restricted unpickler)")
        return read_pt(path)
    if path.lower().endswith(".onnx") or magic[:1] == b"\x08":
        log(f"reading ONNX model {path}")
        return read_onnx(path)
    raise ConvertError(f"{path}: neither a zip-format .pt checkpoint nor an .onnx model")


def parse_anchors(text: str) -> np.ndarray:
    v = [float(t) for t in text.replace(",", " ").split()]
    if len(v) != 18:
        raise ConvertError(f"--anchors takes 18 numbers (9 width,height pairs), got {len(v)}")
    return np.asarray(v).reshape(3, 3, 2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="yolov7-tiny .pt checkpoint or .onnx export")
    ap.add_argument("-o", "--out", required=True, help="output Darknet .weights")
    ap.add_argument("--cfg", default=DEFAULT_CFG, help="Darknet cfg (default: cfg/yolov7-tiny.cfg)")
    ap.add_argument("--cfg-out", help="write a copy of the cfg with the source's anchors here (needed when "
                                      "they differ from the cfg's)")
    ap.add_argument("--anchors", help="18 numbers: anchors to use instead of the source's (for an ONNX export "
                                      "without --grid)")
    args = ap.parse_args(argv)
    try:
        src = read_source(args.src)
        convert(src, args.cfg, args.out, cfg_out=args.cfg_out,
                anchors=parse_anchors(args.anchors) if args.anchors else None)
    except ConvertError as exc:
        print(f"convert_yolov7_tiny: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
