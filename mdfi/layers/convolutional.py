"""``[convolutional]`` (alias ``[conv]``): Darknet's convolutional_layer.c.

Darknet defaults (parse_convolutional, src/parser.c): filters=1, size=1, stride=1,
pad=0, padding=0 (``pad=1`` overrides it with ``size/2``), groups=1,
activation=logistic (!), batch_normalize=0.
Output size (convolutional_out_width): ``(w + 2*padding - size)/stride + 1``.

Weights file order (load_convolutional_weights): biases[n]; if batch_normalize:
scales[n], rolling_mean[n], rolling_variance[n]; then weights[n][c][size][size].

Float forward, pjreddie (forward_convolutional_layer): ``out = W x im2col(in)``; with batch
norm ``out = (out - mean)/(sqrt(var) + .000001f)`` (normalize_cpu, pjreddie src/blas.c:154:
the epsilon is added *after* the square root), ``out *= scales``; then ``out += biases``;
then activation.

Float forward, AlexeyAB: test_detector first fuses batch norm into the weights
(fuse_conv_batchnorm, AB src/network.c:1295-1327, in double, stored as float):
``b' = b - scale*mean/sqrt(var + .00001)``, ``w' = w*scale/sqrt(var + .00001)``; the forward
is then ``W' x im2col(in) + b'`` and the activation (src/convolutional_layer.c:1390-1404).
AlexeyAB also has ``stride_x``/``stride_y`` and ``dilation`` (parse_convolutional,
src/parser.c:176-188; im2col_cpu_ext, src/im2col.c:53-93, called with ``pad*dilation``,
src/convolutional_layer.c:1370-1378) and ``cbn`` (cross-iteration batch norm, the same as
batch_normalize=1 outside training).
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..darknet import activations
from .. import actlut
from ..blas import one_thread as one_blas_thread
from .. import fixedpoint as fp
from ..errors import FormatError, ShapeError
from ..limits import MAX_DIM, MAX_KERNEL
from .base import Layer, QLayer, check_positive_shape, meta_format
from .conv_arith import by_blocks, conv2d_int_ref, conv_out_size, group_matmul, im2col, int_matmul  # noqa: F401 (re-exported)

BN_EPS = np.float32(0.000001)  # pjreddie normalize_cpu: sqrt(variance) + .000001f
AB_BN_EPS = 0.00001            # AlexeyAB fuse_conv_batchnorm: sqrt((double)variance + .00001)


class ConvolutionalLayer(Layer):
    kind = "convolutional"
    groups = 1

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        ab = net.darknet == "alexeyab"
        layer.darknet = net.darknet
        c, h, w = layer.in_shape
        layer.filters = sec.get_int("filters", 1, minimum=1)
        MAX_DIM.check(layer.filters, f"{sec.path}:{sec.line}: [convolutional] filters")
        layer.size = sec.get_int("size", 1, minimum=1)
        MAX_KERNEL.check(layer.size, f"{sec.path}:{sec.line}: [convolutional] size")
        if ab:
            # AB src/parser.c:174-188: stride is only read when stride_x or stride_y is missing.
            sx = sec.get_int("stride_x", -1) if sec.has("stride_x") else -1
            sy = sec.get_int("stride_y", -1) if sec.has("stride_y") else -1
            if sx < 1 or sy < 1:
                stride = sec.get_int("stride", 1)
                sx = stride if sx < 1 else sx
                sy = stride if sy < 1 else sy
            elif sec.has("stride"):
                sec.get_int("stride", 1)
            for key, v in (("stride", sx), ("stride", sy)):
                if v < 1:
                    raise sec.error(f"{key}={v}: must be >= 1", key)
            layer.stride, layer.stride_y = sx, sy
            layer.dilation = sec.get_int("dilation", 1, minimum=1) if sec.has("dilation") else 1
            if layer.size == 1:
                layer.dilation = 1                       # AB src/parser.c:188
        else:
            layer.stride = layer.stride_y = sec.get_int("stride", 1, minimum=1)
            layer.dilation = 1
        for v in (layer.stride, layer.stride_y, layer.dilation):
            MAX_KERNEL.check(v, f"{sec.path}:{sec.line}: [convolutional] stride/dilation")
        pad = sec.get_int("pad", 0, minimum=0)
        layer.padding = sec.get_int("padding", 0, minimum=0)
        if pad:
            layer.padding = layer.size // 2
        # The forward pads the input: an absurd padding would allocate an absurd tensor.
        MAX_KERNEL.check(layer.padding * layer.dilation, f"{sec.path}:{sec.line}: [convolutional] padding")
        # Grouped convolution (pj src/convolutional_layer.c:458-469, AB src/convolutional_layer.c:
        # 1222-1235, 1364-1380): group j convolves input channels [j*c/g, (j+1)*c/g) with filters
        # [j*n/g, (j+1)*n/g); the file holds n*(c/g)*size*size weights (pj :195, AB :543).
        groups = sec.get_int("groups", 1)
        if groups < 1:
            if not ab:                                   # pj divides by it (a crash); AB resets it to 1
                raise sec.error(f"groups={groups}: must be >= 1 (pjreddie's Darknet divides by it, "
                                f"src/convolutional_layer.c:195)", "groups")
            groups = 1                                   # AB src/convolutional_layer.c:511
        if groups > 1 and (c % groups or layer.filters % groups):
            raise sec.error(f"groups={groups} does not divide the {c} input channels and {layer.filters} filters: "
                            f"Darknet's integer divisions (src/convolutional_layer.c: c/groups, n/groups) would "
                            f"leave channels or filters out; not a trainable model", "groups")
        layer.groups = groups
        for key in ("binary", "xnor"):
            if sec.has(key) and sec.get_int(key, 0):
                raise sec.error(f"{key}=1: binary/XNOR convolutions are not supported by MDFI", key)
        layer.batch_normalize = bool(sec.get_int("batch_normalize", 0))
        if ab and sec.has("cbn") and sec.get_int("cbn", 0):
            layer.batch_normalize = True                 # AB src/parser.c:211: batch_normalize = 2
        layer.activation = parse_activation(sec, "logistic", net.darknet)
        oh = conv_out_size(h, layer.size, layer.stride_y, layer.padding)
        ow = conv_out_size(w, layer.size, layer.stride, layer.padding)
        layer.out_shape = check_positive_shape(layer, (layer.filters, oh, ow))
        if layer.dilation > 1:
            ext = layer.dilation * (layer.size - 1) + 1
            pd = layer.padding * layer.dilation
            if ((h + 2 * pd - ext) // layer.stride_y + 1, (w + 2 * pd - ext) // layer.stride + 1) != (oh, ow):
                raise sec.error(f"dilation={layer.dilation}: Darknet's output size ignores the dilation "
                                f"(AB src/convolutional_layer.c:78-86) but its im2col_cpu_ext does not "
                                f"(src/im2col.c:60-63); with size={layer.size} padding={layer.padding} the two "
                                f"disagree, so Darknet reads past its columns", "dilation")
        if ab and layer.size == 1 and layer.stride == 1 and layer.stride_y != 1:
            raise sec.error(f"stride_y={layer.stride_y} with size=1 stride_x=1: AlexeyAB's forward reads "
                            f"the input unstrided there (src/convolutional_layer.c:1365-1366), which is not "
                            f"a strided convolution", "stride_y")
        layer.biases = layer.scales = layer.rolling_mean = layer.rolling_variance = None
        layer.weights = None
        layer._fused = None
        return layer

    @property
    def strides(self):
        """(stride_y, stride_x)."""
        return self.stride_y, self.stride

    @property
    def plain(self) -> bool:
        """True when the layer is an ordinary square-stride, undilated convolution (what the
        fixed-point C kernels implement)."""
        return self.stride == self.stride_y and self.dilation == 1

    # -- parameters --------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def group_channels(self) -> int:
        """Input channels each filter reads (``c/groups``)."""
        return self.in_channels // self.groups

    @property
    def kernel_volume(self) -> int:
        return self.group_channels * self.size * self.size

    def num_params(self) -> int:
        n = self.filters
        return n + (3 * n if self.batch_normalize else 0) + n * self.kernel_volume

    def set_params(self, values: np.ndarray) -> None:
        n = self.filters
        off = 0

        def take(count):
            nonlocal off
            out = values[off:off + count]
            off += count
            return out

        self.biases = take(n)
        if self.batch_normalize:
            self.scales = take(n)
            self.rolling_mean = take(n)
            self.rolling_variance = take(n)
        self.weights = take(n * self.kernel_volume).reshape(n, self.group_channels, self.size, self.size)
        self._fused = None

    @property
    def macs(self) -> int:
        _, oh, ow = self.out_shape
        return self.filters * self.kernel_volume * oh * ow

    def folded_float_params(self):
        """Batch norm folded into (weights, bias) in float64, for the quantizer.

        ``y = conv*k + (bias - mean*k)`` per output channel with ``k = scale/(sqrt(var)+1e-6)``
        (pjreddie) or ``k = scale/sqrt(var+1e-5)`` (AlexeyAB, as fuse_conv_batchnorm).
        """
        w = self.weights.astype(np.float64)
        b = self.biases.astype(np.float64)
        if self.batch_normalize:
            var = self.rolling_variance.astype(np.float64)
            if self.darknet == "alexeyab":
                k = self.scales.astype(np.float64) / np.sqrt(var + AB_BN_EPS)
            else:
                k = self.scales.astype(np.float64) / (np.sqrt(var) + float(BN_EPS))
            w = w * k[:, None, None, None]
            b = b - self.rolling_mean.astype(np.float64) * k
        return w, b

    def fused_params(self):
        """AlexeyAB's fuse_conv_batchnorm (src/network.c:1308-1327): float32 (weights, biases)."""
        if self._fused is None:
            w, b = self.weights, self.biases
            if self.batch_normalize:
                denom = np.sqrt(self.rolling_variance.astype(np.float64) + AB_BN_EPS)
                b = (b.astype(np.float64) - self.scales.astype(np.float64)
                     * self.rolling_mean.astype(np.float64) / denom).astype(np.float32)
                pre = self.scales.astype(np.float64) / denom
                w = (w.astype(np.float64) * pre[:, None, None, None]).astype(np.float32)
            self._fused = (np.ascontiguousarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32))
        return self._fused

    # -- float forward -------------------------------------------------------------
    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        x = xs[0]
        n, oh, ow = self.out_shape
        cols = im2col(x, self.size, self.stride, self.padding, stride_y=self.stride_y, dilation=self.dilation)
        if self.darknet == "alexeyab":
            w, b = self.fused_params()
            with one_blas_thread():                     # floats independent of BLAS threads (mdfi/blas.py)
                out = group_matmul(w.reshape(n, -1), cols, self.groups)   # float32 GEMM per group

            def post(blk, r0, r1):
                blk += b[r0:r1, None]                    # add_bias
                return activations.apply_float(self.activation, blk, self.darknet)
            return by_blocks(out, post).reshape(n, oh, ow)
        with one_blas_thread():
            out = group_matmul(self.weights.reshape(n, -1), cols, self.groups)  # float32, Darknet's gemm() per group
        if self.batch_normalize:
            denom = np.sqrt(self.rolling_variance.astype(np.float64)) + np.float64(BN_EPS)

        def post_pj(blk, r0, r1):
            if self.batch_normalize:
                # normalize_cpu computes in double: (x - mean) / (sqrt((double)var) + 1e-6f).
                blk = ((blk - self.rolling_mean[r0:r1, None]).astype(np.float64)
                       / denom[r0:r1, None]).astype(np.float32)
                blk *= self.scales[r0:r1, None]
            blk += self.biases[r0:r1, None]
            return activations.apply_float(self.activation, blk, self.darknet)
        return by_blocks(out, post_pj).reshape(n, oh, ow)

    def describe(self) -> str:
        st = f"{self.stride}" if self.stride == self.stride_y else f"{self.stride_y}x{self.stride}"
        dil = f" d{self.dilation}" if self.dilation > 1 else ""
        grp = f" g{self.groups}" if self.groups > 1 else ""
        return (f"conv {self.filters}{grp} {self.size}x{self.size}/{st}{dil}"
                f"{' bn' if self.batch_normalize else ''} {self.activation}")


def parse_activation(sec, default: str, darknet: str = "pjreddie", layer_kind: str = "convolutional") -> str:
    """The ``activation=`` of a section, checked against the lineage's get_activation."""
    name = sec.get_str("activation", default)
    supported = activations.SUPPORTED[darknet]
    if layer_kind == "shortcut" and darknet == "alexeyab" and name in ("hard_mish", "relu6"):
        raise sec.error(f"activation={name} on a [shortcut]: AlexeyAB's CPU build computes 0 there "
                        f"(shortcut_layer.c:173 -> activate_array_cpu_custom -> activate(), activations.c:86-117, "
                        f"has no case for it) while its GPU build applies it; refused as ambiguous", "activation")
    if name in supported:
        return name
    if darknet == "pjreddie" and name not in activations.PJREDDIE_ACTIVATIONS and name in activations.ALEXEYAB_ACTIVATIONS:
        raise sec.error(f"activation={name}: pjreddie's Darknet does not know it (its get_activation falls back "
                        f"to relu, src/activations.c:61); it is an AlexeyAB activation: pass --darknet alexeyab "
                        f"(mdfi.load(..., darknet='alexeyab'))", "activation")
    if name in activations.DARKNET_ACTIVATIONS:
        raise sec.error(f"activation={name}: a Darknet activation MDFI does not support "
                        f"(supported: {', '.join(supported)})", "activation")
    raise sec.error(f"unknown activation '{name}' (supported: {', '.join(supported)})",
                    "activation")


# -- how the integers were chosen (recorded per layer in the model file) --------------------------
#: ``method`` of a quantized convolution: key -> allowed values.
#:
#: * ``weights``: ``nearest`` (round half up at the channel's format), ``gptq``
#:   (sequential rounding with error feedback on calibration data, :mod:`mdfi.quant.gptq`) or
#:   ``adaround`` (up/down rounding learned on calibration data, :mod:`mdfi.quant.adaround`)
#:   or ``brecq`` (the same learned jointly over blocks of convolutions, :mod:`mdfi.quant.brecq`);
#: * ``weight_format``: how ``w_frac`` was chosen (``max``, ``mse``);
#: * ``bias``: ``nearest`` (the folded float bias rounded), ``analytic`` (minus the expected
#:   shift of weight rounding from per-channel input means, Nagel et al. 2019) or
#:   ``empirical`` (minus the measured mean output shift of the quantized network on
#:   calibration images, :mod:`mdfi.quant.sequential`);
#: * ``align`` (only on layers whose output channels were rescaled): mantissa alignment,
#:   ``STEP/DIRECTION`` (:mod:`mdfi.quant.align`);
#: * ``actequal`` (likewise): activation-range equalization, the tensor format that bounded
#:   the channels' ranges, ``max`` or ``mse`` (:mod:`mdfi.quant.actequal`; its settings are in
#:   the model options).
#: * ``gain`` (only on layers rounded with a gain correction, :mod:`mdfi.quant.gaincorr`):
#:   ``asym`` (towards the least-squares weights that reproduce the float network's output
#:   from the quantized inputs) or ``gain`` (``w / g``, ``g`` the channel's measured slope).
METHOD_KEYS = {"weights": ("nearest", "gptq", "adaround", "brecq"), "weight_format": ("max", "mse"),
               "bias": ("nearest", "analytic", "empirical"),
               "align": tuple(f"{s}/{d}" for s in ("max", "mse", "output")
                         for d in ("fit", "keep", "nearest", "down")),
               "actequal": ("max", "mse"), "gain": ("asym", "gain"),
               "dw_equalize": ("pow2/max8",)}     # mdfi/quant/dwequal.py (MAX_SHIFT = 8)


def check_method(method, index: int):
    """Validate a layer's recorded ``method`` (a dict of :data:`METHOD_KEYS`) or None."""
    if method is None:
        return None
    if not isinstance(method, dict) or set(method) - set(METHOD_KEYS):
        raise FormatError(f"layer {index}: invalid quantization method record {str(method)[:80]}")
    for k, v in method.items():
        if v not in METHOD_KEYS[k]:
            raise FormatError(f"layer {index}: unknown {k} method {str(v)[:40]!r} "
                              f"(expected one of {', '.join(METHOD_KEYS[k])})")
    return dict(method)


def weight_rounding_shift(w_q: np.ndarray, w_frac: np.ndarray, w_float: np.ndarray, input_mean,
                          groups: int = 1) -> np.ndarray:
    """Expected output shift of weight rounding per output channel,
    ``sum_k (w_q - w)[m,k] * E[x_k]`` with ``E[x]`` per input channel (bias correction,
    Nagel et al. 2019, "Data-Free Quantization", section 4.2); with ``groups``, filter ``m``
    reads the input channels of its group only."""
    m = w_q.shape[0]
    mean = np.asarray(input_mean, dtype=np.float64)
    w_deq = np.asarray(w_q, np.float64).reshape(m, -1) * np.exp2(-np.asarray(w_frac, np.float64))[:, None]
    dw = (w_deq - np.asarray(w_float, np.float64).reshape(m, -1)).reshape(m, mean.size // groups, -1).sum(axis=2)
    return group_matmul(dw, mean[:, None], groups)[:, 0]


class QConvolutional(QLayer):
    """Fixed-point ``[convolutional]`` (docs/fixed-point.md sections 3-4).

    * weights ``w_q[m]`` at ``Q(wbits, w_frac[m])`` (one frac per layer, or per output
      channel), batch norm folded in; for the first layer Darknet's ``/255`` too;
    * ``acc = sum(w_q * x_q) + bias_q`` exactly, in an ``acc_bits``-wide accumulator;
      ``bias_q`` is the folded bias at the accumulator scale ``2**-(w_frac + in_frac)``;
    * ``out = requantize(acc, shift[m], rounding, out_bits, activation)`` with
      ``shift[m] = w_frac[m] + in_frac - out_frac`` (linear, leaky, relu);
    * table activations (logistic, mish, swish, hard_mish, relu6; :mod:`mdfi.actlut`):
      ``pre = requantize(acc, w_frac[m] + in_frac - pre_frac, rounding, pre_bits, "linear")``
      and ``out = act_lut[pre - qmin(pre_bits)]``.
    """

    kind = "convolutional"

    def __init__(self, layer, in_fmt, out_fmt, weights, w_frac, bias, *, wbits, rounding,
                 per_channel, bias_clamped=0, method=None, pre_fmt=None, act_lut=None):
        super().__init__(layer, out_fmt, rounding)
        why = self.refusal(layer)
        if why:
            raise FormatError(f"layer {layer.index}: {why}")
        #: How the integers were chosen (recorded in the model file; None: not recorded,
        #: a file written before MDFI recorded it).  See :data:`METHOD_KEYS`.
        self.method = check_method(method, layer.index)
        self.in_fmt = in_fmt
        self.wbits = fp.check_bits(wbits, "weight width")
        self.weights = np.asarray(weights)
        self.w_frac = np.asarray(w_frac, dtype=np.int64).reshape(-1)
        self.bias = np.asarray(bias, dtype=np.int64).reshape(-1)
        self.per_channel = bool(per_channel)
        self.bias_clamped = int(bias_clamped)
        m = layer.filters
        if self.weights.shape != (m, layer.group_channels, layer.size, layer.size):
            raise ShapeError(f"layer {layer.index}: weights have shape {self.weights.shape}, "
                             f"expected {(m, layer.group_channels, layer.size, layer.size)}")
        if self.w_frac.shape != (m,) or self.bias.shape != (m,):
            raise ShapeError(f"layer {layer.index}: w_frac/bias must have {m} entries")
        if self.weights.size and (self.weights.min() < fp.qmin(wbits) or self.weights.max() > fp.qmax(wbits)):
            raise FormatError(f"layer {layer.index}: weights exceed {wbits} bits")
        self.lut = layer.activation in actlut.LUT_ACTIVATIONS
        self.pre_fmt = self.act_lut = None
        if self.lut:
            self.pre_fmt = pre_fmt if pre_fmt is not None else actlut.pre_format(layer.activation, out_fmt)
            self.act_lut = (actlut.build_table(layer.activation, self.pre_fmt, out_fmt, rounding) if act_lut is None
                            else actlut.check_table(act_lut, self.pre_fmt, out_fmt, f"layer {layer.index}"))
        self.acc_bits = fp.accumulator_bits(wbits, in_fmt.bits, layer.kernel_volume, in_fmt.signed)
        if self.acc_bits > fp.MAX_ACC_BITS:
            raise FormatError(f"layer {layer.index}: accumulator would need {self.acc_bits} bits "
                              f"(> {fp.MAX_ACC_BITS}); use narrower weights/activations")
        lim = self.bias_limit
        if np.any(np.abs(self.bias) > lim):
            raise FormatError(f"layer {layer.index}: bias exceeds the accumulator bound {lim}")
        self.shift = (self.w_frac + in_fmt.frac - self.shift_fmt.frac).astype(np.int32)
        if self.shift.min() < fp.MIN_SHIFT or self.shift.max() > fp.MAX_SHIFT:
            raise FormatError(f"layer {layer.index}: requantizing shifts {self.shift.min()}..{self.shift.max()} "
                              f"outside [{fp.MIN_SHIFT}, {fp.MAX_SHIFT}]")

    @staticmethod
    def refusal(layer) -> str:
        """Why this layer has no fixed-point implementation ("" when it has one)."""
        if not layer.plain:
            return ("stride_x != stride_y or dilation has no fixed-point kernel (the C convolution takes one "
                    "stride, csrc/mdfi_conv.h); the float path runs it")
        if layer.activation not in ("linear", "leaky", "relu") + actlut.LUT_ACTIVATIONS:
            return f"activation '{layer.activation}' has no fixed-point implementation"
        return ""

    @property
    def shift_fmt(self):
        """The format the accumulator is requantized to: the output, or the pre-activation
        code of a table activation."""
        return self.pre_fmt if self.lut else self.out_fmt

    @property
    def bias_limit(self) -> int:
        """|bias| <= 2**(acc_bits-1) - 1 - Pmax keeps every sum inside the accumulator."""
        pmax = fp.product_bound(self.wbits, self.in_fmt.bits, self.layer.kernel_volume, self.in_fmt.signed)
        return (1 << (self.acc_bits - 1)) - 1 - pmax

    @property
    def acc64(self) -> bool:
        """True when the accumulator does not fit int32."""
        return self.acc_bits > 32

    # -- quantization ------------------------------------------------------------------
    @classmethod
    def quantize(cls, layer: "ConvolutionalLayer", in_fmt, out_fmt, *, wbits: int, rounding: str,
                 per_channel: bool, weight_method: str = "mse", input_scale: float = 1.0,
                 input_mean: "np.ndarray | None" = None):
        """Fold batch norm (and ``input_scale``, Darknet's 1/255 for the first layer) and
        quantize weights and bias.  All float work of the engine happens here.

        ``input_mean`` (per input channel, in the units the folded weights multiply) enables
        bias correction (docs/fixed-point.md section 3.5): the expected output shift of the
        weight rounding, ``sum_k (w_q - w)[m,k] * E[x_k]``, is subtracted from the bias.
        """
        w, b = layer.folded_float_params()
        w = w * input_scale
        m = layer.filters
        flat = w.reshape(m, -1)
        if per_channel:
            lo, hi = flat.min(axis=1), flat.max(axis=1)
        else:
            lo, hi = np.full(m, flat.min()), np.full(m, flat.max())
        f = fp.max_frac(lo, hi, wbits)
        nonzero = np.abs(flat).max(axis=1) > 0
        if weight_method == "mse" and nonzero.any():
            if per_channel:
                f = np.where(nonzero, fp.mse_frac(flat, wbits, f, axis=1), f)
            else:
                f = np.full(m, int(fp.mse_frac(flat.reshape(-1), wbits, f[0])))
        elif weight_method not in ("max", "mse"):
            raise FormatError(f"unknown weight method {weight_method!r} (max, mse)")
        # Keep every requantizing shift in range (a near-zero channel could ask for a huge frac).
        tf = (actlut.pre_format(layer.activation, out_fmt) if layer.activation in actlut.LUT_ACTIVATIONS
              else out_fmt).frac
        f = np.clip(f, tf - in_fmt.frac + fp.MIN_SHIFT, tf - in_fmt.frac + fp.MAX_SHIFT)
        if nonzero.any():
            f = np.where(nonzero, f, int(np.median(f[nonzero])))
        w_q = fp.quantize_float(flat, f[:, None], wbits).reshape(w.shape)
        method = {"weights": "nearest", "weight_format": weight_method, "bias": "nearest"}
        if input_mean is not None:
            b = b - weight_rounding_shift(w_q, f, flat, input_mean, layer.groups)
            method["bias"] = "analytic"
        return cls.from_integers(layer, in_fmt, out_fmt, w_q, f, b, wbits=wbits, rounding=rounding,
                                 per_channel=per_channel, method=method)

    @classmethod
    def from_integers(cls, layer, in_fmt, out_fmt, w_q, w_frac, bias_float, *, wbits, rounding,
                      per_channel, method):
        """A layer from chosen integer weights ``w_q`` at ``Q(wbits, w_frac[m])`` and a float
        bias (in the units of the folded float bias), which is rounded half up to the
        accumulator scale and clamped to the accumulator bound (docs section 3.2)."""
        f = np.asarray(w_frac, dtype=np.int64).reshape(-1)
        acc_bits = fp.accumulator_bits(wbits, in_fmt.bits, layer.kernel_volume, in_fmt.signed)
        lim = (1 << (acc_bits - 1)) - 1 - fp.product_bound(wbits, in_fmt.bits, layer.kernel_volume, in_fmt.signed)
        b_q = fp.round_half_up_float(np.asarray(bias_float, np.float64) * np.exp2((f + in_fmt.frac).astype(np.float64)))
        w_q = np.asarray(w_q).reshape(layer.filters, layer.group_channels, layer.size, layer.size)
        if in_fmt.zero:
            # the input's zero point folded into the bias (section 3.1): sum w*(x - z) + b
            # = sum w*x + (b - z*sum w), with the padding holding z
            b_q = b_q - float(in_fmt.zero) * w_q.reshape(layer.filters, -1).astype(np.float64).sum(axis=1)
        clamped = int(np.count_nonzero(np.abs(b_q) > lim))
        b_q = np.clip(b_q, -lim, lim).astype(np.int64)
        return cls(layer, in_fmt, out_fmt, w_q.astype(fp.storage_dtype(wbits)), f, b_q, wbits=wbits,
                   rounding=rounding, per_channel=per_channel, bias_clamped=clamped, method=method)

    # -- reference forward -----------------------------------------------------------------
    def stages_ref(self, xs) -> dict:
        """The golden model's stages (docs/golden-format.md): ``acc`` (int64, Σ w·x + bias),
        ``act`` (the activation applied to the accumulator before the shift) and ``out``."""
        l = self.layer
        m, oh, ow = l.out_shape
        cols = im2col(np.asarray(xs[0]), l.size, l.stride, l.padding, pad_value=self.in_fmt.zero)
        acc = (group_matmul(self.weights.reshape(m, -1), cols, l.groups, int_matmul)
               + self.bias[:, None]).reshape(m, oh, ow)
        if self.lut:
            pre = fp.requantize(acc, self.shift[:, None, None].astype(np.int64), self.rounding, self.pre_fmt.bits)
            return {"acc": acc, "pre": pre, "out": actlut.lookup(self.act_lut, pre, self.pre_fmt)}
        act, _ = fp.pre_shift_activation(acc, l.activation)
        out = fp.requantize(acc, self.shift[:, None, None].astype(np.int64), self.rounding, self.out_fmt.bits,
                            l.activation, zero=self.out_fmt.zero)
        return {"acc": acc, "act": act, "out": out}

    def stage_formats(self) -> dict:
        """stage -> (bits, signed, frac) with frac an int, a per-channel list, or None."""
        acc_frac = (self.w_frac + self.in_fmt.frac).tolist()
        acc_frac = acc_frac[0] if len(set(acc_frac)) == 1 else acc_frac
        if self.lut:
            return {"acc": (self.acc_bits, True, acc_frac), "pre": (self.pre_fmt.bits, True, self.pre_fmt.frac),
                    "out": (self.out_fmt.bits, True, self.out_fmt.frac)}
        act_bits = self.acc_bits + (12 if self.layer.activation == "leaky" else 0)
        return {"acc": (self.acc_bits, True, acc_frac), "act": (act_bits, True, None),
                "out": (self.out_fmt.bits, True, self.out_fmt.frac)}

    def forward_ref(self, xs, stats=None):
        l = self.layer
        if self.lut:
            pre = conv2d_int_ref(xs[0], self.weights, self.bias, self.shift, size=l.size, stride=l.stride,
                                 padding=l.padding, rounding=self.rounding, bits=self.pre_fmt.bits,
                                 activation="linear", stats=stats, pad_value=self.in_fmt.zero, groups=l.groups)
            return actlut.lookup(self.act_lut, pre, self.pre_fmt)
        return conv2d_int_ref(xs[0], self.weights, self.bias, self.shift, size=l.size, stride=l.stride,
                              padding=l.padding, rounding=self.rounding, bits=self.out_fmt.bits,
                              activation=l.activation, stats=stats, pad_value=self.in_fmt.zero,
                              zero_out=self.out_fmt.zero, groups=l.groups)

    def bias_unfolded(self) -> np.ndarray:
        """The bias before the input's zero point was folded in (section 3.1): ``bias + z_in *
        sum w`` (int64; the bias itself without a zero point)."""
        if not self.in_fmt.zero:
            return self.bias.copy()
        return self.bias + np.int64(self.in_fmt.zero) * self.weights.reshape(self.layer.filters, -1).astype(np.int64).sum(axis=1)

    # -- serialisation ---------------------------------------------------------------------
    def meta(self):
        d = super().meta()
        d.update(in_fmt=self.in_fmt.to_dict(), wbits=self.wbits, w_frac=self.w_frac.tolist(),
                 per_channel=self.per_channel, acc_bits=self.acc_bits, activation=self.layer.activation,
                 bias_clamped=self.bias_clamped)
        if self.lut:
            d["pre_fmt"] = self.pre_fmt.to_dict()
        if self.method is not None:
            d["method"] = dict(self.method)
        return d

    def arrays(self):
        a = {"weights": self.weights, "bias": self.bias.astype(np.int64 if self.acc64 else np.int32)}
        if self.lut:
            a["act_lut"] = self.act_lut
        return a

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        lut = layer.activation in actlut.LUT_ACTIVATIONS
        if lut and ("pre_fmt" not in meta or "act_lut" not in arrays):
            raise KeyError("pre_fmt/act_lut")
        return cls(layer, meta_format(meta, "in_fmt"), meta_format(meta), arrays["weights"], meta["w_frac"],
                   arrays["bias"], wbits=meta["wbits"], rounding=meta["rounding"],
                   per_channel=meta.get("per_channel", False), bias_clamped=meta.get("bias_clamped", 0),
                   method=meta.get("method"), pre_fmt=meta_format(meta, "pre_fmt") if lut else None,
                   act_lut=arrays.get("act_lut") if lut else None)

    def param_bits(self) -> int:
        lut = self.act_lut.size * self.out_fmt.bits if self.lut else 0
        return self.weights.size * self.wbits + self.bias.size * self.acc_bits + lut

    def describe_formats(self) -> str:
        wf = (f"w Q{self.wbits}.{int(self.w_frac.min())}..{int(self.w_frac.max())}" if self.per_channel
              else f"w {fp.QFormat(self.wbits, int(self.w_frac[0])).ap_type()}")
        pre = f" via {self.layer.activation} table from {self.pre_fmt.ap_type()}" if self.lut else ""
        return f"{wf} out {self.out_fmt.ap_type()}{pre} acc {self.acc_bits}b"
