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
/* Included once per target: drop the previous inclusion's own macros first. */
#undef QB_VEC
#undef QB_LANES
#undef QB_LOADU
#undef QB_SET1
#undef QB_ZERO
#undef QB_ADD
#undef QB_STOREU
#undef QB_KERNEL
#undef QB_UNROLL
#undef QB_EPI_PART

#if QB_WIDTH == 512
#define QB_VEC __m512i
#define QB_LANES 16
#define QB_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define QB_SET1(v) _mm512_set1_epi32(v)
#define QB_ZERO() _mm512_setzero_si512()
#define QB_ADD(a, b) _mm512_add_epi32(a, b)
#define QB_STOREU(p, v) _mm512_storeu_si512((void *)(p), v)
#else
#define QB_VEC __m256i
#define QB_LANES 8
#define QB_LOADU(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define QB_SET1(v) _mm256_set1_epi32(v)
#define QB_ZERO() _mm256_setzero_si256()
#define QB_ADD(a, b) _mm256_add_epi32(a, b)
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

/* The epilogue, from registers (mdfi_fixedpoint.h, folded form): for a fast row (q8_rowc)
 * t = acc + bq is the exact S + bias + half, requantized on int32 lanes, saturated by the
 * narrowing (or clamped first), stored to the output lanes only (vinfo).  Slow rows go through
 * the exact scalar store.  With a fused shortcut (ctx->res_fast, zmm only) the stored value a
 * and b give a * 2^da + b * 2^db (|.| <= 2^24), requantized the same way (or, for shifts
 * <= 0, clamped to +-2^15 and shifted left: see mdfi_requantize8_avx2). */
typedef struct {
    QB_VEC bq, c, kd, s;              /* s: the shift count in every lane (mdfi_rqf16v_avx512) */
} QB_NAME(rowk);

#if QB_WIDTH == 512
/* mdfi_rqf16v_avx512 with the leaky product's constant folded in by vpdpwssd (AVX512-VNNI):
 * c + 6554 th in one instruction instead of vpmaddwd + vpaddd (the same int32 lanes: both
 * wrap, and |c + 6554 th| < 2^31 by the bounds in mdfi_fixedpoint.h). */
/* The constants come from memory (mdfi_q8_rqk: loads, or memory operands) rather than a
 * general register broadcast: under the register pressure of a tile's epilogue the compiler
 * re-creates known constants per row, and vpbroadcastd zmm, r32 costs vector pipe slots that
 * a load does not (a writable global, so the compiler cannot see its values). */
QB_ATTR static inline __attribute__((always_inline)) __m512i
QB_NAME(rqf)(__m512i t, __m512i s, __m512i c, __m512i kd, int32_t act)
{
    if (act == MDFI_ACT_LEAKY) {
        const __m512i hic = _mm512_dpwssd_epi32(c, t, _mm512_load_si512((const void *)mdfi_q8_rqk[2]));
        const __m512i u = _mm512_ternarylogic_epi32(t, _mm512_load_si512((const void *)mdfi_q8_rqk[0]),
                                                    _mm512_load_si512((const void *)mdfi_q8_rqk[1]), 0x6A);
        const __m512i lo = _mm512_srai_epi32(_mm512_madd_epi16(u, kd), 15);
        return _mm512_srav_epi32(_mm512_max_epi32(t, _mm512_add_epi32(hic, lo)), s);
    }
    return mdfi_rqf16v_avx512(t, s, c, kd, act);
}

QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(res_vec)(const q8_ctx *ctx, size_t at, __m512i a, __mmask16 st)
{
    const mdfi_conv_residual *rs = ctx->res;
    const __m512i b = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(st, (const int8_t *)rs->b + at));
    __m512i v = _mm512_add_epi32(_mm512_sll_epi32(a, _mm_cvtsi32_si128(rs->da)),
                                 _mm512_sll_epi32(b, _mm_cvtsi32_si128(rs->db)));
    if (ctx->res_left) {
        if (rs->act == MDFI_ACT_RELU) v = _mm512_max_epi32(v, _mm512_setzero_si512());
        v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(-(1 << 15))), _mm512_set1_epi32(1 << 15));
        v = _mm512_sll_epi32(v, _mm_cvtsi32_si128(ctx->res_lsh));
    } else {
        const __m512i t = _mm512_add_epi32(v, _mm512_set1_epi32(ctx->resk.half));
        const __m128i s = _mm_cvtsi32_si128(rs->shift);
        const __m512i c = _mm512_set1_epi32(ctx->resk.c), kd = _mm512_set1_epi32(ctx->resk.kd);
        v = rs->act == MDFI_ACT_LEAKY ? mdfi_rqf16_avx512(t, s, c, kd, MDFI_ACT_LEAKY)
          : rs->act == MDFI_ACT_RELU ? mdfi_rqf16_avx512(t, s, c, kd, MDFI_ACT_RELU)
                                     : mdfi_rqf16_avx512(t, s, c, kd, MDFI_ACT_LINEAR);
    }
    v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(mdfi_qmin(rs->bits))),
                         _mm512_set1_epi32(mdfi_qmax(rs->bits)));
    if (rs->out_type == MDFI_CONV_S8) _mm_mask_storeu_epi8((int8_t *)rs->out + at, st, _mm512_cvtepi32_epi8(v));
    else _mm256_mask_storeu_epi16((int16_t *)rs->out + at, st, _mm512_cvtepi32_epi16(v));
}
#endif

QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(epi_vec)(const q8_ctx *ctx, size_t o, QB_VEC t, const QB_NAME(rowk) *k, uint64_t info, const int32_t act,
                 const int withres)
{
    const uint32_t mask = (uint32_t)(info >> 48);
    if (mask == 0) return;
    const size_t at = o + (size_t)(info & (((uint64_t)1 << 48) - 1));
#if QB_WIDTH == 512
    __m512i r = QB_NAME(rqf)(t, k->s, k->c, k->kd, act);
    __mmask16 st = 0xffff;
    if (mask != 0xffffu) {
        r = _mm512_maskz_compress_epi32((__mmask16)mask, r);
        st = (__mmask16)((1u << __builtin_popcount(mask)) - 1u);
    }
    if (ctx->clamp)               /* [qmin - zo, qmax - zo], then + zo (the output zero point) */
        r = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(ctx->zlo)),
                                              _mm512_set1_epi32(ctx->zhi)), _mm512_set1_epi32(ctx->zo));
    else if (ctx->addz)           /* + zo, saturated by the narrowing */
        r = _mm512_add_epi32(r, _mm512_set1_epi32(ctx->zo));
    if (ctx->otype == MDFI_CONV_S8) {
        if (st == 0xffff) _mm_storeu_si128((__m128i *)(void *)((int8_t *)ctx->out + at), _mm512_cvtsepi32_epi8(r));
        else _mm_mask_storeu_epi8((int8_t *)ctx->out + at, st, _mm512_cvtsepi32_epi8(r));
    } else {
        if (st == 0xffff) _mm256_storeu_si256((__m256i *)(void *)((int16_t *)ctx->out + at), _mm512_cvtsepi32_epi16(r));
        else _mm256_mask_storeu_epi16((int16_t *)ctx->out + at, st, _mm512_cvtsepi32_epi16(r));
    }
    if (withres && ctx->res_fast) QB_NAME(res_vec)(ctx, at, r, st);
#else
    (void)withres;                        /* the fused shortcut runs in the zmm epilogue only */
    __m256i r = mdfi_rqf8v_avx2(t, k->s, k->c, k->kd, act);
    if (ctx->clamp)               /* [qmin - zo, qmax - zo], then + zo (the output zero point) */
        r = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(ctx->zlo)),
                                              _mm256_set1_epi32(ctx->zhi)), _mm256_set1_epi32(ctx->zo));
    else if (ctx->addz)           /* + zo, saturated by the narrowing */
        r = _mm256_add_epi32(r, _mm256_set1_epi32(ctx->zo));
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    if (mask == 0xffu) {
        if (ctx->otype == MDFI_CONV_S8) _mm_storel_epi64((__m128i *)(void *)((int8_t *)ctx->out + at), _mm_packs_epi16(w, w));
        else _mm_storeu_si128((__m128i *)(void *)((int16_t *)ctx->out + at), w);
    } else {
        /* without the clamp, the narrowing saturates: int32 -> int16 (w), int16 -> int8 (tb) */
        int16_t tv[8];
        int8_t tb[16];
        _mm_storeu_si128((__m128i *)(void *)tv, w);
        _mm_storeu_si128((__m128i *)(void *)tb, _mm_packs_epi16(w, w));
        size_t kk = at;
        for (int l = 0; l < 8; ++l)
            if (mask & (1u << l)) {
                if (ctx->otype == MDFI_CONV_S8) ((int8_t *)ctx->out)[kk++] = tb[l];
                else ((int16_t *)ctx->out)[kk++] = tv[l];
            }
    }
#endif
}

/* A slow row (its sums are raw: bq = 0): the exact scalar store of every output lane. */
QB_ATTR static void QB_NAME(epi_slow)(const q8_ctx *ctx, int32_t m, const int32_t *row, int32_t nrv,
                                      const uint64_t *vi)
{
    for (int32_t v = 0; v < nrv; ++v) {
        const uint32_t mask = (uint32_t)(vi[v] >> 48);
        int64_t idx = (int64_t)(vi[v] & (((uint64_t)1 << 48) - 1));
        for (int l = 0; l < QB_LANES; ++l)
            if (mask & (1u << l)) mdfi_q8_store_one(ctx, m, idx++, row[v * QB_LANES + l]);
    }
}

/* The epilogue of rows m0 .. m0+R-1 whose sums are in tmp [R][V * LANES] (the register tiles
 * store their accumulators there, to L1: a few stores per vector, and a compact epilogue).
 * addbq: the sums are raw (AMX), else they started at bq (the register tiles). */
QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(epi_tmp_t)(const q8_ctx *ctx, int32_t m0, int32_t R, int32_t V, const int32_t *tmp, const uint64_t *vi,
                   const int32_t act, const int addbq)
{
    for (int32_t r = 0; r < R; ++r) {
        const int32_t m = m0 + r;
        if (m >= ctx->m) break;
        const int32_t *row = tmp + (size_t)r * (size_t)V * QB_LANES;
        const q8_rowc *rc = ctx->rowc + m;
        if (rc->s == 0) {
            QB_NAME(epi_slow)(ctx, m, row, V, vi);
            continue;
        }
        QB_NAME(rowk) k;
        k.bq = QB_SET1(rc->bq);
        k.c = QB_SET1(rc->c);
        k.kd = QB_SET1(rc->kd);
        k.s = QB_SET1(rc->s);
        const size_t o = (size_t)m * (size_t)ctx->n;
        for (int32_t v = 0; v < V; ++v) {
            QB_VEC t = QB_LOADU(row + v * QB_LANES);
            if (addbq) t = QB_ADD(t, k.bq);
            QB_NAME(epi_vec)(ctx, o, t, &k, vi[v], act, 1);
        }
    }
}

QB_ATTR static void QB_NAME(epi_tmp)(const q8_ctx *ctx, int32_t m0, int32_t R, int32_t V, const int32_t *tmp,
                                     const uint64_t *vi, const int addbq)
{
    if (addbq) {
        if (ctx->act == MDFI_ACT_LEAKY) QB_NAME(epi_tmp_t)(ctx, m0, R, V, tmp, vi, MDFI_ACT_LEAKY, 1);
        else if (ctx->act == MDFI_ACT_RELU) QB_NAME(epi_tmp_t)(ctx, m0, R, V, tmp, vi, MDFI_ACT_RELU, 1);
        else QB_NAME(epi_tmp_t)(ctx, m0, R, V, tmp, vi, MDFI_ACT_LINEAR, 1);
    } else {
        if (ctx->act == MDFI_ACT_LEAKY) QB_NAME(epi_tmp_t)(ctx, m0, R, V, tmp, vi, MDFI_ACT_LEAKY, 0);
        else if (ctx->act == MDFI_ACT_RELU) QB_NAME(epi_tmp_t)(ctx, m0, R, V, tmp, vi, MDFI_ACT_RELU, 0);
        else QB_NAME(epi_tmp_t)(ctx, m0, R, V, tmp, vi, MDFI_ACT_LINEAR, 0);
    }
}

/* The epilogue of one fast row straight from the accumulator registers (no fused shortcut):
 * the same per-vector code as epi_tmp_t without the round trip through L1. */
QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(epi_row_regs)(const q8_ctx *ctx, int32_t m, const QB_VEC *accr, int32_t V, const uint64_t *vi,
                      const int32_t act)
{
    const q8_rowc *rc = ctx->rowc + m;
    QB_NAME(rowk) k;
    k.c = QB_SET1(rc->c);
    k.kd = QB_SET1(rc->kd);
    k.s = QB_SET1(rc->s);
    const size_t o = (size_t)m * (size_t)ctx->n;
    QB_UNROLL for (int32_t v = 0; v < V; ++v) QB_NAME(epi_vec)(ctx, o, accr[v], &k, vi[v], act, 0);
}

/* Is every lane of the tile's V vectors an output, the outputs consecutive?  (Valid lanes
 * map to consecutive output indices and a vector holds at most LANES of them, so a full first
 * vector and a last one LANES*(V-1) outputs further imply it for every vector between.) */
static inline int QB_NAME(tile_full)(const uint64_t *vi, int32_t V)
{
    const uint64_t full = (uint64_t)((1u << QB_LANES) - 1u) << 48;
    return (vi[0] & ~(((uint64_t)1 << 48) - 1)) == full && vi[V - 1] == vi[0] + (uint64_t)(QB_LANES * (V - 1));
}

/* The epilogue of one fast row of a full tile (tile_full) with 8-bit output and no clamp (the
 * narrowing saturates to the output range; an output zero point zo is added before it,
 * sat(r + zo), when ctx->addz): no lane masks, no per-vector branches. */
QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(epi_row_full8)(const q8_ctx *ctx, int32_t m, const QB_VEC *accr, int32_t V, int8_t *dst,
                       const int32_t act)
{
    const q8_rowc *rc = ctx->rowc + m;
    const QB_VEC c = QB_SET1(rc->c), kd = QB_SET1(rc->kd), s = QB_SET1(rc->s);
    const QB_VEC zo = QB_SET1(ctx->addz ? ctx->zo : 0);
    if (ctx->addz) {
        QB_UNROLL for (int32_t v = 0; v < V; ++v) {
#if QB_WIDTH == 512
            const __m512i r = _mm512_add_epi32(QB_NAME(rqf)(accr[v], s, c, kd, act), zo);
            _mm_storeu_si128((__m128i *)(void *)(dst + 16 * v), _mm512_cvtsepi32_epi8(r));
#else
            const __m256i r = _mm256_add_epi32(mdfi_rqf8v_avx2(accr[v], s, c, kd, act), zo);
            const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
            _mm_storel_epi64((__m128i *)(void *)(dst + 8 * v), _mm_packs_epi16(w, w));
#endif
        }
        return;
    }
    QB_UNROLL for (int32_t v = 0; v < V; ++v) {
#if QB_WIDTH == 512
        const __m512i r = QB_NAME(rqf)(accr[v], s, c, kd, act);
        _mm_storeu_si128((__m128i *)(void *)(dst + 16 * v), _mm512_cvtsepi32_epi8(r));
#else
        const __m256i r = mdfi_rqf8v_avx2(accr[v], s, c, kd, act);
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(void *)(dst + 8 * v), _mm_packs_epi16(w, w));
#endif
    }
}

#if QB_WIDTH == 512
/* The epilogue of one fast row of a tile that is not full (a direct-mode tile across a row's
 * junk columns, or the last tile), 8-bit output, no clamp (as epi_row_full8): every vector
 * compressed to its output lanes and stored under the mask of their count, without a branch
 * on the lane mask, whose pattern moves from tile to tile (through epi_row_regs such a tile
 * cost about 1.9x a full one; docs/performance.md, round 14).  A vector without output lanes
 * stores nothing (mask 0; its start may be N). */
QB_ATTR static inline __attribute__((always_inline)) void
QB_NAME(epi_row_part8)(const q8_ctx *ctx, int32_t m, const __m512i *accr, int32_t V, const uint64_t *vi,
                       const int32_t act)
{
    const q8_rowc *rc = ctx->rowc + m;
    const __m512i c = _mm512_set1_epi32(rc->c), kd = _mm512_set1_epi32(rc->kd), s = _mm512_set1_epi32(rc->s);
    const __m512i zo = _mm512_set1_epi32(ctx->addz ? ctx->zo : 0);
    int8_t *orow = (int8_t *)ctx->out + (size_t)m * (size_t)ctx->n;
    const int addz = ctx->addz;
    QB_UNROLL for (int32_t v = 0; v < V; ++v) {
        const uint64_t info = vi[v];
        const __mmask16 mask = (__mmask16)(info >> 48);
        __m512i r = QB_NAME(rqf)(accr[v], s, c, kd, act);
        if (addz) r = _mm512_add_epi32(r, zo);
        r = _mm512_maskz_compress_epi32(mask, r);
        const __mmask16 st = (__mmask16)((1u << __builtin_popcount((uint32_t)mask)) - 1u);
        _mm_mask_storeu_epi8(orow + (size_t)(info & (((uint64_t)1 << 48) - 1)), st, _mm512_cvtsepi32_epi8(r));
    }
}
#endif

/* A tile that is not full, 8-bit output without clamp: the branch-free rows (zmm only). */
#if QB_WIDTH == 512
#define QB_EPI_PART(R, V)                                                                         \
        if (ctx->otype == MDFI_CONV_S8 && !ctx->clamp) {                                          \
            QB_UNROLL for (int r = 0; r < R; ++r)                                                 \
                if (m0 + r < ctx->m) QB_NAME(epi_row_part8)(ctx, m0 + r, acc[r], V, vi, act);    \
            return;                                                                               \
        }
#else
#define QB_EPI_PART(R, V)
#endif

/* The register tile MRV rows x NRVV vectors: the reduction (tile_..._t, inlined once per
 * activation), then the epilogue from the registers when every row is fast and no shortcut
 * is fused (ctx->regs_epi), else through tmp. */
#define QB_KERNEL(MRV, NRVV)                                                                      \
QB_ATTR static inline __attribute__((always_inline)) void                                         \
QB_NAME(tile_##MRV##x##NRVV##_t)(const q8_ctx *ctx, int32_t m0, int32_t t, const int32_t act)    \
{                                                                                                 \
    enum { R = MRV, V = NRVV, G = MRV / 4 };                                                      \
    QB_VEC acc[R][V];                                                                             \
    QB_UNROLL for (int r = 0; r < R; ++r) {                                                       \
        const QB_VEC bq0 = QB_SET1(ctx->rowc[m0 + r].bq);      /* rows >= M: 0 (padding) */      \
        QB_UNROLL for (int v = 0; v < V; ++v) acc[r][v] = bq0;                                    \
    }                                                                                             \
    const uint8_t *b = mdfi_q8_bbase(ctx, t);                                                     \
    const int8_t *ag[G];                                                                          \
    QB_UNROLL for (int g = 0; g < G; ++g) ag[g] = mdfi_q8_agroup(ctx, m0 + 4 * g);               \
    /* the next panel's weights (used after this row tile), fetched into L2 on the way */        \
    const int8_t *an = mdfi_q8_agroup(ctx, m0 + Q8_PANEL);    /* past the end: panel 0 */       \
    const int32_t c4 = ctx->c4, taps = ctx->taps;                                                 \
    const size_t bcs = ctx->bcs;                                                                  \
    size_t ak = 0;                                                                                \
    for (int32_t tap = 0; tap < taps; ++tap) {                                                    \
        const uint8_t *bt = b + ctx->toff[tap];                                                   \
        for (int32_t q4 = 0; q4 < c4; ++q4, ak += Q8_PANEL * 4) {                                 \
            const uint8_t *bp = bt + (size_t)q4 * bcs;                                            \
            _mm_prefetch((const char *)(an + ak), _MM_HINT_T1);                                   \
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
    const uint64_t *vi = ctx->vinfo + (size_t)t * V;                                              \
    if (ctx->regs_epi) {                                                                          \
        if (ctx->otype == MDFI_CONV_S8 && !ctx->clamp && QB_NAME(tile_full)(vi, V)) {             \
            int8_t *dst = (int8_t *)ctx->out + (size_t)m0 * (size_t)ctx->n +                      \
                          (size_t)(vi[0] & (((uint64_t)1 << 48) - 1));                            \
            QB_UNROLL for (int r = 0; r < R; ++r)                                                 \
                if (m0 + r < ctx->m)                                                              \
                    QB_NAME(epi_row_full8)(ctx, m0 + r, acc[r], V, dst + (size_t)r * (size_t)ctx->n, act); \
            return;                                                                               \
        }                                                                                         \
        QB_EPI_PART(R, V)                                                                         \
        QB_UNROLL for (int r = 0; r < R; ++r)                                                     \
            if (m0 + r < ctx->m) QB_NAME(epi_row_regs)(ctx, m0 + r, acc[r], V, vi, act);         \
        return;                                                                                   \
    }                                                                                             \
    int32_t tmp[R][V * QB_LANES] __attribute__((aligned(64)));                                    \
    QB_UNROLL for (int r = 0; r < R; ++r)                                                         \
        QB_UNROLL for (int v = 0; v < V; ++v) QB_STOREU(&tmp[r][v * QB_LANES], acc[r][v]);        \
    QB_NAME(epi_tmp)(ctx, m0, R, V, &tmp[0][0], vi, 0);                                           \
}                                                                                                 \
QB_ATTR static void QB_NAME(tile_##MRV##x##NRVV)(const q8_ctx *ctx, int32_t m0, int32_t t)        \
{                                                                                                 \
    if (ctx->act == MDFI_ACT_LEAKY) QB_NAME(tile_##MRV##x##NRVV##_t)(ctx, m0, t, MDFI_ACT_LEAKY); \
    else if (ctx->act == MDFI_ACT_RELU) QB_NAME(tile_##MRV##x##NRVV##_t)(ctx, m0, t, MDFI_ACT_RELU); \
    else QB_NAME(tile_##MRV##x##NRVV##_t)(ctx, m0, t, MDFI_ACT_LINEAR);                          \
}
