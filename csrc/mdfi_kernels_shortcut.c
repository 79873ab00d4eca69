/* mdfi_kernels_shortcut.c -- the shortcut of mdfi_kernels.h (portable C, with AVX2 and
 * AVX-512 bodies chosen at run time).  Integer only; arithmetic via mdfi_fixedpoint.h,
 * shared helpers in mdfi_kernels_impl.h. */
#include "mdfi_kernels_impl.h"

/* ---------------------------------------------------------------------------------------
 * Shortcut: ranges of elements
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *a, *b;
    void *out;
    int32_t a_type, b_type, out_type, da, db, s, mode, bits, act;
    int64_t ma, mb;
    int32_t za, zb, zo;           /* zero points of a, b and out (0 without) */
    int32_t simd;                 /* 1: AVX2, the aligned sum provably fits int32; 2: AVX-512,
                                     int8 + int8 -> int8 and a shift of 1..31 as well; 3:
                                     AVX-512, int8 + int8 -> int8, not leaky, a shift <= 0 or
                                     a shift of 1 with da, db <= 1; 4: AVX-512, int8 + int8 ->
                                     int8, not leaky, a shift >= 0, the aligned sum provably
                                     inside int16 (shortcut_avx512_w16) */
} shortcut_ctx;

#if MDFI_KERNELS_X86
/* s = (a << da) + (b << db) on int32 lanes: exact, the caller checked that it fits. */
#define MDFI_SHORTCUT_AVX2(NAME, MODE, ACT)                                                  \
KAVX2 static void NAME(const shortcut_ctx *k, int64_t i0, int64_t i1)                        \
{                                                                                            \
    mdfi_rq8_avx2 q;                                                                         \
    mdfi_rq8_init_avx2(&q, k->s, MODE, k->bits, ACT);                                        \
    if (k->zo) mdfi_rq8_zp_avx2(&q, k->bits, k->zo);       /* clamps to [qmin-zo, qmax-zo] */ \
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);              \
    const __m256i za = _mm256_set1_epi32(k->za), zb = _mm256_set1_epi32(k->zb);              \
    const __m256i zo = _mm256_set1_epi32(k->zo);                                             \
    int64_t i = i0;                                                                          \
    for (; i + 8 <= i1; i += 8) {                                                            \
        const __m256i sum = _mm256_add_epi32(                                                \
            _mm256_sll_epi32(_mm256_sub_epi32(ld8(k->a, k->a_type, i), za), da),             \
            _mm256_sll_epi32(_mm256_sub_epi32(ld8(k->b, k->b_type, i), zb), db));            \
        st8(k->out, k->out_type, i, _mm256_add_epi32(mdfi_requantize8_avx2(sum, &q, MODE, ACT), zo)); \
    }                                                                                        \
    for (; i < i1; ++i) {                                                                    \
        const int64_t sum = (load(k->a, k->a_type, i) - k->za) * k->ma +                     \
                            (load(k->b, k->b_type, i) - k->zb) * k->mb;                      \
        store(k->out, k->out_type, i, mdfi_requantize_zp(sum, k->s, MODE, k->bits, ACT, k->zo)); \
    }                                                                                        \
}
MDFI_SHORTCUT_AVX2(shortcut_avx2_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX2(shortcut_avx2_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX2(shortcut_avx2_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
MDFI_SHORTCUT_AVX2(shortcut_avx2_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX2(shortcut_avx2_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX2(shortcut_avx2_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)

/* int8 a, b -> int8 out on sixteen int32 lanes (mdfi_requantize16_i32_avx512: the formulas of
 * the AVX2 twin), the tail with masked loads and stores; zero points: (a - za), (b - zb), and
 * sat(r + zo) as a clamp to [qmin - zo, qmax - zo] and an add (|a - za|, |b - zb| <= 255, so
 * the aligned sum fits int32: the caller's fits32). */
#define MDFI_SHORTCUT_AVX512(NAME, MODE, ACT)                                                \
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))                       \
static void NAME(const shortcut_ctx *k, int64_t i0, int64_t i1)                              \
{                                                                                            \
    mdfi_rq32_avx512 q;                                                                      \
    mdfi_rq32_init_avx512(&q, k->s, MODE, k->bits);                                          \
    q.qmin = _mm512_set1_epi32(mdfi_qmin(k->bits) - k->zo);  /* sat(r + zo): clamp, then add */ \
    q.qmax = _mm512_set1_epi32(mdfi_qmax(k->bits) - k->zo);                                  \
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);              \
    const __m512i za = _mm512_set1_epi32(k->za), zb = _mm512_set1_epi32(k->zb);              \
    const __m512i zo = _mm512_set1_epi32(k->zo);                                             \
    const int8_t *a = (const int8_t *)k->a, *b = (const int8_t *)k->b;                       \
    int8_t *o = (int8_t *)k->out;                                                            \
    for (int64_t i = i0; i < i1; i += 16) {                                                  \
        const __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1u); \
        const __m512i va = _mm512_sub_epi32(                                                 \
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(a + i))), za);        \
        const __m512i vb = _mm512_sub_epi32(                                                 \
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(b + i))), zb);        \
        const __m512i sum = _mm512_add_epi32(_mm512_sll_epi32(va, da), _mm512_sll_epi32(vb, db)); \
        const __m512i r = _mm512_add_epi32(mdfi_requantize16_i32_avx512(sum, &q, MODE, ACT), zo); \
        _mm_mask_storeu_epi8((void *)(o + i), m, _mm512_cvtepi32_epi8(r));                   \
    }                                                                                        \
}
MDFI_SHORTCUT_AVX512(shortcut_avx512_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX512(shortcut_avx512_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX512(shortcut_avx512_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
MDFI_SHORTCUT_AVX512(shortcut_avx512_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX512(shortcut_avx512_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX512(shortcut_avx512_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)

/* int8 a, b -> int8 out, shift s <= 0, linear or relu (mdfi_requantize: sat(x * 2^-s) of the
 * aligned sum x, |x| <= 2^24 after relu, clamped first to +-2^bits there).  The rounding mode
 * plays no part.  da = db = s = 0: sat(a + b) is the saturating byte add (the sum lies in
 * [-256, 254]; relu and the clamp to a narrower width commute with the saturation to 8 bits),
 * 64 lanes per step.  Otherwise 16 int32 lanes: clamp to +-2^15 and shift left by min(-s, 15)
 * -- every nonzero x that either clamp or the smaller shift changes saturates both ways, with
 * the same sign, since |result| >= 2^15 > qmax(bits) for bits <= 16 -- then saturate. */
/* s = 1 with da, db <= 1 (formats one bit apart), linear or relu: 64 byte lanes as well.
 *   da = db = 0:  R((a + b) / 2): half_up floor((a + b + 1) / 2) is the unsigned byte average
 *                 of a ^ 0x80 and b ^ 0x80, XOR 0x80; truncate subtracts 1 where a + b is odd
 *                 ((a ^ b) & 1); both lie in [-128, 127].
 *   db = 1:       R((a + 2b) / 2) = b + R(a / 2) (2b is even), R(a / 2) in [-64, 64] as above
 *                 with b = 0; b + R(a / 2) in [-192, 191], saturated by the saturating add.
 *   da = 1:       the same with a and b exchanged.
 * relu: max(R(x / 2), 0) = R(max(x, 0) / 2); then the clamp to the output width. */
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void shortcut_avx512_half(const shortcut_ctx *k, int64_t i0, int64_t i1)
{
    const int8_t *a = (const int8_t *)(k->da == 1 ? k->b : k->a), *b = (const int8_t *)(k->da == 1 ? k->a : k->b);
    const int both = k->da == 0 && k->db == 0;      /* else: b is the operand shifted by one */
    const int trunc = k->mode == MDFI_ROUND_TRUNCATE, relu = k->act == MDFI_ACT_RELU;
    int8_t *o = (int8_t *)k->out;
    const __m512i lo = _mm512_set1_epi8((char)mdfi_qmin(k->bits)), hi = _mm512_set1_epi8((char)mdfi_qmax(k->bits));
    const __m512i s80 = _mm512_set1_epi8((char)0x80), one = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    for (int64_t i = i0; i < i1; i += 64) {
        const __mmask64 m = i1 - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (i1 - i)) - 1);
        const __m512i va = _mm512_maskz_loadu_epi8(m, (const void *)(a + i));
        const __m512i vb = _mm512_maskz_loadu_epi8(m, (const void *)(b + i));
        const __m512i c = both ? vb : zero;           /* the averaged partner of a */
        __m512i r = _mm512_xor_si512(_mm512_avg_epu8(_mm512_xor_si512(va, s80), _mm512_xor_si512(c, s80)), s80);
        if (trunc) r = _mm512_sub_epi8(r, _mm512_and_si512(_mm512_xor_si512(va, c), one));
        if (!both) r = _mm512_adds_epi8(r, vb);
        if (relu) r = _mm512_max_epi8(r, zero);
        r = _mm512_min_epi8(_mm512_max_epi8(r, lo), hi);
        _mm512_mask_storeu_epi8((void *)(o + i), m, r);
    }
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void shortcut_avx512_left(const shortcut_ctx *k, int64_t i0, int64_t i1)
{
    const int8_t *a = (const int8_t *)k->a, *b = (const int8_t *)k->b;
    int8_t *o = (int8_t *)k->out;
    const int relu = k->act == MDFI_ACT_RELU;
    if (k->da == 0 && k->db == 0 && k->s == 0 && k->za == 0 && k->zb == 0 && k->zo == 0) {
        const __m512i lo = _mm512_set1_epi8((char)mdfi_qmin(k->bits)), hi = _mm512_set1_epi8((char)mdfi_qmax(k->bits));
        const __m512i zero = _mm512_setzero_si512();
        for (int64_t i = i0; i < i1; i += 64) {
            const __mmask64 m = i1 - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (i1 - i)) - 1);
            __m512i r = _mm512_adds_epi8(_mm512_maskz_loadu_epi8(m, (const void *)(a + i)),
                                         _mm512_maskz_loadu_epi8(m, (const void *)(b + i)));
            if (relu) r = _mm512_max_epi8(r, zero);
            r = _mm512_min_epi8(_mm512_max_epi8(r, lo), hi);
            _mm512_mask_storeu_epi8((void *)(o + i), m, r);
        }
        return;
    }
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);
    const __m128i lsh = _mm_cvtsi32_si128(-k->s < 15 ? -k->s : 15);
    const __m512i lim_lo = _mm512_set1_epi32(-(1 << 15)), lim_hi = _mm512_set1_epi32(1 << 15);
    /* zero points: (a - za), (b - zb); sat(x + zo) as the clamp to [qmin - zo, qmax - zo] and an
     * add (8-bit output: those bounds stay within +-2^8, so the +-2^15 argument above holds) */
    const __m512i qmin = _mm512_set1_epi32(mdfi_qmin(k->bits) - k->zo), qmax = _mm512_set1_epi32(mdfi_qmax(k->bits) - k->zo);
    const __m512i za = _mm512_set1_epi32(k->za), zb = _mm512_set1_epi32(k->zb), zo = _mm512_set1_epi32(k->zo);
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1u);
        const __m512i va = _mm512_sub_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(a + i))), za);
        const __m512i vb = _mm512_sub_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(b + i))), zb);
        __m512i x = _mm512_add_epi32(_mm512_sll_epi32(va, da), _mm512_sll_epi32(vb, db));
        if (relu) x = _mm512_max_epi32(x, _mm512_setzero_si512());
        x = _mm512_sll_epi32(_mm512_min_epi32(_mm512_max_epi32(x, lim_lo), lim_hi), lsh);
        x = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(x, qmin), qmax), zo);
        _mm_mask_storeu_epi8((void *)(o + i), m, _mm512_cvtepi32_epi8(x));
    }
}
/* int8 a, b -> int8 out on 32 int16 lanes, linear or relu, a shift s >= 0, zero points or none:
 * the caller proved (128 + |za|) 2^da + (128 + |zb|) 2^db <= 32767, so the aligned sum
 *   x = (a - za) 2^da + (b - zb) 2^db
 * is exact in int16 (the shifts move no bit out: |a - za| 2^da <= 32767).  Then, with
 * arithmetic shifts (a count >= 16 fills the sign, which is floor(x / 2^s) for |x| < 2^15):
 *   truncate  R(x / 2^s) = x >> s                     (floor)
 *   half_up   R(x / 2^s) = floor((x + 2^(s-1)) / 2^s) = (x >> s) + ((x >> (s-1)) & 1), s >= 1
 *             (bit s-1 of x is the carry the half adds into bit s; no int16 overflow)
 *   relu      max(x, 0) first (R is monotonic with R(0) = 0)
 * and sat(r + zo) as the clamp to [qmin - zo, qmax - zo] (|.| <= 255) and an add: the value in
 * [qmin, qmax] narrows to int8 unchanged (vpmovwb).  Twice the lanes of the int32 bodies. */
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void shortcut_avx512_w16(const shortcut_ctx *k, int64_t i0, int64_t i1)
{
    const int8_t *a = (const int8_t *)k->a, *b = (const int8_t *)k->b;
    int8_t *o = (int8_t *)k->out;
    const int up = k->mode == MDFI_ROUND_HALF_UP && k->s >= 1, relu = k->act == MDFI_ACT_RELU;
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);
    const __m128i sh = _mm_cvtsi32_si128(k->s), sh1 = _mm_cvtsi32_si128(k->s >= 1 ? k->s - 1 : 0);
    const __m512i za = _mm512_set1_epi16((short)k->za), zb = _mm512_set1_epi16((short)k->zb);
    const __m512i zo = _mm512_set1_epi16((short)k->zo), one = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
    const __m512i lo = _mm512_set1_epi16((short)(mdfi_qmin(k->bits) - k->zo));
    const __m512i hi = _mm512_set1_epi16((short)(mdfi_qmax(k->bits) - k->zo));
    for (int64_t i = i0; i < i1; i += 32) {
        const __mmask32 m = i1 - i >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << (i1 - i)) - 1);
        const __m512i va = _mm512_sub_epi16(_mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, (const void *)(a + i))), za);
        const __m512i vb = _mm512_sub_epi16(_mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, (const void *)(b + i))), zb);
        __m512i x = _mm512_add_epi16(_mm512_sll_epi16(va, da), _mm512_sll_epi16(vb, db));
        if (relu) x = _mm512_max_epi16(x, zero);
        __m512i r = _mm512_sra_epi16(x, sh);
        if (up) r = _mm512_add_epi16(r, _mm512_and_si512(_mm512_sra_epi16(x, sh1), one));
        r = _mm512_add_epi16(_mm512_min_epi16(_mm512_max_epi16(r, lo), hi), zo);
        _mm256_mask_storeu_epi8((void *)(o + i), m, _mm512_cvtepi16_epi8(r));
    }
}
#endif

static void shortcut_range(const void *vctx, int64_t i0, int64_t i1)
{
    const shortcut_ctx *k = (const shortcut_ctx *)vctx;
    if (k->b == NULL) {           /* b's real value is 0: the term b - zb is 0 */
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t sum = (load(k->a, k->a_type, i) - k->za) * k->ma;
            store(k->out, k->out_type, i, mdfi_requantize_zp(sum, k->s, k->mode, k->bits, k->act, k->zo));
        }
        return;
    }
#if MDFI_KERNELS_X86
    typedef void (*fn)(const shortcut_ctx *, int64_t, int64_t);
    if (k->simd == 4) {
        shortcut_avx512_w16(k, i0, i1);
        return;
    }
    if (k->simd == 3) {
        if (k->s == 1) shortcut_avx512_half(k, i0, i1);
        else shortcut_avx512_left(k, i0, i1);
        return;
    }
    if (k->simd == 2) {
        static const fn f[6] = {shortcut_avx512_0, shortcut_avx512_1, shortcut_avx512_2,
                                shortcut_avx512_3, shortcut_avx512_4, shortcut_avx512_5};
        f[k->mode * 3 + k->act](k, i0, i1);
        return;
    }
    if (k->simd) {
        static const fn f[6] = {shortcut_avx2_0, shortcut_avx2_1, shortcut_avx2_2,
                                shortcut_avx2_3, shortcut_avx2_4, shortcut_avx2_5};
        f[k->mode * 3 + k->act](k, i0, i1);
        return;
    }
#endif
    for (int64_t i = i0; i < i1; ++i) {
        const int64_t sum = (load(k->a, k->a_type, i) - k->za) * k->ma + (load(k->b, k->b_type, i) - k->zb) * k->mb;
        store(k->out, k->out_type, i, mdfi_requantize_zp(sum, k->s, k->mode, k->bits, k->act, k->zo));
    }
}

static int64_t type_max_abs(int32_t t)
{
    return t == MDFI_U8 ? 255 : (t == MDFI_S8 ? 128 : 32768);
}

static int64_t iabs64(int64_t v)
{
    return v < 0 ? -v : v;
}

int mdfi_shortcut_zp(const void *restrict a, int32_t a_type, int32_t fa,
                     const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                     int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                     void *restrict out, int32_t out_type, int32_t za, int32_t zb, int32_t zo,
                     const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(a_type) == 0 || mdfi_type_size(b_type) == 0 || a_type == MDFI_S32 ||
        b_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 || n < 0 || !valid_mode_act(mode, act) ||
        !valid_opts(opts))
        return -1;
    const int32_t fm = fa > fb ? fa : fb;
    const int32_t da = fm - fa, db = fm - fb, s = fm - out_frac;
    if (da > 16 || db > 16 || s < MDFI_MIN_SHIFT || s > MDFI_MAX_SHIFT) return -2;
    if (za < -32768 || za > 65535 || zb < -32768 || zb > 65535 || zo < mdfi_qmin(bits) || zo > mdfi_qmax(bits))
        return -4;
    const int64_t ma = (int64_t)1 << da, mb = (int64_t)1 << db;   /* exact alignment factors */
    const int fits32 = (type_max_abs(a_type) + iabs64(za)) * ma + (type_max_abs(b_type) + iabs64(zb)) * mb <=
                       (int64_t)INT32_MAX;
    int32_t simd = use_avx2(opts) && fits32;
    if (simd && opts->simd == 2 && a_type == MDFI_S8 && b_type == MDFI_S8 && out_type == MDFI_S8 &&
        b != NULL && mdfi_kernels_have_avx512bw()) {
        const int zp = za != 0 || zb != 0 || zo != 0;   /* the byte-lane bodies have none */
        if (act != MDFI_ACT_LEAKY && (s <= 0 || (!zp && s == 1 && da <= 1 && db <= 1))) simd = 3;
        else if (s >= 1 && s <= 31) simd = 2;
        /* 32 int16 lanes where the byte-lane bodies (no zero points: s = 1 with formats at
         * most a bit apart, or da = db = s = 0) do not apply and the aligned sum fits int16 */
        const int bytes = !zp && ((s == 1 && da <= 1 && db <= 1) || (s == 0 && da == 0 && db == 0));
        const int fits16 = (128 + iabs64(za)) * ma + (128 + iabs64(zb)) * mb <= 32767;
        if (act != MDFI_ACT_LEAKY && s >= 0 && !bytes && fits16) simd = 4;
    }
    const shortcut_ctx k = {a, b, out, a_type, b_type, out_type, da, db, s, mode, bits, act, ma, mb,
                            za, zb, zo, simd};
    mdfi_kpar_for(opts, n, 32768, shortcut_range, &k);
    return 0;
}

int mdfi_shortcut_ex(const void *restrict a, int32_t a_type, int32_t fa,
                     const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                     int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                     void *restrict out, int32_t out_type, const mdfi_kopts *opts)
{
    return mdfi_shortcut_zp(a, a_type, fa, b, b_type, fb, n, out_frac, mode, bits, act, out, out_type, 0, 0, 0,
                            opts);
}

int mdfi_shortcut(const void *restrict a, int32_t a_type, int32_t fa,
                  const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                  int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                  void *restrict out, int32_t out_type)
{
    return mdfi_shortcut_ex(a, a_type, fa, b, b_type, fb, n, out_frac, mode, bits, act, out, out_type,
                            NULL);
}
