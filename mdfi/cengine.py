"""The C backend of :class:`~mdfi.engine.FixedEngine`: every layer runs a C kernel.

Activations are stored at their declared widths (int8 up to 8 bits, int16 up to 16, the
pixel input as uint8; head outputs int32), so memory traffic matches a hardware datapath.
Results are bit-identical to :meth:`mdfi.quantize.QuantizedModel.forward_ref` (tested layer
by layer for whole networks).  Weights are packed once, when the runner is built.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

from . import fixedpoint as fp
from ._ext import _conv, _kernels
from .quantize import QuantizedModel

ACT_CODES = {"linear": 0, "leaky": 1, "relu": 2}


def _dtype(fmt) -> np.dtype:
    return np.dtype(np.int32) if fmt is None else fp.storage_dtype(fmt.bits, fmt.signed)


class CRunner:
    """Runs a :class:`QuantizedModel` with the C kernels on ``threads`` threads."""

    def __init__(self, qmodel: QuantizedModel, threads: int = 1):
        self.qmodel = qmodel
        self.threads = int(threads)
        self.steps: List[Callable] = []
        scratch = 0
        for ql in qmodel.layers:
            if ql.kind == "convolutional":
                l = ql.layer
                c, h, w = l.in_shape
                scratch = max(scratch, _conv.scratch_bytes(c, h, w, l.filters, l.size, l.stride, l.padding,
                                                           self.threads))
        self.scratch = np.empty(max(scratch, 1), np.uint8)
        for ql in qmodel.layers:
            self.steps.append(getattr(self, f"_plan_{ql.kind}")(ql))

    # -- planning: one closure per layer ----------------------------------------------------------
    def _plan_convolutional(self, ql):
        l = ql.layer
        packed = _conv.pack_weights(np.ascontiguousarray(ql.weights))
        bias = np.ascontiguousarray(ql.bias, dtype=np.int64)
        shift = np.ascontiguousarray(ql.shift, dtype=np.int32)
        dt = _dtype(ql.out_fmt)
        kw = dict(ksize=l.size, stride=l.stride, pad=l.padding, rounding=fp.rounding_code(ql.rounding),
                  out_bits=ql.out_fmt.bits, act=ACT_CODES[l.activation], acc64=int(ql.acc64),
                  nthreads=self.threads)

        def step(xs):
            out = np.empty(l.out_shape, dt)
            _conv.conv2d(xs[0], packed, bias, shift, out, scratch=self.scratch, **kw)
            return out
        return step

    def _plan_maxpool(self, ql):
        l = ql.layer

        def step(xs):
            out = np.empty(l.out_shape, xs[0].dtype)
            _kernels.maxpool(xs[0], out, l.size, l.stride, l.padding)
            return out
        return step

    def _plan_upsample(self, ql):
        l = ql.layer

        def step(xs):
            out = np.empty(l.out_shape, xs[0].dtype)
            _kernels.upsample(xs[0], out, l.stride)
            return out
        return step

    def _plan_reorg(self, ql):
        l = ql.layer

        def step(xs):
            out = np.empty(l.out_shape, xs[0].dtype)
            _kernels.reorg(xs[0], out, l.stride)
            return out
        return step

    def _plan_route(self, ql):
        l = ql.layer
        dt = _dtype(ql.out_fmt)
        mode = fp.rounding_code(ql.rounding)
        bits = ql.out_fmt.bits
        chans = [s[0] for s in l.in_shapes]

        def step(xs):
            out = np.empty(l.out_shape, dt)
            c0 = 0
            for x, c, shift in zip(xs, chans, ql.shifts):
                _kernels.align_copy(x, out[c0:c0 + c], shift, mode, bits)
                c0 += c
            return out
        return step

    def _plan_shortcut(self, ql):
        l = ql.layer
        dt = _dtype(ql.out_fmt)
        fa, fb = (f.frac for f in ql.in_fmts)
        args = (ql.out_fmt.frac, fp.rounding_code(ql.rounding), ql.out_fmt.bits, ACT_CODES[l.activation])

        def step(xs):
            out = np.empty(l.out_shape, dt)
            _kernels.shortcut(xs[0], fa, xs[1], fb, out, *args)
            return out
        return step

    def _plan_yolo(self, ql):
        l = ql.layer
        sel = np.where(l.logistic_mask(), 0, 1).astype(np.uint8)
        lg = np.ascontiguousarray(ql.logistic, dtype=np.uint16)
        ex = np.ascontiguousarray(ql.exp, dtype=np.int32)
        c, h, w = l.out_shape

        def step(xs):
            out = np.empty(l.out_shape, np.int32)
            _kernels.head_lookup(xs[0].reshape(c, h * w), ql.in_fmt.min, lg, ex, sel, out.reshape(c, h * w))
            return out
        return step

    def _plan_region(self, ql):
        l = ql.layer
        per = np.zeros((l.n, l.entries), np.uint8)
        per[:, 2:4] = 1
        if l.softmax:
            per[:, 5:] = 2
        sel = per.reshape(-1)
        lg = np.ascontiguousarray(ql.logistic, dtype=np.uint16)
        ex = np.ascontiguousarray(ql.exp, dtype=np.int32)
        en = np.ascontiguousarray(ql.expneg, dtype=np.int32)
        c, h, w = l.out_shape

        def step(xs):
            x2 = xs[0].reshape(c, h * w)
            out = np.empty((c, h * w), np.int32)
            _kernels.head_lookup(x2, ql.in_fmt.min, lg, ex, sel, out)
            if l.softmax:
                _kernels.softmax_int(x2, l.n, l.entries, 5, l.classes, en, out)
            return out.reshape(l.out_shape)
        return step

    # -- running ------------------------------------------------------------------------------------
    def run(self, x_u8: np.ndarray, *, keep: str = "all",
            hook: Optional[Callable[[int, np.ndarray], None]] = None) -> List[Optional[np.ndarray]]:
        x = self.qmodel.check_input(x_u8)
        qls = self.qmodel.layers
        last = {}
        for ql in qls:
            for i in ql.inputs:
                last[i] = ql.index
        heads = {l.index for l in self.qmodel.network.output_layers()}
        outs: List[Optional[np.ndarray]] = [None] * len(qls)
        for ql, step in zip(qls, self.steps):
            xs = [x if i == -1 else outs[i] for i in ql.inputs]
            out = step(xs)
            outs[ql.index] = out
            if hook is not None:
                hook(ql.index, out)
            if keep == "needed":
                for i in ql.inputs:
                    if i >= 0 and last.get(i) == ql.index and i not in heads:
                        outs[i] = None
        return outs
