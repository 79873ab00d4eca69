/* mdfi_fixedpoint_avx2.h -- the AVX2 twin of mdfi_requantize (mdfi_fixedpoint.h).
 *
 * The definition of every integer operation stays mdfi_fixedpoint.h (and its Python twin
 * mdfi/fixedpoint.py); this header computes mdfi_requantize on four int64 lanes at once,
 * branch-free, for the kernels' epilogues.  It is tested equal to the scalar function over
 * every int16 accumulator and over random 46-bit accumulators with exact rounding ties,
 * every shift in [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT], both rounding modes and all activations
 * (tests/test_kernels.py, tests/test_kernel_conv.py).
 *
 * How the formulas map to AVX2 (no 64-bit arithmetic right shift exists before AVX-512):
 *   floor(x / 2^s) = (x >>> s) | (x < 0 ? ~(~0 >>> s) : 0)     (logical shift + sign fill)
 *   acc * 3277     = lo32(acc)*3277 + (hi32(acc)*3277 << 32)  (exact modulo 2^64, and the
 *                    true product fits int64 because |acc| < 2^48)
 * Compile only inside functions with __attribute__((target("avx2"))), selected at run time. */
#ifndef MDFI_FIXEDPOINT_AVX2_H
#define MDFI_FIXEDPOINT_AVX2_H
#include <immintrin.h>
#include "mdfi_fixedpoint.h"

#define MDFI_AVX2_FN static inline __attribute__((target("avx2"), always_inline))

MDFI_AVX2_FN __m256i mdfi_max64_avx2(__m256i a, __m256i b)
{ return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a)); }
MDFI_AVX2_FN __m256i mdfi_min64_avx2(__m256i a, __m256i b)
{ return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(a, b)); }

/* Per-channel constants of mdfi_requantize4_avx2 (hoisted out of the pixel loop). */
typedef struct {
    int32_t shift, mode, bits, act;
    __m256i s_pos, s_neg, rc_pos, rc_neg, top_pos, top_neg, qmin, qmax;
} mdfi_rq_avx2;

MDFI_AVX2_FN void mdfi_rq_init_avx2(mdfi_rq_avx2 *q, int32_t shift, int32_t mode, int32_t bits,
                                    int32_t act)
{
    q->shift = shift; q->mode = mode; q->bits = bits; q->act = act;
    const int32_t sn = act == MDFI_ACT_LEAKY ? shift + MDFI_LEAKY_SHIFT : shift;
    const int half = mode == MDFI_ROUND_HALF_UP;
    q->s_pos = _mm256_set1_epi64x(shift);
    q->s_neg = _mm256_set1_epi64x(sn);
    q->rc_pos = _mm256_set1_epi64x(half && shift > 0 ? (int64_t)1 << (shift - 1) : 0);
    q->rc_neg = _mm256_set1_epi64x(half && sn > 0 ? (int64_t)1 << (sn - 1) : 0);
    q->top_pos = _mm256_set1_epi64x(shift > 0 ? (int64_t)~(~(uint64_t)0 >> shift) : 0);
    q->top_neg = _mm256_set1_epi64x(sn > 0 ? (int64_t)~(~(uint64_t)0 >> sn) : 0);
    q->qmin = _mm256_set1_epi64x(mdfi_qmin(bits));
    q->qmax = _mm256_set1_epi64x(mdfi_qmax(bits));
}

/* An output zero point zo (mdfi_requantize_zp): the lanes are then clamped to
 * [qmin - zo, qmax - zo]; the caller adds zo to the result. */
MDFI_AVX2_FN void mdfi_rq_zp_avx2(mdfi_rq_avx2 *q, int32_t zo)
{
    q->qmin = _mm256_set1_epi64x((int64_t)mdfi_qmin(q->bits) - zo);
    q->qmax = _mm256_set1_epi64x((int64_t)mdfi_qmax(q->bits) - zo);
}

/* General lanes (any shift): mdfi_requantize on four int64 lanes (|acc| < 2^48), saturated
 * to [qmin, qmax] (mdfi_qmin(bits), mdfi_qmax(bits) less an output zero point). */
MDFI_AVX2_FN __m256i mdfi_requantize4_general_avx2(__m256i acc, int32_t shift, int32_t mode,
                                                    int32_t bits, int32_t act, __m256i qmin, __m256i qmax)
{
    const __m256i zero = _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi64x(1);
    __m256i s = _mm256_set1_epi64x(shift);
    if (act == MDFI_ACT_RELU)
        acc = _mm256_andnot_si256(_mm256_cmpgt_epi64(zero, acc), acc);
    if (act == MDFI_ACT_LEAKY) {
        const __m256i neg = _mm256_cmpgt_epi64(zero, acc);
        const __m256i k = _mm256_set1_epi64x(MDFI_LEAKY_MULT);
        const __m256i lo = _mm256_mul_epu32(acc, k);
        const __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(acc, 32), k);
        const __m256i prod = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
        acc = _mm256_blendv_epi8(acc, prod, neg);
        s = _mm256_add_epi64(s, _mm256_and_si256(neg, _mm256_set1_epi64x(MDFI_LEAKY_SHIFT)));
    }
    const __m256i right = _mm256_cmpgt_epi64(s, zero);
    __m256i x = acc;
    if (mode == MDFI_ROUND_HALF_UP)
        x = _mm256_add_epi64(x, _mm256_and_si256(right, _mm256_sllv_epi64(one, _mm256_sub_epi64(s, one))));
    const __m256i sgn = _mm256_cmpgt_epi64(zero, x);
    const __m256i ones = _mm256_set1_epi64x(-1);
    const __m256i r = _mm256_or_si256(_mm256_srlv_epi64(x, s),
                                      _mm256_andnot_si256(_mm256_srlv_epi64(ones, s), sgn));
    const __m256i lim = _mm256_set1_epi64x((int64_t)1 << bits);
    const __m256i cl = mdfi_min64_avx2(mdfi_max64_avx2(acc, _mm256_sub_epi64(zero, lim)), lim);
    const __m256i l = _mm256_sllv_epi64(cl, _mm256_sub_epi64(zero, s));
    __m256i v = _mm256_blendv_epi8(l, r, right);
    v = mdfi_max64_avx2(v, qmin);
    return mdfi_min64_avx2(v, qmax);
}

/* mdfi_requantize on four int64 lanes; `q` from mdfi_rq_init_avx2 (act, mode constant at
 * the call site let the compiler drop the unused parts). */
MDFI_AVX2_FN __m256i mdfi_requantize4_avx2(__m256i acc, const mdfi_rq_avx2 *q, int32_t mode,
                                            int32_t act)
{
    if (q->shift <= 0)
        return mdfi_requantize4_general_avx2(acc, q->shift, mode, q->bits, act, q->qmin, q->qmax);
    const __m256i zero = _mm256_setzero_si256();
    __m256i x, r;
    if (act == MDFI_ACT_LEAKY) {
        const __m256i neg = _mm256_cmpgt_epi64(zero, acc);
        const __m256i k = _mm256_set1_epi64x(MDFI_LEAKY_MULT);
        const __m256i lo = _mm256_mul_epu32(acc, k);
        const __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(acc, 32), k);
        const __m256i prod = _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32));
        x = _mm256_blendv_epi8(acc, prod, neg);
        if (mode == MDFI_ROUND_HALF_UP) x = _mm256_add_epi64(x, _mm256_blendv_epi8(q->rc_pos, q->rc_neg, neg));
        const __m256i s = _mm256_blendv_epi8(q->s_pos, q->s_neg, neg);
        const __m256i top = _mm256_blendv_epi8(q->top_pos, q->top_neg, neg);
        r = _mm256_or_si256(_mm256_srlv_epi64(x, s), _mm256_and_si256(top, _mm256_cmpgt_epi64(zero, x)));
    } else {
        if (act == MDFI_ACT_RELU) acc = _mm256_andnot_si256(_mm256_cmpgt_epi64(zero, acc), acc);
        x = mode == MDFI_ROUND_HALF_UP ? _mm256_add_epi64(acc, q->rc_pos) : acc;
        r = _mm256_or_si256(_mm256_srlv_epi64(x, q->s_pos), _mm256_and_si256(q->top_pos, _mm256_cmpgt_epi64(zero, x)));
    }
    r = mdfi_max64_avx2(r, q->qmin);
    return mdfi_min64_avx2(r, q->qmax);
}

/* ---- int32 lanes ------------------------------------------------------------------------
 * mdfi_requantize on eight int32 lanes, for accumulators that are exact int32 values (any
 * int32) and shifts 1 <= s <= 31 (mdfi_rq32_ok); every other shift takes the int64 lanes
 * above.  The kernels use it when a layer's bound K*max|w|*max|x| + max|bias| fits int32,
 * i.e. no sum can leave int32.  Exactness, for every int32 a and 1 <= s <= 31:
 *   half_up  floor((a + 2^(s-1)) / 2^s) = (a >> s) + bit(s-1) of a
 *            (a = q*2^s + r with 0 <= r < 2^s; adding 2^(s-1) carries into q iff
 *            r >= 2^(s-1), i.e. iff bit s-1 of r -- which is bit s-1 of a -- is set);
 *            nothing is added to a, so nothing can overflow.
 *   truncate a >> s.
 *   leaky: max(R(a / 2^s), R(a*3277 / 2^(s+15))) -- the second is the larger exactly when
 *            a < 0 (a*3277/2^15 > a, and R is monotonic).  With a = ah*2^15 + al (ah = a >> 15,
 *            0 <= al < 2^15) and the rounding constant 2^(s+14) = 2^(s-1)*2^15 (half_up;
 *            0 for truncate), the nested floors floor(floor(x/2^15)/2^s) = floor(x/2^(s+15))
 *            give  R(...) = (ah*3277 + ((al*3277) >> 15) + 2^(s-1)) >> s,
 *            where |ah*3277| < 2^28, al*3277 < 2^27 and 2^(s-1) <= 2^30: every term and
 *            sum fits int32 (no 64-bit product needed).
 * `>>` is vpsrad, an arithmetic (flooring) shift; saturation clamps with vpmins/vpmaxsd. */
typedef struct {
    __m128i s, s1;                /* shift counts s and s - 1 */
    __m256i half, qmin, qmax;     /* 2^(s-1) (half_up; else 0), saturation bounds */
} mdfi_rq32_avx2;

static inline int mdfi_rq32_ok(int32_t shift) { return shift >= 1 && shift <= 31; }

MDFI_AVX2_FN void mdfi_rq32_init_avx2(mdfi_rq32_avx2 *q, int32_t shift, int32_t mode, int32_t bits)
{
    q->s = _mm_cvtsi32_si128(shift);
    q->s1 = _mm_cvtsi32_si128(shift - 1);
    q->half = _mm256_set1_epi32(mode == MDFI_ROUND_HALF_UP ? (int32_t)1 << (shift - 1) : 0);
    q->qmin = _mm256_set1_epi32(mdfi_qmin(bits));
    q->qmax = _mm256_set1_epi32(mdfi_qmax(bits));
}

/* mdfi_requantize on eight int32 lanes; `q` from mdfi_rq32_init_avx2 with mdfi_rq32_ok(shift). */
MDFI_AVX2_FN __m256i mdfi_requantize8_i32_avx2(__m256i a, const mdfi_rq32_avx2 *q, int32_t mode,
                                               int32_t act)
{
    if (act == MDFI_ACT_RELU) a = _mm256_max_epi32(a, _mm256_setzero_si256());
    __m256i r = _mm256_sra_epi32(a, q->s);
    if (mode == MDFI_ROUND_HALF_UP)
        r = _mm256_add_epi32(r, _mm256_and_si256(_mm256_srl_epi32(a, q->s1), _mm256_set1_epi32(1)));
    if (act == MDFI_ACT_LEAKY) {
        const __m256i k = _mm256_set1_epi32(MDFI_LEAKY_MULT);
        const __m256i hi = _mm256_mullo_epi32(_mm256_srai_epi32(a, MDFI_LEAKY_SHIFT), k);
        const __m256i lo = _mm256_srli_epi32(
            _mm256_mullo_epi32(_mm256_and_si256(a, _mm256_set1_epi32((1 << MDFI_LEAKY_SHIFT) - 1)), k),
            MDFI_LEAKY_SHIFT);
        const __m256i t = _mm256_add_epi32(_mm256_add_epi32(hi, lo), q->half);
        /* n = R(a*3277 / 2^(s+15)) on every lane: rounding is monotonic and a*3277/2^15 <= a
         * exactly when a >= 0, so the leaky result is max(r, n) (no sign blend) */
        r = _mm256_max_epi32(r, _mm256_sra_epi32(t, q->s));
    }
    r = _mm256_max_epi32(r, q->qmin);
    return _mm256_min_epi32(r, q->qmax);
}

/* Eight results (int64 lanes a: 0-3, b: 4-7, each in int16 range) as 8 x int32. */
MDFI_AVX2_FN __m256i mdfi_pack64x8_avx2(__m256i a, __m256i b)
{
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    const __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(a, idx));
    const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, idx));
    return _mm256_set_m128i(hi, lo);
}

/* ---- eight exact int32 values, any shift ------------------------------------------------
 * mdfi_requantize on eight int32 lanes holding exact values: the int32 lanes when the shift
 * allows (mdfi_rq32_ok), else widened to the int64 lanes.  Used wherever a kernel holds
 * eight int32 sums (convolution epilogue, route alignment, shortcut).
 *
 * Shifts s <= 0 without leaky (a shortcut whose output keeps its inputs' format has s = 0)
 * stay on int32 lanes too: mdfi_requantize clamps a to +-2^bits, multiplies by 2^-s and
 * saturates; here a is clamped to +-2^15 and shifted left by min(-s, 15).  Both give a*2^-s
 * when that lies inside the output range (then |a| < 2^15, neither clamp acts, and a != 0
 * implies -s < 15), and otherwise the saturation bound of a's sign (a nonzero value shifted
 * by 15 exceeds every 16-bit range); no int32 overflow (2^15 * 2^15 = 2^30). */
typedef struct {
    int use32;                    /* int32 lanes: shift 1..31, or shift <= 0 without leaky */
    int left;                     /* shift <= 0 (and not leaky): clamp and shift left      */
    __m128i lsh;                  /* min(-shift, 15)                                        */
    mdfi_rq32_avx2 q32;
    mdfi_rq_avx2 q64;
} mdfi_rq8_avx2;

MDFI_AVX2_FN void mdfi_rq8_init_avx2(mdfi_rq8_avx2 *k, int32_t shift, int32_t mode, int32_t bits,
                                     int32_t act)
{
    k->left = shift <= 0 && act != MDFI_ACT_LEAKY;
    k->use32 = mdfi_rq32_ok(shift) || k->left;
    k->lsh = _mm_cvtsi32_si128(k->left ? (-shift < 15 ? -shift : 15) : 0);
    mdfi_rq32_init_avx2(&k->q32, k->left || !k->use32 ? 1 : shift, mode, bits);  /* qmin/qmax always */
    mdfi_rq_init_avx2(&k->q64, shift, mode, bits, act);   /* always: keeps k fully defined */
}

/* An output zero point zo: mdfi_requantize8_avx2 then clamps to [qmin - zo, qmax - zo] (the
 * caller adds zo).  Shifts <= 0 then take the int64 lanes: the int32 lanes' clamp to +-2^15
 * is exact only for the range [qmin, qmax] of at most 16 bits, not for a shifted one. */
MDFI_AVX2_FN void mdfi_rq8_zp_avx2(mdfi_rq8_avx2 *k, int32_t bits, int32_t zo)
{
    if (k->left) {
        k->left = 0;
        k->use32 = 0;
    }
    k->q32.qmin = _mm256_set1_epi32(mdfi_qmin(bits) - zo);
    k->q32.qmax = _mm256_set1_epi32(mdfi_qmax(bits) - zo);
    mdfi_rq_zp_avx2(&k->q64, zo);
}

MDFI_AVX2_FN __m256i mdfi_requantize8_avx2(__m256i v, const mdfi_rq8_avx2 *k, int32_t mode, int32_t act)
{
    if (k->left) {
        if (act == MDFI_ACT_RELU) v = _mm256_max_epi32(v, _mm256_setzero_si256());
        const __m256i lim = _mm256_set1_epi32(1 << 15);
        v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_sub_epi32(_mm256_setzero_si256(), lim)), lim);
        v = _mm256_sll_epi32(v, k->lsh);
        return _mm256_min_epi32(_mm256_max_epi32(v, k->q32.qmin), k->q32.qmax);
    }
    if (k->use32) return mdfi_requantize8_i32_avx2(v, &k->q32, mode, act);
    const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
    const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1));
    return mdfi_pack64x8_avx2(mdfi_requantize4_avx2(lo, &k->q64, mode, act),
                              mdfi_requantize4_avx2(hi, &k->q64, mode, act));
}
/* The folded form of mdfi_fixedpoint.h (mdfi_rqf_init) on eight int32 lanes: t = a + half
 * exact, shift count s (1..31) in every lane; returns the activated R(a / 2^s), not saturated.
 * The per-lane shift vpsravd is one micro-op on Intel, where vpsrad by an xmm count is two. */
MDFI_AVX2_FN __m256i mdfi_rqf8v_avx2(__m256i t, __m256i s, __m256i c, __m256i kd, int32_t act)
{
    if (act == MDFI_ACT_LEAKY) {      /* max(t >> s, n' >> s) == max(t, n') >> s: one shift */
        const __m256i hi = _mm256_madd_epi16(t, _mm256_set1_epi32(2 * MDFI_LEAKY_MULT << 16));   /* 6554 th */
        const __m256i u = _mm256_xor_si256(_mm256_and_si256(t, _mm256_set1_epi32(0xffff)), _mm256_set1_epi32(0x18000));
        const __m256i lo = _mm256_srai_epi32(_mm256_madd_epi16(u, kd), 15);
        return _mm256_srav_epi32(_mm256_max_epi32(t, _mm256_add_epi32(_mm256_add_epi32(hi, c), lo)), s);
    }
    const __m256i r = _mm256_srav_epi32(t, s);
    if (act == MDFI_ACT_RELU) return _mm256_max_epi32(r, _mm256_setzero_si256());
    return r;
}
/* The same with the count in the low lane of an xmm (callers that keep it there). */
MDFI_AVX2_FN __m256i mdfi_rqf8_avx2(__m256i t, __m128i s, __m256i c, __m256i kd, int32_t act)
{
    return mdfi_rqf8v_avx2(t, _mm256_broadcastd_epi32(s), c, kd, act);
}
#endif
