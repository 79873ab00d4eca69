"""The 8-bit dot-product convolution (csrc/mdfi_conv_q8.c and its SIMD twins) against the
executable specification mdfi.layers.convolutional.conv2d_int_ref: bit-exact for every path
this machine can run, every register tile and both B modes (direct / packed), on random and
edge-heavy inputs.  Paths this CPU cannot run are reported as skipped, naming the feature."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from conftest import run_python
from test_kernel_conv import ACTS, ROUNDINGS, fill, int_dtype, reference

_conv = pytest.importorskip("mdfi._ext._conv")

#: what each path needs (skip reasons)
FEATURES = {
    "scalar": "nothing", "scalar8": "nothing", "avx2": "x86-64 AVX2",
    "avx512bw": "x86-64 AVX-512 F/BW/VL/DQ", "avx512vnni": "x86-64 AVX512-VNNI",
    "avx512vnni-ymm": "x86-64 AVX512-VNNI + AVX512-VL", "amx-sim": "x86-64 AVX512-VNNI (the AMX kernel on a C model of the tiles)",
    "avxvnni": "x86-64 AVX-VNNI (VEX vpdpbusd, e.g. Alder Lake / Sapphire Rapids) and gcc >= 11 or clang >= 12",
    "amx": "x86-64 AMX-TILE + AMX-INT8 with the Linux tile-data permission (Sapphire Rapids)",
    "neon": "aarch64 Advanced SIMD", "neondot": "aarch64 dot product (HWCAP_ASIMDDP)",
}
AVAILABLE = _conv.available_simd_paths()
Q8_PATHS = [p for p in _conv.PATHS if _conv.q8_tiles(p)]


def need(path):
    if path not in AVAILABLE:
        pytest.skip(f"{path}: needs {FEATURES[path]}; this CPU/build has: {_conv.cpu_features()}")
    # a path that fails its start-up self-check would silently run another one
    before = _conv.simd_path()
    try:
        assert _conv.set_simd_path(path) == path, f"{path} failed its start-up self-check"
    finally:
        _conv.set_simd_path(before)


@pytest.fixture(autouse=True)
def _no_override():
    yield
    _conv._set_q8_override(-1, -1)
    _conv._set_q8_tune(-1)


def run(x, w, bias, shift, *, k, s, p, rounding, bits, act, simd, nthreads=1, acc64=0, pad_value=0, zero_out=0):
    m = w.shape[0]
    out = np.full((m, _conv.out_size(x.shape[1], k, s, p), _conv.out_size(x.shape[2], k, s, p)), 77,
                  int_dtype(bits))
    _conv.conv2d(x, _conv.pack_weights(w), bias, shift, out, ksize=k, stride=s, pad=p,
                 rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act), acc64=acc64,
                 nthreads=nthreads, simd=simd, pad_value=pad_value, zero_out=zero_out)
    return out


def case(rng, c, h, w, m, k, s, p, *, xkind=None, style="random", wbits=None, xbits=None):
    """A random 8-bit problem whose sums fit int32 (acc64 = 0)."""
    xkind = xkind or rng.choice(["u8", "s8"])
    if xkind == "u8":
        xlo, xhi, xdt = 0, 255, np.uint8
    else:
        xbits = xbits or int(rng.integers(2, 9))
        xlo, xhi, xdt = fp.qmin(xbits), fp.qmax(xbits), np.int8
    wbits = wbits or int(rng.integers(2, 9))
    x = fill(rng, (c, h, w), xlo, xhi, style if style != "random" else
             rng.choice(["random"] * 4 + ["max", "min", "alt", "edges"]), xdt)
    wt = fill(rng, (m, c, k, k), fp.qmin(wbits), fp.qmax(wbits), style if style != "random" else
              rng.choice(["random"] * 4 + ["max", "min", "alt", "edges"]), np.int8)
    pmax = c * k * k * (1 << (wbits - 1)) * max(abs(xlo), xhi)
    blim = min(2**31 - 1 - pmax, 4 * pmax + 1000)
    bias = rng.integers(-blim, blim + 1, size=m).astype(np.int64)
    typical = max(int(pmax).bit_length() - 8, 1)
    # per-channel shifts: typical ones (int32 lanes), and 0, negative, > 31 (exact slow rows)
    shift = rng.choice([typical, typical + 1, max(typical - 2, 1), 1, 31, 0, -2, 33], size=m).astype(np.int32)
    if rng.random() < 0.3:
        shift[:] = typical                                        # per-layer shift
    bits = int(rng.integers(2, 17))
    return x, wt, bias, shift, dict(k=k, s=s, p=p, rounding=str(rng.choice(ROUNDINGS)), bits=bits,
                                    act=str(rng.choice(ACTS)))


SHAPES = [  # C, H, W, M, k, stride, pad
    (3, 17, 19, 16, 3, 1, 1),      # first layer: uint8 pixels, 3 channels
    (1, 1, 1, 1, 1, 1, 0), (5, 1, 1, 7, 1, 1, 0), (1, 1, 1, 5, 3, 1, 1),
    (7, 9, 11, 13, 3, 2, 1),       # stride 2, odd everything
    (13, 13, 13, 33, 3, 1, 1),     # 13x13 map, odd channels
    (33, 5, 7, 19, 1, 1, 0),       # 1x1
    (16, 6, 6, 20, 3, 1, 1), (5, 7, 5, 3, 5, 1, 2), (6, 11, 10, 9, 2, 1, 0),
    (9, 16, 17, 5, 3, 3, 1),       # stride 3
    (4, 12, 13, 17, 3, 4, 2),      # stride 4
    (64, 4, 5, 40, 3, 1, 1),       # AMX-sized channel blocks, tiny map
    (130, 3, 3, 18, 3, 1, 1), (2, 31, 2, 8, 3, 1, 1), (11, 2, 33, 12, 1, 2, 0),
    # rows of more than 64 positions (the AVX-512 input re-layout: 64 per step and a tail)
    (3, 4, 150, 9, 3, 2, 1), (6, 3, 133, 7, 1, 1, 0), (5, 3, 129, 8, 3, 1, 1), (2, 3, 257, 4, 3, 2, 0),
    # stride 2 (both column phases from one read of a row): a 1x1 map, odd rows past 128 bytes, pad 2
    (3, 1, 1, 5, 3, 2, 1), (5, 2, 131, 6, 2, 2, 0), (1, 3, 65, 4, 3, 2, 2),
]


@pytest.mark.parametrize("zp", [False, True], ids=["zero-free", "zero-points"])
@pytest.mark.parametrize("path", Q8_PATHS)
def test_every_tile_and_mode(path, zp):
    """Every register tile in every B mode (direct, packed, compact, channels-last) on the shapes above; with
    ``zp`` a padding value and an output zero point too."""
    need(path)
    tiles = _conv.q8_tiles(path)
    rng = np.random.default_rng((7 if zp else 0) + sum(map(ord, path)))
    for i, shape in enumerate(SHAPES):
        x, wt, bias, shift, kw = case(rng, *shape, xkind="u8" if shape[0] == 3 else None)
        if zp:
            kw["pad_value"], kw["zero_out"] = _zp(rng, x, kw["bits"], i)
        ref = reference(x, wt, bias, shift, **kw)
        for kern in range(len(tiles)):
            for direct in (1, 0, 2, 3):
                _conv._set_q8_override(kern, direct)
                got = run(x, wt, bias, shift, simd=path, nthreads=1 + (i + kern + direct) % 3, **kw)
                if not np.array_equal(got, ref):
                    bad = tuple(np.argwhere(got != ref)[0])
                    raise AssertionError(f"{path} tile {tiles[kern]} {('packed', 'direct', 'compact')[direct]}: "
                                         f"shape {shape} {kw} x {x.dtype}: at {bad} {got[bad]} != {ref[bad]}")


@pytest.mark.parametrize("path", Q8_PATHS)
def test_register_epilogue(path):
    """Every row on the int32 lanes (shifts 1..31, small biases): the tiles requantize straight
    from their accumulator registers.  Every tile and mode, row counts that are not multiples
    of the tile's rows, per-layer and per-channel shifts, every activation, both roundings,
    output widths that saturate in the narrowing (8, 16) and that clamp first (3, 5, 12)."""
    need(path)
    tiles = _conv.q8_tiles(path)
    rng = np.random.default_rng(11 + sum(map(ord, path)))
    shapes = [(3, 9, 21, 7, 3, 1, 1), (5, 6, 40, 20, 1, 1, 0), (17, 7, 9, 13, 3, 2, 1), (40, 5, 5, 33, 3, 1, 1),
              (8, 13, 13, 16, 3, 1, 1), (12, 3, 50, 1, 1, 1, 0)]
    for i, shape in enumerate(shapes):
        for j, bits in enumerate((8, 16, 3, 5, 12)):
            x, wt, _, _, kw = case(rng, *shape, xkind="u8" if i % 2 == 0 else "s8", wbits=8, xbits=8)
            m = shape[3]
            pmax = shape[0] * shape[4] ** 2 * 128 * 255
            typical = max(pmax.bit_length() - 8, 1)
            shift = (np.full(m, typical, np.int32) if j % 2 == 0 else
                     rng.choice([1, 2, typical - 1, typical, typical + 3, 31], size=m).astype(np.int32))
            bias = rng.integers(-1000, 1001, size=m).astype(np.int64)
            kw.update(bits=bits, rounding=ROUNDINGS[(i + j) % 2], act=ACTS[(i + j) % 3])
            ref = reference(x, wt, bias, shift, **kw)
            for kern in range(len(tiles)):
                for direct in (1, 0, 2, 3):
                    _conv._set_q8_override(kern, direct)
                    got = run(x, wt, bias, shift, simd=path, nthreads=1 + (i + kern) % 2, **kw)
                    assert np.array_equal(got, ref), (path, tiles[kern], direct, shape, kw)


@pytest.mark.parametrize("path", Q8_PATHS)
def test_full_tile_epilogue(path):
    """8-bit outputs from the accumulator registers, tiles whose every lane is an output (the
    branch-free store of the register epilogue) beside partial ones: 1x1 maps of whole and
    partial tiles, a padded 3x3 grid, row counts that are not multiples of the tile's rows,
    every activation, both roundings, random and extreme values."""
    need(path)
    tiles = _conv.q8_tiles(path)
    rng = np.random.default_rng(23 + sum(map(ord, path)))
    shapes = [(8, 6, 64, 16, 1, 1, 0), (9, 4, 97, 21, 1, 1, 0), (4, 48, 1, 8, 1, 1, 0), (3, 20, 46, 12, 3, 1, 1),
              (12, 16, 16, 5, 1, 1, 0)]
    for i, shape in enumerate(shapes):
        for act in ACTS:
            for rounding in ROUNDINGS:
                style = ("random", "max", "alt", "edges")[(i + len(act)) % 4]
                x, wt, _, _, kw = case(rng, *shape, xkind="u8" if i % 2 == 0 else "s8", style=style, wbits=8,
                                       xbits=8)
                m = shape[3]
                typical = max((shape[0] * shape[4] ** 2 * 128 * 255).bit_length() - 8, 1)
                shift = rng.choice([1, typical - 1, typical, typical + 2, 31], size=m).astype(np.int32)
                bias = rng.integers(-3000, 3001, size=m).astype(np.int64)
                kw.update(bits=8, rounding=rounding, act=act)
                ref = reference(x, wt, bias, shift, **kw)
                for kern in range(len(tiles)):
                    for direct in (1, 0, 2, 3):
                        _conv._set_q8_override(kern, direct)
                        got = run(x, wt, bias, shift, simd=path, nthreads=1 + (i + kern + direct) % 3, **kw)
                        assert np.array_equal(got, ref), (path, tiles[kern], direct, shape, kw)


@pytest.mark.parametrize("path", Q8_PATHS)
def test_edges(path):
    """All-extreme activations and weights (uint8 255, int8 -128/127, alternating), every
    output width 2..16, both roundings, every activation, shifts 1 and 31 and slow rows."""
    need(path)
    rng = np.random.default_rng(4)
    for xkind, style in [("u8", "max"), ("u8", "alt"), ("s8", "min"), ("s8", "max"), ("s8", "alt"),
                         ("s8", "edges"), ("u8", "zero")]:
        for bits in range(2, 17):
            shape = (int(rng.choice([3, 5, 8, 17])), 7, 9, int(rng.choice([1, 6, 16, 21])), 3,
                     int(rng.choice([1, 2])), 1)
            x, wt, bias, shift, kw = case(rng, *shape, xkind=xkind, style=style, wbits=8, xbits=8)
            kw.update(bits=bits, rounding=ROUNDINGS[bits % 2], act=ACTS[bits % 3])
            ref = reference(x, wt, bias, shift, **kw)
            got = run(x, wt, bias, shift, simd=path, nthreads=1 + bits % 3, **kw)
            assert np.array_equal(got, ref), (path, xkind, style, bits, shape)


@pytest.mark.parametrize("path", Q8_PATHS)
def test_tie_values_through_the_int32_epilogue(path):
    """1x1 convolution with weight 1 on every int8 value: each accumulator residue modulo 2^s
    -- every rounding tie -- goes through the path's int32-lane requantize."""
    need(path)
    x = np.arange(-128, 128, dtype=np.int16).astype(np.int8)
    x = np.tile(x, 64).reshape(1, 128, 128)
    wt = np.array([1, -1, 1, 1, -1, 1, 1, 1, -128, 127], np.int8).reshape(10, 1, 1, 1)
    shift = np.array([1, 1, 2, 5, 8, 7, 3, 31, 10, 9], np.int32)
    for bias0, bits in ((0, 8), (3, 16), (-(1 << 12), 5), (1 << 20, 12)):
        bias = np.array([bias0, -bias0, bias0 + 1, bias0, 7, 0, -bias0, bias0, 1, -1], np.int64)
        for rounding in ROUNDINGS:
            for act in ACTS:
                kw = dict(k=1, s=1, p=0, rounding=rounding, bits=bits, act=act)
                assert np.array_equal(run(x, wt, bias, shift, simd=path, nthreads=2, **kw),
                                      reference(x, wt, bias, shift, **kw)), (path, bias0, bits, rounding, act)


@pytest.mark.parametrize("path", Q8_PATHS)
def test_outside_the_int32_contract_equals_scalar(path):
    """acc64 = 0 with sums that overflow int32 (not a valid request): every path computes the
    sum modulo 2^32 like the scalar path, so they agree bit for bit anyway."""
    need(path)
    rng = np.random.default_rng(9)
    x = np.full((600, 5, 6), -128, np.int8)
    x[:, :, ::2] = 127
    wt = np.full((9, 600, 3, 3), -128, np.int8)
    wt[1::2] = 127
    bias = rng.integers(-2**40, 2**40, size=9).astype(np.int64)
    shift = np.full(9, 30, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="half_up", bits=16, act="leaky")
    assert np.array_equal(run(x, wt, bias, shift, simd=path, nthreads=2, **kw),
                          run(x, wt, bias, shift, simd="scalar", **kw))


@pytest.mark.parametrize("path", _conv.PATHS)
def test_path_runs_or_is_skipped(path):
    """Every path of the build: run a small 8-bit and a 16-bit problem on it, or skip naming
    the CPU feature it needs."""
    need(path)
    rng = np.random.default_rng(2)
    x, wt, bias, shift, kw = case(rng, 9, 10, 11, 21, 3, 1, 1)
    assert np.array_equal(run(x, wt, bias, shift, simd=path, nthreads=2, **kw), reference(x, wt, bias, shift, **kw))
    x16 = rng.integers(-30000, 30000, size=(5, 7, 6)).astype(np.int16)
    w16 = rng.integers(-3000, 3000, size=(7, 5, 3, 3)).astype(np.int16)
    b16 = rng.integers(-2**30, 2**30, size=7).astype(np.int64)
    s16 = np.full(7, 20, np.int32)
    kw16 = dict(k=3, s=1, p=1, rounding="truncate", bits=16, act="leaky")
    assert np.array_equal(run(x16, w16, b16, s16, simd=path, nthreads=2, acc64=1, **kw16),
                          reference(x16, w16, b16, s16, **kw16))


def test_packed_weights_on_cache_lines():
    """pack_weights returns its buffer on a 64-byte boundary (NumPy aligns to 16), so that the
    AMX kernels' 64-byte weight rows each sit on one cache line (the packed layout aligns its
    sections to 64 bytes from the start): yolov3's big layers ran 1.2x slower on AMX from a
    16-byte-aligned buffer."""
    rng = np.random.default_rng(5)
    for shape in [(1, 1, 1, 1), (40, 64, 3, 3), (255, 256, 1, 1), (7, 3, 3, 3)]:
        for _ in range(4):
            packed = _conv.pack_weights(rng.integers(-128, 128, size=shape, dtype=np.int8))
            assert packed.ctypes.data % 64 == 0, shape
            assert packed.flags.c_contiguous and packed.size == _conv.packed_size(shape[0], shape[1], shape[2])


@pytest.mark.parametrize("path", [p for p in ("avx512vnni", "amx") if p in Q8_PATHS])
def test_intel_profile_first_layers_stride2_direct(path):
    """The Intel kernel-choice profile (stop 42): a pixel-input layer (C <= 4) at stride 2 takes
    direct mode, as on the generic profile (packed measured 1.6x slower there: its nine-tap K
    cannot pay for the stride-2 packing); deeper stride-2 layers keep the profile's rule."""
    need(path)
    try:
        for tune in (0, 1):
            _conv._set_q8_tune(tune)
            assert _conv._q8_choice(path, 3, 416, 416, 32, 3, 2, 1)[1] == "direct"
            assert _conv._q8_choice(path, 3, 320, 320, 8, 3, 2, 1)[1] == "direct"
    finally:
        _conv._set_q8_tune(-1)

@pytest.mark.parametrize("path", [p for p in ("amx", "amx-sim") if p in Q8_PATHS])
def test_amx_channels_last_pipeline(path):
    """AMX's channels-last mode (stop 41): chosen for kernels of 2x2 and more at stride 1 (or 2
    with outputs at least 26 wide) on two or more whole K tiles per tap, and its epilogue, which runs during the thread's next kernel call and at the
    end of the layer (cl_flush), lands in the right layer: layers of different shapes back to
    back on the same pool threads (1-3 threads, one of them with fewer blocks than threads), each
    equal to the reference, with a fused shortcut on one of them."""
    need(path)
    tiles = _conv.q8_tiles(path)
    assert _conv._q8_choice(path, 128, 26, 26, 256, 3, 1, 1) == (len(tiles), "channels-last")
    assert _conv._q8_choice(path, 128, 13, 13, 40, 2, 1, 0)[1] == "channels-last"
    assert _conv._q8_choice(path, 64, 26, 26, 256, 3, 1, 1)[1] != "channels-last"      # one K tile
    assert _conv._q8_choice(path, 128, 52, 52, 256, 3, 2, 1)[1] == "channels-last"     # stride 2, 26 wide
    assert _conv._q8_choice(path, 128, 26, 26, 256, 3, 2, 1)[1] != "channels-last"     # stride 2, 13 wide
    assert _conv._q8_choice(path, 96, 26, 26, 256, 3, 1, 1)[1] != "channels-last"      # partial K
    assert _conv._q8_choice(path, 128, 26, 26, 256, 1, 1, 0)[1] != "channels-last"     # 1x1
    # forced, it needs 61+ channels (else direct mode), and the other layers' scratch does not
    # grow for its 64-byte positions: a 3-channel first layer needs less than XL would (418^2 * 64)
    _conv._set_q8_override(0, 3)
    try:
        assert _conv._q8_choice(path, 32, 26, 26, 64, 3, 1, 1)[1] == "direct"
        assert _conv._q8_choice(path, 64, 26, 26, 64, 3, 1, 1)[1] == "channels-last"
    finally:
        _conv._set_q8_override(-1, -1)
    assert _conv.scratch_bytes(3, 416, 416, 16, 3, 1, 1, 1) < 418 * 418 * 64
    rng = np.random.default_rng(57)
    shapes = [(128, 9, 11, 70, 3, 1, 1), (128, 3, 2, 16, 3, 1, 1), (192, 6, 5, 129, 3, 1, 1),
              (64, 12, 7, 33, 3, 1, 1), (128, 12, 7, 33, 2, 1, 0), (128, 53, 52, 20, 3, 2, 1),
              (256, 1, 1, 5, 3, 1, 1)]
    for rep in range(2):
        for i, shape in enumerate(shapes):
            x, wt, bias, shift, kw = case(rng, *shape, style=("random", "max", "edges")[(i + rep) % 3])
            ref = reference(x, wt, bias, shift, **kw)
            got = run(x, wt, bias, shift, simd=path, nthreads=1 + (i + rep) % 3, **kw)
            assert np.array_equal(got, ref), (path, shape, rep)


@pytest.mark.parametrize("path", [p for p in ("amx", "amx-sim") if p in Q8_PATHS])
def test_amx_chunks_and_row_groups(path):
    """The AMX kernels (csrc/mdfi_conv_amx.c) where their structure shows: one partial K tile
    per tap (29-63 channels: A tiles of 4*C4 bytes a row, B tiles of C4 rows), K in several chunks
    of AMX_KC = 8 steps of 64 channels (C tiles stored and reloaded between chunks; 3x3 with
    C = 128, 192: 18, 27 steps; 1x1 with C = 1024: 16), one chunk (C = 64 3x3, 768 1x1: 9, 12
    steps), four register tiles per call with output-channel counts that leave 1-3 of them
    past M (M = 129, 150, 200, 255) or a single one (M = 16), strides 1 and 2, both kernels in
    every B mode and the automatic choice, 1-3 threads, random and extreme values."""
    need(path)
    tiles = _conv.q8_tiles(path)
    assert len(tiles) == 2
    rng = np.random.default_rng(41)
    shapes = [(128, 6, 7, 150, 3, 1, 1), (192, 5, 4, 129, 3, 2, 1), (1024, 3, 5, 200, 1, 1, 0),
              (64, 9, 8, 255, 3, 1, 1), (768, 4, 4, 16, 1, 1, 0), (128, 11, 9, 40, 3, 2, 1),
              # one partial K tile per tap (29-63 channels: 8-15 quads)
              (32, 9, 10, 64, 3, 2, 1), (63, 5, 6, 130, 3, 1, 1), (29, 4, 7, 33, 1, 1, 0), (48, 7, 5, 20, 3, 1, 1)]
    for i, shape in enumerate(shapes):
        style = ("random", "max", "edges")[i % 3]
        x, wt, bias, shift, kw = case(rng, *shape, style=style)
        ref = reference(x, wt, bias, shift, **kw)
        for kern, direct in [(-1, -1)] + [(k, d) for k in range(len(tiles)) for d in (1, 0, 2, 3)]:
            _conv._set_q8_override(kern, direct)
            try:
                got = run(x, wt, bias, shift, simd=path, nthreads=1 + (i + kern + direct) % 3, **kw)
            finally:
                _conv._set_q8_override(-1, -1)
            assert np.array_equal(got, ref), (path, kern, direct, shape, style)


@pytest.mark.parametrize("path", Q8_PATHS)
def test_choice_profiles(path):
    """The automatic tile and B-mode choice under each profile (generic: the AMD-tuned model;
    Intel: no 16x1 tile, no compact mode, dearer packing with threads and direct mode at stride
    2) equals the reference: yolov3-like shapes at small sizes (deep K on 13x13 and 26x26-like
    maps, strides 1 and 2, 1x1), row counts that are not multiples of any tile's rows, slow
    rows, 1 and 2 threads."""
    need(path)
    rng = np.random.default_rng(31 + sum(map(ord, path)))
    shapes = [(96, 13, 13, 40, 3, 1, 1), (64, 9, 9, 37, 3, 1, 1), (48, 26, 26, 20, 3, 1, 1),
              (32, 26, 26, 29, 3, 2, 1), (40, 14, 13, 24, 3, 2, 1), (70, 13, 13, 51, 1, 1, 0),
              (3, 40, 41, 16, 3, 1, 1), (20, 52, 52, 8, 1, 1, 0)]
    for i, shape in enumerate(shapes):
        x, wt, bias, shift, kw = case(rng, *shape, xkind="u8" if shape[0] == 3 else None)
        ref = reference(x, wt, bias, shift, **kw)
        for profile in (-1, 0, 1):
            _conv._set_q8_tune(profile)
            for nthreads in (1, 2):
                got = run(x, wt, bias, shift, simd=path, nthreads=nthreads, **kw)
                assert np.array_equal(got, ref), (path, profile, nthreads, shape, kw)


def test_cpu_tuning_inputs():
    """What the kernel choice reads about the CPU: the vendor flag, and the L2 size (CPUID leaf
    4 on Intel: a plausible per-core size; 0 elsewhere, then the Intel profile assumes 2 MB)."""
    intel, l2 = _conv._cpu_tuning()
    assert isinstance(intel, bool)
    assert l2 == 0 or 64 * 1024 <= l2 <= 1024 * 1024 * 1024, l2
    if not intel:
        assert l2 == 0


def test_choice_intel_profile():
    """The Intel profile's choices (round 9, docs/performance.md) on yolov3's layer shapes: never
    the one-vector tile or compact mode; packed B on the deep 13x13 layers, direct on the big maps
    and the 52x52 3x3 layers at one thread; the generic (AMD-tuned) profile keeps its choices."""
    if "avx512vnni" not in _conv.PATHS:
        pytest.skip("no avx512vnni path in this build")
    tiles = _conv.q8_tiles("avx512vnni")
    if not tiles:
        pytest.skip("avx512vnni has no 8-bit tiles in this build")
    yolov3 = [(3, 416, 32, 3, 1), (32, 416, 64, 3, 2), (64, 208, 128, 3, 2), (128, 104, 256, 3, 2),
              (128, 52, 256, 3, 1), (256, 52, 512, 3, 2), (256, 26, 512, 3, 1), (512, 26, 1024, 3, 2),
              (512, 13, 1024, 3, 1), (1024, 13, 512, 1, 1), (512, 26, 256, 1, 1), (1024, 13, 255, 1, 1)]
    try:
        _conv._set_q8_tune(1)
        for nthreads in (1, 2, 3):
            for c, hw, m, k, s in yolov3:
                kern, mode = _conv._q8_choice("avx512vnni", c, hw, hw, m, k, s, k // 2, nthreads)
                assert tiles[kern][1] >= 2 and mode != "compact", (c, hw, m, k, s, nthreads, tiles[kern], mode)
        assert _conv._q8_choice("avx512vnni", 512, 13, 13, 1024, 3, 1, 1, 1)[1] == "packed"
        assert _conv._q8_choice("avx512vnni", 512, 13, 13, 1024, 3, 1, 1, 2)[1] == "packed"
        assert _conv._q8_choice("avx512vnni", 32, 416, 416, 64, 3, 2, 1, 1)[1] == "direct"
        assert _conv._q8_choice("avx512vnni", 128, 52, 52, 256, 3, 1, 1, 1)[1] == "direct"
        _conv._set_q8_tune(0)
        assert _conv._q8_choice("avx512vnni", 512, 13, 13, 1024, 3, 1, 1, 1) == (1, "compact")
        _conv._set_q8_override(0, 0)                  # an override wins over either profile
        assert _conv._q8_choice("avx512vnni", 512, 13, 13, 1024, 3, 1, 1, 1) == (0, "packed")
        assert _conv._q8_choice("scalar", 512, 13, 13, 1024, 3, 1, 1, 1) is None
    finally:
        _conv._set_q8_tune(-1)
        _conv._set_q8_override(-1, -1)


def test_self_check_failure_falls_back_with_one_line(tmp_path):
    """A path whose start-up self-check fails is not used: one line on stderr, the fallback
    path computes."""
    best = _conv.best_simd_path()
    if best == "scalar":
        pytest.skip("no SIMD path on this CPU")
    code = ("import numpy as np\nfrom mdfi._ext import _conv\n"
            "print(_conv.simd_path())\n")
    res = run_python(["-c", code], cwd=tmp_path,
                     env={**__import__("os").environ, "MDFI_SIMD": best, "MDFI_SELFCHECK_FAIL": best})
    assert res.returncode == 0, res.stderr
    lines = [l for l in res.stderr.splitlines() if "self-check" in l]
    assert len(lines) == 1 and best in lines[0], res.stderr
    assert res.stdout.strip() != best and res.stdout.strip() in _conv.PATHS


# -- zero points: padding byte = pad_value ^ flip, out = sat(R(act(acc) / 2**s) + zero_out) ---------
def _zp(rng, x, bits, i):
    """A padding value inside x's range (its extremes first: the accumulator contract holds) and
    an output zero point (qmin, qmax, then random)."""
    lo, hi = int(x.min()), int(x.max())
    pv = (lo, hi, int(rng.integers(lo, hi + 1)))[i % 3]
    zo = (fp.qmin(bits), fp.qmax(bits), int(rng.integers(fp.qmin(bits), fp.qmax(bits) + 1)), -1)[i % 4]
    return pv, zo


@pytest.mark.parametrize("path", Q8_PATHS)
def test_zero_points_register_epilogue(path):
    """Rows on the int32 lanes (shifts 1..31) with output zero points at qmin / qmax: the clamp
    to the shifted range and the add, for 8-bit outputs (otherwise saturated by the narrowing)
    and narrower / wider ones, every activation."""
    need(path)
    tiles = _conv.q8_tiles(path)
    rng = np.random.default_rng(23 + sum(map(ord, path)))
    shapes = [(3, 9, 21, 7, 3, 1, 1), (5, 6, 40, 20, 1, 1, 0), (17, 7, 9, 13, 3, 2, 1), (40, 5, 5, 33, 3, 1, 1),
              (8, 16, 16, 16, 3, 1, 1)]
    for i, shape in enumerate(shapes):
        for j, bits in enumerate((8, 16, 3, 5)):
            x, wt, _, _, kw = case(rng, *shape, xkind="u8" if i % 2 == 0 else "s8", wbits=8, xbits=8)
            m = shape[3]
            pmax = shape[0] * shape[4] ** 2 * 128 * 255
            typical = max(pmax.bit_length() - 8, 1)
            shift = rng.choice([1, 2, typical - 1, typical, typical + 3, 31], size=m).astype(np.int32)
            bias = rng.integers(-1000, 1001, size=m).astype(np.int64)
            kw.update(bits=bits, rounding=ROUNDINGS[(i + j) % 2], act=ACTS[(i + j) % 3])
            kw["pad_value"], kw["zero_out"] = _zp(rng, x, bits, i + j)
            ref = reference(x, wt, bias, shift, **kw)
            for kern in range(len(tiles)):
                for direct in (1, 0, 2, 3):
                    _conv._set_q8_override(kern, direct)
                    got = run(x, wt, bias, shift, simd=path, nthreads=1 + (i + kern) % 2, **kw)
                    assert np.array_equal(got, ref), (path, tiles[kern], direct, shape, kw)
