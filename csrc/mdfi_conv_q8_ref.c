/* mdfi_conv_q8_ref.c -- the 8-bit dot-product convolution's portable reference operations
 * (unsigned x signed, like vpdpbusd): the X4 re-layout (mdfi_q8_x4_ref), the B packing
 * (mdfi_q8_pack_ref, also used by the SIMD paths), the scalar store of one output
 * (mdfi_q8_store_one, the SIMD paths' tails) and the 4x8 reference kernel, as the ops table
 * mdfi_q8_ops_ref (path scalar8).  The driver is mdfi_conv_q8.c; layouts and the exactness
 * argument: mdfi_conv_q8.h.  Plain C11, no SIMD; every other 8-bit path is tested equal to
 * these operations (csrc/tests/conv_check.c).
 */
#include "mdfi_conv_q8.h"
#include "mdfi_fixedpoint.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint8_t x_byte(const q8_ctx *ctx, size_t i)
{
    return ctx->xtype == MDFI_CONV_U8 ? (uint8_t)(((const uint8_t *)ctx->x)[i] ^ ctx->flip)
                                      : (uint8_t)((uint8_t)((const int8_t *)ctx->x)[i] ^ ctx->flip);
}

/* X4 rows r0..r1-1; row r = (cq * S*S + phase) * Hps + pr.  The last row of a plane also
 * fills the plane's slack. */
void mdfi_q8_x4_ref(const q8_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t s = ctx->stride, hps = ctx->hps, wps = ctx->wps;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t pr = r % hps, pl = r / hps;
        const int64_t cq = pl / ((int64_t)s * s), ph = pl % ((int64_t)s * s);
        const int32_t py = (int32_t)(ph / s), px = (int32_t)(ph % s);
        uint8_t *d = ctx->x4 + ((size_t)pl * (size_t)ctx->plane + (size_t)pr * (size_t)wps) * 4;
        const int64_t y = pr * s + py - ctx->pad;
        for (int32_t j = 0; j < wps; ++j) {
            const int64_t x = (int64_t)j * s + px - ctx->pad;
            for (int e = 0; e < 4; ++e) {
                const int64_t ch = 4 * cq + e;
                uint8_t v = ctx->padv;
                if (ch < ctx->c && y >= 0 && y < ctx->h && x >= 0 && x < ctx->w)
                    v = x_byte(ctx, ((size_t)ch * (size_t)ctx->h + (size_t)y) * (size_t)ctx->w + (size_t)x);
                d[4 * (size_t)j + (size_t)e] = v;
            }
        }
        if (pr == hps - 1) {
            uint8_t *tail = ctx->x4 + ((size_t)pl * (size_t)ctx->plane + (size_t)hps * (size_t)wps) * 4;
            memset(tail, ctx->padv, ((size_t)ctx->plane - (size_t)hps * (size_t)wps) * 4);
        }
    }
}

/* Packed B of tile t: [taps][C4][NR][4], pixel j of the tile = output t*NR + j (the last
 * valid pixel repeated past N).  The tile's pixels are split into runs that are consecutive
 * in X4 (at most a few: one per output row it touches), copied with memcpy. */
void mdfi_q8_pack_ref(const q8_ctx *ctx, int32_t t, uint8_t *dst)
{
    const int32_t nr = ctx->nr;
    int32_t run_j[Q8_MAX_NR + 1], run_len[Q8_MAX_NR];
    int64_t run_src[Q8_MAX_NR];
    int32_t nruns = 0;
    for (int32_t j = 0; j < nr; ++j) {
        int64_t p = (int64_t)t * nr + j;
        if (p >= ctx->n) p = ctx->n - 1;
        const int64_t oy = p / ctx->ow, ox = p % ctx->ow;
        const int64_t src = (oy * ctx->wps + ox) * 4;
        if (nruns > 0 && run_src[nruns - 1] + 4 * (int64_t)run_len[nruns - 1] == src) {
            ++run_len[nruns - 1];
        } else {
            run_j[nruns] = j;
            run_len[nruns] = 1;
            run_src[nruns] = src;
            ++nruns;
        }
    }
    for (int32_t tap = 0; tap < ctx->taps; ++tap)
        for (int32_t q4 = 0; q4 < ctx->c4; ++q4) {
            const uint8_t *s = ctx->x4 + (size_t)q4 * ctx->xcs + (size_t)ctx->xoff[tap];
            uint8_t *d = dst + ((size_t)tap * ctx->c4 + (size_t)q4) * (size_t)nr * 4;
            for (int32_t r = 0; r < nruns; ++r)
                memcpy(d + (size_t)run_j[r] * 4, s + run_src[r], (size_t)run_len[r] * 4);
        }
}

void mdfi_q8_store_one(const q8_ctx *ctx, int32_t m, int64_t idx, int32_t acc)
{
    /* S = acc - delta*wsum modulo 2^32 (exact when S fits int32), then + bias in int64 */
    const int32_t s32 = mdfi_q8_wrap((uint32_t)acc - (uint32_t)ctx->delta * (uint32_t)ctx->wsum[m]);
    const int32_t v = mdfi_requantize_zp((int64_t)s32 + ctx->bias[m], ctx->shift[m], ctx->rounding, ctx->bits,
                                         ctx->act, ctx->zo);
    const size_t o = (size_t)m * (size_t)ctx->n + (size_t)idx;
    if (ctx->otype == MDFI_CONV_S8) ((int8_t *)ctx->out)[o] = (int8_t)v;
    else ((int16_t *)ctx->out)[o] = (int16_t)v;
    if (ctx->res_fast) {
        const mdfi_conv_residual *r = ctx->res;
        const int32_t b = r->b_type == MDFI_CONV_S8 ? ((const int8_t *)r->b)[o] : ((const int16_t *)r->b)[o];
        const int32_t y = mdfi_conv_res_value(r, v, b);
        if (r->out_type == MDFI_CONV_S8) ((int8_t *)r->out)[o] = (int8_t)y;
        else ((int16_t *)r->out)[o] = (int16_t)y;
    }
}

/* The reference kernel: 4 rows x 8 positions, vpdpbusd's arithmetic in uint32. */
static void tile_ref(const q8_ctx *ctx, int32_t m0, int32_t t)
{
    enum { R = 4, L = 8 };
    uint32_t acc[R][L];
    memset(acc, 0, sizeof acc);
    const uint8_t *b = mdfi_q8_bbase(ctx, t);
    const int8_t *a = mdfi_q8_agroup(ctx, m0);
    for (int32_t tap = 0; tap < ctx->taps; ++tap)
        for (int32_t q4 = 0; q4 < ctx->c4; ++q4) {
            const uint8_t *bp = b + ctx->toff[tap] + (size_t)q4 * ctx->bcs;
            const int8_t *ap = a + ((size_t)tap * ctx->c4 + (size_t)q4) * Q8_PANEL * 4;
            for (int r = 0; r < R; ++r)
                for (int l = 0; l < L; ++l) {
                    int32_t d = 0;
                    for (int e = 0; e < 4; ++e) d += (int32_t)bp[4 * l + e] * ap[4 * r + e];
                    acc[r][l] += (uint32_t)d;
                }
        }
    int64_t start;
    const uint32_t mask = mdfi_q8_lanes(ctx, (int64_t)t * ctx->nr, L, &start);
    for (int r = 0; r < R; ++r) {
        const int32_t m = m0 + r;
        if (m >= ctx->m) break;
        int64_t idx = start;
        for (int l = 0; l < L; ++l)
            if (mask & (1u << l)) {
                mdfi_q8_store_one(ctx, m, idx++, mdfi_q8_wrap(acc[r][l]));
            }
    }
}

static const q8_kernel kerns_ref[] = {{4, 1, 8, tile_ref}};
const q8_ops mdfi_q8_ops_ref = {"scalar8", 0, mdfi_q8_x4_ref, mdfi_q8_pack_ref, kerns_ref, 1, NULL, NULL, 0, 0, NULL, 0, NULL, NULL, NULL, NULL};
