/* mdfi_conv_neon.c -- aarch64 Advanced SIMD versions of the convolution's operations.
 *
 *   neon     int16-pair family (mdfi_conv_internal.h): 6x16 micro-kernel with SMLAL (int16 x
 *            int16 -> int32, exact products, wrapping int32 sums like vpmaddwd/vpaddd), an
 *            int32-lane epilogue; packing and re-layout from the portable code.
 *   neondot  8-bit family (mdfi_conv_q8.h) with SDOT (signed x signed bytes -> int32, four
 *            products per lane, wrapping): uint8 pixels are stored as x ^ 0x80 = x - 128 and
 *            128 * sum(w) is added back in the epilogue; X4 is built with LD2/ST4.
 *
 * The SDOT functions carry a target attribute and run only after getauxval(AT_HWCAP) reported
 * HWCAP_ASIMDDP (mdfi_cpu.c), so the file builds with the baseline armv8-a flags.
 *
 * Requantize on four int32 lanes (exact int32 values, shift 1..31):
 *   half_up  SRSHL by -s: (a + 2^(s-1)) >> s computed without overflow (Arm ARM: the
 *            rounding constant is added at full precision);  truncate  SSHL by -s (a >> s);
 *   leaky    max(that, R(a*3277 / 2^(s+15))), the latter on int64 lanes (SMULL, SRSHL/SSHL);
 *            the max picks it exactly when a < 0 (as in mdfi_fixedpoint_avx2.h);
 *   saturation with SMAX/SMIN.
 */
#include "mdfi_conv_q8.h"
#include "mdfi_fixedpoint.h"

#if MDFI_CONV_ARM

#include <arm_neon.h>
#include <string.h>

#if defined(__clang__)
#define DOTPROD __attribute__((target("dotprod")))
#define UNROLL _Pragma("unroll")
#else
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define UNROLL _Pragma("GCC unroll 32")
#endif

/* ---------------------------------------------------------------------------------------
 * Requantize, four int32 lanes
 * ------------------------------------------------------------------------------------- */
typedef struct {
    int32x4_t ns, qmin, qmax, zo;   /* -s, saturation bounds (less the zero point), zero point */
    int64x2_t ns15;                 /* -(s + 15)             */
} rq4;

/* zo: the output zero point, added after the clamp to [qmin - zo, qmax - zo]. */
static inline void rq4_init(rq4 *q, int32_t shift, int32_t bits, int32_t zo)
{
    q->ns = vdupq_n_s32(-shift);
    q->ns15 = vdupq_n_s64(-(int64_t)shift - MDFI_LEAKY_SHIFT);
    q->qmin = vdupq_n_s32(mdfi_qmin(bits) - zo);
    q->qmax = vdupq_n_s32(mdfi_qmax(bits) - zo);
    q->zo = vdupq_n_s32(zo);
}

static inline __attribute__((always_inline)) int32x4_t rq4_apply(int32x4_t a, const rq4 *q, const int32_t mode,
                                                                 const int32_t act)
{
    if (act == MDFI_ACT_RELU) a = vmaxq_s32(a, vdupq_n_s32(0));
    int32x4_t r = mode == MDFI_ROUND_HALF_UP ? vrshlq_s32(a, q->ns) : vshlq_s32(a, q->ns);
    if (act == MDFI_ACT_LEAKY) {
        int64x2_t lo = vmull_n_s32(vget_low_s32(a), MDFI_LEAKY_MULT);
        int64x2_t hi = vmull_high_n_s32(a, MDFI_LEAKY_MULT);
        lo = mode == MDFI_ROUND_HALF_UP ? vrshlq_s64(lo, q->ns15) : vshlq_s64(lo, q->ns15);
        hi = mode == MDFI_ROUND_HALF_UP ? vrshlq_s64(hi, q->ns15) : vshlq_s64(hi, q->ns15);
        r = vmaxq_s32(r, vmovn_high_s64(vmovn_s64(lo), hi));
    }
    return vaddq_s32(vminq_s32(vmaxq_s32(r, q->qmin), q->qmax), q->zo);
}

/* Store the first n (<= 4) lanes (values inside the output type) at out[o]. */
static inline void store4(int otype, void *out, size_t o, int32x4_t r, int n)
{
    const int16x4_t h = vmovn_s32(r);
    if (otype == MDFI_CONV_S8) {
        int8_t t[8];
        vst1_s8(t, vmovn_s16(vcombine_s16(h, h)));
        memcpy((int8_t *)out + o, t, (size_t)n);
    } else {
        int16_t t[4];
        vst1_s16(t, h);
        memcpy((int16_t *)out + o, t, (size_t)n * 2);
    }
}

/* ---------------------------------------------------------------------------------------
 * int16-pair family: micro-kernel and epilogue
 * ------------------------------------------------------------------------------------- */
/* C[6][16] (=|+=) A[kcl][6][2] . B[kcl][16][2] */
static void ukr32_neon(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                       int32_t *restrict c, int accumulate)
{
    int32x4_t acc[MR][4];
    UNROLL for (int r = 0; r < MR; ++r)
        UNROLL for (int v = 0; v < 4; ++v) acc[r][v] = accumulate ? vld1q_s32(c + r * NR + 4 * v) : vdupq_n_s32(0);
    for (int32_t i = 0; i < kcl; ++i) {
        const int16x8x2_t b0 = vld2q_s16(b);          /* pixels 0-7: even / odd channel */
        const int16x8x2_t b1 = vld2q_s16(b + 16);     /* pixels 8-15                    */
        const int16x8_t a03 = vld1q_s16(a);           /* rows 0-3: (even, odd) pairs    */
        const int16x4_t a45 = vld1_s16(a + 8);        /* rows 4-5                       */
#define ROWQ(r)                                                                                   \
        acc[r][0] = vmlal_laneq_s16(acc[r][0], vget_low_s16(b0.val[0]), a03, 2 * (r));           \
        acc[r][0] = vmlal_laneq_s16(acc[r][0], vget_low_s16(b0.val[1]), a03, 2 * (r) + 1);       \
        acc[r][1] = vmlal_high_laneq_s16(acc[r][1], b0.val[0], a03, 2 * (r));                    \
        acc[r][1] = vmlal_high_laneq_s16(acc[r][1], b0.val[1], a03, 2 * (r) + 1);                \
        acc[r][2] = vmlal_laneq_s16(acc[r][2], vget_low_s16(b1.val[0]), a03, 2 * (r));           \
        acc[r][2] = vmlal_laneq_s16(acc[r][2], vget_low_s16(b1.val[1]), a03, 2 * (r) + 1);       \
        acc[r][3] = vmlal_high_laneq_s16(acc[r][3], b1.val[0], a03, 2 * (r));                    \
        acc[r][3] = vmlal_high_laneq_s16(acc[r][3], b1.val[1], a03, 2 * (r) + 1);
#define ROWD(r, l)                                                                                \
        acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(b0.val[0]), a45, 2 * (l));            \
        acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(b0.val[1]), a45, 2 * (l) + 1);        \
        acc[r][1] = vmlal_high_lane_s16(acc[r][1], b0.val[0], a45, 2 * (l));                     \
        acc[r][1] = vmlal_high_lane_s16(acc[r][1], b0.val[1], a45, 2 * (l) + 1);                 \
        acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(b1.val[0]), a45, 2 * (l));            \
        acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(b1.val[1]), a45, 2 * (l) + 1);        \
        acc[r][3] = vmlal_high_lane_s16(acc[r][3], b1.val[0], a45, 2 * (l));                     \
        acc[r][3] = vmlal_high_lane_s16(acc[r][3], b1.val[1], a45, 2 * (l) + 1);
        ROWQ(0) ROWQ(1) ROWQ(2) ROWQ(3) ROWD(4, 0) ROWD(5, 1)
#undef ROWQ
#undef ROWD
        a += MR * 2;
        b += bstride;
    }
    UNROLL for (int r = 0; r < MR; ++r)
        UNROLL for (int v = 0; v < 4; ++v) vst1q_s32(c + r * NR + 4 * v, acc[r][v]);
}

static inline __attribute__((always_inline)) void epi32_rows(const conv_ctx *ctx, const int32_t *restrict c,
                                                             int32_t m0, int32_t mv, int64_t p0, int32_t nv,
                                                             const int32_t mode, const int32_t act)
{
    for (int32_t r = 0; r < mv; ++r) {
        const int32_t mm = m0 + r;
        const int32_t s = ctx->shift[mm];
        if (!ctx->sum32 || s < 1 || s > 31) {
            mdfi_conv_epi32_scalar(ctx, c + r * NR, mm, 1, p0, nv);
            continue;
        }
        rq4 q;
        rq4_init(&q, s, ctx->bits, ctx->zo);
        const int32x4_t b = vdupq_n_s32((int32_t)ctx->bias[mm]);
        const size_t o = (size_t)mm * (size_t)ctx->n + (size_t)p0;
        for (int32_t v = 0; v * 4 < nv; ++v) {
            const int32x4_t y = rq4_apply(vaddq_s32(vld1q_s32(c + r * NR + 4 * v), b), &q, mode, act);
            store4(ctx->otype, ctx->out, o + 4 * (size_t)v, y, nv - 4 * v < 4 ? nv - 4 * v : 4);
        }
    }
}

/* Sums provably inside int32 (sum32): bias added in int32, int32-lane requantize. */
static void epi32_neon(const conv_ctx *ctx, const int32_t *restrict c, int32_t m0, int32_t mv, int64_t p0,
                       int32_t nv)
{
    switch (ctx->rounding * 3 + ctx->act) {
    case 0: epi32_rows(ctx, c, m0, mv, p0, nv, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR); break;
    case 1: epi32_rows(ctx, c, m0, mv, p0, nv, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY); break;
    case 2: epi32_rows(ctx, c, m0, mv, p0, nv, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU); break;
    case 3: epi32_rows(ctx, c, m0, mv, p0, nv, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR); break;
    case 4: epi32_rows(ctx, c, m0, mv, p0, nv, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY); break;
    default: epi32_rows(ctx, c, m0, mv, p0, nv, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU); break;
    }
}

const conv_ops mdfi_conv_ops_neon = {ukr32_neon, mdfi_conv_pack_scalar, mdfi_conv_x2_scalar, epi32_neon,
                                     mdfi_conv_epi64_scalar, mdfi_conv_widen_scalar, NULL, NULL, NULL,
                                     mdfi_conv_split_scalar, mdfi_conv_widen2_scalar};

/* ---------------------------------------------------------------------------------------
 * 8-bit family: X4 rows (LD2 / ST4)
 * ------------------------------------------------------------------------------------- */
static void x4_neon(const q8_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t s = ctx->stride, hps = ctx->hps, wps = ctx->wps;
    const uint8x16_t flip = vdupq_n_u8(ctx->flip), padv = vdupq_n_u8(ctx->padv);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t pr = r % hps, pl = r / hps;
        const int64_t cq = pl / ((int64_t)s * s), ph = pl % ((int64_t)s * s);
        const int32_t py = (int32_t)(ph / s), px = (int32_t)(ph % s);
        uint8_t *d = ctx->x4 + ((size_t)pl * (size_t)ctx->plane + (size_t)pr * (size_t)wps) * 4;
        int64_t jlo, jhi;
        const int64_t y = mdfi_q8_x4_row(ctx, pr, py, px, &jlo, &jhi);
        for (int64_t j = 0; j < jlo; ++j) memset(d + 4 * j, ctx->padv, 4);
        if (jhi > jlo) {
            const uint8_t *src[4];
            for (int e = 0; e < 4; ++e) {
                const int64_t ch = 4 * cq + e;
                src[e] = ch < ctx->c ? (const uint8_t *)ctx->x + ((size_t)ch * (size_t)ctx->h + (size_t)y) * (size_t)ctx->w
                                     : NULL;
            }
            int64_t j = jlo;
            const int64_t x0 = jlo * s + px - ctx->pad;
            if (s <= 2)
                for (; j + 16 <= jhi && x0 + (j - jlo) * s + 16 * s <= ctx->w; j += 16) {
                    const int64_t x = x0 + (j - jlo) * s;
                    uint8x16x4_t q;
                    for (int e = 0; e < 4; ++e) {
                        uint8x16_t v = padv;
                        if (src[e]) v = veorq_u8(s == 1 ? vld1q_u8(src[e] + x) : vld2q_u8(src[e] + x).val[0], flip);
                        q.val[e] = v;
                    }
                    vst4q_u8(d + 4 * j, q);
                }
            for (; j < jhi; ++j) {
                const int64_t x = j * s + px - ctx->pad;
                for (int e = 0; e < 4; ++e) d[4 * j + e] = src[e] ? (uint8_t)(src[e][x] ^ ctx->flip) : ctx->padv;
            }
        }
        for (int64_t j = jhi > jlo ? jhi : jlo; j < wps; ++j) memset(d + 4 * j, ctx->padv, 4);
        if (pr == hps - 1) {
            uint8_t *tail = ctx->x4 + ((size_t)pl * (size_t)ctx->plane + (size_t)hps * (size_t)wps) * 4;
            memset(tail, ctx->padv, ((size_t)ctx->plane - (size_t)hps * (size_t)wps) * 4);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * 8-bit family: SDOT register tiles
 * ------------------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void q8_epi_rows(const q8_ctx *ctx, int32_t m0, int32_t rows,
                                                              int32_t nrv, const int32_t *tmp,
                                                              const uint32_t *mask, const int64_t *start,
                                                              const int32_t mode, const int32_t act)
{
    for (int32_t r = 0; r < rows && m0 + r < ctx->m; ++r) {
        const int32_t m = m0 + r;
        const int32_t *row = tmp + (size_t)r * (size_t)nrv * 4;
        if (!mdfi_q8_row_fast(ctx, m)) {
            for (int32_t v = 0; v < nrv; ++v) {
                int64_t idx = start[v];
                for (int l = 0; l < 4; ++l)
                    if (mask[v] & (1u << l)) mdfi_q8_store_one(ctx, m, idx++, row[v * 4 + l]);
            }
            continue;
        }
        rq4 q;
        rq4_init(&q, ctx->shift[m], ctx->bits, ctx->zo);
        const int32x4_t bq = vdupq_n_s32(ctx->bq[m]);
        const size_t o = (size_t)m * (size_t)ctx->n;
        for (int32_t v = 0; v < nrv; ++v) {
            if (mask[v] == 0) continue;
            const int32x4_t y = rq4_apply(vaddq_s32(vld1q_s32(row + 4 * v), bq), &q, mode, act);
            if (mask[v] == 0xfu) {
                store4(ctx->otype, ctx->out, o + (size_t)start[v], y, 4);
            } else {
                int32_t t[4];
                vst1q_s32(t, y);
                size_t k = o + (size_t)start[v];
                for (int l = 0; l < 4; ++l)
                    if (mask[v] & (1u << l)) {
                        if (ctx->otype == MDFI_CONV_S8) ((int8_t *)ctx->out)[k++] = (int8_t)t[l];
                        else ((int16_t *)ctx->out)[k++] = (int16_t)t[l];
                    }
            }
        }
    }
}

static void q8_epi(const q8_ctx *ctx, int32_t m0, int32_t rows, int32_t nrv, const int32_t *tmp,
                   const uint32_t *mask, const int64_t *start)
{
    switch (ctx->rounding * 3 + ctx->act) {
    case 0: q8_epi_rows(ctx, m0, rows, nrv, tmp, mask, start, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR); break;
    case 1: q8_epi_rows(ctx, m0, rows, nrv, tmp, mask, start, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY); break;
    case 2: q8_epi_rows(ctx, m0, rows, nrv, tmp, mask, start, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU); break;
    case 3: q8_epi_rows(ctx, m0, rows, nrv, tmp, mask, start, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR); break;
    case 4: q8_epi_rows(ctx, m0, rows, nrv, tmp, mask, start, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY); break;
    default: q8_epi_rows(ctx, m0, rows, nrv, tmp, mask, start, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU); break;
    }
}

/* MRV rows x NRVV vectors of 4 positions; A groups of 4 rows = one 16-byte load, SDOT by
 * element picks the row. */
#define NEON_KERNEL(MRV, NRVV)                                                                    \
DOTPROD static void neondot_tile_##MRV##x##NRVV(const q8_ctx *ctx, int32_t m0, int32_t t)        \
{                                                                                                 \
    enum { R = MRV, V = NRVV, G = MRV / 4 };                                                      \
    int32x4_t acc[R][V];                                                                          \
    UNROLL for (int r = 0; r < R; ++r)                                                            \
        UNROLL for (int v = 0; v < V; ++v) acc[r][v] = vdupq_n_s32(0);                            \
    const uint8_t *b = mdfi_q8_bbase(ctx, t);                                                     \
    const int8_t *ag[G];                                                                          \
    UNROLL for (int g = 0; g < G; ++g) ag[g] = mdfi_q8_agroup(ctx, m0 + 4 * g);                  \
    const int32_t c4 = ctx->c4, taps = ctx->taps;                                                 \
    const size_t bcs = ctx->bcs;                                                                  \
    size_t ak = 0;                                                                                \
    for (int32_t tap = 0; tap < taps; ++tap) {                                                    \
        const uint8_t *bt = b + ctx->toff[tap];                                                   \
        for (int32_t q4 = 0; q4 < c4; ++q4, ak += Q8_PANEL * 4) {                                 \
            const uint8_t *bp = bt + (size_t)q4 * bcs;                                            \
            int8x16_t bv[V];                                                                      \
            UNROLL for (int v = 0; v < V; ++v) bv[v] = vreinterpretq_s8_u8(vld1q_u8(bp + 16 * v)); \
            UNROLL for (int g = 0; g < G; ++g) {                                                  \
                const int8x16_t av = vld1q_s8(ag[g] + ak);                                        \
                UNROLL for (int v = 0; v < V; ++v) {                                              \
                    acc[4 * g][v] = vdotq_laneq_s32(acc[4 * g][v], bv[v], av, 0);                 \
                    acc[4 * g + 1][v] = vdotq_laneq_s32(acc[4 * g + 1][v], bv[v], av, 1);         \
                    acc[4 * g + 2][v] = vdotq_laneq_s32(acc[4 * g + 2][v], bv[v], av, 2);         \
                    acc[4 * g + 3][v] = vdotq_laneq_s32(acc[4 * g + 3][v], bv[v], av, 3);         \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    int32_t tmp[R][V * 4];                                                                        \
    UNROLL for (int r = 0; r < R; ++r)                                                            \
        UNROLL for (int v = 0; v < V; ++v) vst1q_s32(&tmp[r][4 * v], acc[r][v]);                  \
    uint32_t mask[V];                                                                             \
    int64_t start[V];                                                                             \
    const int64_t q0 = (int64_t)t * ctx->nr;                                                      \
    for (int v = 0; v < V; ++v) mask[v] = mdfi_q8_lanes(ctx, q0 + 4 * v, 4, &start[v]);          \
    q8_epi(ctx, m0, R, V, &tmp[0][0], mask, start);                                               \
}

NEON_KERNEL(8, 3)
NEON_KERNEL(12, 2)
NEON_KERNEL(16, 1)

static const q8_kernel kerns_dot[] = {{8, 3, 4, neondot_tile_8x3}, {12, 2, 4, neondot_tile_12x2},
                                      {16, 1, 4, neondot_tile_16x1}};
const q8_ops mdfi_q8_ops_neondot = {"neondot", 1, x4_neon, mdfi_q8_pack_ref, kerns_dot, 3, NULL, NULL, 0, 0, NULL, 0, NULL, NULL, NULL, NULL};

#else
typedef int mdfi_conv_neon_unused;
#endif /* MDFI_CONV_ARM */
