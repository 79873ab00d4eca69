/* mdfi_fixedpoint.h -- MDFI's integer arithmetic, written once (C twin of mdfi/fixedpoint.py).
 *
 * Every kernel in csrc/ calls these helpers instead of shifting, rounding or clamping by
 * hand.  Formulas and proofs: docs/fixed-point.md (section numbers below).
 *
 * Format Q(bits, frac): integer q means q * 2^-frac.  Signed range
 * [-2^(bits-1), 2^(bits-1)-1] (hls4ml ap_fixed<bits, bits-frac>).
 *
 * Rounding of x / 2^s (s > 0), section 2:
 *   MDFI_ROUND_HALF_UP  (AP_RND): floor(x/2^s + 1/2) = floor((x + 2^(s-1)) / 2^s)
 *                        ties toward +inf for every sign: -2.5 -> -2, 2.5 -> 3
 *   MDFI_ROUND_TRUNCATE (AP_TRN): floor(x/2^s), toward -inf: -2.5 -> -3
 * Saturation (AP_SAT) clamps to the output format's range.
 *
 * Portability: C11 leaves >> of a negative value implementation-defined and << of a
 * negative value undefined, so floor division is written with ~ (exact for every int64),
 * and left shifts are multiplications by a power of two whose operands are bounded first.
 * Plain C99/C11, no floating point, no allocation.
 */
#ifndef MDFI_FIXEDPOINT_H
#define MDFI_FIXEDPOINT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { MDFI_ROUND_HALF_UP = 0, MDFI_ROUND_TRUNCATE = 1 };
enum { MDFI_ACT_LINEAR = 0, MDFI_ACT_LEAKY = 1, MDFI_ACT_RELU = 2 };

/* Leaky slope 0.1 ~= 3277 / 2^15 = 0.100006103515625 (section 4). */
#define MDFI_LEAKY_MULT  3277
#define MDFI_LEAKY_SHIFT 15

/* Every requantizing shift lies in [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT] (checked when a model
 * is loaded); with the leaky shift added it stays <= 62.  Accumulators are at most
 * MDFI_MAX_ACC_BITS wide, so |acc * 3277| < 2^60 and x + 2^(s-1) never overflows int64. */
#define MDFI_MIN_SHIFT (-31)
#define MDFI_MAX_SHIFT 47
#define MDFI_MAX_ACC_BITS 48

/* Logistic table outputs: unsigned Q1.15 (1.0 == 32768); exp table: unsigned Q15.16 in int32. */
#define MDFI_PROB_FRAC 15
#define MDFI_EXP_FRAC  16

static inline int32_t mdfi_qmin(int32_t bits) { return -(int32_t)(((int64_t)1) << (bits - 1)); }
static inline int32_t mdfi_qmax(int32_t bits) { return (int32_t)((((int64_t)1) << (bits - 1)) - 1); }

/* floor(x / 2^s) for 0 <= s <= 63, exact for every int64 x. */
static inline int64_t mdfi_floor_shift(int64_t x, int32_t s)
{
    return (x >= 0) ? (int64_t)((uint64_t)x >> s) : ~(int64_t)((uint64_t)~x >> s);
}

/* R(x / 2^s): s > 0 rounds with `mode`; s <= 0 multiplies by 2^-s (caller bounds x). */
static inline int64_t mdfi_shift_round(int64_t x, int32_t s, int32_t mode)
{
    if (s > 0) {
        if (mode == MDFI_ROUND_HALF_UP) x += ((int64_t)1) << (s - 1);
        return mdfi_floor_shift(x, s);
    }
    return x * (((int64_t)1) << (-s));
}

/* floor(n / d) for d > 0 (mathematical floor division; C's `/` truncates toward 0). */
static inline int64_t mdfi_floor_div(int64_t n, int64_t d)
{
    const int64_t q = n / d;
    return (n % d != 0 && n < 0) ? q - 1 : q;
}

/* R(num / den) for den > 0 (mdfi.fixedpoint.div_round, the average pool, section 9.1):
 *   half_up:  floor((2 num + den) / (2 den))   (ties toward +infinity for every sign)
 *   truncate: floor(num / den)
 * The caller bounds |2 num + den| < 2^63. */
static inline int64_t mdfi_div_round(int64_t num, int64_t den, int32_t mode)
{
    if (mode == MDFI_ROUND_HALF_UP) return mdfi_floor_div(2 * num + den, 2 * den);
    return mdfi_floor_div(num, den);
}

/* Clamp to a signed `bits`-wide integer (AP_SAT). */
static inline int32_t mdfi_saturate(int64_t x, int32_t bits)
{
    const int64_t lo = mdfi_qmin(bits), hi = mdfi_qmax(bits);
    return (int32_t)(x < lo ? lo : (x > hi ? hi : x));
}

/* The fused requantize / activation / saturate step (sections 3-4), with an output zero point
 * (value of a code q: (q - zero) * 2^-frac; section 1.1):
 *   linear: sat(R(acc / 2^s) + zero)
 *   relu:   sat(R(max(acc,0) / 2^s) + zero)
 *   leaky:  acc >= 0: sat(R(acc / 2^s) + zero);  acc < 0: sat(R(acc * 3277 / 2^(s+15)) + zero)
 * |acc| < 2^47 (accumulator bound), so acc * 3277 < 2^59 fits int64.  For a left shift the
 * accumulator is first clamped to +-2^bits, beyond which the result saturates anyway (also
 * after adding the zero point: zero in [qmin(bits), qmax(bits)], |zero| <= 2^(bits-1)). */
static inline int32_t mdfi_requantize_zp(int64_t acc, int32_t shift, int32_t mode, int32_t bits, int32_t act,
                                         int32_t zero)
{
    if (act == MDFI_ACT_RELU && acc < 0) acc = 0;
    if (act == MDFI_ACT_LEAKY && acc < 0) {
        acc *= MDFI_LEAKY_MULT;
        shift += MDFI_LEAKY_SHIFT;
    }
    if (shift < 0) {
        const int64_t lim = ((int64_t)1) << bits;
        acc = acc < -lim ? -lim : (acc > lim ? lim : acc);
    }
    return mdfi_saturate(mdfi_shift_round(acc, shift, mode) + zero, bits);
}

/* Without a zero point (every zero-free format). */
static inline int32_t mdfi_requantize(int64_t acc, int32_t shift, int32_t mode, int32_t bits,
                                      int32_t act)
{
    return mdfi_requantize_zp(acc, shift, mode, bits, act, 0);
}

/* ---- the folded int32-lane form (SIMD epilogues) -----------------------------------------
 * For a shift 1 <= s <= 31 and an exact int32 t = a + half, where half = 2^(s-1) (half_up) or
 * 0 (truncate) -- the caller adds half to the bias once per channel, and checks that
 * |a| + half fits int32 --, the SIMD twins (mdfi_rqf16_avx512, mdfi_rqf8_avx2) compute
 * mdfi_requantize(a, s, mode, bits, act) before saturation with int32 operations only:
 *   R(a / 2^s) = t >> s                                         (floor((a + half) / 2^s))
 *   relu:  max(t >> s, 0)            (R is monotonic and R(0) = 0, so R(max(a,0)/2^s) = max(R(a/2^s), 0))
 *   leaky: max(t >> s, n), n = R(3277 a / 2^(s+15)) = floor((3277 a + H) / 2^(s+15)) with
 *          H = 2^(s+14) (half_up) or 0.  With t = th*2^16 + tl (th = t >> 16, 0 <= tl < 2^16,
 *          tl' = tl - 2^15 in [-2^15, 2^15)) and E = H - 3277 half = 29491*2^(s-1) (half_up)
 *          or 0:  3277 a + H = 3277 t + E = 2^15 (6554 th + c) + (3277 tl' + d), where
 *          E + 3277*2^15 = c*2^15 + d (0 <= d < 2^15), so by nested floors
 *              n = ((6554 th + c) + ((3277 tl' + d) >> 15)) >> s             (exact)
 *          |6554 th| <= 6554*2^15 < 2^28, 3277 <= c < 2^30, |(3277 tl' + d) >> 15| <= 3277:
 *          no int32 overflow.  th and tl' are int16 halves of t (tl' = low half XOR 0x8000), so
 *          both products are vpmaddwd lanes: (tl, th) . (0, 6554) and (tl', 1) . (3277, d).
 *          max(r, n) is the leaky result because 3277 a / 2^15 <= a exactly when a >= 0.
 * mdfi_rqf_init gives half, c and kd = 3277 | d << 16 (the vpmaddwd multiplier pair (3277, d)). */
typedef struct {
    int32_t half, c, kd;
} mdfi_rqf;

static inline mdfi_rqf mdfi_rqf_init(int32_t s, int32_t mode)
{
    mdfi_rqf k;
    const int half_up = mode == MDFI_ROUND_HALF_UP;
    const int64_t e = half_up ? (int64_t)29491 * (((int64_t)1) << (s - 1)) : 0;   /* < 2^45 */
    k.half = half_up ? (int32_t)(((int64_t)1) << (s - 1)) : 0;
    k.c = (int32_t)(e >> 15) + MDFI_LEAKY_MULT;                 /* e >= 0: a plain shift */
    k.kd = MDFI_LEAKY_MULT | (int32_t)((e & 0x7fff) << 16);
    return k;
}

#ifdef __cplusplus
}
#endif
#endif /* MDFI_FIXEDPOINT_H */
