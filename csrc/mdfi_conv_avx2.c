/* mdfi_conv_avx2.c -- AVX2 versions of the convolution's inner operations.
 *
 * Compiled with the normal (baseline x86-64) flags: every function that uses AVX2 carries
 * __attribute__((target("avx2"))) and is only reached after mdfi_cpu_features() reported
 * AVX2 (mdfi_conv_paths.c).  On other compilers/architectures this file compiles to nothing.
 *
 * Exactness of the micro-kernel.  Every operand is an int16 (uint8/int8 inputs and int8
 * weights are widened exactly).  vpmaddwd multiplies int16 pairs and adds the two int32
 * products: each product has |p| <= 2^30, so the only pair sum outside int32 is
 * (-32768)(-32768) + (-32768)(-32768) = 2^31, which the instruction returns as -2^31, i.e.
 * the right value modulo 2^32.  It needs both operands to be -32768, so it cannot occur
 * when either the weights or the activations are <= 8 bits wide (|value| <= 255).
 * vpaddd adds modulo 2^32.  Hence the int32 accumulator is the exact sum modulo 2^32,
 * which is the exact sum whenever it fits int32 (acc64 == 0: guaranteed by the quantizer);
 * the scalar path computes the same residue with uint32 arithmetic, so both paths agree
 * bit for bit in every case.  For acc64 == 1 the driver only sums `chunk` K-pairs in int32
 * (chunk * 2*max|w|*max|x| <= 2^31 - 1, so no pair sum nor partial sum can wrap) before
 * widening into int64; vpmaddwd's wrap case is then impossible too (it would need
 * 2*max|w|*max|x| = 2^31 > 2^31 - 1).  Where those chunks are too short (16-bit weights
 * and activations: 0-1 pairs) the driver splits the activations x = 256 hi + lo (split_avx2)
 * and sums each half in chunks of >= 128 pairs (pair sums <= 2*max|w|*255), then adds
 * lo + 256 hi to the int64 tile (widen2_avx2).  No saturating instruction (vpmaddubsw) is used.
 */
#include "mdfi_conv_internal.h"
#include "mdfi_fixedpoint.h"

#if MDFI_CONV_X86

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2")))

static inline int32_t ld32(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- micro-kernel: C[6][16] (+)= A[kcl][6][2] . B[kcl][16][2] ------------------------ */
AVX2 static void ukr32_avx2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b,
                            size_t bstride, int32_t *restrict c, int accumulate)
{
    __m256i c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (accumulate) {
#define LD(r) c##r##0 = _mm256_loadu_si256((const __m256i *)(c + (r) * NR)); \
              c##r##1 = _mm256_loadu_si256((const __m256i *)(c + (r) * NR + 8));
        LD(0) LD(1) LD(2) LD(3) LD(4) LD(5)
#undef LD
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_si256();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_si256();
    }
    for (int32_t i = 0; i < kcl; ++i) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 16));
        __m256i av;
#define ROW(r) av = _mm256_set1_epi32(ld32(a + 2 * (r)));                        \
               c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0));  \
               c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1));
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
        a += MR * 2;
        b += bstride;
    }
#define ST(r) _mm256_storeu_si256((__m256i *)(c + (r) * NR), c##r##0); \
              _mm256_storeu_si256((__m256i *)(c + (r) * NR + 8), c##r##1);
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
#undef ST
}

/* acc[r][0..1] += A[kcl][6][2] rows 0..nrows-1 . B[kcl][16][2]: the K loop of the 2- and 4-row
 * kernels below (inlined with a constant nrows, so acc stays in registers). */
AVX2 static inline __attribute__((always_inline)) void rows_kloop(int nrows, int32_t kcl, const int16_t *restrict a,
                                                                  const int16_t *restrict b, size_t bstride,
                                                                  __m256i acc[4][2])
{
    for (int32_t i = 0; i < kcl; ++i) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 16));
        for (int r = 0; r < nrows; ++r) {
            const __m256i av = _mm256_set1_epi32(ld32(a + 2 * r));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
        }
        a += MR * 2;
        b += bstride;
    }
}

/* ---- the last panel of a layer whose M is not a multiple of 6: rows 0..NROWS-1 only ----
 * C[NROWS][16] (+)= A[kcl][6][2] . B[kcl][16][2] (rows NROWS..5 of the panel are zero
 * weights and of C are not written): NROWS = 2 or 4 instead of 6 rows of vpmaddwd (yolov3-tiny
 * layer 2: 32 channels = 5 panels + 2 rows).  The same exact arithmetic as ukr32_avx2. */
AVX2 static inline __attribute__((always_inline)) void ukr32_rows_body(int nrows, int32_t kcl,
                                                                       const int16_t *restrict a,
                                                                       const int16_t *restrict b, size_t bstride,
                                                                       int32_t *restrict c, int accumulate)
{
    __m256i acc[4][2];
    for (int r = 0; r < nrows; ++r) {
        acc[r][0] = accumulate ? _mm256_loadu_si256((const __m256i *)(c + r * NR)) : _mm256_setzero_si256();
        acc[r][1] = accumulate ? _mm256_loadu_si256((const __m256i *)(c + r * NR + 8)) : _mm256_setzero_si256();
    }
    rows_kloop(nrows, kcl, a, b, bstride, acc);
    for (int r = 0; r < nrows; ++r) {
        _mm256_storeu_si256((__m256i *)(c + r * NR), acc[r][0]);
        _mm256_storeu_si256((__m256i *)(c + r * NR + 8), acc[r][1]);
    }
}
AVX2 static void ukr32_r2_avx2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                               int32_t *restrict c, int accumulate)
{
    ukr32_rows_body(2, kcl, a, b, bstride, c, accumulate);
}
AVX2 static void ukr32_r4_avx2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                               int32_t *restrict c, int accumulate)
{
    ukr32_rows_body(4, kcl, a, b, bstride, c, accumulate);
}
/* The kernel for the first mv rows of a panel (rows mv..5 of C are then not written). */
static ukr32_fn ukr32_rows_avx2(int32_t mv)
{
    return mv <= 2 ? ukr32_r2_avx2 : mv <= 4 ? ukr32_r4_avx2 : ukr32_avx2;
}

/* Pairs 0, 2, 4, ..., 14 of the 16 pairs at p (int16 units; bit moves only). */
AVX2 static inline __m256i even_pairs(const int16_t *p)
{
    const __m256 a = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
    const __m256 b = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p + 16)));
    return _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), 0xD8);
}

/* ---- B packing: B[i][j] = X2[cc][off_j + ky*Wp + kx] (pairs moved as int32) ---------- */
/* ctx->x1 (1x1, stride 1, no padding): B[i][j] = (x[2cc][p], x[2cc+1][p]), cc = kc0 + i,
 * p = t*NR + j (clamped to N-1): the channel rows widened to int16 and interleaved, as X2
 * would hold them, straight into the tile. */
AVX2 static inline void interleave_store(int16_t *d, __m256i e, __m256i o);
AVX2 static void pack_x1_avx2(const conv_ctx *ctx, int32_t t, int32_t kc0, int32_t kcl, int16_t *restrict dst)
{
    const int64_t n = ctx->n, p0 = (int64_t)t * NR;
    const int full = p0 + NR <= n;
    for (int32_t i = 0; i < kcl; ++i) {
        const int64_t c0 = 2 * (int64_t)(kc0 + i), c1 = c0 + 1;
        const int has1 = c1 < ctx->c;
        int16_t *d = dst + (size_t)i * NR * 2;
        if (full) {
            __m256i e, o;
            if (ctx->xtype == MDFI_CONV_S16) {
                const int16_t *x = (const int16_t *)ctx->x;
                e = _mm256_loadu_si256((const __m256i *)(x + (size_t)c0 * (size_t)n + (size_t)p0));
                o = has1 ? _mm256_loadu_si256((const __m256i *)(x + (size_t)c1 * (size_t)n + (size_t)p0))
                         : _mm256_setzero_si256();
            } else {
                const unsigned char *x = (const unsigned char *)ctx->x;
                const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(x + (size_t)c0 * (size_t)n + (size_t)p0));
                const __m128i b = has1 ? _mm_loadu_si128((const __m128i *)(const void *)(x + (size_t)c1 * (size_t)n + (size_t)p0))
                                       : _mm_setzero_si128();
                e = ctx->xtype == MDFI_CONV_U8 ? _mm256_cvtepu8_epi16(a) : _mm256_cvtepi8_epi16(a);
                o = ctx->xtype == MDFI_CONV_U8 ? _mm256_cvtepu8_epi16(b) : _mm256_cvtepi8_epi16(b);
            }
            interleave_store(d, e, o);
            continue;
        }
        for (int j = 0; j < NR; ++j) {
            const size_t p = (size_t)(p0 + j < n ? p0 + j : n - 1);
            int16_t v0, v1 = 0;
            if (ctx->xtype == MDFI_CONV_S16) {
                v0 = ((const int16_t *)ctx->x)[(size_t)c0 * (size_t)n + p];
                if (has1) v1 = ((const int16_t *)ctx->x)[(size_t)c1 * (size_t)n + p];
            } else if (ctx->xtype == MDFI_CONV_S8) {
                v0 = ((const int8_t *)ctx->x)[(size_t)c0 * (size_t)n + p];
                if (has1) v1 = ((const int8_t *)ctx->x)[(size_t)c1 * (size_t)n + p];
            } else {
                v0 = ((const uint8_t *)ctx->x)[(size_t)c0 * (size_t)n + p];
                if (has1) v1 = ((const uint8_t *)ctx->x)[(size_t)c1 * (size_t)n + p];
            }
            d[2 * j] = v0;
            d[2 * j + 1] = v1;
        }
    }
}

AVX2 static void pack_avx2(const conv_ctx *ctx, int32_t t, int32_t kc0, int32_t kcl,
                           int16_t *restrict dst)
{
    if (ctx->x1) {
        pack_x1_avx2(ctx, t, kc0, kcl, dst);
        return;
    }
    int32_t off[NR], jb, gap;
    const int kind = mdfi_conv_tile_offsets(ctx, t, off, &jb, &gap);
    const __m256i o0 = _mm256_loadu_si256((const __m256i *)off);
    const __m256i o1 = _mm256_loadu_si256((const __m256i *)(off + 8));
    /* kind 2: lanes j >= jb come from the second run (two loads and a blend) */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i vjb = _mm256_set1_epi32(jb);
    const __m256i m0 = _mm256_cmpgt_epi32(vjb, lane);        /* j < jb: first run  */
    const __m256i m1 = _mm256_cmpgt_epi32(vjb, _mm256_add_epi32(lane, _mm256_set1_epi32(8)));
    const size_t o = 2 * (size_t)off[0], o2 = 2 * ((size_t)off[0] + (size_t)gap);
    /* stride 2: pixels two pairs apart, in one run or two (a tile crossing an output row):
     * every other pair of 32 consecutive pairs (no gather).  Lanes of run 2 are read from
     * off[jb] - 2 jb on, which is >= off[0] (each step is >= 2 pairs); the last pair read,
     * one past lane 15's, lies inside X2 (its NR pairs of slack after the last plane). */
    int s2 = 0;
    int32_t jb2 = NR;
    if (kind == 0 && ctx->stride == 2 && (int64_t)t * NR + NR <= ctx->n) {
        s2 = 1;
        for (int j = 1; j < NR; ++j) {
            if (off[j] == off[j - 1] + 2) continue;
            if (jb2 == NR && off[j] > off[j - 1] + 2) { jb2 = j; continue; }
            s2 = 0;
            break;
        }
    }
    const size_t q1 = 2 * (size_t)off[0], q2 = jb2 < NR ? 2 * ((size_t)off[jb2] - 2 * (size_t)jb2) : q1;
    const __m256i vjb2 = _mm256_set1_epi32(jb2);
    const __m256i n0 = _mm256_cmpgt_epi32(vjb2, lane);        /* j < jb2: first run */
    const __m256i n1 = _mm256_cmpgt_epi32(vjb2, _mm256_add_epi32(lane, _mm256_set1_epi32(8)));
    int32_t tap = kc0 / ctx->c2, cc = kc0 % ctx->c2;
    int32_t ky = tap / ctx->ks, kx = tap % ctx->ks;
    /* the 16 pairs of the tile at src (one K-pair row of X2 at one tap) */
#define PACK_LOAD(src, v0, v1)                                                                          \
        if (kind == 1) {                                                                               \
            v0 = _mm256_loadu_si256((const __m256i *)(src + o));                                        \
            v1 = _mm256_loadu_si256((const __m256i *)(src + o + 16));                                   \
        } else if (kind == 2) {                                                                        \
            v0 = _mm256_blendv_epi8(_mm256_loadu_si256((const __m256i *)(src + o2)),                    \
                                    _mm256_loadu_si256((const __m256i *)(src + o)), m0);                \
            v1 = _mm256_blendv_epi8(_mm256_loadu_si256((const __m256i *)(src + o2 + 16)),               \
                                    _mm256_loadu_si256((const __m256i *)(src + o + 16)), m1);           \
        } else if (s2) {                                                                               \
            v0 = even_pairs(src + q1);                                                                 \
            v1 = even_pairs(src + q1 + 32);                                                            \
            if (jb2 < NR) {                                                                            \
                v0 = _mm256_blendv_epi8(even_pairs(src + q2), v0, n0);                                  \
                v1 = _mm256_blendv_epi8(even_pairs(src + q2 + 32), v1, n1);                             \
            }                                                                                          \
        } else {                                                                                       \
            v0 = _mm256_i32gather_epi32((const int *)(const void *)(src), o0, 4);                      \
            v1 = _mm256_i32gather_epi32((const int *)(const void *)(src), o1, 4);                      \
        }
    if (ctx->tp) {
        /* tap-pair order (3 channels, C2 = 2, one K block): rows 0..taps-1 are plane 0 (c0, c1)
         * at tap i; row taps + j is (c2 at tap 2j, c2 at tap 2j + 1) from plane 1, whose pairs
         * are (c2, 0): the second tap's pairs shifted up 16 bits and OR-ed in */
        const int32_t taps = ctx->ks * ctx->ks;
        for (int32_t i = 0; i < kcl; ++i) {
            __m256i v0, v1;
            if (i < taps) {
                const int16_t *src = ctx->x2 + ((size_t)(i / ctx->ks) * (size_t)ctx->wp + (size_t)(i % ctx->ks)) * 2;
                PACK_LOAD(src, v0, v1)
            } else {
                const int32_t ta = 2 * (i - taps), tb = ta + 1;
                const int16_t *sa = ctx->x2 + ((size_t)ctx->plane + (size_t)(ta / ctx->ks) * (size_t)ctx->wp +
                                               (size_t)(ta % ctx->ks)) * 2;
                PACK_LOAD(sa, v0, v1)
                if (tb < taps) {
                    const int16_t *sb = ctx->x2 + ((size_t)ctx->plane + (size_t)(tb / ctx->ks) * (size_t)ctx->wp +
                                                   (size_t)(tb % ctx->ks)) * 2;
                    __m256i w0, w1;
                    PACK_LOAD(sb, w0, w1)
                    v0 = _mm256_or_si256(v0, _mm256_slli_epi32(w0, 16));
                    v1 = _mm256_or_si256(v1, _mm256_slli_epi32(w1, 16));
                }
            }
            _mm256_storeu_si256((__m256i *)(dst + (size_t)i * NR * 2), v0);
            _mm256_storeu_si256((__m256i *)(dst + (size_t)i * NR * 2 + 16), v1);
        }
        return;
    }
#undef PACK_LOAD
    for (int32_t i = 0; i < kcl; ++i) {
        const int16_t *src = ctx->x2 + ((size_t)cc * (size_t)ctx->plane +
                                        (size_t)ky * (size_t)ctx->wp + (size_t)kx) * 2;
        __m256i v0, v1;
        if (kind == 1) {
            v0 = _mm256_loadu_si256((const __m256i *)(src + o));
            v1 = _mm256_loadu_si256((const __m256i *)(src + o + 16));
        } else if (kind == 2) {
            /* every lane read lies between off[0] and off[15] of this tile */
            v0 = _mm256_blendv_epi8(_mm256_loadu_si256((const __m256i *)(src + o2)),
                                    _mm256_loadu_si256((const __m256i *)(src + o)), m0);
            v1 = _mm256_blendv_epi8(_mm256_loadu_si256((const __m256i *)(src + o2 + 16)),
                                    _mm256_loadu_si256((const __m256i *)(src + o + 16)), m1);
        } else if (s2) {
            v0 = even_pairs(src + q1);
            v1 = even_pairs(src + q1 + 32);
            if (jb2 < NR) {
                v0 = _mm256_blendv_epi8(even_pairs(src + q2), v0, n0);
                v1 = _mm256_blendv_epi8(even_pairs(src + q2 + 32), v1, n1);
            }
        } else {
            v0 = _mm256_i32gather_epi32((const int *)(const void *)src, o0, 4);
            v1 = _mm256_i32gather_epi32((const int *)(const void *)src, o1, 4);
        }
        _mm256_storeu_si256((__m256i *)(dst + (size_t)i * NR * 2), v0);
        _mm256_storeu_si256((__m256i *)(dst + (size_t)i * NR * 2 + 16), v1);
        if (++cc == ctx->c2) {
            cc = 0;
            if (++kx == ctx->ks) { kx = 0; ++ky; }
        }
    }
}

/* ---- X2 rows: widen two channel rows to int16 and interleave them -------------------- */
AVX2 static inline void interleave_store(int16_t *d, __m256i e, __m256i o)
{   /* d[2i] = e[i], d[2i+1] = o[i], i < 16 */
    const __m256i lo = _mm256_unpacklo_epi16(e, o);   /* pixels 0-3 | 8-11  */
    const __m256i hi = _mm256_unpackhi_epi16(e, o);   /* pixels 4-7 | 12-15 */
    _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256((__m256i *)(d + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
}

AVX2 static void x2_avx2(const conv_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t hp = ctx->hp, wp = ctx->wp, pad = ctx->pad, w = ctx->w, h = ctx->h;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t cc = r / hp, y = r % hp;
        int16_t *d = ctx->x2 + ((size_t)cc * (size_t)ctx->plane + (size_t)y * (size_t)wp) * 2;
        if (y < pad || y >= (int64_t)pad + h) {
            mdfi_conv_fill_pad(d, (size_t)wp, ctx->padv, 2 * cc + 1 < ctx->c);
            continue;
        }
        mdfi_conv_fill_pad(d, (size_t)pad, ctx->padv, 2 * cc + 1 < ctx->c);
        mdfi_conv_fill_pad(d + ((size_t)pad + (size_t)w) * 2, (size_t)pad, ctx->padv, 2 * cc + 1 < ctx->c);
        const int64_t c0 = 2 * cc, c1 = 2 * cc + 1;
        const int has1 = c1 < ctx->c;
        const size_t row0 = ((size_t)c0 * (size_t)h + (size_t)(y - pad)) * (size_t)w;
        const size_t row1 = has1 ? ((size_t)c1 * (size_t)h + (size_t)(y - pad)) * (size_t)w : row0;
        int16_t *di = d + (size_t)pad * 2;
        int32_t i = 0;
        const __m256i zero = _mm256_setzero_si256();
        if (ctx->xtype == MDFI_CONV_S16) {
            const int16_t *s0 = (const int16_t *)ctx->x + row0, *s1 = (const int16_t *)ctx->x + row1;
            for (; i + 16 <= w; i += 16) {
                const __m256i e = _mm256_loadu_si256((const __m256i *)(s0 + i));
                const __m256i o = has1 ? _mm256_loadu_si256((const __m256i *)(s1 + i)) : zero;
                interleave_store(di + 2 * (size_t)i, e, o);
            }
            for (; i < w; ++i) { di[2 * i] = s0[i]; di[2 * i + 1] = has1 ? s1[i] : 0; }
        } else if (ctx->xtype == MDFI_CONV_S8) {
            const int8_t *s0 = (const int8_t *)ctx->x + row0, *s1 = (const int8_t *)ctx->x + row1;
            for (; i + 16 <= w; i += 16) {
                const __m256i e = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(s0 + i)));
                const __m256i o = has1 ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(s1 + i))) : zero;
                interleave_store(di + 2 * (size_t)i, e, o);
            }
            for (; i < w; ++i) { di[2 * i] = s0[i]; di[2 * i + 1] = has1 ? s1[i] : 0; }
        } else {
            const uint8_t *s0 = (const uint8_t *)ctx->x + row0, *s1 = (const uint8_t *)ctx->x + row1;
            for (; i + 16 <= w; i += 16) {
                const __m256i e = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(s0 + i)));
                const __m256i o = has1 ? _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(s1 + i))) : zero;
                interleave_store(di + 2 * (size_t)i, e, o);
            }
            for (; i < w; ++i) { di[2 * i] = s0[i]; di[2 * i + 1] = has1 ? s1[i] : 0; }
        }
    }
}

/* ---- c64 += c32 ----------------------------------------------------------------------- */
AVX2 static void widen_avx2(int64_t *restrict c64, const int32_t *restrict c32)
{
    for (int i = 0; i < MR * NR; i += 4) {
        const __m256i v = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(c32 + i)));
        const __m256i s = _mm256_loadu_si256((const __m256i *)(c64 + i));
        _mm256_storeu_si256((__m256i *)(c64 + i), _mm256_add_epi64(s, v));
    }
}

/* ---- the split acc64 path (mdfi_conv.c): c64 += lo + 256 hi; b -> (b & 255, b >> 8) --- */
AVX2 static void widen2_avx2(int64_t *restrict c64, const int32_t *restrict lo, const int32_t *restrict hi)
{
    for (int i = 0; i < MR * NR; i += 4) {
        const __m256i l = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(lo + i)));
        const __m256i h = _mm256_slli_epi64(_mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(hi + i))), 8);
        const __m256i s = _mm256_loadu_si256((const __m256i *)(c64 + i));
        _mm256_storeu_si256((__m256i *)(c64 + i), _mm256_add_epi64(s, _mm256_add_epi64(l, h)));
    }
}

/* vpsraw by 8 is floor(b / 256) and vpand 255 is b - 256 floor(b / 256) (two's complement
 * lanes): the same values as mdfi_conv_split_scalar. */
AVX2 static void split_avx2(int16_t *restrict b, int16_t *restrict hi, size_t n)
{
    const __m256i m = _mm256_set1_epi16(255);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b + i));
        _mm256_storeu_si256((__m256i *)(hi + i), _mm256_srai_epi16(v, 8));
        _mm256_storeu_si256((__m256i *)(b + i), _mm256_and_si256(v, m));
    }
    if (i < n) mdfi_conv_split_scalar(b + i, hi + i, n - i);
}

/* ---- epilogue (PROTOTYPE: vector requantize from mdfi_fixedpoint_avx2.h) ---- */
#include "mdfi_fixedpoint_avx2.h"

AVX2 static inline __attribute__((always_inline)) void store_row(const conv_ctx *ctx, size_t off,
                                                                 __m256i v0, __m256i v1, int32_t nv)
{
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8);
    if (ctx->otype == MDFI_CONV_S8) {
        const __m128i w8 = _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
        int8_t *o = (int8_t *)ctx->out + off;
        if (nv == 16) _mm_storeu_si128((__m128i *)o, w8);
        else { int8_t t[16]; _mm_storeu_si128((__m128i *)t, w8); memcpy(o, t, (size_t)nv); }
    } else {
        int16_t *o = (int16_t *)ctx->out + off;
        if (nv == 16) _mm256_storeu_si256((__m256i *)o, w16);
        else { int16_t t[16]; _mm256_storeu_si256((__m256i *)t, w16); memcpy(o, t, (size_t)nv * 2); }
    }
}

/* Sums + bias requantized on int64 lanes: T is the C-tile element (int32_t, or int64_t for
 * the exact int64 path), LD4(p) loads four of them as int64 lanes. */
#define EPI_T(NAME, T, LD4, MODE, ACT)                                                        \
AVX2 static void NAME(const conv_ctx *ctx, const T *restrict c, int32_t m0, int32_t mv,       \
                      int64_t p0, int32_t nv)                                                 \
{                                                                                             \
    for (int32_t r = 0; r < mv; ++r) {                                                        \
        const int32_t mm = m0 + r;                                                            \
        const __m256i b = _mm256_set1_epi64x(ctx->bias[mm]);                                  \
        mdfi_rq_avx2 q;                                                                       \
        mdfi_rq_init_avx2(&q, ctx->shift[mm], MODE, ctx->bits, ACT);                          \
        mdfi_rq_zp_avx2(&q, ctx->zo);                                                         \
        const __m256i zo = _mm256_set1_epi32(ctx->zo);                                        \
        const T *cr = c + r * NR;                                                             \
        __m256i v[2];                                                                         \
        for (int g = 0; g < 2; ++g) {                                                         \
            const __m256i a0 = _mm256_add_epi64(LD4(cr + 8 * g), b);                          \
            const __m256i a1 = _mm256_add_epi64(LD4(cr + 8 * g + 4), b);                      \
            v[g] = _mm256_add_epi32(mdfi_pack64x8_avx2(mdfi_requantize4_avx2(a0, &q, MODE, ACT), \
                                                       mdfi_requantize4_avx2(a1, &q, MODE, ACT)), zo); \
        }                                                                                     \
        store_row(ctx, (size_t)mm * (size_t)ctx->n + (size_t)p0, v[0], v[1], nv);             \
    }                                                                                         \
}
#define LD4_I32(p) _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(p)))
#define LD4_I64(p) _mm256_loadu_si256((const __m256i *)(p))
#define EPI32_T(NAME, MODE, ACT) EPI_T(NAME, int32_t, LD4_I32, MODE, ACT)
#define EPI64_T(NAME, MODE, ACT) EPI_T(NAME, int64_t, LD4_I64, MODE, ACT)
/* Sums provably inside int32 (ctx->sum32): sum + bias is added in int32 and rows whose
 * shift is 1..31 are requantized on eight int32 lanes (mdfi_requantize8_i32_avx2); other
 * rows take the int64 lanes. */
#define EPI32I_T(NAME, MODE, ACT)                                                             \
AVX2 static void NAME(const conv_ctx *ctx, const int32_t *restrict c, int32_t m0, int32_t mv, \
                      int64_t p0, int32_t nv)                                                 \
{                                                                                             \
    for (int32_t r = 0; r < mv; ++r) {                                                        \
        const int32_t mm = m0 + r;                                                            \
        mdfi_rq8_avx2 q;                                                                     \
        mdfi_rq8_init_avx2(&q, ctx->shift[mm], MODE, ctx->bits, ACT);                        \
        if (ctx->zo) mdfi_rq8_zp_avx2(&q, ctx->bits, ctx->zo);                               \
        const __m256i zo = _mm256_set1_epi32(ctx->zo);                                        \
        const __m256i b = _mm256_set1_epi32((int32_t)ctx->bias[mm]);                         \
        const int32_t *cr = c + r * NR;                                                       \
        const __m256i v0 = _mm256_add_epi32(mdfi_requantize8_avx2(                           \
            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)cr), b), &q, MODE, ACT), zo); \
        const __m256i v1 = _mm256_add_epi32(mdfi_requantize8_avx2(                           \
            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(cr + 8)), b), &q, MODE, ACT), zo); \
        store_row(ctx, (size_t)mm * (size_t)ctx->n + (size_t)p0, v0, v1, nv);                \
    }                                                                                         \
}
EPI32I_T(e32i_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
EPI32I_T(e32i_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
EPI32I_T(e32i_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
EPI32I_T(e32i_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
EPI32I_T(e32i_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
EPI32I_T(e32i_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)
EPI32_T(e32_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
EPI32_T(e32_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
EPI32_T(e32_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
EPI32_T(e32_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
EPI32_T(e32_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
EPI32_T(e32_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)
EPI64_T(e64_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
EPI64_T(e64_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
EPI64_T(e64_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
EPI64_T(e64_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
EPI64_T(e64_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
EPI64_T(e64_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)

static void epi32_avx2(const conv_ctx *ctx, const int32_t *restrict c, int32_t m0, int32_t mv, int64_t p0, int32_t nv)
{
    static const epi32_fn f[6] = {e32_0, e32_1, e32_2, e32_3, e32_4, e32_5};
    static const epi32_fn fi[6] = {e32i_0, e32i_1, e32i_2, e32i_3, e32i_4, e32i_5};
    (ctx->sum32 ? fi : f)[ctx->rounding * 3 + ctx->act](ctx, c, m0, mv, p0, nv);
}
static void epi64_avx2(const conv_ctx *ctx, const int64_t *restrict c, int32_t m0, int32_t mv, int64_t p0, int32_t nv)
{
    static const epi64_fn f[6] = {e64_0, e64_1, e64_2, e64_3, e64_4, e64_5};
    f[ctx->rounding * 3 + ctx->act](ctx, c, m0, mv, p0, nv);
}

/* ---- register epilogue: C = cin + bh + A . B, requantized from the registers ---------
 * The accumulators start at bh = bias + half (cin added for a tile whose earlier K blocks
 * were summed into memory), so after the loop each lane holds t = S + bias + half exactly
 * (conv_rows: |S| + |bias| + half <= INT32_MAX; the sums are exact modulo 2^32 as above),
 * and mdfi_rqf8_avx2 gives the activated R((S + bias) / 2^s) (mdfi_fixedpoint.h, the folded
 * form); the narrowing saturates (after a clamp when the format is narrower than the output
 * type).  Saves the C tile's store and reload, and mdfi_rq8_init's per-row constants. */
AVX2 static inline __attribute__((always_inline)) void epi_row_regs(const conv_ctx *ctx, const conv_rows *rows,
                                                                    int r, __m256i v0, __m256i v1, int32_t m0,
                                                                    int64_t p0, int32_t nv, int32_t act)
{
    const __m128i s = _mm_cvtsi32_si128(rows->s[r]);
    const __m256i c = _mm256_set1_epi32(rows->c[r]), kd = _mm256_set1_epi32(rows->kd[r]);
    __m256i r0 = mdfi_rqf8_avx2(v0, s, c, kd, act), r1 = mdfi_rqf8_avx2(v1, s, c, kd, act);
    const int s8 = ctx->otype == MDFI_CONV_S8;
    if (!((s8 && ctx->bits == 8) || ctx->bits == 16) || ctx->zo) {
        /* [qmin - zo, qmax - zo], then + zo (the output zero point) */
        const __m256i lo = _mm256_set1_epi32(ctx->zlo), hi = _mm256_set1_epi32(ctx->zhi);
        const __m256i zo = _mm256_set1_epi32(ctx->zo);
        r0 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r0, lo), hi), zo);
        r1 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r1, lo), hi), zo);
    }
    store_row(ctx, (size_t)(m0 + r) * (size_t)ctx->n + (size_t)p0, r0, r1, nv);
}

#define UKR32E_T(NAME, ACT)                                                                   \
AVX2 static void NAME(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride, \
                      const int32_t *restrict cin, const conv_rows *rows, const conv_ctx *ctx, int32_t m0, \
                      int32_t mv, int64_t p0, int32_t nv)                                     \
{                                                                                             \
    __m256i c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                       \
    {                                                                                         \
        const __m256i b0_ = _mm256_set1_epi32(rows->bh[0]), b1_ = _mm256_set1_epi32(rows->bh[1]); \
        const __m256i b2_ = _mm256_set1_epi32(rows->bh[2]), b3_ = _mm256_set1_epi32(rows->bh[3]); \
        const __m256i b4_ = _mm256_set1_epi32(rows->bh[4]), b5_ = _mm256_set1_epi32(rows->bh[5]); \
        c00 = c01 = b0_; c10 = c11 = b1_; c20 = c21 = b2_;                                    \
        c30 = c31 = b3_; c40 = c41 = b4_; c50 = c51 = b5_;                                    \
    }                                                                                         \
    if (cin != NULL) {                                                                        \
        UKE_LD(0) UKE_LD(1) UKE_LD(2) UKE_LD(3) UKE_LD(4) UKE_LD(5)                           \
    }                                                                                         \
    for (int32_t i = 0; i < kcl; ++i) {                                                       \
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)b);                            \
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 16));                     \
        __m256i av;                                                                           \
        UKE_ROW(0) UKE_ROW(1) UKE_ROW(2) UKE_ROW(3) UKE_ROW(4) UKE_ROW(5)                     \
        a += MR * 2;                                                                          \
        b += bstride;                                                                         \
    }                                                                                         \
    epi_row_regs(ctx, rows, 0, c00, c01, m0, p0, nv, ACT);                                    \
    if (mv > 1) epi_row_regs(ctx, rows, 1, c10, c11, m0, p0, nv, ACT);                        \
    if (mv > 2) epi_row_regs(ctx, rows, 2, c20, c21, m0, p0, nv, ACT);                        \
    if (mv > 3) epi_row_regs(ctx, rows, 3, c30, c31, m0, p0, nv, ACT);                        \
    if (mv > 4) epi_row_regs(ctx, rows, 4, c40, c41, m0, p0, nv, ACT);                        \
    if (mv > 5) epi_row_regs(ctx, rows, 5, c50, c51, m0, p0, nv, ACT);                        \
}
#define UKE_LD(r) c##r##0 = _mm256_add_epi32(c##r##0, _mm256_loadu_si256((const __m256i *)(cin + (r) * NR))); \
                  c##r##1 = _mm256_add_epi32(c##r##1, _mm256_loadu_si256((const __m256i *)(cin + (r) * NR + 8)));
#define UKE_ROW(r) av = _mm256_set1_epi32(ld32(a + 2 * (r)));                       \
                   c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0));  \
                   c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1));
UKR32E_T(ukr32e_lin, MDFI_ACT_LINEAR)
UKR32E_T(ukr32e_leaky, MDFI_ACT_LEAKY)
UKR32E_T(ukr32e_relu, MDFI_ACT_RELU)
#undef UKE_LD
#undef UKE_ROW

/* The same for the first NROWS (2 or 4) rows of a panel only (mv <= NROWS; see ukr32_rows_body). */
AVX2 static inline __attribute__((always_inline)) void ukr32e_rows_body(int nrows, int32_t act, int32_t kcl,
                                                                        const int16_t *restrict a,
                                                                        const int16_t *restrict b, size_t bstride,
                                                                        const int32_t *restrict cin,
                                                                        const conv_rows *rows, const conv_ctx *ctx,
                                                                        int32_t m0, int32_t mv, int64_t p0, int32_t nv)
{
    __m256i acc[4][2];
    for (int r = 0; r < nrows; ++r) {
        acc[r][0] = acc[r][1] = _mm256_set1_epi32(rows->bh[r]);
        if (cin != NULL) {
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_loadu_si256((const __m256i *)(cin + r * NR)));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_loadu_si256((const __m256i *)(cin + r * NR + 8)));
        }
    }
    rows_kloop(nrows, kcl, a, b, bstride, acc);
    for (int r = 0; r < nrows; ++r)
        if (r < mv) epi_row_regs(ctx, rows, r, acc[r][0], acc[r][1], m0, p0, nv, act);
}
#define UKR32E_ROWS_T(NAME, NROWS, ACT)                                                       \
AVX2 static void NAME(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride, \
                      const int32_t *restrict cin, const conv_rows *rows, const conv_ctx *ctx, int32_t m0, \
                      int32_t mv, int64_t p0, int32_t nv)                                     \
{                                                                                             \
    ukr32e_rows_body(NROWS, ACT, kcl, a, b, bstride, cin, rows, ctx, m0, mv, p0, nv);         \
}
UKR32E_ROWS_T(ukr32e_r2_lin, 2, MDFI_ACT_LINEAR)
UKR32E_ROWS_T(ukr32e_r2_leaky, 2, MDFI_ACT_LEAKY)
UKR32E_ROWS_T(ukr32e_r2_relu, 2, MDFI_ACT_RELU)
UKR32E_ROWS_T(ukr32e_r4_lin, 4, MDFI_ACT_LINEAR)
UKR32E_ROWS_T(ukr32e_r4_leaky, 4, MDFI_ACT_LEAKY)
UKR32E_ROWS_T(ukr32e_r4_relu, 4, MDFI_ACT_RELU)
#undef UKR32E_ROWS_T

static void ukr32e_avx2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                        const int32_t *restrict cin, const conv_rows *rows, const conv_ctx *ctx, int32_t m0,
                        int32_t mv, int64_t p0, int32_t nv)
{
    /* [rows: 2, 4, 6][act] */
    static const ukr32e_fn f[3][3] = {{ukr32e_r2_lin, ukr32e_r2_leaky, ukr32e_r2_relu},
                                      {ukr32e_r4_lin, ukr32e_r4_leaky, ukr32e_r4_relu},
                                      {ukr32e_lin, ukr32e_leaky, ukr32e_relu}};
    const int ai = ctx->act == MDFI_ACT_LEAKY ? 1 : ctx->act == MDFI_ACT_RELU ? 2 : 0;
    f[mv <= 2 ? 0 : mv <= 4 ? 1 : 2][ai](kcl, a, b, bstride, cin, rows, ctx, m0, mv, p0, nv);
}

const conv_ops mdfi_conv_ops_avx2 = {ukr32_avx2, pack_avx2, x2_avx2, epi32_avx2, epi64_avx2,
                                     widen_avx2, NULL, ukr32e_avx2, ukr32_rows_avx2, split_avx2, widen2_avx2};
/* AVX-512BW: zmm micro-kernels (mdfi_conv_avx512.c), the rest from AVX2 */
const conv_ops mdfi_conv_ops_avx512 = {mdfi_conv_avx512_ukr32, pack_avx2, x2_avx2, epi32_avx2, epi64_avx2,
                                       widen_avx2, mdfi_conv_avx512_ukr32x2, NULL, NULL, split_avx2,
                                       widen2_avx2};
/* AVX512-VNNI: the same with the fused vpdpwssd micro-kernels (mdfi_conv_avx512.c) */
const conv_ops mdfi_conv_ops_vnni16 = {mdfi_conv_vnni16_ukr32, pack_avx2, x2_avx2, epi32_avx2, epi64_avx2,
                                       widen_avx2, mdfi_conv_vnni16_ukr32x2, NULL, NULL, split_avx2,
                                       widen2_avx2};

#else
/* ISO C forbids an empty translation unit. */
typedef int mdfi_conv_avx2_unused;
#endif /* MDFI_CONV_X86 */
