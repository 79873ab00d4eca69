/* mdfi_kernels_scale.c -- the global average pool and the channel / position / element scaling
 * (AlexeyAB's [avgpool], [scale_channels], [sam]; docs/fixed-point.md section 9).  Portable C11,
 * integer only; every rounding through mdfi_fixedpoint.h.  The C twins of QAvgpool.forward_ref
 * (mdfi/layers/avgpool.py) and QScaleChannels.forward_ref (mdfi/layers/scale_channels.py); the
 * tests assert equality with np.array_equal.  Speed is not the point: these layers are tiny next
 * to the convolutions around them. */
#include "mdfi_kernels_impl.h"

int mdfi_avgpool(const void *restrict in, int32_t in_type, int32_t zi, int32_t c, int64_t plane, int32_t d,
                 int32_t mode, int32_t bits, int32_t zo, void *restrict out, int32_t out_type)
{
    /* in : [c][plane] of in_type (U8/S8/S16)
     * out: [c]        of out_type (S8/S16), bits <= 16 */
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 || c < 0 ||
        plane < 1 || plane > ((int64_t)1 << 24) || d < -24 || d > 20 ||
        (mode != MDFI_ROUND_HALF_UP && mode != MDFI_ROUND_TRUNCATE))
        return -1;
    if (zi < -32768 || zi > 65535 || zo < mdfi_qmin(bits) || zo > mdfi_qmax(bits)) return -4;
    /* |in - zi| < 2^17 and plane <= 2^24: |S| < 2^41; with d <= 20, |N| < 2^61; 2N + D fits. */
    const int64_t den = d >= 0 ? plane : plane << (-d);
    for (int32_t ch = 0; ch < c; ++ch) {
        int64_t s = 0;
        for (int64_t p = 0; p < plane; ++p) s += load(in, in_type, (int64_t)ch * plane + p) - zi;
        const int64_t num = d >= 0 ? s * ((int64_t)1 << d) : s;
        store(out, out_type, ch, mdfi_saturate(mdfi_div_round(num, den, mode) + zo, bits));
    }
    return 0;
}

int mdfi_scale_channels(const void *restrict a, int32_t a_type, int32_t za, int64_t a_cstride, int64_t a_pstride,
                        const void *restrict b, int32_t b_type, int32_t zb, int32_t c, int64_t plane,
                        int32_t shift, int32_t mode, int32_t bits, int32_t act, int32_t zo,
                        void *restrict out, int32_t out_type)
{
    /* a  : the scales of in_type a_type; element (ch, p) at a[ch * a_cstride + p * a_pstride]:
     *      [c] (strides 1, 0: one per channel), [plane] (0, 1: one per position) or [c][plane]
     *      (plane, 1: one per element)
     * b  : [c][plane] of b_type (U8/S8/S16)
     * out: [c][plane] of out_type (S8/S16), bits <= 16 */
    if (mdfi_type_size(a_type) == 0 || mdfi_type_size(b_type) == 0 || a_type == MDFI_S32 || b_type == MDFI_S32 ||
        !fits(out_type, bits) || bits > 16 || c < 0 || plane < 0 || a_cstride < 0 || a_pstride < 0 ||
        !valid_mode_act(mode, act))
        return -1;
    if (shift < MDFI_MIN_SHIFT || shift > MDFI_MAX_SHIFT) return -2;
    if (za < -32768 || za > 65535 || zb < -32768 || zb > 65535 || zo < mdfi_qmin(bits) || zo > mdfi_qmax(bits))
        return -4;
    /* |a - za|, |b - zb| < 2^17: |P| < 2^34, inside the requantize's accumulator bound 2^47. */
    for (int32_t ch = 0; ch < c; ++ch) {
        for (int64_t p = 0; p < plane; ++p) {
            const int64_t i = (int64_t)ch * plane + p;
            const int64_t pa = load(a, a_type, (int64_t)ch * a_cstride + p * a_pstride) - za;
            const int64_t pb = load(b, b_type, i) - zb;
            store(out, out_type, i, mdfi_requantize_zp(pa * pb, shift, mode, bits, act, zo));
        }
    }
    return 0;
}
