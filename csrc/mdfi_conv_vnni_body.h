/* mdfi_conv_vnni_body.h -- the vpdpbusd register tiles of the 8-bit convolution, written once
 * and compiled by mdfi_conv_vnni.c for each target:
 *
 *   QB_WIDTH 512: zmm, AVX512-VNNI (+ AVX-512 BW/VL for the epilogue's compress and masked
 *                 stores);
 *   QB_WIDTH 256: ymm with AVX2-only code around the dot product, compiled twice from this
 *                 same text: for AVX512-VNNI + VL (EVEX encoding; runs and is tested on
 *                 AVX-512 machines) and for AVX-VNNI (VEX encoding, e.g. Alder Lake, which
 *                 has no AVX-512) -- the two builds differ only in the instruction encoding
 *                 the compiler emits.
 *
 * Expected macros: QB_ATTR (function attribute), QB_NAME(x) (prefix), QB_WIDTH, QB_DPBUSD(acc,
 * b, a) (acc + sum of 4 u8(b) x s8(a) per int32 lane, wrapping).  Layouts and exactness:
 * mdfi_conv_q8.h.  One kernel call = an MR x (NRV vectors) register tile over the whole
 * reduction, accumulators in registers, then the epilogue (int32 lanes when the row's bound
 * and shift allow: bias - delta*wsum added in int32, requantize, saturate, narrow, store only
 * the lanes that are outputs; otherwise the exact scalar store).
 */
#if QB_WIDTH == 512
#define QB_VEC __m512i
#define QB_LANES 16
#define QB_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define QB_SET1(v) _mm512_set1_epi32(v)
#define QB_ZERO() _mm512_setzero_si512()
#define QB_STOREU(p, v) _mm512_storeu_si512((void *)(p), v)
#else
#define QB_VEC __m256i
#define QB_LANES 8
#define QB_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define QB_SET1(v) _mm256_set1_epi32(v)
#define QB_ZERO() _mm256_setzero_si256()
#define QB_STOREU(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), v)
#endif

#if defined(__clang__)
#define QB_UNROLL _Pragma("unroll")
#else
#define QB_UNROLL _Pragma("GCC unroll 32")
#endif

static inline int32_t QB_NAME(ld32)(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One row's NRV vectors of int32 sums -> requantized outputs of row m (mode and act are
 * constants in each instance, see epi_row). */
QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(epi_row_t)(const q8_ctx *ctx, int32_t m, const int32_t *row, int32_t nrv, const uint32_t *mask,
                   const int64_t *start, const int32_t mode, const int32_t act)
{
    const size_t o = (size_t)m * (size_t)ctx->n;
#if QB_WIDTH == 512
    mdfi_rq32_avx512 q;
    mdfi_rq32_init_avx512(&q, ctx->shift[m], mode, ctx->bits);
    const __m512i bq = _mm512_set1_epi32(ctx->bq[m]);
    /* 8-bit outputs of int8 and 16-bit outputs of int16: the narrowing saturates (vpmovsdb,
     * vpmovsdw), so the clamp is skipped */
    const int satnarrow = (ctx->otype == MDFI_CONV_S8 && ctx->bits == 8) || ctx->bits == 16;
    for (int32_t v = 0; v < nrv; ++v) {
        if (mask[v] == 0) continue;
        const __m512i a = _mm512_add_epi32(_mm512_loadu_si512((const void *)(row + v * 16)), bq);
        const __m512i r = satnarrow ? mdfi_requantize16_i32_noclamp_avx512(a, &q, mode, act)
                                    : mdfi_requantize16_i32_avx512(a, &q, mode, act);
        const size_t at = o + (size_t)start[v];
        if (mask[v] == 0xffffu) {
            if (ctx->otype == MDFI_CONV_S8) _mm_storeu_si128((__m128i *)(void *)((int8_t *)ctx->out + at), _mm512_cvtsepi32_epi8(r));
            else _mm256_storeu_si256((__m256i *)(void *)((int16_t *)ctx->out + at), _mm512_cvtsepi32_epi16(r));
        } else {
            const __m512i c = _mm512_maskz_compress_epi32((__mmask16)mask[v], r);
            const __mmask16 st = (__mmask16)((1u << __builtin_popcount(mask[v])) - 1u);
            if (ctx->otype == MDFI_CONV_S8) _mm_mask_storeu_epi8((int8_t *)ctx->out + at, st, _mm512_cvtsepi32_epi8(c));
            else _mm256_mask_storeu_epi16((int16_t *)ctx->out + at, st, _mm512_cvtsepi32_epi16(c));
        }
    }
#else
    mdfi_rq32_avx2 q;
    mdfi_rq32_init_avx2(&q, ctx->shift[m], mode, ctx->bits);
    const __m256i bq = _mm256_set1_epi32(ctx->bq[m]);
    for (int32_t v = 0; v < nrv; ++v) {
        if (mask[v] == 0) continue;
        const __m256i r = mdfi_requantize8_i32_avx2(
            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(row + v * 8)), bq), &q, mode, act);
        const size_t at = o + (size_t)start[v];
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        if (mask[v] == 0xffu) {
            if (ctx->otype == MDFI_CONV_S8) _mm_storel_epi64((__m128i *)(void *)((int8_t *)ctx->out + at), _mm_packs_epi16(w, w));
            else _mm_storeu_si128((__m128i *)(void *)((int16_t *)ctx->out + at), w);
        } else {
            int16_t tv[8];
            _mm_storeu_si128((__m128i *)(void *)tv, w);
            size_t k = at;
            for (int l = 0; l < 8; ++l)
                if (mask[v] & (1u << l)) {
                    if (ctx->otype == MDFI_CONV_S8) ((int8_t *)ctx->out)[k++] = (int8_t)tv[l];
                    else ((int16_t *)ctx->out)[k++] = tv[l];
                }
        }
    }
#endif
}

QB_ATTR static void QB_NAME(epi_row)(const q8_ctx *ctx, int32_t m, const int32_t *row, int32_t nrv,
                                     const uint32_t *mask, const int64_t *start)
{
    if (!mdfi_q8_row_fast(ctx, m)) {
        for (int32_t v = 0; v < nrv; ++v) {
            int64_t idx = start[v];
            for (int l = 0; l < QB_LANES; ++l)
                if (mask[v] & (1u << l)) mdfi_q8_store_one(ctx, m, idx++, row[v * QB_LANES + l]);
        }
        return;
    }
#define QB_EPI(MODE, ACT) QB_NAME(epi_row_t)(ctx, m, row, nrv, mask, start, MODE, ACT); break;
    switch (ctx->rounding * 3 + ctx->act) {
    case 0: QB_EPI(MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
    case 1: QB_EPI(MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
    case 2: QB_EPI(MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
    case 3: QB_EPI(MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
    case 4: QB_EPI(MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
    default: QB_EPI(MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)
    }
#undef QB_EPI
}

/* The register tile MRV rows x NRVV vectors. */
#define QB_KERNEL(MRV, NRVV)                                                                      \
QB_ATTR static void QB_NAME(tile_##MRV##x##NRVV)(const q8_ctx *ctx, int32_t m0, int32_t t)        \
{                                                                                                 \
    enum { R = MRV, V = NRVV, G = MRV / 4 };                                                      \
    QB_VEC acc[R][V];                                                                             \
    QB_UNROLL for (int r = 0; r < R; ++r)                                                         \
        QB_UNROLL for (int v = 0; v < V; ++v) acc[r][v] = QB_ZERO();                              \
    const uint8_t *b = mdfi_q8_bbase(ctx, t);                                                     \
    const int8_t *ag[G];                                                                          \
    QB_UNROLL for (int g = 0; g < G; ++g) ag[g] = mdfi_q8_agroup(ctx, m0 + 4 * g);               \
    const int32_t c4 = ctx->c4, taps = ctx->taps;                                                 \
    const size_t bcs = ctx->bcs;                                                                  \
    size_t ak = 0;                                                                                \
    for (int32_t tap = 0; tap < taps; ++tap) {                                                    \
        const uint8_t *bt = b + ctx->toff[tap];                                                   \
        for (int32_t q4 = 0; q4 < c4; ++q4, ak += Q8_PANEL * 4) {                                 \
            const uint8_t *bp = bt + (size_t)q4 * bcs;                                            \
            QB_VEC bv[V];                                                                         \
            QB_UNROLL for (int v = 0; v < V; ++v) bv[v] = QB_LOADU(bp + v * QB_LANES * 4);        \
            QB_UNROLL for (int g = 0; g < G; ++g)                                                 \
                QB_UNROLL for (int r = 0; r < 4; ++r) {                                           \
                    const QB_VEC av = QB_SET1(QB_NAME(ld32)(ag[g] + ak + 4 * r));                 \
                    QB_UNROLL for (int v = 0; v < V; ++v)                                         \
                        acc[4 * g + r][v] = QB_DPBUSD(acc[4 * g + r][v], bv[v], av);              \
                }                                                                                 \
        }                                                                                         \
    }                                                                                             \
    int32_t tmp[R][V * QB_LANES];                                                                 \
    QB_UNROLL for (int r = 0; r < R; ++r)                                                         \
        QB_UNROLL for (int v = 0; v < V; ++v) QB_STOREU(&tmp[r][v * QB_LANES], acc[r][v]);        \
    uint32_t mask[V];                                                                             \
    int64_t start[V];                                                                             \
    const int64_t q0 = (int64_t)t * ctx->nr;                                                      \
    for (int v = 0; v < V; ++v) mask[v] = mdfi_q8_lanes(ctx, q0 + v * QB_LANES, QB_LANES, &start[v]); \
    for (int r = 0; r < R && m0 + r < ctx->m; ++r) QB_NAME(epi_row)(ctx, m0 + r, tmp[r], V, mask, start); \
}
