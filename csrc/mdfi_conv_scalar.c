/* mdfi_conv_scalar.c -- the portable scalar path of the int16-pair convolution: the
 * operations of mdfi_conv_ops_scalar (micro-kernel, B packing, input re-layout X2, epilogue,
 * widening) and the exact int64 micro-kernel that the driver (mdfi_conv.c) uses for acc64
 * layers on every path.  Layouts: mdfi_conv_internal.h.  Plain C11, no SIMD; every other
 * path is tested equal to these operations (csrc/tests/conv_check.c).
 */
#include "mdfi_conv.h"
#include "mdfi_conv_internal.h"
#include "mdfi_fixedpoint.h"

#include <stddef.h>
#include <stdint.h>

static void ukr32_scalar(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b,
                         size_t bstride, int32_t *restrict c, int accumulate)
{
    uint32_t acc[MR * NR];
    for (int i = 0; i < MR * NR; ++i) acc[i] = accumulate ? (uint32_t)c[i] : 0u;
    for (int32_t i = 0; i < kcl; ++i) {
        const int16_t *ai = a + (size_t)i * MR * 2;
        const int16_t *bi = b + (size_t)i * bstride;
        for (int r = 0; r < MR; ++r) {
            const int32_t a0 = ai[2 * r], a1 = ai[2 * r + 1];
            uint32_t *cr = acc + r * NR;
            /* each product fits int32 (|.| <= 2^30); their sum is taken modulo 2^32 */
            for (int j = 0; j < NR; ++j)
                cr[j] += (uint32_t)(a0 * bi[2 * j]) + (uint32_t)(a1 * bi[2 * j + 1]);
        }
    }
    for (int i = 0; i < MR * NR; ++i) c[i] = mdfi_wrap_i32(acc[i]);
}

/* c64 += A . B in exact int64 (acc64 on the scalar path, and any path whose int32 chunks
 * could overflow). */
void mdfi_conv_ukr64_scalar(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b,
                            size_t bstride, int64_t *restrict c)
{
    for (int32_t i = 0; i < kcl; ++i) {
        const int16_t *ai = a + (size_t)i * MR * 2;
        const int16_t *bi = b + (size_t)i * bstride;
        for (int r = 0; r < MR; ++r) {
            const int64_t a0 = ai[2 * r], a1 = ai[2 * r + 1];
            int64_t *cr = c + r * NR;
            for (int j = 0; j < NR; ++j) cr[j] += a0 * bi[2 * j] + a1 * bi[2 * j + 1];
        }
    }
}

void mdfi_conv_widen_scalar(int64_t *restrict c64, const int32_t *restrict c32)
{
    for (int i = 0; i < MR * NR; ++i) c64[i] += c32[i];
}

/* c64 += lo + 256 * hi: |lo|, |hi| < 2^31, so every term and the sum are exact in int64. */
void mdfi_conv_widen2_scalar(int64_t *restrict c64, const int32_t *restrict lo, const int32_t *restrict hi)
{
    for (int i = 0; i < MR * NR; ++i) c64[i] += (int64_t)lo[i] + (int64_t)hi[i] * 256;
}

/* hi = floor(b / 256) (-128..127), b = b - 256 * hi (0..255): b = 256 * hi + lo exactly
 * (written without shifts of negative values, which C leaves to the implementation). */
void mdfi_conv_split_scalar(int16_t *restrict b, int16_t *restrict hi, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        const int32_t v = b[i];
        const int32_t q = v >= 0 ? v / 256 : -((255 - v) / 256);
        hi[i] = (int16_t)q;
        b[i] = (int16_t)(v - 256 * q);
    }
}

void mdfi_conv_pack_scalar(const conv_ctx *ctx, int32_t t, int32_t kc0, int32_t kcl,
                        int16_t *restrict dst)
{
    int32_t off[NR], jb, gap;
    mdfi_conv_tile_offsets(ctx, t, off, &jb, &gap);
    int32_t tap = kc0 / ctx->c2, cc = kc0 % ctx->c2;
    int32_t ky = tap / ctx->ks, kx = tap % ctx->ks;
    for (int32_t i = 0; i < kcl; ++i) {
        const int16_t *src = ctx->x2 + ((size_t)cc * (size_t)ctx->plane +
                                        (size_t)ky * (size_t)ctx->wp + (size_t)kx) * 2;
        int16_t *d = dst + (size_t)i * NR * 2;
        for (int j = 0; j < NR; ++j) {
            d[2 * j] = src[2 * (size_t)off[j]];
            d[2 * j + 1] = src[2 * (size_t)off[j] + 1];
        }
        if (++cc == ctx->c2) {
            cc = 0;
            if (++kx == ctx->ks) { kx = 0; ++ky; }
        }
    }
}

static int32_t load_x(const void *x, int t, size_t i)
{
    return t == MDFI_CONV_U8 ? ((const uint8_t *)x)[i]
         : t == MDFI_CONV_S8 ? ((const int8_t *)x)[i] : ((const int16_t *)x)[i];
}

/* X2 rows r0..r1-1, row r = cc*Hp + y. */
void mdfi_conv_x2_scalar(const conv_ctx *ctx, int64_t r0, int64_t r1)
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
        const size_t row0 = ((size_t)c0 * (size_t)h + (size_t)(y - pad)) * (size_t)w;
        const size_t row1 = ((size_t)c1 * (size_t)h + (size_t)(y - pad)) * (size_t)w;
        int16_t *di = d + (size_t)pad * 2;
        for (int32_t i = 0; i < w; ++i) {
            di[2 * i] = (int16_t)load_x(ctx->x, ctx->xtype, row0 + (size_t)i);
            di[2 * i + 1] = c1 < ctx->c ? (int16_t)load_x(ctx->x, ctx->xtype, row1 + (size_t)i) : 0;
        }
    }
}

/* Epilogue: C tile (element type T: int32 sums, or int64 on the exact path) + bias,
 * requantized into the S8/S16 output. */
#define EPI_SCALAR(NAME, T)                                                                   \
void NAME(const conv_ctx *ctx, const T *restrict c, int32_t m0, int32_t mv,            \
                 int64_t p0, int32_t nv)                                                      \
{                                                                                             \
    for (int32_t r = 0; r < mv; ++r) {                                                        \
        const int32_t mm = m0 + r;                                                            \
        const int64_t b = ctx->bias[mm];                                                      \
        const int32_t s = ctx->shift[mm];                                                     \
        const size_t o = (size_t)mm * (size_t)ctx->n + (size_t)p0;                            \
        const T *cr = c + r * NR;                                                             \
        for (int32_t j = 0; j < nv; ++j) {                                                    \
            const int32_t v = mdfi_requantize_zp((int64_t)cr[j] + b, s, ctx->rounding, ctx->bits, \
                                                 ctx->act, ctx->zo);                          \
            if (ctx->otype == MDFI_CONV_S8) ((int8_t *)ctx->out)[o + (size_t)j] = (int8_t)v;  \
            else ((int16_t *)ctx->out)[o + (size_t)j] = (int16_t)v;                           \
        }                                                                                     \
    }                                                                                         \
}
EPI_SCALAR(mdfi_conv_epi32_scalar, int32_t)
EPI_SCALAR(mdfi_conv_epi64_scalar, int64_t)

const conv_ops mdfi_conv_ops_scalar = {ukr32_scalar, mdfi_conv_pack_scalar, mdfi_conv_x2_scalar, mdfi_conv_epi32_scalar,
                                       mdfi_conv_epi64_scalar, mdfi_conv_widen_scalar, NULL, NULL, NULL,
                                       mdfi_conv_split_scalar, mdfi_conv_widen2_scalar};
