/* mdfi_fixedpoint_avx512.h -- the AVX-512 twin of mdfi_requantize on sixteen int32 lanes
 * (the definition stays mdfi_fixedpoint.h; the formulas and their exactness proof are those of
 * mdfi_requantize8_i32_avx2 in mdfi_fixedpoint_avx2.h, on twice the lanes).  For exact int32
 * values a and shifts 1 <= s <= 31 (mdfi_rq32_ok):
 *   half_up  (a >> s) + bit(s-1) of a;   truncate  a >> s;
 *   leaky:  max(that, (ah*3277 + ((al*3277) >> 15) + half) >> s)  with a = ah*2^15 + al
 *           (the second term is R(a*3277 / 2^(s+15)), which is >= R(a / 2^s) exactly when a < 0).
 * Tested equal to the scalar function through the convolution epilogue over every int16
 * accumulator (tests/test_kernel_conv.py::test_exhaustive_epilogue, every path).
 * Compile only inside functions whose target includes avx512f,avx512bw,avx512vl. */
#ifndef MDFI_FIXEDPOINT_AVX512_H
#define MDFI_FIXEDPOINT_AVX512_H
#include <immintrin.h>
#include "mdfi_fixedpoint.h"

#define MDFI_AVX512_FN static inline __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq"), always_inline))

typedef struct {
    __m128i s, s1;                /* shift counts s and s - 1                         */
    __m512i half, qmin, qmax;     /* 2^(s-1) (half_up; else 0), saturation bounds     */
} mdfi_rq32_avx512;

MDFI_AVX512_FN void mdfi_rq32_init_avx512(mdfi_rq32_avx512 *q, int32_t shift, int32_t mode, int32_t bits)
{
    q->s = _mm_cvtsi32_si128(shift);
    q->s1 = _mm_cvtsi32_si128(shift - 1);
    q->half = _mm512_set1_epi32(mode == MDFI_ROUND_HALF_UP ? (int32_t)1 << (shift - 1) : 0);
    q->qmin = _mm512_set1_epi32(mdfi_qmin(bits));
    q->qmax = _mm512_set1_epi32(mdfi_qmax(bits));
}

/* The requantize of mdfi_requantize16_i32_avx512 without the final saturation (for callers
 * whose narrowing saturates to the same range: vpmovsdb for 8 bits, vpmovsdw for 16). */
MDFI_AVX512_FN __m512i mdfi_requantize16_i32_noclamp_avx512(__m512i a, const mdfi_rq32_avx512 *q, int32_t mode,
                                                            int32_t act)
{
    const __m512i zero = _mm512_setzero_si512();
    if (act == MDFI_ACT_RELU) a = _mm512_max_epi32(a, zero);
    __m512i r = _mm512_sra_epi32(a, q->s);
    if (mode == MDFI_ROUND_HALF_UP)
        r = _mm512_add_epi32(r, _mm512_and_si512(_mm512_srl_epi32(a, q->s1), _mm512_set1_epi32(1)));
    if (act == MDFI_ACT_LEAKY) {
        /* n = R(a*3277 / 2^(s+15)) for every lane; since rounding is monotonic and
         * a*3277/2^15 <= a exactly when a >= 0, leaky = max(r, n) -- no sign mask, no branch */
        const __m512i k = _mm512_set1_epi32(MDFI_LEAKY_MULT);
        const __m512i hi = _mm512_mullo_epi32(_mm512_srai_epi32(a, MDFI_LEAKY_SHIFT), k);
        const __m512i lo = _mm512_srli_epi32(
            _mm512_mullo_epi32(_mm512_and_si512(a, _mm512_set1_epi32((1 << MDFI_LEAKY_SHIFT) - 1)), k),
            MDFI_LEAKY_SHIFT);
        const __m512i t = _mm512_add_epi32(_mm512_add_epi32(hi, lo), q->half);
        r = _mm512_max_epi32(r, _mm512_sra_epi32(t, q->s));
    }
    return r;
}

/* mdfi_requantize on sixteen exact int32 lanes (shift 1..31). */
MDFI_AVX512_FN __m512i mdfi_requantize16_i32_avx512(__m512i a, const mdfi_rq32_avx512 *q, int32_t mode,
                                                    int32_t act)
{
    const __m512i r = mdfi_requantize16_i32_noclamp_avx512(a, q, mode, act);
    return _mm512_min_epi32(_mm512_max_epi32(r, q->qmin), q->qmax);
}
/* The folded form of mdfi_fixedpoint.h (mdfi_rqf_init): t = a + half exact, shift count s
 * (1..31) in every lane, c and kd broadcast; returns the activated R(a / 2^s), not saturated.
 * The per-lane shift vpsravd is one micro-op on Intel, where vpsrad by an xmm count is two
 * (p0 + p5). */
MDFI_AVX512_FN __m512i mdfi_rqf16v_avx512(__m512i t, __m512i s, __m512i c, __m512i kd, int32_t act)
{
    if (act == MDFI_ACT_LEAKY) {
        /* max(t >> s, n' >> s) == max(t, n') >> s (an arithmetic shift is monotonic): one
         * shift fewer, on the pipes the narrowing shuffles also use on AMD Zen 4 */
        const __m512i hi = _mm512_madd_epi16(t, _mm512_set1_epi32(2 * MDFI_LEAKY_MULT << 16));   /* 6554 th */
        const __m512i u = _mm512_ternarylogic_epi32(t, _mm512_set1_epi32(0xffff), _mm512_set1_epi32(0x18000),
                                                    0x6A);     /* (t & 0xffff) ^ 0x18000: (tl', 1) */
        const __m512i lo = _mm512_srai_epi32(_mm512_madd_epi16(u, kd), 15);
        return _mm512_srav_epi32(_mm512_max_epi32(t, _mm512_add_epi32(_mm512_add_epi32(hi, c), lo)), s);
    }
    const __m512i r = _mm512_srav_epi32(t, s);
    if (act == MDFI_ACT_RELU) return _mm512_max_epi32(r, _mm512_setzero_si512());
    return r;
}
/* The same with the count in the low lane of an xmm (callers that keep it there). */
MDFI_AVX512_FN __m512i mdfi_rqf16_avx512(__m512i t, __m128i s, __m512i c, __m512i kd, int32_t act)
{
    return mdfi_rqf16v_avx512(t, _mm512_broadcastd_epi32(s), c, kd, act);
}
#endif
