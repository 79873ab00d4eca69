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
 * "Grouped convolutions"). */
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
    int32_t avx2;                   /* 1: the AVX2 twin of the tap loop                      */
    int *failed;                    /* set when a range could not allocate its scratch        */
} grouped_ctx;

/* acc[oy][ox] += w[ky][kx] * xp[(oy*s + ky)*wp + kx + ox*s] over the k x k taps of one padded
 * input channel xp (int16 codes; the products are exact in int32, and the sums in ACC by the
 * caller's choice).  One body, compiled portably and for AVX2 (auto-vectorized). */
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

static void grouped_range(const void *vctx, int64_t m0, int64_t m1)
{
    const grouped_ctx *g = (const grouped_ctx *)vctx;
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
    const grouped_ctx g = {in, weights, bias, shift, out, in_type, out_type, c, h, w, m, groups, k, stride, pad,
                           pad_value, rounding, bits, act, zero_out, oh, ow, acc32 != 0, use_avx2(opts), &failed};
    mdfi_kpar_for(opts, m, 1, grouped_range, &g);
    return failed ? -3 : 0;
}
