/* mdfi_kernels.c -- see mdfi_kernels.h.  Integer only; arithmetic via mdfi_fixedpoint.h. */
#include "mdfi_kernels.h"

#include <string.h>

#include "mdfi_fixedpoint.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define MDFI_KERNELS_X86 1
#include "mdfi_fixedpoint_avx2.h"
#else
#define MDFI_KERNELS_X86 0
#endif

int mdfi_kernels_have_avx2(void)
{
#if MDFI_KERNELS_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

size_t mdfi_type_size(int32_t type)
{
    switch (type) {
    case MDFI_U8: case MDFI_S8: return 1;
    case MDFI_S16: return 2;
    case MDFI_S32: return 4;
    default: return 0;
    }
}

/* Element access by type code.  The switch is loop-invariant; compilers unswitch it. */
static inline int64_t load(const void *p, int32_t type, int64_t i)
{
    switch (type) {
    case MDFI_U8: return ((const uint8_t *)p)[i];
    case MDFI_S8: return ((const int8_t *)p)[i];
    case MDFI_S16: return ((const int16_t *)p)[i];
    default: return ((const int32_t *)p)[i];
    }
}

/* Store a value already saturated to the output width (so the narrowing is exact). */
static inline void store(void *p, int32_t type, int64_t i, int32_t v)
{
    switch (type) {
    case MDFI_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case MDFI_S8: ((int8_t *)p)[i] = (int8_t)v; break;
    case MDFI_S16: ((int16_t *)p)[i] = (int16_t)v; break;
    default: ((int32_t *)p)[i] = v; break;
    }
}

/* Can a signed `bits`-wide value be stored in `type`? */
static int fits(int32_t type, int32_t bits)
{
    if (bits < 2 || bits > 32) return 0;
    switch (type) {
    case MDFI_S8: return bits <= 8;
    case MDFI_S16: return bits <= 16;
    case MDFI_S32: return 1;
    default: return 0;
    }
}

static int valid_mode_act(int32_t mode, int32_t act)
{
    return (mode == MDFI_ROUND_HALF_UP || mode == MDFI_ROUND_TRUNCATE) &&
           (act == MDFI_ACT_LINEAR || act == MDFI_ACT_LEAKY || act == MDFI_ACT_RELU);
}

#if MDFI_KERNELS_X86
/* The same loop through the AVX2 twin (four lanes, scalar tail). */
__attribute__((target("avx2")))
static void requantize_array_avx2(const int64_t *restrict acc, const int32_t *restrict shift,
                                  int64_t channels, int64_t plane, int32_t mode, int32_t bits,
                                  int32_t act, void *restrict out, int32_t out_type)
{
    for (int64_t ch = 0; ch < channels; ++ch) {
        mdfi_rq_avx2 q;
        mdfi_rq_init_avx2(&q, shift[ch], mode, bits, act);
        const int64_t *a = acc + ch * plane;
        int64_t i = 0;
        for (; i + 4 <= plane; i += 4) {
            int64_t r[4];
            _mm256_storeu_si256((__m256i *)r,
                                mdfi_requantize4_avx2(_mm256_loadu_si256((const __m256i *)(a + i)), &q, mode, act));
            for (int k = 0; k < 4; ++k) store(out, out_type, ch * plane + i + k, (int32_t)r[k]);
        }
        for (; i < plane; ++i)
            store(out, out_type, ch * plane + i, mdfi_requantize(a[i], shift[ch], mode, bits, act));
    }
}
#endif

int mdfi_requantize_array(const int64_t *restrict acc, const int32_t *restrict shift,
                          int64_t channels, int64_t plane, int32_t mode, int32_t bits, int32_t act,
                          void *restrict out, int32_t out_type, int32_t simd)
{
    if (channels < 0 || plane < 0 || !fits(out_type, bits) || bits > 16 || !valid_mode_act(mode, act))
        return -1;
    for (int64_t ch = 0; ch < channels; ++ch)
        if (shift[ch] < MDFI_MIN_SHIFT || shift[ch] > MDFI_MAX_SHIFT) return -2;
#if MDFI_KERNELS_X86
    if (simd && mdfi_kernels_have_avx2()) {
        requantize_array_avx2(acc, shift, channels, plane, mode, bits, act, out, out_type);
        return 0;
    }
#endif
    for (int64_t ch = 0; ch < channels; ++ch) {
        const int32_t s = shift[ch];
        const int64_t *a = acc + ch * plane;
        for (int64_t i = 0; i < plane; ++i)
            store(out, out_type, ch * plane + i, mdfi_requantize(a[i], s, mode, bits, act));
    }
    return 0;
}

/* Typed max pool of one channel.  Border windows clip to the image (Darknet ignores taps
 * outside it); the 2x2 stride-2 interior -- most of YOLO's pooling work -- takes a
 * branch-free path the compiler vectorizes (as does 2x2 stride 1, YOLOv3-tiny's 13x13 pool). */
#define MDFI_MAXPOOL_PLANE(T, NAME)                                                          \
static void NAME(const T *restrict in, int32_t h, int32_t w, int32_t size, int32_t stride,   \
                 int32_t off, T *restrict out, int32_t oh, int32_t ow)                       \
{                                                                                            \
    for (int32_t i = 0; i < oh; ++i) {                                                       \
        const int32_t y0 = off + i * stride;                                                 \
        const int32_t ya = y0 < 0 ? 0 : y0;                                                  \
        const int32_t yb = (y0 + size > h) ? h : y0 + size;                                  \
        T *restrict orow = out + (int64_t)i * ow;                                            \
        int32_t j = 0;                                                                       \
        if (size == 2 && stride == 2 && off == 0 && yb - ya == 2) {                         \
            const T *restrict r0 = in + (int64_t)ya * w, *restrict r1 = r0 + w;             \
            const int32_t full = w / 2 < ow ? w / 2 : ow;                                    \
            for (; j < full; ++j) {                                                          \
                const T a = r0[2 * j] > r0[2 * j + 1] ? r0[2 * j] : r0[2 * j + 1];           \
                const T b = r1[2 * j] > r1[2 * j + 1] ? r1[2 * j] : r1[2 * j + 1];           \
                orow[j] = a > b ? a : b;                                                     \
            }                                                                                \
        } else if (size == 2 && stride == 1 && off == 0 && yb - ya == 2) {                  \
            const T *restrict r0 = in + (int64_t)ya * w, *restrict r1 = r0 + w;             \
            const int32_t full = w - 1 < ow ? w - 1 : ow;                                    \
            for (; j < full; ++j) {                                                          \
                const T a = r0[j] > r0[j + 1] ? r0[j] : r0[j + 1];                           \
                const T b = r1[j] > r1[j + 1] ? r1[j] : r1[j + 1];                           \
                orow[j] = a > b ? a : b;                                                     \
            }                                                                                \
        }                                                                                    \
        for (; j < ow; ++j) {                                                                \
            const int32_t x0 = off + j * stride;                                             \
            const int32_t xa = x0 < 0 ? 0 : x0;                                              \
            const int32_t xb = (x0 + size > w) ? w : x0 + size;                              \
            if (ya >= yb || xa >= xb) { orow[j] = 0; continue; } /* excluded by the checks */ \
            T best = in[(int64_t)ya * w + xa];                                               \
            for (int32_t y = ya; y < yb; ++y)                                                \
                for (int32_t x = xa; x < xb; ++x) {                                          \
                    const T v = in[(int64_t)y * w + x];                                      \
                    best = v > best ? v : best;                                              \
                }                                                                            \
            orow[j] = best;                                                                  \
        }                                                                                    \
    }                                                                                        \
}
MDFI_MAXPOOL_PLANE(uint8_t, maxpool_u8)
MDFI_MAXPOOL_PLANE(int8_t, maxpool_s8)
MDFI_MAXPOOL_PLANE(int16_t, maxpool_s16)

int mdfi_maxpool(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                 int32_t size, int32_t stride, int32_t pad,
                 void *restrict out, int32_t oh, int32_t ow)
{
    if (mdfi_type_size(type) == 0 || type == MDFI_S32 || c < 1 || h < 1 || w < 1 || size < 1 ||
        stride < 1 || pad < 0)
        return -1;
    /* Darknet: out = (w + pad - size)/stride + 1; every window must hold a real tap. */
    if (oh != (h + pad - size) / stride + 1 || ow != (w + pad - size) / stride + 1 || oh < 1 || ow < 1 ||
        (pad + 1) / 2 > size - 1)
        return -2;
    const int32_t off = -(pad / 2);              /* C: -l.pad/2 truncates toward zero */
    const int64_t in_plane = (int64_t)h * w, out_plane = (int64_t)oh * ow;
    for (int32_t k = 0; k < c; ++k) {
        switch (type) {
        case MDFI_U8:
            maxpool_u8((const uint8_t *)in + k * in_plane, h, w, size, stride, off,
                       (uint8_t *)out + k * out_plane, oh, ow);
            break;
        case MDFI_S8:
            maxpool_s8((const int8_t *)in + k * in_plane, h, w, size, stride, off,
                       (int8_t *)out + k * out_plane, oh, ow);
            break;
        default:
            maxpool_s16((const int16_t *)in + k * in_plane, h, w, size, stride, off,
                        (int16_t *)out + k * out_plane, oh, ow);
            break;
        }
    }
    return 0;
}

int mdfi_upsample(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                  int32_t stride, void *restrict out)
{
    const size_t es = mdfi_type_size(type);
    if (es == 0 || c < 1 || h < 1 || w < 1 || stride < 1) return -1;
    const int64_t ow = (int64_t)w * stride;
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < (int64_t)h * stride; ++y) {
            const int64_t src_row = (k * h + y / stride) * w;
            const int64_t dst_row = (k * h * stride + y) * ow;
            for (int64_t x = 0; x < ow; ++x)
                store(out, type, dst_row + x, (int32_t)load(in, type, src_row + x / stride));
        }
    return 0;
}

int mdfi_align_copy(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                    int32_t mode, int32_t bits, void *restrict out, int32_t out_type)
{
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 ||
        n < 0 || shift < 0 || shift > MDFI_MAX_SHIFT || !valid_mode_act(mode, MDFI_ACT_LINEAR))
        return -1;
    if (shift == 0 && in_type == out_type && in_type != MDFI_U8) {
        memcpy(out, in, (size_t)n * mdfi_type_size(in_type));   /* same format: pure copy */
        return 0;
    }
    for (int64_t i = 0; i < n; ++i)
        store(out, out_type, i, mdfi_requantize(load(in, in_type, i), shift, mode, bits, MDFI_ACT_LINEAR));
    return 0;
}

int mdfi_shortcut(const void *restrict a, int32_t a_type, int32_t fa,
                  const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                  int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                  void *restrict out, int32_t out_type)
{
    if (mdfi_type_size(a_type) == 0 || mdfi_type_size(b_type) == 0 || a_type == MDFI_S32 ||
        b_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 || n < 0 || !valid_mode_act(mode, act))
        return -1;
    const int32_t fm = fa > fb ? fa : fb;
    const int32_t da = fm - fa, db = fm - fb, s = fm - out_frac;
    if (da > 16 || db > 16 || s < MDFI_MIN_SHIFT || s > MDFI_MAX_SHIFT) return -2;
    const int64_t ma = (int64_t)1 << da, mb = (int64_t)1 << db;   /* exact alignment factors */
    for (int64_t i = 0; i < n; ++i) {
        const int64_t sum = load(a, a_type, i) * ma + load(b, b_type, i) * mb;
        store(out, out_type, i, mdfi_requantize(sum, s, mode, bits, act));
    }
    return 0;
}

int mdfi_reorg(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
               int32_t stride, void *restrict out)
{
    if (mdfi_type_size(type) == 0 || c < 1 || h < 1 || w < 1 || stride < 1 ||
        c % (stride * stride) != 0)
        return -1;
    /* Darknet reorg_cpu(x, w, h, c, batch, stride, forward=0, out): out[in_index] = x[out_index]. */
    const int32_t out_c = c / (stride * stride);
    for (int32_t k = 0; k < c; ++k) {
        const int32_t c2 = k % out_c, offset = k / out_c;
        for (int32_t j = 0; j < h; ++j)
            for (int32_t i = 0; i < w; ++i) {
                const int64_t in_index = i + (int64_t)w * (j + (int64_t)h * k);
                const int64_t w2 = (int64_t)i * stride + offset % stride;
                const int64_t h2 = (int64_t)j * stride + offset / stride;
                const int64_t out_index = w2 + (int64_t)w * stride * (h2 + (int64_t)h * stride * c2);
                store(out, type, in_index, (int32_t)load(in, type, out_index));
            }
    }
    return 0;
}

int mdfi_head_lookup(const void *restrict in, int32_t in_type, int32_t c, int64_t plane,
                     int32_t qmin, const uint16_t *restrict logistic, const int32_t *restrict exp_tab,
                     int32_t table_len, const uint8_t *restrict table_sel, int32_t *restrict out)
{
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || c < 0 || plane < 0 || table_len < 1)
        return -1;
    for (int32_t ch = 0; ch < c; ++ch) {
        const int sel = table_sel[ch];
        if (sel == 2) continue;
        for (int64_t p = 0; p < plane; ++p) {
            int64_t idx = load(in, in_type, (int64_t)ch * plane + p) - qmin;
            /* Valid inputs lie in the table's range (the producer saturates to its width);
             * the clamp only guarantees no out-of-bounds read for any input. */
            idx = idx < 0 ? 0 : (idx >= table_len ? table_len - 1 : idx);
            out[(int64_t)ch * plane + p] = sel == 0 ? (int32_t)logistic[idx] : exp_tab[idx];
        }
    }
    return 0;
}

int mdfi_softmax_int(const void *restrict in, int32_t in_type, int32_t n, int32_t stride_anchor,
                     int32_t first, int32_t classes, int64_t plane,
                     const int32_t *restrict expneg, int32_t table_len, int32_t *restrict out)
{
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || n < 0 || classes < 1 || plane < 0 ||
        first < 0 || first + classes > stride_anchor || table_len < 1)
        return -1;
    for (int32_t a = 0; a < n; ++a) {
        const int64_t base = ((int64_t)a * stride_anchor + first) * plane;
        for (int64_t p = 0; p < plane; ++p) {
            int64_t mx = load(in, in_type, base + p);
            for (int32_t k = 1; k < classes; ++k) {
                const int64_t v = load(in, in_type, base + (int64_t)k * plane + p);
                mx = v > mx ? v : mx;
            }
            int64_t total = 0;
            for (int32_t k = 0; k < classes; ++k) {
                int64_t d = mx - load(in, in_type, base + (int64_t)k * plane + p);
                d = d >= table_len ? table_len - 1 : d;       /* see mdfi_head_lookup */
                total += expneg[d];
            }
            if (total <= 0) total = 1;     /* only a corrupt table (expneg[0] must be 2^16) */
            for (int32_t k = 0; k < classes; ++k) {
                int64_t d = mx - load(in, in_type, base + (int64_t)k * plane + p);
                d = d >= table_len ? table_len - 1 : d;
                const int64_t e = expneg[d];
                /* round_half_up(e * 2^15 / total), all terms non-negative (docs section 7) */
                out[base + (int64_t)k * plane + p] =
                    (int32_t)((e * ((int64_t)1 << (MDFI_PROB_FRAC + 1)) + total) / (2 * total));
            }
        }
    }
    return 0;
}
