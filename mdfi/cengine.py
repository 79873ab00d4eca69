"""The C backend of :class:`~mdfi.engine.FixedEngine`: every layer runs a C kernel.

Activations are stored at their declared widths (int8 up to 8 bits, int16 up to 16, the
pixel input as uint8; head outputs int32), so memory traffic matches a hardware datapath.
Results are bit-identical to :meth:`mdfi.quant.quantize.QuantizedModel.forward_ref` (tested layer
by layer for whole networks).  Weights are packed once, when the runner is built.

Buffers.  ``run(x, keep="needed")`` (the detection path) writes every intermediate output
into buffers planned once per runner: a buffer is reused as soon as the last consumer of
its tensor has run, so memory stays that of the live tensors and no page is faulted in
again on the next run.  Only the head outputs are returned (fresh arrays; every other entry
is None).  ``keep="all"`` and ``hook=`` allocate a new array per layer, as the caller keeps
them.
"""

from __future__ import annotations

import threading
from typing import Callable, List, Optional

import numpy as np

from . import fixedpoint as fp
from ._ext import _conv, _kernels
from .quant.qmodel import QuantizedModel

ACT_CODES = {"linear": 0, "leaky": 1, "relu": 2}
#: Grouped convolutions with at most this many input channels per group run on the direct
#: kernel (csrc/mdfi_kernels_grouped.c), the others as one GEMM-kernel call per group
#: (docs/performance.md "Grouped convolutions": depthwise Yolo-Fastest 3.5x faster direct;
#: csresnext50's groups of 4-32 channels as fast or faster on the GEMM kernels).
GROUPED_DIRECT_MAX = 2


def _dtype(fmt) -> np.dtype:
    return np.dtype(np.int32) if fmt is None else fp.storage_dtype(fmt.bits, fmt.signed)


def engine_acc64(ql) -> bool:
    """Whether the C convolution of ``ql`` needs int64 sums.

    ``ql.acc64`` is the documented accumulator (``acc_bits > 32``: the worst case over every
    weight and input code the formats allow; the golden model's ``acc_bits``).  The layer's
    own integers often prove more: every partial sum of output channel m is at most
    ``sum_k |w[m, k]| * xmax`` (xmax = the largest magnitude of the input's storage type, the
    padding value included), so when ``sum_k |w[m, k]| * xmax + |bias[m]| <= 2**31 - 1`` for
    every m -- the int32 contract of ``_conv.conv2d(acc64=0)`` -- the int32 kernels compute the
    same integers (yolov3-tiny's layer 15: 16-bit inputs, ``acc_bits`` 33, the bound 0.77e9).
    For ``_conv.conv2d`` calls (dense layers, and grouped ones one group per call: each row's
    bound holds within its group); the answer depends on the integers alone, never on the
    input.  docs/fixed-point.md 3.5."""
    if not ql.acc64:
        return False
    dt = _dtype(ql.in_fmt)
    if dt.itemsize > 2:
        return True
    info = np.iinfo(dt)
    xmax = max(-int(info.min), int(info.max))
    w = np.abs(np.asarray(ql.weights, dtype=np.int64).reshape(len(ql.bias), -1)).sum(axis=1)
    worst = w * xmax + np.abs(np.asarray(ql.bias, dtype=np.int64))
    return bool(worst.max(initial=0) > np.iinfo(np.int32).max)


class CRunner:
    """Runs a :class:`QuantizedModel` with the C kernels on ``threads`` threads."""

    def __init__(self, qmodel: QuantizedModel, threads: int = 1, fuse: bool = False, fuse_pool: bool = True):
        self.qmodel = qmodel
        self.threads = int(threads)
        # convolution index -> the [shortcut] fused into it (``fuse=True``; off by default: it
        # measured no faster on the development machine, docs/performance.md)
        self.fused = self._plan_fusion() if fuse else {}
        self._fused_steps = {}
        # convolution index -> the tile-aligned 2x2 stride-2 [maxpool] right after it, which
        # the convolution writes in the same pass where its kernel can (_plan_pool_fusion)
        self.pooled = self._plan_pool_fusion() if fuse_pool else {}
        self._pool_steps = {}
        # ... of which the pool is the only reader: run(keep="needed") without a hook lets the
        # convolution write the pool alone (its own output buffer is then left stale)
        readers = self.qmodel.network.consumers()
        self.pool_only = {i for i, j in self.pooled.items() if readers.get(i) == [j]}
        self._lock = threading.Lock()
        self.steps: List[Callable] = []
        scratch = 0
        for ql in qmodel.layers:
            if ql.kind == "convolutional":
                l = ql.layer
                c, h, w = l.in_shape
                scratch = max(scratch, _conv.scratch_bytes(c // l.groups, h, w, l.filters // l.groups, l.size,
                                                           l.stride, l.padding, self.threads))   # one group's call
        self.scratch = np.empty(max(scratch, 1), np.uint8)
        # pre-activation codes of the table activations (docs/fixed-point.md 4.1): one buffer,
        # used by one layer at a time (runs hold the lock)
        pre = [int(np.prod(ql.layer.out_shape)) * fp.storage_dtype(ql.pre_fmt.bits).itemsize
               for ql in qmodel.layers if getattr(ql, "lut", False)]
        self.pre_scratch = np.empty(max(pre + [1]), np.uint8)
        for ql in qmodel.layers:
            self.steps.append(getattr(self, f"_plan_{ql.kind}")(ql))
        self.out_dtypes = self._out_dtypes()
        self._plan_buffers()

    def _plan_fusion(self) -> dict:
        """Convolutions whose output only a directly following [shortcut] reads (its first
        input, same shape as its other input and output, no table activation on either,
        activations of at most 16 bits): the convolution computes the shortcut in its
        epilogue (``_conv.conv2d(residual=...)``, mdfi_conv2d_res), whose value is that of the
        separate shortcut kernel -- the same requantize of the same exact aligned sum.  The
        convolution's own output is still written (hooks and keep="all" see it)."""
        qls = self.qmodel.layers
        readers = self.qmodel.network.consumers()
        heads = {l.index for l in self.qmodel.network.output_layers()}
        fused = {}
        for ql in qls[:-1]:
            i = ql.index
            sc = qls[i + 1]
            if ql.kind != "convolutional" or sc.kind != "shortcut" or getattr(ql, "lut", False) or \
                    ql.layer.groups > 1 or getattr(sc, "lut", False) or i in heads or readers.get(i) != [i + 1]:
                continue
            l = sc.layer
            if list(sc.inputs[:1]) != [i] or len(sc.inputs) != 2 or sc.inputs[1] in (i, -1) or \
                    any(tuple(shp) != tuple(l.out_shape) for shp in l.in_shapes) or \
                    tuple(ql.layer.out_shape) != tuple(l.out_shape):
                continue
            if any(f.bits > 16 or not f.signed or f.zero for f in list(sc.in_fmts) + [sc.out_fmt, ql.out_fmt,
                                                                                       ql.in_fmt]):
                continue
            fused[i] = i + 1
        return fused

    def _plan_pool_fusion(self) -> dict:
        """Convolutions followed directly by a [maxpool] reading only them whose windows are
        exactly the 2x2 output tiles of the Winograd kernels: size 2, stride 2 (both ways), the
        window origin at 0 (padding 0 or 1: offset -padding/2 = 0, maxpool.py) and an even
        output height and width, so the pool's output is (M, OH/2, OW/2) and no window touches
        the padding.  The convolution then also writes the pool's output
        (``_conv.conv2d(pool=...)``, mdfi_conv2d_pool): the max of the same stored values,
        equal to the separate pool kernel's; where its kernel cannot (other paths, other
        layers), the step runs the pool kernel itself.  The convolution's own output is still
        written (a route may read it: yolov3-tiny layer 8 -> route 20), except where the pool
        is its only reader and ``run(keep="needed")`` has no hook (``pool_only``).  Table activations
        (the output is a lookup after the convolution) and fused shortcuts are not fused."""
        qls = self.qmodel.layers
        readers = self.qmodel.network.consumers()
        heads = {l.index for l in self.qmodel.network.output_layers()}
        pooled = {}
        for ql in qls[:-1]:
            i, mp = ql.index, qls[ql.index + 1]
            if ql.kind != "convolutional" or mp.kind != "maxpool" or getattr(ql, "lut", False) or \
                    ql.layer.groups > 1 or i in self.fused or i in heads or i + 1 not in readers.get(i, []) or list(mp.inputs) != [i]:
                continue
            l, p = ql.layer, mp.layer
            m, oh, ow = l.out_shape
            if p.depth or p.size != 2 or p.stride != 2 or p.stride_y != 2 or p.padding // 2 != 0 or \
                    oh % 2 or ow % 2 or tuple(p.out_shape) != (m, oh // 2, ow // 2):
                continue
            pooled[i] = i + 1
        return pooled

    def _out_dtypes(self) -> List[np.dtype]:
        """Storage dtype of every layer's output (pools and copies keep their input's)."""
        dts: List[np.dtype] = []
        for ql in self.qmodel.layers:
            if ql.kind in ("yolo", "region"):
                dts.append(np.dtype(np.int32))
            elif ql.kind in ("maxpool", "upsample", "reorg"):
                i = ql.inputs[0]
                dts.append(np.dtype(np.uint8) if i == -1 else dts[i])
            else:
                dts.append(_dtype(ql.out_fmt))
        return dts

    def _plan_inplace_routes(self):
        """Routes that run(keep="needed") without a hook need not copy (docs/performance.md,
        stop 37).  A [route] input in the route's own format and storage type (a plain copy) is
        *placed*: its producer writes straight into the route's buffer at the input's channel
        offset (a channel slice of a (C,H,W) array is contiguous), so the concatenation is
        already there; a one-input route of such an input (with or without groups) is a *view* of
        its channels.  Each tensor has at most one home: an input already placed (yolov4-tiny's
        layer 23 feeds routes 24 and 34), the network input, heads and inputs in another format
        are still copied.  Returns (parent, placed): tensor -> (home tensor, first, last channel)
        and route -> positions of its inputs that need no copy."""
        qls = self.qmodel.layers
        heads = self._heads
        parent: dict = {}
        placed: dict = {}
        for ql in qls:
            if ql.kind != "route":
                continue
            r, l = ql.index, ql.layer
            dt = self.out_dtypes[r]
            ok = [copy and i != -1 and i not in heads and self.out_dtypes[i] == dt
                  for i, copy in zip(ql.inputs, ql.copies())]
            if len(ql.inputs) == 1:
                if ok[0]:
                    a, b = l.slices()[0] if getattr(l, "groups", 1) > 1 else (0, l.in_shapes[0][0])
                    parent[r] = (ql.inputs[0], a, b)
                    placed[r] = {0}
                continue
            if getattr(l, "groups", 1) > 1:
                continue
            c0, pos = 0, set()
            for k, (i, shape) in enumerate(zip(ql.inputs, l.in_shapes)):
                if ok[k] and i not in parent and i not in ql.inputs[:k]:
                    parent[i] = (r, c0, c0 + shape[0])
                    pos.add(k)
                c0 += shape[0]
            if pos:
                placed[r] = pos
        return parent, placed

    def _plan_buffers(self) -> None:
        """Buffers of run(keep="needed"): one view per non-head layer into a shared pool of
        byte buffers.  A tensor placed in a route (or a route that is a view of its input,
        _plan_inplace_routes) is a channel slice of its home's view; each home and the tensors
        in it share one buffer, taken when the first of them is computed and returned to the
        pool after the last read of any of them."""
        qls = self.qmodel.layers
        last = self.qmodel.network.last_use()
        self._heads = {l.index for l in self.qmodel.network.output_layers()}
        self._last = last
        # a fused convolution writes its shortcut's (or pool's) output while it reads its own
        # input: that input stays allocated until the fused layer's output has its buffer
        last = dict(last)
        for i, j in list(self.fused.items()) + list(self.pooled.items()):
            for k in qls[i].inputs:
                if last.get(k) == i:
                    last[k] = j
        parent, self._placed = self._plan_inplace_routes()

        def root(t):
            while t in parent:
                t = parent[t][0]
            return t
        start: dict = {}
        end: dict = {}
        for ql in qls:
            t = ql.index
            if t in self._heads:
                continue
            g = root(t)
            start[g] = min(start.get(g, t), t)
            end[g] = max(end.get(g, t), t if last.get(t) is None else last[t])
        starting: dict = {}
        ending: dict = {}
        for g in start:
            starting.setdefault(start[g], []).append(g)
            ending.setdefault(end[g], []).append(g)
        free: List[np.ndarray] = []
        bufs: dict = {}
        for ql in qls:
            for grp in starting.get(ql.index, ()):
                shape, dt = qls[grp].layer.out_shape, self.out_dtypes[grp]
                nbytes = int(np.prod(shape)) * dt.itemsize
                fits = [b for b in free if b.size >= nbytes]
                if fits:
                    buf = min(fits, key=lambda b: b.size)
                    free = [b for b in free if b is not buf]
                else:
                    buf = np.empty(max(nbytes, 1), np.uint8)
                bufs[grp] = buf
            for grp in ending.get(ql.index, ()):
                free.append(bufs[grp])
        views: List[Optional[np.ndarray]] = [None] * len(qls)

        def view(t):
            if views[t] is None:
                shape, dt = qls[t].layer.out_shape, self.out_dtypes[t]
                if t in parent:
                    p, a, b = parent[t]
                    views[t] = view(p)[a:b]
                    assert views[t].shape == tuple(shape) and views[t].dtype == dt, (t, views[t].shape, shape)
                else:
                    views[t] = bufs[t][:int(np.prod(shape)) * dt.itemsize].view(dt).reshape(shape)
            return views[t]
        for ql in qls:
            if ql.index not in self._heads:
                view(ql.index)
        self._views = views
        # the copies a route still makes (its placed inputs are already in place)
        self._route_steps = {i: self._route_step(qls[i], skip) for i, skip in self._placed.items()}

    # -- planning: one closure per layer ----------------------------------------------------------
    def _pre_view(self, ql):
        """The pre-activation buffer of a table-activation layer (a view of pre_scratch)."""
        dt = fp.storage_dtype(ql.pre_fmt.bits)
        n = int(np.prod(ql.layer.out_shape))
        return lambda: self.pre_scratch[:n * dt.itemsize].view(dt).reshape(ql.layer.out_shape)

    def _then_table(self, ql, produce):
        """A step that writes the linear pre-activation code, then looks the output up."""
        pre_view = self._pre_view(ql)
        table = np.ascontiguousarray(ql.act_lut, dtype=np.int32)
        qmin, nt = ql.pre_fmt.min, self.threads

        def step(xs, out):
            pre = pre_view()
            produce(xs, pre)
            _kernels.lut(pre, qmin, table, out, nthreads=nt)
        return step

    def _plan_convolutional(self, ql):
        l = ql.layer
        packed = _conv.pack_weights(np.ascontiguousarray(ql.weights)) if l.groups == 1 else None   # else per group
        bias = np.ascontiguousarray(ql.bias, dtype=np.int64)
        shift = np.ascontiguousarray(ql.shift, dtype=np.int32)
        lut = getattr(ql, "lut", False)
        kw = dict(ksize=l.size, stride=l.stride, pad=l.padding, rounding=fp.rounding_code(ql.rounding),
                  out_bits=ql.pre_fmt.bits if lut else ql.out_fmt.bits,
                  act=ACT_CODES["linear" if lut else l.activation], acc64=int(engine_acc64(ql)),
                  nthreads=self.threads)
        # zero points (docs/fixed-point.md 1.1): the padding holds the input's, the epilogue adds
        # the output's (a table activation folds it into its table)
        if ql.in_fmt.zero:
            kw["pad_value"] = ql.in_fmt.zero
        if not lut and ql.out_fmt.zero:
            kw["zero_out"] = ql.out_fmt.zero

        def whole(xs, out):
            _conv.conv2d(xs[0], packed, bias, shift, out, scratch=self.scratch, **kw)
        step = self._grouped_step(ql, kw) if l.groups > 1 else whole
        j = self.fused.get(ql.index)
        if j is not None:
            sc = self.qmodel.layers[j]
            fa, fb = (f.frac for f in sc.in_fmts)
            rargs = (sc.sum_frac - fa, sc.sum_frac - fb, sc.shift, fp.rounding_code(sc.rounding), sc.out_fmt.bits,
                     ACT_CODES[sc.layer.activation])

            def fstep(xs, out, b, rout):
                _conv.conv2d(xs[0], packed, bias, shift, out, scratch=self.scratch, residual=(b, rout) + rargs,
                             **kw)
            self._fused_steps[ql.index] = fstep
        j = self.pooled.get(ql.index)
        if j is not None:
            p, nt = self.qmodel.layers[j].layer, self.threads

            def pstep(xs, out, pout, only=False):
                if not _conv.conv2d(xs[0], packed, bias, shift, out, scratch=self.scratch, pool=pout, pool_only=only,
                                    **kw):
                    _kernels.maxpool(out, pout, p.size, p.stride, p.padding, nthreads=nt)
            self._pool_steps[ql.index] = pstep
        return self._then_table(ql, step) if lut else step

    def _grouped_step(self, ql, kw):
        """A grouped convolution (docs/fixed-point.md 3.6), never fused (_plan_fusion,
        _plan_pool_fusion).  With at most GROUPED_DIRECT_MAX input channels per group (depthwise
        and the like) one call of the direct kernel (csrc/mdfi_kernels_grouped.c) does every
        group; else one GEMM-kernel call per group: group j reads input channels [j*C/g,
        (j+1)*C/g) and writes output channels [j*M/g, (j+1)*M/g), contiguous (C,H,W) slices of
        the layer's input and output.  Both compute the reference's integers."""
        g, m = ql.layer.groups, ql.layer.filters
        cg, mg = ql.layer.group_channels, m // g
        w = np.ascontiguousarray(ql.weights)
        if cg <= GROUPED_DIRECT_MAX:
            w16 = np.ascontiguousarray(w, dtype=np.int16)
            bias, shift = (np.ascontiguousarray(ql.bias, dtype=np.int64), np.ascontiguousarray(ql.shift, dtype=np.int32))
            args = (g, kw["ksize"], kw["stride"], kw["pad"], kw.get("pad_value", 0), kw["rounding"], kw["out_bits"],
                    kw["act"], kw.get("zero_out", 0), int(not ql.acc64))
            nt = self.threads

            def direct(xs, out):
                _kernels.conv_grouped(xs[0], w16, bias, shift, out, *args, nthreads=nt)
            return direct
        parts = [(slice(j * cg, (j + 1) * cg), slice(j * mg, (j + 1) * mg)) for j in range(g)]
        packs = [(_conv.pack_weights(np.ascontiguousarray(w[o])),
                  np.ascontiguousarray(ql.bias[o], dtype=np.int64), np.ascontiguousarray(ql.shift[o], dtype=np.int32))
                 for _, o in parts]

        def step(xs, out):
            for (i, o), (packed, bias, shift) in zip(parts, packs):
                _conv.conv2d(xs[0][i], packed, bias, shift, out[o], scratch=self.scratch, **kw)
        return step

    def _plan_maxpool(self, ql):
        l = ql.layer
        nt = self.threads

        def step(xs, out):
            _kernels.maxpool(xs[0], out, l.size, l.stride, l.padding, nthreads=nt)
        return step

    def _plan_upsample(self, ql):
        l = ql.layer
        nt = self.threads

        def step(xs, out):
            _kernels.upsample(xs[0], out, l.stride, nthreads=nt)
        return step

    def _plan_reorg(self, ql):
        l = ql.layer

        def step(xs, out):
            _kernels.reorg(xs[0], out, l.stride)
        return step

    def _plan_avgpool(self, ql):
        """The global average pool (docs/fixed-point.md 9.1; csrc/mdfi_kernels_scale.c)."""
        args = (ql.in_fmt.zero, ql.d, fp.rounding_code(ql.rounding), ql.out_fmt.bits, ql.out_fmt.zero)

        def step(xs, out):
            _kernels.avgpool(xs[0], args[0], args[1], args[2], args[3], args[4], out)
        return step

    def _plan_scale_channels(self, ql):
        """[scale_channels] / [sam] (docs/fixed-point.md 9.2; csrc/mdfi_kernels_scale.c)."""
        l = ql.layer
        fa, fb = ql.in_fmts
        c, h, w = l.out_shape
        shape = {"channels": (c, 1, 1), "spatial": (1, h, w), "elementwise": (c, h, w)}[l.mode]
        args = (l.mode, ql.shift, fp.rounding_code(ql.rounding), ql.out_fmt.bits, ACT_CODES[l.activation],
                ql.out_fmt.zero)

        def step(xs, out):
            _kernels.scale_channels(xs[0].reshape(shape), fa.zero, xs[1], fb.zero, *args, out)
        return step

    def _plan_route(self, ql):
        return self._route_step(ql)

    def _route_step(self, ql, skip=frozenset()):
        """The route's copies (and alignments), except of the inputs at positions ``skip``
        (placed in its buffer already: _plan_inplace_routes); None when nothing is left."""
        l = ql.layer
        nt = self.threads
        mode = fp.rounding_code(ql.rounding)
        bits = ql.out_fmt.bits
        slices = l.slices() if getattr(l, "groups", 1) > 1 else [(0, s[0]) for s in l.in_shapes]

        # an input in the output's frac and zero point is a plain copy (the kernel's fast path)
        zs = [{} if copy else dict(zero_in=f.zero, zero_out=ql.out_fmt.zero)
              for f, copy in zip(ql.in_fmts, ql.copies())]
        parts, c0 = [], 0
        for k, ((a, b), shift, z) in enumerate(zip(slices, ql.shifts, zs)):
            if k not in skip:
                parts.append((k, a, b, c0, shift, z))
            c0 += b - a
        if not parts:
            return None

        def step(xs, out):
            for k, a, b, o0, shift, z in parts:
                # a channel slice of a (C,H,W) tensor is contiguous
                _kernels.align_copy(xs[k][a:b], out[o0:o0 + b - a], shift, mode, bits, nthreads=nt, **z)
        return step

    def _plan_shortcut(self, ql):
        l = ql.layer
        nt = self.threads
        fa, fb = (f.frac for f in ql.in_fmts)
        lut = getattr(ql, "lut", False)
        sf = ql.pre_fmt if lut else ql.out_fmt
        args = (sf.frac, fp.rounding_code(ql.rounding), sf.bits, ACT_CODES["linear" if lut else l.activation])
        n_out = int(np.prod(l.out_shape))
        n_common = ql.common
        # zero points (docs/fixed-point.md section 6): subtracted from the inputs, the output's
        # added before the saturation (a table folds it: the pre code has none)
        za, zb = (f.zero for f in ql.in_fmts)
        zs = dict(za=za, zb=zb, zo=0 if lut else ql.out_fmt.zero)

        def step(xs, out):
            if n_common == n_out and xs[1].size == n_out:
                _kernels.shortcut(xs[0], fa, xs[1], fb, out, *args, nthreads=nt, **zs)
                return
            a, b, o = xs[0].reshape(-1), xs[1].reshape(-1), out.reshape(-1)
            _kernels.shortcut(a[:n_common], fa, b[:n_common], fb, o[:n_common], *args, nthreads=nt, **zs)
            if n_out > n_common:
                # elements of the previous layer beyond the from layer: b's real value is 0
                _kernels.shortcut(a[n_common:], fa, None, fb, o[n_common:], *args, nthreads=nt, b_type=b.dtype, **zs)
        return self._then_table(ql, step) if lut else step

    def _plan_yolo(self, ql):
        l = ql.layer
        nt = self.threads
        sel = np.ascontiguousarray(ql.table_select(), dtype=np.uint8)
        lg = np.ascontiguousarray(ql.logistic, dtype=np.uint16)
        ex = np.ascontiguousarray(ql.exp, dtype=np.int32)
        xy = None if ql.xy is None else np.ascontiguousarray(ql.xy, dtype=np.int32)
        c, h, w = l.out_shape
        e = l.entries

        def step(xs, out):
            x2, o2 = xs[0].reshape(c, h * w), out.reshape(c, h * w)
            _kernels.head_lookup(x2, ql.in_fmt.min, lg, ex, sel, o2, nthreads=nt)   # sel 2: left
            if xy is not None:
                for a in range(l.n):                # x and y of an anchor: 2 contiguous planes
                    _kernels.lut(x2[a * e:a * e + 2], ql.in_fmt.min, xy, o2[a * e:a * e + 2], nthreads=nt)
        return step

    def _plan_region(self, ql):
        l = ql.layer
        nt = self.threads
        per = np.zeros((l.n, l.entries), np.uint8)
        per[:, 2:4] = 1
        if l.softmax:
            per[:, 5:] = 2
        sel = per.reshape(-1)
        lg = np.ascontiguousarray(ql.logistic, dtype=np.uint16)
        ex = np.ascontiguousarray(ql.exp, dtype=np.int32)
        en = np.ascontiguousarray(ql.expneg, dtype=np.int32)
        c, h, w = l.out_shape

        def step(xs, out):
            x2 = xs[0].reshape(c, h * w)
            o2 = out.reshape(c, h * w)
            _kernels.head_lookup(x2, ql.in_fmt.min, lg, ex, sel, o2, nthreads=nt)
            if l.softmax:
                _kernels.softmax_int(x2, l.n, l.entries, 5, l.classes, en, o2)
        return step

    # -- running ------------------------------------------------------------------------------------
    def new_output(self, index: int) -> np.ndarray:
        """A fresh array for layer ``index``'s output."""
        return np.empty(self.qmodel.layers[index].layer.out_shape, self.out_dtypes[index])

    def run(self, x_u8: np.ndarray, *, keep: str = "all",
            hook: Optional[Callable[[int, np.ndarray], None]] = None) -> List[Optional[np.ndarray]]:
        """Every layer's output (``keep="all"``), or only the heads' (``keep="needed"``:
        intermediate outputs live in the runner's reused buffers and are not returned)."""
        x = self.qmodel.check_input(x_u8)
        # The kernels release the GIL, and the scratch and planned buffers belong to the
        # runner: one run at a time (a model shared by Python threads stays correct; each
        # run uses all of the runner's threads anyway).
        with self._lock:
            return self._run(x, keep, hook)

    def _run(self, x: np.ndarray, keep: str,
             hook: Optional[Callable[[int, np.ndarray], None]]) -> List[Optional[np.ndarray]]:
        qls = self.qmodel.layers
        outs: List[Optional[np.ndarray]] = [None] * len(qls)
        fused, fsteps = self.fused, self._fused_steps
        pooled, psteps, pool_only = self.pooled, self._pool_steps, self.pool_only
        if keep == "needed" and hook is None:
            views, heads, rsteps = self._views, self._heads, self._route_steps
            for ql, step in zip(qls, self.steps):
                i = ql.index
                if outs[i] is not None:             # a shortcut its convolution computed
                    continue
                out = self.new_output(i) if i in heads else views[i]
                xs = [x if j == -1 else outs[j] for j in ql.inputs]
                j = fused.get(i)
                if j is not None:
                    rout = self.new_output(j) if j in heads else views[j]
                    fsteps[i](xs, out, outs[qls[j].inputs[1]], rout)
                    outs[j] = rout
                elif i in pooled:
                    j = pooled[i]
                    pout = self.new_output(j) if j in heads else views[j]
                    psteps[i](xs, out, pout, i in pool_only)
                    outs[j] = pout
                elif i in rsteps:
                    rstep = rsteps[i]
                    if rstep is not None:          # the inputs not placed in its buffer
                        rstep(xs, out)
                else:
                    step(xs, out)
                outs[i] = out
            return [o if i in heads else None for i, o in enumerate(outs)]
        net, last = self.qmodel.network, (self._last if keep == "needed" else {})
        pending = {}
        for ql, step in zip(qls, self.steps):
            i = ql.index
            if i in pending:
                out = pending.pop(i)
            else:
                out = self.new_output(i)
                xs = [x if k == -1 else outs[k] for k in ql.inputs]
                j = fused.get(i)
                if j is not None:
                    pending[j] = self.new_output(j)
                    fsteps[i](xs, out, outs[qls[j].inputs[1]], pending[j])
                elif i in pooled:
                    pending[pooled[i]] = self.new_output(pooled[i])
                    psteps[i](xs, out, pending[pooled[i]])
                else:
                    step(xs, out)
            outs[ql.index] = out
            if hook is not None:
                hook(ql.index, out)
            net.release_inputs(outs, ql.index, last)
        return outs
