/* mdfi_kernels_grouped.c -- grouped convolutions with few input channels per group (depthwise
 * and the like; docs/fixed-point.md 3.6), computed directly: for output channel m of group
 * j = m / (M/G),
 *     acc[m, p] = bias[m] + sum over the group's C/G input channels and the k x k taps of
 *                 w[m, c, ky, kx] * x[j*C/G + c, oy*stride + ky - pad, ox*stride + kx - pad]
 * with padded taps holding pad_value (the input's zero point), summed exactly (in int32 when the
 * layer's accumulator bound, docs/fixed-point.md 3.2, proves every sum fits: acc32; else int64), then
 * out = mdfi_requantize_zp(acc, shift[m], ...) -- the definition of the NumPy reference
 * (mdfi/layers/conv_arith.py conv2d_int_ref with groups), so every thread count gives the
 * same integers.  The GEMM kernels of mdfi_conv.c compute the same sums but cost a call per
 * group, which dominates when a group has one or a few channels (csrc/../docs/performance.md
 * "Grouped convolutions").
 *
 * Two kernels.  acc32 layers of stride 1 or 2 (every depthwise layer of Yolo-Fastest) take the
 * pair-plane kernel (dw_range): tap pairs as vpmaddwd over a flat grid of output rows, in a
 * portable body, an AVX2 body, and an AVX-512 BW body (with a VNNI twin of its tap loop) that
 * requantizes in registers; the bodies follow opts->simd (0 portable, 1 AVX2, 2 AVX-512 where
 * the CPU has AVX-512 F/BW/VL/DQ) and the CPU features detected at run time.  The other layers
 * (int64 sums, strides above 2) take the general kernel (grouped_range's tail): a padded int16
 * copy of each input channel and its taps row by row. */
#include "mdfi_kernels_impl.h"

#include <stdlib.h>

typedef struct grouped_ctx {
    const void *in;                 /* [C][H][W] of in_type                                  */
    const int16_t *wt;              /* [M][C/G][k][k]                                         */
    const int64_t *bias;            /* [M] at the accumulator scale                          */
    const int32_t *shift;           /* [M]                                                    */
    void *out;                      /* [M][OH][OW] of out_type                               */
    int32_t in_type, out_type, c, h, w, m, groups, k, stride, pad, pad_value;
    int32_t rounding, bits, act, zero_out, oh, ow;
    int32_t acc32;                  /* 1: every sum fits int32 (the layer's acc_bits <= 32)   */
    int32_t avx2;                   /* 1: the AVX2 bodies, 2: AVX2 and the AVX-512 ones        */
    const struct dw_vmap *vm;       /* [nvec] the AVX-512 pair-plane kernel's lane map, or NULL */
    int64_t nvec;
    int *failed;                    /* set when a range could not allocate its scratch        */
} grouped_ctx;

/* The general kernel.  acc[oy][ox] += w[ky][kx] * xp[(oy*s + ky)*wp + kx + ox*s] over the k x k
 * taps of one padded input channel xp (int16 codes; the products are exact in int32, and the
 * sums in ACC by the caller's choice).  One body, compiled portably and for AVX2
 * (auto-vectorized). */
#define TAPS_BODY(ACC)                                                                        \
    for (int32_t ky = 0; ky < k; ++ky)                                                        \
        for (int32_t kx = 0; kx < k; ++kx) {                                                  \
            const int32_t wv = wk[ky * k + kx];                                               \
            if (wv == 0) continue;                                                            \
            for (int64_t oy = 0; oy < oh; ++oy) {                                             \
                const int16_t *restrict row = xp + (oy * s + ky) * wp + kx;                   \
                ACC *restrict a = acc + oy * ow;                                              \
                if (s == 1)                                                                   \
                    for (int64_t ox = 0; ox < ow; ++ox) a[ox] += (ACC)(wv * (int32_t)row[ox]); \
                else                                                                          \
                    for (int64_t ox = 0; ox < ow; ++ox) a[ox] += (ACC)(wv * (int32_t)row[ox * s]); \
            }                                                                                 \
        }

#define TAPS_ARGS(ACC) ACC *restrict acc, const int16_t *restrict xp, const int16_t *restrict wk, int32_t k, \
                       int32_t s, int64_t wp, int64_t oh, int64_t ow
static void taps32(TAPS_ARGS(int32_t)) { TAPS_BODY(int32_t) }
static void taps64(TAPS_ARGS(int64_t)) { TAPS_BODY(int64_t) }
#if MDFI_KERNELS_X86
__attribute__((target("avx2"))) static void taps32_avx2(TAPS_ARGS(int32_t)) { TAPS_BODY(int32_t) }
#endif

/* xp = input channel ch of g->in, padded with pad_value: [H + 2 pad][W + 2 pad] int16 codes. */
#define PAD_ROWS(T)                                                                           \
    for (int64_t y = 0; y < g->h; ++y) {                                                      \
        const T *restrict src = (const T *)g->in + ch * in_plane + y * g->w;                  \
        int16_t *restrict dst = xp + (y + g->pad) * wp + g->pad;                              \
        for (int64_t x = 0; x < g->w; ++x) dst[x] = (int16_t)src[x];                          \
    }

static void pad_channel(const struct grouped_ctx *g, int64_t ch, int16_t *restrict xp, int64_t hp, int64_t wp)
{
    const int64_t in_plane = (int64_t)g->h * g->w;
    const int16_t pv = (int16_t)g->pad_value;
    for (int64_t i = 0; i < g->pad * wp; ++i) xp[i] = pv;                                   /* top rows */
    for (int64_t i = (g->pad + (int64_t)g->h) * wp; i < hp * wp; ++i) xp[i] = pv;          /* bottom   */
    for (int64_t y = g->pad; y < g->pad + g->h; ++y)                                         /* sides    */
        for (int64_t x = 0; x < g->pad; ++x) xp[y * wp + x] = xp[y * wp + wp - 1 - x] = pv;
    switch (g->in_type) {
    case MDFI_U8: PAD_ROWS(uint8_t) break;
    case MDFI_S8: PAD_ROWS(int8_t) break;
    default: PAD_ROWS(int16_t) break;
    }
}

/* out[off + i] = mdfi_requantize_zp(acc[i], ...) for i < n: int32 or int64 sums. */
#define REQUANT(NAME, ACC)                                                                      \
    static void NAME(const ACC *restrict acc, int64_t n, int32_t shift, const struct grouped_ctx *g, \
                     int64_t off)                                                               \
    {                                                                                           \
        for (int64_t i = 0; i < n; ++i)                                                         \
            store(g->out, g->out_type, off + i,                                                 \
                  mdfi_requantize_zp(acc[i], shift, g->rounding, g->bits, g->act, g->zero_out)); \
    }
REQUANT(requant32, int32_t)
REQUANT(requant64, int64_t)

#if MDFI_KERNELS_X86
/* The same with the AVX2 twin of the requantize step (mdfi_fixedpoint_avx2.h, exact for
 * every int32 sum and shift), eight sums at a time; the tail as requant32. */
__attribute__((target("avx2"))) static void requant32_avx2(const int32_t *restrict acc, int64_t n, int32_t shift,
                                                           const struct grouped_ctx *g, int64_t off)
{
    mdfi_rq8_avx2 k;
    mdfi_rq8_init_avx2(&k, shift, g->rounding, g->bits, g->act);
    if (g->zero_out) mdfi_rq8_zp_avx2(&k, g->bits, g->zero_out);
    const __m256i zo = _mm256_set1_epi32(g->zero_out);
    int64_t i = 0;
    int32_t r[8];
    for (; i + 8 <= n; i += 8) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(acc + i));
        _mm256_storeu_si256((__m256i *)r, _mm256_add_epi32(mdfi_requantize8_avx2(v, &k, g->rounding, g->act), zo));
        if (g->out_type == MDFI_S8)
            for (int j = 0; j < 8; ++j) ((int8_t *)g->out)[off + i + j] = (int8_t)r[j];
        else
            for (int j = 0; j < 8; ++j) ((int16_t *)g->out)[off + i + j] = (int16_t)r[j];
    }
    requant32(acc + i, n - i, shift, g, off + i);
}
#endif

/* ---------------------------------------------------------------------------------------
 * The pair-plane kernel (acc32 layers of stride 1 or 2): the same sums, reordered (int32
 * additions in any order give the same exact sum when it fits int32, which acc32 proves for
 * every partial sum).  Each input channel of the group is copied once into S = stride "pair
 * planes" of int16 pairs: plane a, row r, pair j holds the padded elements
 *     (xp[S*r + a][e], xp[S*r + a][e + 1]),  e = S == 1 ? j : 2*j
 * (elements outside the padded map, never met with a nonzero weight by a valid output, hold
 * pad_value too).  Output (oy, ox) is flat index q = oy*rs + ox of a grid with rs >= OW pairs
 * per row; tap pair p of row ky (taps kx = 2p and 2p + 1, the second weight 0 when 2p + 1 = k)
 * is then pair q + off with off = (ky % S)*plane + (ky / S)*rs + (S == 1 ? 2p : p): one
 * contiguous run of pairs for every tap pair, so a vector of consecutive q is one unaligned
 * load and one vpmaddwd (w[2p]*x0 + w[2p+1]*x1, exact int32) per tap pair.  The columns
 * ox >= OW of the grid are computed and dropped.  The portable and AVX2 bodies sum blocks of
 * rows whose sums stay in L1, then requantize them row by row; the AVX-512 body requantizes
 * every 16 sums in registers (dw_chan_avx512). */
typedef struct dw_tap {
    int64_t off;                    /* pair offset of the tap pair from q                     */
    int32_t wpair;                  /* (uint16)w0 | (uint16)w1 << 16, the vpmaddwd multiplier  */
    int16_t w0, w1;                 /* the two weights (portable body: int16 x int16 products)  */
} dw_tap;

typedef struct dw_geom {
    int32_t s, npairs;              /* stride (1 or 2), tap pairs per kernel row (k + 1) / 2  */
    int64_t rs, nrow, plane, chan;  /* pairs per grid row, rows per plane, pairs per plane,
                                       pairs per channel (S planes)                          */
    int64_t rows_blk;               /* output rows per block                                  */
} dw_geom;

#define DW_SLACK 80                 /* zeroed pairs after the planes: vector overrun (< 64)    */
#define DW_BLK 2048                 /* sums per block (8 KiB of int32)                         */

static dw_geom dw_geometry(const struct grouped_ctx *g)
{
    dw_geom d;
    const int64_t wp = (int64_t)g->w + 2 * g->pad;
    d.s = g->stride;
    d.npairs = (g->k + 1) / 2;
    d.rs = d.s == 1 ? wp : (int64_t)g->ow + d.npairs - 1;
    d.nrow = (int64_t)g->oh + (g->k - 1) / d.s;
    d.plane = d.nrow * d.rs;
    d.chan = d.s * d.plane;
    d.rows_blk = DW_BLK / d.rs > 0 ? DW_BLK / d.rs : 1;
    return d;
}

/* dst = the S pair planes of input channel ch ([S][nrow][rs][2] int16), row by row.  Stride 2:
 * the plane row's 2 rs int16 are the padded row's elements 0 .. 2 rs - 1 (pad_value outside
 * the input columns), written in three plain runs.  Stride 1: pairs j whose two elements are
 * input columns (j in [jlo, jhi)) straight from the input -- not from a just-written padded
 * row, whose unaligned re-reads would stall on store forwarding --, the few others by DW_EDGE.
 * Loops the compiler vectorizes. */
#define DW_BUILD(T)                                                                            \
    for (int32_t a = 0; a < d->s; ++a)                                                         \
        for (int64_t r = 0; r < d->nrow; ++r) {                                                \
            int16_t *restrict row = dst + 2 * (a * d->plane + r * d->rs);                      \
            const int64_t y = d->s * r + a - g->pad;          /* input row, when in range */  \
            if (y < 0 || y >= g->h) {                                                          \
                for (int64_t i = 0; i < 2 * d->rs; ++i) row[i] = pv;                           \
                continue;                                                                      \
            }                                                                                  \
            const T *restrict src = (const T *)g->in + ch * in_plane + y * g->w;              \
            if (d->s == 2) {                                                                   \
                const int64_t ne = 2 * d->rs;                                                  \
                const int64_t x0 = g->pad < ne ? g->pad : ne;            /* input columns */  \
                const int64_t x1 = (int64_t)g->pad + g->w < ne ? (int64_t)g->pad + g->w : ne;  \
                for (int64_t i = 0; i < x0; ++i) row[i] = pv;                                  \
                for (int64_t i = x0; i < x1; ++i) row[i] = (int16_t)src[i - g->pad];           \
                for (int64_t i = x1; i < ne; ++i) row[i] = pv;                                 \
                continue;                                                                      \
            }                                                                                  \
            int64_t jlo = g->pad, jhi = (int64_t)g->pad + g->w - 1;                            \
            if (jhi > d->rs) jhi = d->rs;                                                      \
            if (jlo > jhi) jlo = jhi;                                                          \
            for (int64_t j = 0; j < jlo; ++j) DW_EDGE(j)                                       \
            for (int64_t j = jlo; j < jhi; ++j) {                                              \
                row[2 * j] = (int16_t)src[j - g->pad];                                         \
                row[2 * j + 1] = (int16_t)src[j + 1 - g->pad];                                 \
            }                                                                                  \
            for (int64_t j = jhi; j < d->rs; ++j) DW_EDGE(j)                                   \
        }

/* stride 1: pair j of a row (columns outside the input: pad_value) */
#define DW_EDGE(j)                                                                             \
    {                                                                                          \
        const int64_t e = (j) - g->pad;                                                        \
        row[2 * (j)] = e >= 0 && e < g->w ? (int16_t)src[e] : pv;                              \
        row[2 * (j) + 1] = e + 1 >= 0 && e + 1 < g->w ? (int16_t)src[e + 1] : pv;              \
    }

#define DW_BUILD_FN(NAME, ATTR)                                                                \
    ATTR static void NAME(const struct grouped_ctx *g, const dw_geom *d, int64_t ch,            \
                          int16_t *restrict dst)                                               \
    {                                                                                          \
        const int64_t in_plane = (int64_t)g->h * g->w;                                         \
        const int16_t pv = (int16_t)g->pad_value;                                              \
        switch (g->in_type) {                                                                  \
        case MDFI_U8: DW_BUILD(uint8_t) break;                                                 \
        case MDFI_S8: DW_BUILD(int8_t) break;                                                  \
        default: DW_BUILD(int16_t) break;                                                      \
        }                                                                                      \
    }
DW_BUILD_FN(dw_build, )
#if MDFI_KERNELS_X86
DW_BUILD_FN(dw_build_avx2, __attribute__((target("avx2"))))
#endif

#if MDFI_KERNELS_X86
#define KAVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

static inline __mmask32 dw_mask32(int64_t n)
{
    return n >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << n) - 1);
}

/* dw_build with AVX-512 BW, no scalar edges: lane l of a block of 16 pairs holds padded
 * element e0 + l (e0 = S * first pair), loaded where it is an input column (a masked load
 * reads nothing else) and pad_value elsewhere; stride 1 pairs them by one vpermw, stride 2
 * stores them as they are.  The masks depend on the block only: computed once for up to
 * DW_NB blocks, then every row. */
#define DW_NB 64
#define DW_BUILD_AVX512(LOADCVT, S)                                                            \
    for (int64_t jb0 = 0; jb0 < nb; jb0 += DW_NB) {                                            \
        const int64_t jb1 = jb0 + DW_NB < nb ? jb0 + DW_NB : nb;                               \
        __mmask32 lm[DW_NB], sm[DW_NB];   /* input lanes, stored lanes (16 pairs or the rest) */ \
        for (int64_t jb = jb0; jb < jb1; ++jb) {                                               \
            const int64_t e0 = (S) * 16 * jb;                                                  \
            const int64_t l0 = pad - e0 > 0 ? pad - e0 : 0;                                    \
            int64_t l1 = pad + w - e0;                                                         \
            if (l1 > 32) l1 = 32;                                                              \
            lm[jb - jb0] = l1 > l0 ? dw_mask32(l1) & ~dw_mask32(l0) : 0;                       \
            sm[jb - jb0] = dw_mask32(2 * (rs - 16 * jb));                                      \
        }                                                                                      \
        for (int32_t a = 0; a < (S); ++a)                                                      \
            for (int64_t r = 0; r < nrow; ++r) {                                               \
                int16_t *restrict row = dst + 2 * (a * plane + r * rs) + 32 * jb0;             \
                const int64_t y = (S) * r + a - pad;                                           \
                if (y < 0 || y >= h) {                                                         \
                    for (int64_t jb = 0; jb < jb1 - jb0; ++jb)                                 \
                        _mm512_mask_storeu_epi16(row + 32 * jb, sm[jb], pvv);                  \
                    continue;                                                                  \
                }                                                                              \
                /* lane 0 of block jb is column 16 S jb - pad (maybe outside: masked off) */  \
                const char *src = (const char *)g->in + (ch * in_plane + y * w - pad + (S) * 16 * jb0) * tsz; \
                for (int64_t jb = 0; jb < jb1 - jb0; ++jb) {                                   \
                    const __mmask32 m = lm[jb];                                                \
                    __m512i v = _mm512_mask_mov_epi16(pvv, m, LOADCVT(m, src + (S) * 16 * tsz * jb)); \
                    if ((S) == 1) v = _mm512_permutexvar_epi16(idx, v);                        \
                    _mm512_mask_storeu_epi16(row + 32 * jb, sm[jb], v);                        \
                }                                                                              \
            }                                                                                  \
    }
#define DW_LD_U8(M, P) _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(M, P))
#define DW_LD_S8(M, P) _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(M, P))
#define DW_LD_S16(M, P) _mm512_maskz_loadu_epi16(M, P)

KAVX512 static void dw_build_avx512(const struct grouped_ctx *g, const dw_geom *d, int64_t ch, int16_t *restrict dst)
{
    const int64_t in_plane = (int64_t)g->h * g->w, tsz = (int64_t)mdfi_type_size(g->in_type);
    const int64_t nb = (d->rs + 15) / 16;                       /* blocks of 16 pairs per row */
    const __m512i pvv = _mm512_set1_epi16((int16_t)g->pad_value);
    /* lanes 2i, 2i + 1 <- elements i, i + 1 */
    const __m512i idx = _mm512_set_epi16(16, 15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 7, 6, 6,
                                         5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0);
    const int64_t pad = g->pad, h = g->h, w = g->w, rs = d->rs, nrow = d->nrow, plane = d->plane;
    const int two = d->s == 2;
    switch (g->in_type * 2 + two) {
    case MDFI_U8 * 2: DW_BUILD_AVX512(DW_LD_U8, 1) break;
    case MDFI_U8 * 2 + 1: DW_BUILD_AVX512(DW_LD_U8, 2) break;
    case MDFI_S8 * 2: DW_BUILD_AVX512(DW_LD_S8, 1) break;
    case MDFI_S8 * 2 + 1: DW_BUILD_AVX512(DW_LD_S8, 2) break;
    case MDFI_S16 * 2: DW_BUILD_AVX512(DW_LD_S16, 1) break;
    default: DW_BUILD_AVX512(DW_LD_S16, 2) break;
    }
}
#endif

/* acc[i] = bias + sum over the taps of w0*x0 + w1*x1 of pair q0 + i + off, i < n: the
 * portable body, tap by tap over the block (int16 x int16 products: widening multiplies). */
static void dw_sums(int32_t *restrict acc, const int16_t *restrict pl, const dw_tap *restrict tp, int32_t nt,
                    int32_t bias, int64_t q0, int64_t n)
{
    for (int64_t i = 0; i < n; ++i) acc[i] = bias;
    for (int32_t t = 0; t < nt; ++t) {
        const int16_t *restrict p = pl + 2 * (q0 + tp[t].off);
        const int16_t w0 = tp[t].w0, w1 = tp[t].w1;
        if (w1 == 0)                                    /* the odd tap of a row (k odd) */
            for (int64_t i = 0; i < n; ++i) acc[i] += w0 * p[2 * i];
        else
            for (int64_t i = 0; i < n; ++i) acc[i] += w0 * p[2 * i] + w1 * p[2 * i + 1];
    }
}

#if MDFI_KERNELS_X86
/* The same, L lanes per vector, four vectors per pass (acc has room for n rounded up to L). */
#define DW_SUMS_SIMD(NAME, ATTR, VEC, L, SET1, LOADU, STOREU, ADD, MADD)                        \
    ATTR static void NAME(int32_t *restrict acc, const int16_t *restrict pl, const dw_tap *restrict tp, \
                          int32_t nt, int32_t bias, int64_t q0, int64_t n)                      \
    {                                                                                          \
        const VEC b = SET1(bias);                                                              \
        int64_t i = 0;                                                                         \
        for (; i + 4 * (L) <= n; i += 4 * (L)) {                                               \
            VEC a0 = b, a1 = b, a2 = b, a3 = b;                                                \
            const int16_t *base = pl + 2 * (q0 + i);                                           \
            for (int32_t t = 0; t < nt; ++t) {                                                 \
                const int16_t *p = base + 2 * tp[t].off;                                       \
                const VEC w = SET1(tp[t].wpair);                                               \
                a0 = ADD(a0, MADD(LOADU((const VEC *)p), w));                                  \
                a1 = ADD(a1, MADD(LOADU((const VEC *)(p + 2 * (L))), w));                      \
                a2 = ADD(a2, MADD(LOADU((const VEC *)(p + 4 * (L))), w));                      \
                a3 = ADD(a3, MADD(LOADU((const VEC *)(p + 6 * (L))), w));                      \
            }                                                                                  \
            STOREU((VEC *)(acc + i), a0);                                                      \
            STOREU((VEC *)(acc + i + (L)), a1);                                                \
            STOREU((VEC *)(acc + i + 2 * (L)), a2);                                            \
            STOREU((VEC *)(acc + i + 3 * (L)), a3);                                            \
        }                                                                                      \
        for (; i < n; i += (L)) {                                                              \
            VEC a0 = b;                                                                        \
            const int16_t *base = pl + 2 * (q0 + i);                                           \
            for (int32_t t = 0; t < nt; ++t)                                                   \
                a0 = ADD(a0, MADD(LOADU((const VEC *)(base + 2 * tp[t].off)), SET1(tp[t].wpair))); \
            STOREU((VEC *)(acc + i), a0);                                                      \
        }                                                                                      \
    }
DW_SUMS_SIMD(dw_sums_avx2, __attribute__((target("avx2"))), __m256i, 8, _mm256_set1_epi32, _mm256_loadu_si256,
             _mm256_storeu_si256, _mm256_add_epi32, _mm256_madd_epi16)
DW_SUMS_SIMD(dw_sums_avx512, __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq"))), __m512i, 16,
             _mm512_set1_epi32, _mm512_loadu_si512, _mm512_storeu_si512, _mm512_add_epi32, _mm512_madd_epi16)

#endif

/* Where the sums of grid vector v (positions 16v .. 16v + 15) go: the mask of its valid
 * lanes (ox < OW, q < nq), the output index of its first valid lane, and the store mask of
 * its valid count -- the same for every channel of the layer. */
typedef struct dw_vmap {
    int64_t start;                  /* outputs before the vector                             */
    uint16_t valid, store;          /* valid lanes; (1 << popcount(valid)) - 1                 */
} dw_vmap;

/* bits [a, b) of 16 */
static inline uint32_t dw_bits16(int64_t a, int64_t b)
{
    if (a < 0) a = 0;
    if (b > 16) b = 16;
    return b > a ? ((1u << b) - 1) & ~((1u << a) - 1) : 0;
}

static void dw_vmaps(const struct grouped_ctx *g, const dw_geom *d, dw_vmap *restrict vm, int64_t nvec)
{
    const int64_t nq = ((int64_t)g->oh - 1) * d->rs + g->ow, rs = d->rs, ow = g->ow;
    int64_t done = 0, col = 0;                      /* col = 16 v mod rs */
    for (int64_t v = 0; v < nvec; ++v) {
        uint32_t valid = 0;
        if (rs >= 16)                               /* lanes of this row, then of the next one */
            valid = dw_bits16(0, ow - col) | (rs - col < 16 ? dw_bits16(rs - col, rs - col + ow) : 0);
        else
            for (int64_t l = 0, c = col; l < 16; ++l, c = c + 1 == rs ? 0 : c + 1)
                if (c < ow) valid |= 1u << l;
        valid &= dw_bits16(0, nq - 16 * v);
        const int n = __builtin_popcount(valid);
        vm[v].start = done;
        vm[v].valid = (uint16_t)valid;
        vm[v].store = (uint16_t)((1u << n) - 1);
        done += n;
        col = (col + 16) % rs;
    }
}

#if MDFI_KERNELS_X86
/* One output channel on AVX-512, sums and requantize fused (shift 1..31): for every 16 grid
 * positions q, the sums (four vectors per pass over the taps), mdfi_requantize of each lane
 * (FOLDED: mdfi_rqf16v_avx512 with t0 = bias + half, used when every |sum| + half fits int32;
 * else mdfi_requantize16_i32_noclamp_avx512 with t0 = bias), the clamp to [qmin - zo,
 * qmax - zo] and + zo (mdfi_rq8_zp_avx2); the valid lanes (vm) are compressed to the front --
 * the valid positions of the grid are consecutive outputs -- and stored.  MADD_ADD(a, x, w)
 * is a + vpmaddwd(x, w) (VNNI: one vpdpwssd). */
#define DW_CHAN_AVX512(NAME, ATTR, MADD_ADD)                                                   \
    static inline ATTR __attribute__((always_inline)) void NAME(                              \
        const struct grouped_ctx *g, const dw_vmap *restrict vm, int64_t nvec, const int16_t *restrict pl, \
        const dw_tap *restrict tp, int32_t nt, int32_t t0, int32_t shift, int32_t folded, int32_t act, int64_t off) \
    {                                                                                          \
        const int32_t mode = g->rounding;                                                      \
        const mdfi_rqf f = mdfi_rqf_init(shift, mode);                                         \
        const __m512i sv = _mm512_set1_epi32(shift), c = _mm512_set1_epi32(f.c), kd = _mm512_set1_epi32(f.kd); \
        mdfi_rq32_avx512 q;                                                                    \
        mdfi_rq32_init_avx512(&q, shift, mode, g->bits);                                       \
        const __m512i lo = _mm512_set1_epi32(mdfi_qmin(g->bits) - g->zero_out);                \
        const __m512i hi = _mm512_set1_epi32(mdfi_qmax(g->bits) - g->zero_out);                \
        const __m512i zo = _mm512_set1_epi32(g->zero_out), b = _mm512_set1_epi32(t0);          \
        const int s8 = g->out_type == MDFI_S8;                                                 \
        const int64_t nout = (int64_t)g->oh * g->ow;                                           \
        int8_t *o8 = (int8_t *)g->out + off;                                                   \
        int16_t *o16 = (int16_t *)g->out + off;                                                \
        int64_t v = 0;                                                                         \
        for (; v + 4 <= nvec; v += 4) {                                                        \
            __m512i a0 = b, a1 = b, a2 = b, a3 = b;                                            \
            const int16_t *base = pl + 32 * v;                                                 \
            for (int32_t t = 0; t < nt; ++t) {                                                 \
                const int16_t *p = base + 2 * tp[t].off;                                       \
                const __m512i w = _mm512_set1_epi32(tp[t].wpair);                              \
                a0 = MADD_ADD(a0, _mm512_loadu_si512((const void *)p), w);                     \
                a1 = MADD_ADD(a1, _mm512_loadu_si512((const void *)(p + 32)), w);              \
                a2 = MADD_ADD(a2, _mm512_loadu_si512((const void *)(p + 64)), w);              \
                a3 = MADD_ADD(a3, _mm512_loadu_si512((const void *)(p + 96)), w);              \
            }                                                                                  \
            DW_EMIT(a0, v) DW_EMIT(a1, v + 1) DW_EMIT(a2, v + 2) DW_EMIT(a3, v + 3)            \
        }                                                                                      \
        for (; v < nvec; ++v) {                                                                \
            __m512i a0 = b;                                                                    \
            const int16_t *base = pl + 32 * v;                                                 \
            for (int32_t t = 0; t < nt; ++t)                                                   \
                a0 = MADD_ADD(a0, _mm512_loadu_si512((const void *)(base + 2 * tp[t].off)),   \
                              _mm512_set1_epi32(tp[t].wpair));                                 \
            DW_EMIT(a0, v)                                                                     \
        }                                                                                      \
    }
#define DW_EMIT(A, V)                                                                          \
    {                                                                                          \
        __m512i r = folded ? mdfi_rqf16v_avx512(A, sv, c, kd, act)                              \
                           : mdfi_requantize16_i32_noclamp_avx512(A, &q, mode, act);           \
        r = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, lo), hi), zo);               \
        r = _mm512_maskz_compress_epi32(vm[V].valid, r);                                       \
        const int64_t st = vm[V].start;                                                        \
        if (st + 16 <= nout) {      /* a whole store: its lanes past the valid ones are        \
                                       outputs of the next vectors, stored after it */         \
            if (s8) _mm_storeu_si128((__m128i *)(o8 + st), _mm512_cvtepi32_epi8(r));           \
            else _mm256_storeu_si256((__m256i *)(o16 + st), _mm512_cvtepi32_epi16(r));         \
        } else if (s8) _mm512_mask_cvtepi32_storeu_epi8(o8 + st, vm[V].store, r);              \
        else _mm512_mask_cvtepi32_storeu_epi16(o16 + st, vm[V].store, r);                      \
    }
#define DW_MADD_ADD_BW(A, X, W) _mm512_add_epi32(A, _mm512_madd_epi16(X, W))
#define DW_MADD_ADD_VNNI(A, X, W) _mm512_dpwssd_epi32(A, X, W)
DW_CHAN_AVX512(dw_chan_avx512_body, KAVX512, DW_MADD_ADD_BW)
DW_CHAN_AVX512(dw_chan_vnni_body, __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))),
               DW_MADD_ADD_VNNI)
#undef DW_EMIT

/* The bodies with folded and act compile-time constants for the folded forms (the layers'
 * common case), run-time otherwise. */
#define DW_CHAN_ENTRY(NAME, BODY, ATTR)                                                        \
    ATTR static void NAME(const struct grouped_ctx *g, const dw_vmap *restrict vm, int64_t nvec, \
                          const int16_t *restrict pl, const dw_tap *restrict tp, int32_t nt, int32_t t0, \
                          int32_t shift, int32_t folded, int64_t off)                           \
    {                                                                                          \
        if (!folded) BODY(g, vm, nvec, pl, tp, nt, t0, shift, 0, g->act, off);                  \
        else if (g->act == MDFI_ACT_LEAKY) BODY(g, vm, nvec, pl, tp, nt, t0, shift, 1, MDFI_ACT_LEAKY, off); \
        else if (g->act == MDFI_ACT_RELU) BODY(g, vm, nvec, pl, tp, nt, t0, shift, 1, MDFI_ACT_RELU, off); \
        else BODY(g, vm, nvec, pl, tp, nt, t0, shift, 1, MDFI_ACT_LINEAR, off);                \
    }
DW_CHAN_ENTRY(dw_chan_avx512, dw_chan_avx512_body, KAVX512)
DW_CHAN_ENTRY(dw_chan_vnni, dw_chan_vnni_body,
              __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))))

/* 1 when the AVX-512 body may use VNNI (the CPU has it; tests clear it to run the BW body). */
static int dw_vnni_allowed = 1;
void mdfi_grouped_set_vnni(int allowed) { dw_vnni_allowed = allowed != 0; }
static int dw_have_vnni(void)
{
    __builtin_cpu_init();
    return dw_vnni_allowed && __builtin_cpu_supports("avx512vnni");
}
#else
void mdfi_grouped_set_vnni(int allowed) { (void)allowed; }
#endif

/* The folded requantize of mdfi_fixedpoint.h (mdfi_rqf_init) on one int32 t = sum + half
 * (shift s in 1..31, every |sum| + half inside int32): the activated R(sum / 2^s), not
 * saturated -- the formulas of mdfi_rqf16v_avx512 lane by lane, int32 operations only (>> of
 * a negative int32 is arithmetic on every compiler the build supports), so loops of it
 * vectorize. */
static inline int32_t dw_rqf(int32_t t, int32_t s, int32_t c, int32_t d, int32_t act)
{
    if (act == MDFI_ACT_LEAKY) {
        const int32_t th = t >> 16, tl = (t & 0xffff) - 0x8000;             /* t = th 2^16 + tl + 2^15 */
        const int32_t n = 2 * MDFI_LEAKY_MULT * th + c + ((MDFI_LEAKY_MULT * tl + d) >> 15);
        return (t > n ? t : n) >> s;
    }
    const int32_t r = t >> s;
    return act == MDFI_ACT_RELU && r < 0 ? 0 : r;
}

/* Rows [0, nrows) of a block of folded sums acc (row stride rs) -> out[off + row * OW + ox]:
 * dw_rqf, the clamp to [qmin - zo, qmax - zo], + zo.  One body per activation (ACT constant). */
#define DW_RQ_ROWS(NAME, ATTR, ACT)                                                            \
    ATTR static void NAME(const int32_t *restrict acc, int64_t rs, int64_t nrows, int32_t shift, \
                          const struct grouped_ctx *g, int64_t off)                            \
    {                                                                                          \
        const mdfi_rqf f = mdfi_rqf_init(shift, g->rounding);                                  \
        const int32_t d = (int32_t)((uint32_t)f.kd >> 16), zo = g->zero_out;                   \
        const int32_t lo = mdfi_qmin(g->bits) - zo, hi = mdfi_qmax(g->bits) - zo;              \
        for (int64_t r = 0; r < nrows; ++r) {                                                  \
            const int32_t *restrict a = acc + r * rs;                                          \
            if (g->out_type == MDFI_S8) {                                                      \
                int8_t *restrict o = (int8_t *)g->out + off + r * g->ow;                       \
                for (int64_t i = 0; i < g->ow; ++i) {                                          \
                    const int32_t v = dw_rqf(a[i], shift, f.c, d, ACT);                        \
                    o[i] = (int8_t)((v < lo ? lo : (v > hi ? hi : v)) + zo);                   \
                }                                                                              \
            } else {                                                                           \
                int16_t *restrict o = (int16_t *)g->out + off + r * g->ow;                     \
                for (int64_t i = 0; i < g->ow; ++i) {                                          \
                    const int32_t v = dw_rqf(a[i], shift, f.c, d, ACT);                        \
                    o[i] = (int16_t)((v < lo ? lo : (v > hi ? hi : v)) + zo);                  \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }
DW_RQ_ROWS(dw_rq_rows_linear, , MDFI_ACT_LINEAR)
DW_RQ_ROWS(dw_rq_rows_leaky, , MDFI_ACT_LEAKY)
DW_RQ_ROWS(dw_rq_rows_relu, , MDFI_ACT_RELU)

static void dw_rq_rows(const int32_t *restrict acc, int64_t rs, int64_t nrows, int32_t shift,
                       const struct grouped_ctx *g, int64_t off)
{
    if (g->act == MDFI_ACT_LEAKY) dw_rq_rows_leaky(acc, rs, nrows, shift, g, off);
    else if (g->act == MDFI_ACT_RELU) dw_rq_rows_relu(acc, rs, nrows, shift, g, off);
    else dw_rq_rows_linear(acc, rs, nrows, shift, g, off);
}

#if MDFI_KERNELS_X86
/* The same on AVX2 (mdfi_rqf8v_avx2): 32 outputs at a time narrowed together, then eight at a
 * time, a row's last vector ending at OW (it recomputes a few outputs, with the same values);
 * rows of fewer than 8 outputs by dw_rqf. */
#define DW_RQ_ROWS_AVX2(NAME, ACT)                                                             \
    __attribute__((target("avx2"))) static void NAME(const int32_t *restrict acc, int64_t rs, int64_t nrows, \
                                                      int32_t shift, const struct grouped_ctx *g, int64_t off) \
    {                                                                                          \
        const int64_t ow = g->ow;                                                              \
        if (ow < 8) {                                                                          \
            dw_rq_rows(acc, rs, nrows, shift, g, off);                                         \
            return;                                                                            \
        }                                                                                      \
        const mdfi_rqf f = mdfi_rqf_init(shift, g->rounding);                                  \
        const __m256i sv = _mm256_set1_epi32(shift), c = _mm256_set1_epi32(f.c), kd = _mm256_set1_epi32(f.kd); \
        const __m256i lo = _mm256_set1_epi32(mdfi_qmin(g->bits) - g->zero_out);                \
        const __m256i hi = _mm256_set1_epi32(mdfi_qmax(g->bits) - g->zero_out);                \
        const __m256i zo = _mm256_set1_epi32(g->zero_out);                                     \
        const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);                        \
        for (int64_t r = 0; r < nrows; ++r) {                                                  \
            const int32_t *restrict a = acc + r * rs;                                          \
            int64_t i = 0;                                                                     \
            for (; i + 32 <= ow; i += 32) {   /* 32 outputs, narrowed by packs and stored once */ \
                __m256i v[4];                                                                  \
                for (int u = 0; u < 4; ++u) {                                                  \
                    const __m256i t = _mm256_loadu_si256((const __m256i *)(a + i + 8 * u));   \
                    const __m256i q = mdfi_rqf8v_avx2(t, sv, c, kd, ACT);                      \
                    v[u] = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), zo); \
                }                                                                              \
                const __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]); \
                if (g->out_type == MDFI_S8) {                                                  \
                    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), perm); \
                    _mm256_storeu_si256((__m256i *)((int8_t *)g->out + off + r * ow + i), b);   \
                } else {                                                                       \
                    int16_t *o = (int16_t *)g->out + off + r * ow + i;                         \
                    _mm256_storeu_si256((__m256i *)o, _mm256_permute4x64_epi64(w01, 0xD8));    \
                    _mm256_storeu_si256((__m256i *)(o + 16), _mm256_permute4x64_epi64(w23, 0xD8)); \
                }                                                                              \
            }                                                                                  \
            for (; i < ow; i += 8) {          /* the last vector may overlap the previous one */ \
                const int64_t x = i + 8 <= ow ? i : ow - 8;                                    \
                const __m256i t = _mm256_loadu_si256((const __m256i *)(a + x));                \
                const __m256i q = mdfi_rqf8v_avx2(t, sv, c, kd, ACT);                          \
                st8(g->out, g->out_type, off + r * ow + x,                                     \
                    _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), zo));      \
            }                                                                                  \
        }                                                                                      \
    }
DW_RQ_ROWS_AVX2(dw_rq_rows_avx2_linear, MDFI_ACT_LINEAR)
DW_RQ_ROWS_AVX2(dw_rq_rows_avx2_leaky, MDFI_ACT_LEAKY)
DW_RQ_ROWS_AVX2(dw_rq_rows_avx2_relu, MDFI_ACT_RELU)

static void dw_rq_rows_avx2(const int32_t *restrict acc, int64_t rs, int64_t nrows, int32_t shift,
                            const struct grouped_ctx *g, int64_t off)
{
    if (g->act == MDFI_ACT_LEAKY) dw_rq_rows_avx2_leaky(acc, rs, nrows, shift, g, off);
    else if (g->act == MDFI_ACT_RELU) dw_rq_rows_avx2_relu(acc, rs, nrows, shift, g, off);
    else dw_rq_rows_avx2_linear(acc, rs, nrows, shift, g, off);
}
#endif

/* Output channels [m0, m1) of an acc32 layer of stride 1 or 2 (see above); body 0 portable,
 * 1 AVX2, 2 AVX-512. */
static void dw_range(const struct grouped_ctx *g, int64_t m0, int64_t m1)
{
    const int32_t cg = g->c / g->groups, mg = g->m / g->groups, k = g->k;
    const dw_geom d = dw_geometry(g);
    const int32_t ntap_max = cg * k * d.npairs;
    const int64_t nbuf = cg * d.chan + DW_SLACK;
    int16_t *pl = malloc(sizeof *pl * (size_t)(2 * nbuf));                  /* [cg][S][nrow][rs][2] */
    int32_t *acc = malloc(sizeof *acc * (size_t)(d.rows_blk * d.rs + 16));  /* [rows_blk][rs] sums  */
    dw_tap *tp = malloc(sizeof *tp * (size_t)ntap_max);                     /* [cg*k*npairs]       */
    const dw_vmap *vm = g->vm;                                  /* NULL unless AVX-512 */
    const int64_t nvec = g->nvec;
    (void)vm;
    (void)nvec;
    if (pl == NULL || acc == NULL || tp == NULL) {
        free(pl);
        free(acc);
        free(tp);
        *g->failed = 1;
        return;
    }
    memset(pl + 2 * cg * d.chan, 0, sizeof *pl * 2 * DW_SLACK);
    const int64_t plane = (int64_t)g->oh * g->ow;
    /* the largest |code| of the planes: the input type's range and the pad value */
    const int64_t pva = g->pad_value < 0 ? -(int64_t)g->pad_value : g->pad_value;
    const int64_t tmax = g->in_type == MDFI_U8 ? 255 : (g->in_type == MDFI_S8 ? 128 : 32768);
    const int64_t xmax = pva > tmax ? pva : tmax;
    (void)xmax;
#if MDFI_KERNELS_X86
    const int vnni = g->avx2 == 2 && dw_have_vnni();
#endif
    int64_t cur = -1;                                           /* the group held in pl */
    for (int64_t mm = m0; mm < m1; ++mm) {
        const int64_t j = mm / mg;
        if (j != cur) {
            for (int32_t cl = 0; cl < cg; ++cl) {
#if MDFI_KERNELS_X86
                if (g->avx2 == 2) dw_build_avx512(g, &d, j * cg + cl, pl + 2 * cl * d.chan);
                else if (g->avx2) dw_build_avx2(g, &d, j * cg + cl, pl + 2 * cl * d.chan);
                else
#endif
                    dw_build(g, &d, j * cg + cl, pl + 2 * cl * d.chan);
            }
            cur = j;
        }
        int32_t nt = 0;                                         /* the nonzero tap pairs */
        for (int32_t cl = 0; cl < cg; ++cl)
            for (int32_t ky = 0; ky < k; ++ky)
                for (int32_t p = 0; p < d.npairs; ++p) {
                    const int16_t *wk = g->wt + ((mm * cg + cl) * k + ky) * k;
                    const int32_t w0 = wk[2 * p], w1 = 2 * p + 1 < k ? wk[2 * p + 1] : 0;
                    if (w0 == 0 && w1 == 0) continue;
                    tp[nt].off = cl * d.chan + (ky % d.s) * d.plane + (ky / d.s) * d.rs + (d.s == 1 ? 2 * p : p);
                    tp[nt].wpair = (int32_t)((uint32_t)(uint16_t)w0 | (uint32_t)(uint16_t)w1 << 16);
                    tp[nt].w0 = (int16_t)w0;
                    tp[nt].w1 = (int16_t)w1;
                    ++nt;
                }
        const int32_t bias = (int32_t)g->bias[mm], shift = g->shift[mm];
        /* the folded requantize (sums start at bias + half) when the shift is 1..31 and
         * |bias| + half + sum |w| * max|x| <= INT32_MAX */
        int32_t folded = 0, t0 = bias;
        if (shift >= 1 && shift <= 31) {           /* mdfi_rq32_ok (the AVX2 header's) */
            const int64_t half = g->rounding == MDFI_ROUND_HALF_UP ? (int64_t)1 << (shift - 1) : 0;
            int64_t bound = (bias < 0 ? -(int64_t)bias : bias) + half;
            for (int32_t t = 0; t < nt; ++t) bound += ((int64_t)abs(tp[t].w0) + abs(tp[t].w1)) * xmax;
            folded = bound <= INT32_MAX;
            if (folded) t0 = (int32_t)(bias + half);
        }
#if MDFI_KERNELS_X86
        if (vm != NULL && mdfi_rq32_ok(shift)) {
            if (vnni) dw_chan_vnni(g, vm, nvec, pl, tp, nt, t0, shift, folded, mm * plane);
            else dw_chan_avx512(g, vm, nvec, pl, tp, nt, t0, shift, folded, mm * plane);
            continue;
        }
#endif
        for (int64_t oy0 = 0; oy0 < g->oh; oy0 += d.rows_blk) {
            const int64_t oy1 = oy0 + d.rows_blk < g->oh ? oy0 + d.rows_blk : g->oh;
            /* the block's last row needs only its OW valid sums */
            const int64_t n = (oy1 - oy0 - 1) * d.rs + g->ow, off = mm * plane + oy0 * g->ow;
#if MDFI_KERNELS_X86
            if (g->avx2) {
                if (g->avx2 == 2) dw_sums_avx512(acc, pl, tp, nt, t0, oy0 * d.rs, n);
                else dw_sums_avx2(acc, pl, tp, nt, t0, oy0 * d.rs, n);
                if (folded) dw_rq_rows_avx2(acc, d.rs, oy1 - oy0, shift, g, off);
                else
                    for (int64_t oy = oy0; oy < oy1; ++oy)
                        requant32_avx2(acc + (oy - oy0) * d.rs, g->ow, shift, g, mm * plane + oy * g->ow);
                continue;
            }
#endif
            dw_sums(acc, pl, tp, nt, t0, oy0 * d.rs, n);
            if (folded) dw_rq_rows(acc, d.rs, oy1 - oy0, shift, g, off);
            else
                for (int64_t oy = oy0; oy < oy1; ++oy)
                    requant32(acc + (oy - oy0) * d.rs, g->ow, shift, g, mm * plane + oy * g->ow);
        }
    }
    free(pl);
    free(acc);
    free(tp);
}

static void grouped_range(const void *vctx, int64_t m0, int64_t m1)
{
    const grouped_ctx *g = (const grouped_ctx *)vctx;
    if (g->acc32 && (g->stride == 1 || g->stride == 2)) {
        dw_range(g, m0, m1);
        return;
    }
    const int32_t cg = g->c / g->groups, mg = g->m / g->groups, k = g->k;
    const int64_t hp = (int64_t)g->h + 2 * g->pad, wp = (int64_t)g->w + 2 * g->pad;
    const int64_t plane = (int64_t)g->oh * g->ow;
    int16_t *xp = malloc(sizeof *xp * (size_t)(hp * wp));      /* one padded input channel */
    int64_t *acc = malloc(sizeof *acc * (size_t)plane);        /* [OH][OW] sums (int32 or int64) */
    int32_t *acc32 = (int32_t *)acc;
    if (xp == NULL || acc == NULL) {
        free(xp);
        free(acc);
        *g->failed = 1;
        return;
    }
    int64_t cur = -1;                                           /* the channel held in xp  */
    for (int64_t mm = m0; mm < m1; ++mm) {
        const int64_t j = mm / mg;
        if (g->acc32)
            for (int64_t p = 0; p < plane; ++p) acc32[p] = (int32_t)g->bias[mm];
        else
            for (int64_t p = 0; p < plane; ++p) acc[p] = g->bias[mm];
        for (int32_t cl = 0; cl < cg; ++cl) {
            const int64_t ch = j * cg + cl;
            if (ch != cur) {
                pad_channel(g, ch, xp, hp, wp);
                cur = ch;
            }
            const int16_t *wk = g->wt + (mm * cg + cl) * k * k;
            if (!g->acc32)
                taps64(acc, xp, wk, k, g->stride, wp, g->oh, g->ow);
#if MDFI_KERNELS_X86
            else if (g->avx2)
                taps32_avx2(acc32, xp, wk, k, g->stride, wp, g->oh, g->ow);
#endif
            else
                taps32(acc32, xp, wk, k, g->stride, wp, g->oh, g->ow);
        }
        if (!g->acc32)
            requant64(acc, plane, g->shift[mm], g, mm * plane);
#if MDFI_KERNELS_X86
        else if (g->avx2)
            requant32_avx2(acc32, plane, g->shift[mm], g, mm * plane);
#endif
        else
            requant32(acc32, plane, g->shift[mm], g, mm * plane);
    }
    free(xp);
    free(acc);
}

int mdfi_conv_grouped_ex(const void *restrict in, int32_t in_type, int32_t c, int32_t h, int32_t w,
                         const int16_t *restrict weights, const int64_t *restrict bias,
                         const int32_t *restrict shift, int32_t m, int32_t groups, int32_t k, int32_t stride,
                         int32_t pad, int32_t pad_value, int32_t rounding, int32_t bits, int32_t act,
                         int32_t zero_out, int32_t acc32, void *restrict out, int32_t out_type, int32_t oh,
                         int32_t ow, const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || (out_type != MDFI_S8 && out_type != MDFI_S16) ||
        c < 1 || h < 1 || w < 1 || m < 1 || groups < 1 || c % groups || m % groups || k < 1 || stride < 1 ||
        pad < 0 || bits < 2 || bits > (out_type == MDFI_S8 ? 8 : 16) || (rounding != MDFI_ROUND_HALF_UP &&
        rounding != MDFI_ROUND_TRUNCATE) || act < MDFI_ACT_LINEAR || act > MDFI_ACT_RELU ||
        zero_out < mdfi_qmin(bits) || zero_out > mdfi_qmax(bits) || !valid_opts(opts))
        return -1;
    if (oh != (h + 2 * pad - k) / stride + 1 || ow != (w + 2 * pad - k) / stride + 1 || oh < 1 || ow < 1)
        return -2;
    for (int32_t i = 0; i < m; ++i)
        if (shift[i] < MDFI_MIN_SHIFT || shift[i] > MDFI_MAX_SHIFT) return -1;
    int failed = 0;
    if (acc32)                      /* the caller's bound: every bias fits int32 too */
        for (int32_t i = 0; i < m; ++i)
            if (bias[i] < INT32_MIN || bias[i] > INT32_MAX) return -1;
    /* 2: the AVX-512 bodies (MDFI_SIMD on an AVX-512 path and the CPU has AVX-512 F/BW/VL/DQ) */
    const int32_t body = use_avx2(opts) ? (opts->simd == 2 && mdfi_kernels_have_avx512bw() ? 2 : 1) : 0;
    grouped_ctx g = {in, weights, bias, shift, out, in_type, out_type, c, h, w, m, groups, k, stride, pad,
                           pad_value, rounding, bits, act, zero_out, oh, ow, acc32 != 0, body, NULL, 0, &failed};
    dw_vmap *vm = NULL;
    if (body == 2 && acc32 && (stride == 1 || stride == 2)) {
        /* the AVX-512 kernel's lane map, shared by every range: grid vectors of 16 positions,
         * rounded up to whole passes of four (the extra ones store nothing and read at most 63
         * pairs past the planes: DW_SLACK) */
        const dw_geom d = dw_geometry(&g);
        g.nvec = ((((int64_t)oh - 1) * d.rs + ow + 15) / 16 + 3) / 4 * 4;
        vm = malloc(sizeof *vm * (size_t)g.nvec);                            /* [nvec] */
        if (vm == NULL) return -3;
        dw_vmaps(&g, &d, vm, g.nvec);
        g.vm = vm;
    }
    mdfi_kpar_for(opts, m, 1, grouped_range, &g);
    free(vm);
    return failed ? -3 : 0;
}
