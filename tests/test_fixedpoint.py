"""Every integer operation of docs/fixed-point.md against hand-derived cases.

Expected values are worked out by hand in the comments (floor(v + 1/2) for half_up,
floor(v) for truncate), not computed with the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.errors import FormatError
from mdfi.quant.modelfile import pack_bits, unpack_bits

R = fp.requantize


@pytest.mark.parametrize("x, s, half_up, trunc", [
    (5, 1, 3, 2),        # 2.5: tie goes up; truncate floors
    (-5, 1, -2, -3),     # -2.5: half_up goes toward +inf (-2); truncate toward -inf (-3)
    (-7, 1, -3, -4),     # -3.5
    (3, 1, 2, 1),        # 1.5
    (-3, 1, -1, -2),     # -1.5
    (-1, 1, 0, -1),      # -0.5
    (1, 1, 1, 0),        # 0.5
    (6, 2, 2, 1),        # 1.5
    (-10, 2, -2, -3),    # -2.5
    (-9, 2, -2, -3),     # -2.25
    (-11, 2, -3, -3),    # -2.75
    (7, 3, 1, 0),        # 0.875
    (0, 5, 0, 0),
    (1 << 19, 20, 1, 0),     # 0.5 at a large shift
    (-(1 << 19), 20, 0, -1),  # -0.5
    (100, 20, 0, 0),
    (-100, 20, 0, -1),
])
def test_shift_round(x, s, half_up, trunc):
    assert int(fp.shift_round(np.int64(x), s, "half_up")) == half_up
    assert int(fp.shift_round(np.int64(x), s, "truncate")) == trunc


def test_shift_zero_and_left_shifts():
    assert int(fp.shift_round(np.int64(-7), 0, "half_up")) == -7
    assert int(fp.shift_round(np.int64(3), -2, "half_up")) == 12
    assert int(fp.shift_round(np.int64(-3), -2, "truncate")) == -12


@pytest.mark.parametrize("acc, s, bits, want", [
    (1000, 0, 8, 127), (-1000, 0, 8, -128),          # saturation at both ends
    (127, 0, 8, 127), (-128, 0, 8, -128), (128, 0, 8, 127), (-129, 0, 8, -128),
    (255, 1, 8, 127),      # 127.5 -> 128 -> saturates to 127
    (-257, 1, 8, -128),    # -128.5 -> -128
    (3, 0, 2, 1), (-3, 0, 2, -2),                      # 2-bit range [-2, 1]
    (40000, 0, 16, 32767), (-40000, 0, 16, -32768),
    (1, -7, 8, 127),       # 1 * 2^7 = 128 saturates
    (-1, -7, 8, -128),     # -128 fits
    (1 << 40, -31, 8, 127), (-(1 << 40), -31, 8, -128),   # no int64 overflow on left shifts
])
def test_requantize_linear_saturates(acc, s, bits, want):
    assert int(R(np.int64(acc), s, "half_up", bits, "linear")) == want


@pytest.mark.parametrize("acc, s, mode, want", [
    # leaky: acc < 0 -> acc*3277 / 2^(s+15), one rounding
    (-100, 0, "half_up", -10),   # -327700/32768 = -10.0006 -> floor(-9.5006) = -10
    (-5, 0, "half_up", -1),      # -16385/32768 = -0.50003 -> floor(-0.00003) = -1
    (-4, 0, "half_up", 0),       # -13108/32768 = -0.40002 -> floor(0.09998) = 0
    (-4, 0, "truncate", -1),     # floor(-0.40002) = -1
    (-100, 2, "half_up", -3),    # -2.50015 -> floor(-2.00015) = -3
    (-10000, 0, "half_up", -128),  # -1000.06 saturates
    (100, 0, "half_up", 100),    # positive side unchanged
    (101, 1, "half_up", 51),     # 50.5 -> 51
])
def test_requantize_leaky(acc, s, mode, want):
    assert int(R(np.int64(acc), s, mode, 8, "leaky")) == want


def test_leaky_constant_error():
    assert fp.LEAKY_MULT / 2 ** fp.LEAKY_SHIFT == 0.100006103515625
    assert abs(fp.LEAKY_MULT / 2 ** fp.LEAKY_SHIFT - 0.1) / 0.1 < 6.2e-5


def test_requantize_relu_and_per_channel_shifts():
    acc = np.array([[-5, 6], [7, -8]], dtype=np.int64)
    out = R(acc, np.array([[1], [2]]), "half_up", 8, "relu")
    # row 0 shift 1: 0, 3 ; row 1 shift 2: 7/4=1.75 -> 2, 0
    assert out.tolist() == [[0, 3], [2, 0]]
    assert out.dtype == np.int32


def test_align_and_add():
    # route alignment: Q(.,5) -> Q(.,3): divide by 4 with rounding
    assert fp.align(np.array([10, -10, 6]), 5, 3, "half_up", 8).tolist() == [3, -2, 2]  # 2.5->3, -2.5->-2, 1.5->2
    s, f = fp.add_aligned(np.array([3]), 2, np.array([5]), 4)   # 3/4 + 5/16 = 17/16
    assert f == 4 and s.tolist() == [17]


def test_formats_in_hardware_terms():
    f = fp.QFormat(8, 4)
    assert (f.ap_type(), f.q_notation(), f.min, f.max, f.step) == ("ap_fixed<8,4>", "Q3.4", -128, 127, 1 / 16)
    assert fp.QFormat(8, -2).ap_type() == "ap_fixed<8,10>"
    assert fp.INPUT_FORMAT.ap_type() == "ap_ufixed<8,8>" and fp.INPUT_FORMAT.max == 255
    assert fp.QFormat(16, 12).q_notation() == "Q3.12"


@pytest.mark.parametrize("bad", [0, 1, 17, 32, -8, 8.0, True, "8", None])
def test_impossible_widths(bad):
    with pytest.raises(FormatError, match="2 to 16"):
        fp.check_bits(bad)


def test_rounding_names():
    assert fp.rounding_code("half_up") == 0 and fp.rounding_code("truncate") == 1
    with pytest.raises(FormatError, match="half_even"):
        fp.rounding_code("half_even")


def test_quantize_float_uses_half_up_not_half_even():
    # np.round would give 0, 2, -0, -2 (half to even)
    v = np.array([0.5, 1.5, -0.5, -1.5, 2.5])
    assert fp.quantize_float(v, 0, 8).tolist() == [1, 2, 0, -1, 3]
    assert fp.quantize_float(np.array([300.0, -300.0]), 0, 8).tolist() == [127, -128]


@pytest.mark.parametrize("lo, hi, bits, want", [
    (-1.0, 3.0, 8, 5),      # 3*32 = 96 fits, 3*64 = 192 does not
    (-4.0, 1.0, 8, 5),      # -4*32 = -128 fits
    (0.0, 127.5 / 32, 8, 4),  # 127.5 rounds half up to 128: does not fit at 5
    (-128.5 / 32, 0.0, 8, 5),  # -128.5 -> floor(-128.0) = -128 fits
    (0.0, 0.001, 8, 16),    # 0.001 * 2^16 = 65.5 -> 66 fits; 2^17 -> 131 does not
])
def test_max_frac(lo, hi, bits, want):
    assert fp.max_frac(lo, hi, bits) == want


def test_accumulator_bound():
    # yolov3-tiny's widest 8-bit layer: 3x3x512 -> 8 + 8 + 13 = 29 bits
    assert fp.accumulator_bits(8, 8, 3 * 3 * 512) == 29
    # the pixel input counts as 9 bits: 8 + 9 + ceil(log2 27) = 22
    assert fp.accumulator_bits(8, 8, 27, in_signed=False) == 22
    # worst case |sum| really fits: K * 128 * 128 < 2^(29-1)
    assert 3 * 3 * 512 * 128 * 128 * 2 <= (1 << 28)


@pytest.mark.parametrize("bits", range(2, 17))
def test_bit_packing_roundtrip(bits):
    rng = np.random.default_rng(bits)
    v = np.concatenate([[fp.qmin(bits), fp.qmax(bits), 0, -1, 1], rng.integers(fp.qmin(bits), fp.qmax(bits) + 1, 997)])
    buf = pack_bits(v, bits)
    assert len(buf) == (len(v) * bits + 7) // 8
    assert np.array_equal(unpack_bits(buf, bits, len(v)), v)


def test_bit_packing_layout_is_lsb_first():
    # 4-bit values 1, -1 (0xF), 2: bytes 0xF1, 0x02
    assert pack_bits(np.array([1, -1, 2]), 4) == bytes([0xF1, 0x02])
