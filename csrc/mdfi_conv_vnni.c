/* mdfi_conv_vnni.c -- x86 operations of the 8-bit dot-product convolution (mdfi_conv_q8.h):
 *
 *   X4 build (SSE2, baseline x86-64): channel quads interleaved, XOR 0x80 where needed,
 *     stride-2 phases split with byte de-interleaving;
 *   register tiles (mdfi_conv_vnni_body.h) compiled three times:
 *     vnni512  AVX512-VNNI vpdpbusd zmm, compress + masked stores      (tested here)
 *     vnni256  AVX512-VNNI + VL vpdpbusd ymm (EVEX), AVX2 epilogue    (tested here)
 *     avxvnni  AVX-VNNI vpdpbusd ymm (VEX), the same source as vnni256  (self-checked where it
 *              runs: mdfi_conv_paths.c)
 *
 * Every function with ISA-specific code carries a target attribute and is reached only after
 * mdfi_cpu_features() reported the ISA.  Compilers without AVX-VNNI support (gcc < 11, clang
 * < 12) build the rest and report the avxvnni path as unavailable.
 */
#include "mdfi_conv_q8.h"
#include "mdfi_fixedpoint.h"

#if MDFI_CONV_X86

#include <immintrin.h>
#include <string.h>

#include "mdfi_fixedpoint_avx2.h"
#include "mdfi_fixedpoint_avx512.h"

#define AVX2_ATTR __attribute__((target("avx2,fma")))

/* ---------------------------------------------------------------------------------------
 * X4 rows (SSE2)
 * ------------------------------------------------------------------------------------- */
/* 16 positions of four channel rows -> 64 bytes of quads. */
static inline void quads16(uint8_t *d, __m128i r0, __m128i r1, __m128i r2, __m128i r3)
{
    const __m128i t0 = _mm_unpacklo_epi8(r0, r1), t1 = _mm_unpackhi_epi8(r0, r1);
    const __m128i t2 = _mm_unpacklo_epi8(r2, r3), t3 = _mm_unpackhi_epi8(r2, r3);
    _mm_storeu_si128((__m128i *)(void *)d, _mm_unpacklo_epi16(t0, t2));
    _mm_storeu_si128((__m128i *)(void *)(d + 16), _mm_unpackhi_epi16(t0, t2));
    _mm_storeu_si128((__m128i *)(void *)(d + 32), _mm_unpacklo_epi16(t1, t3));
    _mm_storeu_si128((__m128i *)(void *)(d + 48), _mm_unpackhi_epi16(t1, t3));
}

/* 16 bytes of a row at input columns x0, x0+s, ... (s = 1 or 2), XOR flip. */
static inline __m128i row16(const uint8_t *src, int32_t s, __m128i flip)
{
    if (s == 1) return _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)src), flip);
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)src);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(src + 16));
    const __m128i ff = _mm_set1_epi16(0x00ff);
    return _mm_xor_si128(_mm_packus_epi16(_mm_and_si128(lo, ff), _mm_and_si128(hi, ff)), flip);
}

/* n (>= 16) consecutive positions from four channel rows (NULL: padding) into quads; the last
 * 16 are redone with an overlapping vector when n is not a multiple of 16. */
static inline void quads_run(uint8_t *d, const uint8_t *const src[4], int64_t n, int32_t s, __m128i flip,
                             __m128i padv)
{
    for (int64_t j = 0;; j += 16) {
        if (j + 16 > n) j = n - 16;
        __m128i v[4];
        for (int e = 0; e < 4; ++e) v[e] = src[e] ? row16(src[e] + j * s, s, flip) : padv;
        quads16(d + 4 * j, v[0], v[1], v[2], v[3]);
        if (j + 16 >= n) break;
    }
}

void mdfi_q8_x4_avx2(const q8_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t s = ctx->stride, hps = ctx->hps, wps = ctx->wps;
    const __m128i flip = _mm_set1_epi8((char)ctx->flip), padv = _mm_set1_epi8((char)ctx->padv);
    int64_t pr = r0 % hps, pl = r0 / hps;               /* incremented below: no division per row */
    for (int64_t r = r0; r < r1;) {
        const uint8_t *src[4];
        int32_t py, px;
        uint8_t *plane = mdfi_q8_x4_plane(ctx, pl, src, &py, &px);
        /* rows pr .. pe-1 of this plane */
        const int64_t pe = (r1 - r) < (hps - pr) ? pr + (r1 - r) : hps;
        if (s == 1 && ctx->pad == 0 && wps == ctx->w && (pe - pr) * wps >= 16) {
            /* no padding: the plane's rows are the input rows, one contiguous run */
            const uint8_t *rs[4];
            for (int e = 0; e < 4; ++e) rs[e] = src[e] ? src[e] + (size_t)pr * (size_t)ctx->w : NULL;
            quads_run(plane + (size_t)pr * (size_t)wps * 4, rs, (pe - pr) * wps, 1, flip, padv);
        } else {
            for (int64_t q = pr; q < pe; ++q) {
                uint8_t *d = plane + (size_t)q * (size_t)wps * 4;
                int64_t jlo, jhi;
                const int64_t y = mdfi_q8_x4_row(ctx, q, py, px, &jlo, &jhi);
                if (jlo > 0) memset(d, ctx->padv, (size_t)jlo * 4);
                const int64_t n = jhi - jlo, x0 = jlo * s + px - ctx->pad;
                const uint8_t *rs[4];
                for (int e = 0; e < 4; ++e) rs[e] = src[e] ? src[e] + (size_t)y * (size_t)ctx->w + x0 : NULL;
                /* vectors read 16*s bytes from x0 + j*s: the first nv positions stay inside the
                 * row (x0 + nv*s <= W); the rest, if any, one by one */
                int64_t nv = s == 1 ? n : s == 2 ? ((int64_t)ctx->w - x0) / 2 : 0;
                if (nv > n) nv = n;
                if (nv < 16) nv = 0;
                if (nv > 0) quads_run(d + 4 * jlo, rs, nv, s, flip, padv);
                mdfi_q8_x4_bytes(d + 4 * jlo, rs, nv, n, s, ctx->flip, ctx->padv);
                if (jhi < wps) memset(d + 4 * jhi, ctx->padv, (size_t)(wps - jhi) * 4);
            }
        }
        if (pe == hps) mdfi_q8_x4_slack(ctx, plane);
        r += pe - pr;
        pr = 0;
        ++pl;
    }
}

/* ---------------------------------------------------------------------------------------
 * X4 rows (AVX-512BW): 64 positions per step, masked loads and stores for any run length
 * ------------------------------------------------------------------------------------- */
#define X4_ATTR __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

/* cnt (1..64) positions of a row at x0, x0+s, ... (s = 1 or 2), XOR flip; the bytes past the
 * last position are never read (masked loads; lanes >= cnt hold flip). */
X4_ATTR static inline __m512i row64(const uint8_t *src, int32_t s, int32_t cnt, __m512i flip)
{
    if (s == 1) {
        const __mmask64 m = cnt >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << cnt) - 1);
        return _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, (const void *)src), flip);
    }
    const int32_t nb = 2 * cnt - 1;                       /* bytes x0 .. x0 + 2(cnt-1) */
    const __mmask64 m0 = nb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
    const __mmask64 m1 = nb > 64 ? (((__mmask64)1 << (nb - 64)) - 1) : 0;
    const __m512i ff = _mm512_set1_epi16(0x00ff);
    const __m512i lo = _mm512_and_si512(_mm512_maskz_loadu_epi8(m0, (const void *)src), ff);
    const __m512i hi = _mm512_and_si512(_mm512_maskz_loadu_epi8(m1, (const void *)(src + 64)), ff);
    /* per 128-bit lane L: positions 8L..8L+7 (from lo), then 32+8L.. (from hi) */
    const __m512i p = _mm512_packus_epi16(lo, hi);
    return _mm512_xor_si512(_mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), p), flip);
}

/* cnt (1..64) positions of four channel rows -> quads at d (only the cnt quads are written). */
X4_ATTR static inline void quads64(uint8_t *d, __m512i r0, __m512i r1, __m512i r2, __m512i r3, int32_t cnt)
{
    const __m512i t0 = _mm512_unpacklo_epi8(r0, r1), t1 = _mm512_unpackhi_epi8(r0, r1);
    const __m512i t2 = _mm512_unpacklo_epi8(r2, r3), t3 = _mm512_unpackhi_epi8(r2, r3);
    /* qk, 128-bit lane L: the quads of positions 16L + 4k .. 16L + 4k + 3 */
    const __m512i q0 = _mm512_unpacklo_epi16(t0, t2), q1 = _mm512_unpackhi_epi16(t0, t2);
    const __m512i q2 = _mm512_unpacklo_epi16(t1, t3), q3 = _mm512_unpackhi_epi16(t1, t3);
    /* 4x4 transpose of 128-bit blocks: o_L = (q0.L, q1.L, q2.L, q3.L) = positions 16L .. 16L+15 */
    const __m512i u0 = _mm512_shuffle_i32x4(q0, q1, 0x44), u1 = _mm512_shuffle_i32x4(q0, q1, 0xEE);
    const __m512i u2 = _mm512_shuffle_i32x4(q2, q3, 0x44), u3 = _mm512_shuffle_i32x4(q2, q3, 0xEE);
    __m512i o[4];
    o[0] = _mm512_shuffle_i32x4(u0, u2, 0x88);
    o[1] = _mm512_shuffle_i32x4(u0, u2, 0xDD);
    o[2] = _mm512_shuffle_i32x4(u1, u3, 0x88);
    o[3] = _mm512_shuffle_i32x4(u1, u3, 0xDD);
    if (cnt == 64) {
        for (int k = 0; k < 4; ++k) _mm512_storeu_si512((void *)(d + 64 * k), o[k]);
        return;
    }
    for (int k = 0; k < 4 && 16 * k < cnt; ++k) {
        const int32_t v = cnt - 16 * k;
        const __mmask16 m = v >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << v) - 1u);
        _mm512_mask_storeu_epi32((void *)(d + 64 * k), m, o[k]);
    }
}

/* n (>= 1) consecutive positions from four channel rows (NULL: padding) into quads. */
X4_ATTR static void quads_run512(uint8_t *d, const uint8_t *const src[4], int64_t n, int32_t s, uint8_t flip8,
                                 uint8_t pad8)
{
    const __m512i flip = _mm512_set1_epi8((char)flip8), padv = _mm512_set1_epi8((char)pad8);
    for (int64_t j = 0; j < n; j += 64) {
        const int32_t cnt = n - j >= 64 ? 64 : (int32_t)(n - j);
        __m512i v[4];
        for (int e = 0; e < 4; ++e) v[e] = src[e] ? row64(src[e] + j * s, s, cnt, flip) : padv;
        quads64(d + 4 * j, v[0], v[1], v[2], v[3], cnt);
    }
}

X4_ATTR void mdfi_q8_x4_avx512(const q8_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t s = ctx->stride, hps = ctx->hps, wps = ctx->wps;
    int64_t pr = r0 % hps, pl = r0 / hps;               /* incremented below: no division per row */
    for (int64_t r = r0; r < r1;) {
        const uint8_t *src[4];
        int32_t py, px;
        uint8_t *plane = mdfi_q8_x4_plane(ctx, pl, src, &py, &px);
        /* rows pr .. pe-1 of this plane */
        const int64_t pe = (r1 - r) < (hps - pr) ? pr + (r1 - r) : hps;
        if (s == 1 && ctx->pad == 0 && wps == ctx->w) {
            /* no padding: the plane's rows are the input rows, one contiguous run */
            const uint8_t *rs[4];
            for (int e = 0; e < 4; ++e) rs[e] = src[e] ? src[e] + (size_t)pr * (size_t)ctx->w : NULL;
            quads_run512(plane + (size_t)pr * (size_t)wps * 4, rs, (pe - pr) * wps, 1, ctx->flip, ctx->padv);
        } else {
            for (int64_t q = pr; q < pe; ++q) {
                uint8_t *d = plane + (size_t)q * (size_t)wps * 4;
                int64_t jlo, jhi;
                const int64_t y = mdfi_q8_x4_row(ctx, q, py, px, &jlo, &jhi);
                if (jlo > 0) memset(d, ctx->padv, (size_t)jlo * 4);
                const int64_t n = jhi - jlo, x0 = jlo * s + px - ctx->pad;
                const uint8_t *rs[4];
                for (int e = 0; e < 4; ++e) rs[e] = src[e] ? src[e] + (size_t)y * (size_t)ctx->w + x0 : NULL;
                /* position j reads input column x0 + j*s <= W - 1 (jhi): inside the row */
                if (n > 0 && s <= 2) {
                    quads_run512(d + 4 * jlo, rs, n, s, ctx->flip, ctx->padv);
                } else {
                    mdfi_q8_x4_bytes(d + 4 * jlo, rs, 0, n, s, ctx->flip, ctx->padv);
                }
                if (jhi < wps) memset(d + 4 * jhi, ctx->padv, (size_t)(wps - jhi) * 4);
            }
        }
        if (pe == hps) mdfi_q8_x4_slack(ctx, plane);
        r += pe - pr;
        pr = 0;
        ++pl;
    }
}

/* Stride 2: both column phases of an X4 row from one read of the input row.  Row r2 =
 * (cq * 2 + py) * Hps + pr writes row pr of the planes (cq, py, px = 0) and (cq, py, px = 1):
 * one phase reads input columns 0, 2, 4, ..., the other 1, 3, 5, ... (mdfi_q8_x4_row: x0 is 0
 * or 1), so 128 input bytes give 64 positions of each, the even bytes and the odd ones. */
X4_ATTR void mdfi_q8_x4_avx512_s2(const q8_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t hps = ctx->hps, wps = ctx->wps, w = ctx->w;
    const __m512i flip = _mm512_set1_epi8((char)ctx->flip), padv = _mm512_set1_epi8((char)ctx->padv);
    const __m512i ff = _mm512_set1_epi16(0x00ff), perm = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t pr = r % hps, pp = r / hps;         /* pp = cq * 2 + py */
        const uint8_t *src[4];
        uint8_t *plane[2];
        int64_t jlo[2], jhi[2], y = 0;
        int32_t py = 0, px;
        for (int32_t k = 0; k < 2; ++k) {                /* the plane of column phase k */
            plane[k] = mdfi_q8_x4_plane(ctx, pp * 2 + k, src, &py, &px);
            y = mdfi_q8_x4_row(ctx, pr, py, k, &jlo[k], &jhi[k]);
        }
        /* x0 = jlo*2 + px - pad: phase e (the one whose x0 is e) reads the columns of parity e */
        int32_t par[2];                                   /* par[k]: parity of phase k's columns */
        for (int32_t k = 0; k < 2; ++k) par[k] = (int32_t)((jlo[k] * 2 + k - ctx->pad) & 1);
        const int64_t n[2] = {jhi[0] - jlo[0], jhi[1] - jlo[1]};
        for (int32_t k = 0; k < 2; ++k) {
            uint8_t *d = plane[k] + (size_t)pr * (size_t)wps * 4;
            if (jlo[k] > 0) memset(d, ctx->padv, (size_t)jlo[k] * 4);
            if (jhi[k] < wps) memset(d + 4 * jhi[k], ctx->padv, (size_t)(wps - jhi[k]) * 4);
        }
        if (n[0] > 0 || n[1] > 0) {
            /* both phases start at input column 0 or 1 of row y: chunk i covers columns
             * [128 i, 128 i + 128), positions i*64 .. of each phase */
            const uint8_t *rs[4];
            for (int e = 0; e < 4; ++e) rs[e] = src[e] ? src[e] + (size_t)y * (size_t)w : NULL;
            const int64_t nmax = n[0] > n[1] ? n[0] : n[1];
            for (int64_t j = 0; j < nmax; j += 64) {
                const int64_t nb = (int64_t)w - 2 * j;           /* bytes left in the row (> 0) */
                const __mmask64 m0 = nb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
                const __mmask64 m1 = nb >= 128 ? ~(__mmask64)0 : nb > 64 ? (((__mmask64)1 << (nb - 64)) - 1) : 0;
                __m512i v[2][4];                                  /* [parity][channel] */
                for (int e = 0; e < 4; ++e) {
                    if (!rs[e]) {
                        v[0][e] = v[1][e] = padv;
                        continue;
                    }
                    const __m512i lo = _mm512_maskz_loadu_epi8(m0, (const void *)(rs[e] + 2 * j));
                    const __m512i hi = _mm512_maskz_loadu_epi8(m1, (const void *)(rs[e] + 2 * j + 64));
                    const __m512i ev = _mm512_packus_epi16(_mm512_and_si512(lo, ff), _mm512_and_si512(hi, ff));
                    const __m512i od = _mm512_packus_epi16(_mm512_srli_epi16(lo, 8), _mm512_srli_epi16(hi, 8));
                    v[0][e] = _mm512_xor_si512(_mm512_permutexvar_epi64(perm, ev), flip);
                    v[1][e] = _mm512_xor_si512(_mm512_permutexvar_epi64(perm, od), flip);
                }
                for (int32_t k = 0; k < 2; ++k) {
                    if (j >= n[k]) continue;
                    const int32_t cnt = n[k] - j >= 64 ? 64 : (int32_t)(n[k] - j);
                    const int32_t q = par[k];
                    quads64(plane[k] + ((size_t)pr * (size_t)wps + (size_t)(jlo[k] + j)) * 4, v[q][0], v[q][1],
                            v[q][2], v[q][3], cnt);
                }
            }
        }
        if (pr == hps - 1)
            for (int32_t k = 0; k < 2; ++k) mdfi_q8_x4_slack(ctx, plane[k]);
    }
}

/* ---------------------------------------------------------------------------------------
 * Packed B (small maps): masked loads instead of a copy per pixel run
 * ------------------------------------------------------------------------------------- */
/* The tile's pixels as segments of destination vectors: vector v, lanes [l0, l1) come from
 * consecutive X4 positions starting at src (in positions, relative to a plane).  A segment
 * never crosses a vector; a 16-lane vector holds at most a few (one per output row). */
typedef struct {
    int32_t v;
    uint32_t mask;
    int64_t src;                   /* X4 position of lane 0 of this segment's vector */
} pack_seg;

static int32_t pack_segments(const q8_ctx *ctx, int32_t t, int32_t lanes, pack_seg *seg, int32_t maxseg)
{
    const int32_t nr = ctx->nr;
    int32_t ns = 0;
    int64_t prev = -2;
    for (int32_t j = 0; j < nr; ++j) {
        int64_t p = (int64_t)t * nr + j;
        if (p >= ctx->n) p = ctx->n - 1;
        const int64_t src = (p / ctx->ow) * ctx->wps + p % ctx->ow;
        const int32_t v = j / lanes, l = j % lanes;
        if (ns > 0 && l != 0 && src == prev + 1 && seg[ns - 1].v == v) {
            seg[ns - 1].mask |= 1u << l;
        } else {
            if (ns == maxseg) return -1;
            seg[ns].v = v;
            seg[ns].mask = 1u << l;
            seg[ns].src = src - l;
            ++ns;
        }
        prev = src;
    }
    return ns;
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
void mdfi_q8_pack_avx512(const q8_ctx *ctx, int32_t t, uint8_t *dst)
{
    pack_seg seg[3 * Q8_MAX_NR / 16 + Q8_MAX_NR];
    const int32_t ns = pack_segments(ctx, t, 16, seg, (int32_t)(sizeof seg / sizeof seg[0]));
    if (ns < 0) {
        mdfi_q8_pack_ref(ctx, t, dst);
        return;
    }
    const int32_t nrv = ctx->nr / 16;
    for (int32_t tap = 0; tap < ctx->taps; ++tap)
        for (int32_t q4 = 0; q4 < ctx->c4; ++q4) {
            const uint8_t *s = ctx->x4 + (size_t)q4 * ctx->xcs + (size_t)ctx->xoff[tap];
            uint8_t *d = dst + ((size_t)tap * ctx->c4 + (size_t)q4) * (size_t)ctx->nr * 4;
            int32_t k = 0;
            for (int32_t v = 0; v < nrv; ++v) {
                __m512i x = _mm512_setzero_si512();
                for (; k < ns && seg[k].v == v; ++k)   /* masked lanes are never read */
                    x = _mm512_mask_loadu_epi32(x, (__mmask16)seg[k].mask,
                                                (const void *)(s + (intptr_t)seg[k].src * 4));
                _mm512_storeu_si512((void *)(d + (size_t)v * 64), x);
            }
        }
}

AVX2_ATTR static void pack_avx2(const q8_ctx *ctx, int32_t t, uint8_t *dst)
{
    pack_seg seg[3 * Q8_MAX_NR / 8 + Q8_MAX_NR];
    const int32_t ns = pack_segments(ctx, t, 8, seg, (int32_t)(sizeof seg / sizeof seg[0]));
    if (ns < 0) {
        mdfi_q8_pack_ref(ctx, t, dst);
        return;
    }
    const int32_t nrv = ctx->nr / 8;
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (int32_t tap = 0; tap < ctx->taps; ++tap)
        for (int32_t q4 = 0; q4 < ctx->c4; ++q4) {
            const uint8_t *s = ctx->x4 + (size_t)q4 * ctx->xcs + (size_t)ctx->xoff[tap];
            uint8_t *d = dst + ((size_t)tap * ctx->c4 + (size_t)q4) * (size_t)ctx->nr * 4;
            int32_t k = 0;
            for (int32_t v = 0; v < nrv; ++v) {
                __m256i x = _mm256_setzero_si256();
                for (; k < ns && seg[k].v == v; ++k) {
                    const __m256i m = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)seg[k].mask), lane), lane);
                    x = _mm256_or_si256(x, _mm256_maskload_epi32((const int *)(const void *)(s + (intptr_t)seg[k].src * 4), m));
                }
                _mm256_storeu_si256((__m256i *)(void *)(d + (size_t)v * 32), x);
            }
        }
}

/* ---------------------------------------------------------------------------------------
 * Register tiles
 * ------------------------------------------------------------------------------------- */
/* zmm, AVX512-VNNI */
/* The leaky epilogue's lane constants (mdfi_conv_vnni_body.h, rqf): 0xffff, 0x18000 and the
 * vpmaddwd pair (0, 6554), 16 lanes each; writable and global so that the tiles load them. */
__attribute__((visibility("hidden"), aligned(64))) int32_t mdfi_q8_rqk[3][16] = {
    {0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
     0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff},
    {0x18000, 0x18000, 0x18000, 0x18000, 0x18000, 0x18000, 0x18000, 0x18000,
     0x18000, 0x18000, 0x18000, 0x18000, 0x18000, 0x18000, 0x18000, 0x18000},
    {2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16,
     2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16,
     2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16,
     2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16, 2 * MDFI_LEAKY_MULT << 16}};

#define QB_ATTR __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define QB_NAME(x) vnni512_##x
#define QB_WIDTH 512
#define QB_DPBUSD(acc, b, a) _mm512_dpbusd_epi32(acc, b, a)
#include "mdfi_conv_vnni_body.h"
QB_KERNEL(8, 3)
QB_KERNEL(16, 1)
QB_KERNEL(12, 2)
#undef QB_ATTR
#undef QB_NAME
#undef QB_WIDTH
#undef QB_DPBUSD

/* ymm, AVX512-VNNI + VL (EVEX) -- the tested twin of the AVX-VNNI build below */
#define QB_ATTR __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define QB_NAME(x) vnni256_##x
#define QB_WIDTH 256
#define QB_DPBUSD(acc, b, a) _mm256_dpbusd_epi32(acc, b, a)
#include "mdfi_conv_vnni_body.h"
QB_KERNEL(4, 3)
QB_KERNEL(8, 1)
#undef QB_ATTR
#undef QB_NAME
#undef QB_WIDTH
#undef QB_DPBUSD

#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define MDFI_HAVE_AVXVNNI_BUILD 1
/* ymm, AVX-VNNI (VEX): the same text as vnni256 */
#define QB_ATTR __attribute__((target("avx2,fma,avxvnni")))
#define QB_NAME(x) avxvnni_##x
#define QB_WIDTH 256
#define QB_DPBUSD(acc, b, a) _mm256_dpbusd_avx_epi32(acc, b, a)
#include "mdfi_conv_vnni_body.h"
QB_KERNEL(4, 3)
QB_KERNEL(8, 1)
#else
#define MDFI_HAVE_AVXVNNI_BUILD 0
#endif

int mdfi_q8_have_avxvnni_build(void) { return MDFI_HAVE_AVXVNNI_BUILD; }

/* The zmm epilogue for other tiles (AMX): rows m0.. of tmp [rows][nrv*16]. */
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
void mdfi_q8_epi_vnni512(const q8_ctx *ctx, int32_t m0, int32_t rows, int32_t nrv, const int32_t *tmp,
                         const uint64_t *vi)
{
    vnni512_epi_tmp(ctx, m0, rows, nrv, tmp, vi, 1);
}

const q8_kernel mdfi_q8_kerns_vnni512[] = {{8, 3, 16, vnni512_tile_8x3}, {16, 1, 16, vnni512_tile_16x1},
                                     {12, 2, 16, vnni512_tile_12x2}};
const q8_ops mdfi_q8_ops_vnni512 = {"avx512vnni", 0, mdfi_q8_x4_avx512, mdfi_q8_pack_avx512, mdfi_q8_kerns_vnni512, 3, NULL, NULL,
                                     1, 1, mdfi_q8_x4_avx512_s2, 0, NULL, NULL, NULL, NULL};

static const q8_kernel kerns256[] = {{4, 3, 8, vnni256_tile_4x3}, {8, 1, 8, vnni256_tile_8x1}};
const q8_ops mdfi_q8_ops_vnni256 = {"avx512vnni-ymm", 0, mdfi_q8_x4_avx2, pack_avx2, kerns256, 2, NULL, NULL, 1, 0, NULL, 0, NULL, NULL, NULL, NULL};

#if MDFI_HAVE_AVXVNNI_BUILD
static const q8_kernel kernsvex[] = {{4, 3, 8, avxvnni_tile_4x3}, {8, 1, 8, avxvnni_tile_8x1}};
const q8_ops mdfi_q8_ops_avxvnni = {"avxvnni", 0, mdfi_q8_x4_avx2, pack_avx2, kernsvex, 2, NULL, NULL, 1, 0, NULL, 0, NULL, NULL, NULL, NULL};
#else
const q8_ops mdfi_q8_ops_avxvnni = {"avxvnni", 0, mdfi_q8_x4_avx2, mdfi_q8_pack_ref, kerns256, 0, NULL, NULL, 0, 0, NULL, 0, NULL, NULL, NULL, NULL};
#endif

#else
typedef int mdfi_conv_vnni_unused;
#endif /* MDFI_CONV_X86 */
