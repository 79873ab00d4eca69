/* mdfi_kernels.h -- MDFI's integer kernels other than the convolution (see mdfi_conv.h).
 *
 * Plain C11, fixed-width types, no floating point, no allocation, no Python headers.
 * Every rounding/shift/saturation goes through mdfi_fixedpoint.h.  Each function is the
 * C twin of a NumPy reference in mdfi/layers/ (named in its comment); tests assert equality.
 *
 * Element types of activation buffers (enum mdfi_type):
 *   MDFI_U8  uint8_t  the 8-bit pixel input          (ap_ufixed<8,8>)
 *   MDFI_S8  int8_t   activations of 2..8 bits
 *   MDFI_S16 int16_t  activations of 9..16 bits
 *   MDFI_S32 int32_t  detection-head outputs (Q1.15 / Q15.16 entries)
 * Layout of every activation buffer: planar [channel][row][column] (Darknet's CHW).
 *
 * Functions return 0 on success and a negative value for inconsistent arguments (then
 * nothing is written).  Callers (the Cython layer) check buffer sizes before the call;
 * the kernels only touch the elements their size arguments describe.
 */
#ifndef MDFI_KERNELS_H
#define MDFI_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mdfi_type { MDFI_U8 = 0, MDFI_S8 = 1, MDFI_S16 = 2, MDFI_S32 = 3 };

/* How a kernel call may run (the *_ex entry points; the plain ones use MDFI_KOPTS_DEFAULT):
 *   pool     : NULL (the calling thread only) or a thread pool: pool(job, arg, n) calls
 *              job(arg, tid) on up to n threads, the caller included, and returns when every
 *              call has returned.  Jobs hand out their work through an atomic counter, so
 *              they are complete whichever threads join.  mdfi_conv_pool_run (mdfi_conv.h)
 *              is such a pool: the convolution's workers.
 *   nthreads : threads to use (>= 1)
 *   simd     : 0 = portable C, 1 = the AVX2 paths where the CPU has AVX2, 2 = as 1, and
 *              the AVX-512 bodies where the CPU has AVX-512 F/BW/VL/DQ (today: the int8
 *              shortcut and the direct grouped convolution)
 * Work is split into ranges of whole elements/channels, each computed by one thread with the
 * same integer operations: results never depend on the thread count or the path. */
typedef int (*mdfi_pool_fn)(void (*job)(void *arg, int tid), void *arg, int nthreads);
typedef struct mdfi_kopts {
    mdfi_pool_fn pool;
    int32_t nthreads;
    int32_t simd;
} mdfi_kopts;
#define MDFI_KOPTS_DEFAULT {NULL, 1, 1}

/* Bytes per element of a type, 0 for an unknown type. */
size_t mdfi_type_size(int32_t type);

/* 1 when this CPU runs the AVX2 paths (x86-64 with AVX2), else 0. */
int mdfi_kernels_have_avx2(void);

/* Requantize an int64 accumulator array, per-channel shifts (mdfi.fixedpoint.requantize).
 *   acc   : [channels][plane] int64, |acc| < 2^47
 *   shift : [channels]        int32, each in [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT]
 *   out   : [channels][plane] of out_type (S8/S16/S32 with bits <= 8/16/16)
 * simd != 0 uses the AVX2 twin (mdfi_fixedpoint_avx2.h) when the CPU has AVX2: the
 * scalar and vector paths are tested equal through this function.  simd == 2 takes the
 * twin's int32 lanes (mdfi_requantize8_i32_avx2, used by the convolution epilogue) for the
 * channels whose shift is 1..31; every acc must then fit int32 (else -3). */
int mdfi_requantize_array(const int64_t *restrict acc, const int32_t *restrict shift,
                          int64_t channels, int64_t plane, int32_t mode, int32_t bits, int32_t act,
                          void *restrict out, int32_t out_type, int32_t simd);

/* Max pool, Darknet semantics (QMaxpool.forward_ref): window origin -pad/2 (C truncation),
 * taps outside the image ignored.  in: [c][h][w], out: [c][oh][ow], same type. */
int mdfi_maxpool(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                 int32_t size, int32_t stride, int32_t pad,
                 void *restrict out, int32_t oh, int32_t ow);

/* Nearest-neighbour upsample by `stride` (QUpsample.forward_ref).
 * in: [c][h][w], out: [c][h*stride][w*stride], same type. */
int mdfi_upsample(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                  int32_t stride, void *restrict out);

/* Route input copy with format alignment (QRoute.forward_ref / fixedpoint.align):
 *   out[i] = sat_bits(R(in[i] / 2^shift)),  shift >= 0 (0: plain copy with type change).
 * in: n elements of in_type, out: n elements of out_type (out_type at least as wide). */
int mdfi_align_copy(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                    int32_t mode, int32_t bits, void *restrict out, int32_t out_type);

/* mdfi_align_copy_ex with zero points (fixedpoint.align): zero_in, a value in
 * [-32768, 65535] (the input's zero point), and zero_out in [qmin(bits), qmax(bits)]:
 *   out[i] = sat_bits(R((in[i] - zero_in) / 2^shift) + zero_out)
 * -4 for a zero point out of range; zero_in = zero_out = 0 is mdfi_align_copy_ex. */
int mdfi_align_copy_zp(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                       int32_t mode, int32_t bits, void *restrict out, int32_t out_type,
                       int32_t zero_in, int32_t zero_out, const mdfi_kopts *opts);

/* Shortcut (QShortcut.forward_ref):
 *   s = a * 2^(fm - fa) + b * 2^(fm - fb),  fm = max(fa, fb)   (exact, int64)
 *   out = mdfi_requantize(s, fm - out_frac, mode, bits, act)
 * a, b, out: n elements; |fa - fb| <= 16. */
int mdfi_shortcut(const void *restrict a, int32_t a_type, int32_t fa,
                  const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                  int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                  void *restrict out, int32_t out_type);

/* mdfi_shortcut_ex with zero points (QShortcut.forward_ref, docs/fixed-point.md section 6):
 *   s = (a - za) * 2^(fm - fa) + (b - zb) * 2^(fm - fb)   (exact, int64)
 *   out = mdfi_requantize_zp(s, fm - out_frac, mode, bits, act, zo)
 * za, zb in [-32768, 65535], zo in [qmin(bits), qmax(bits)] (-4 otherwise).  b == NULL: b's
 * real value is 0 everywhere (the term b - zb is 0; the elements of a beyond a shorter b).
 * za = zb = zo = 0 with b != NULL is mdfi_shortcut_ex. */
int mdfi_shortcut_zp(const void *restrict a, int32_t a_type, int32_t fa,
                     const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                     int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                     void *restrict out, int32_t out_type, int32_t za, int32_t zb, int32_t zo,
                     const mdfi_kopts *opts);

/* Darknet's reorg permutation (QReorg.forward_ref): out[k'] = in[perm(k')], see reorg.py.
 * in: [c][h][w] (input dims), out: c*h*w elements, same type. */
int mdfi_reorg(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
               int32_t stride, void *restrict out);

/* Global average pool (QAvgpool.forward_ref, docs/fixed-point.md section 9.1; mdfi_kernels_scale.c):
 *   S = sum over p of (in[ch][p] - zi)          (exact, int64)
 *   out[ch] = sat(mdfi_div_round(S * 2^d, plane) + zo)        d >= 0
 *   out[ch] = sat(mdfi_div_round(S, plane * 2^-d) + zo)       d < 0
 * in: [c][plane] (U8/S8/S16), out: [c] (S8/S16, bits <= 16); 1 <= plane <= 2^24, -24 <= d <= 20. */
int mdfi_avgpool(const void *restrict in, int32_t in_type, int32_t zi, int32_t c, int64_t plane, int32_t d,
                 int32_t mode, int32_t bits, int32_t zo, void *restrict out, int32_t out_type);

/* Product of a scale and a tensor (QScaleChannels.forward_ref, section 9.2): for ch < c, p < plane
 *   P = (a[ch * a_cstride + p * a_pstride] - za) * (b[ch][p] - zb)          (exact, int64)
 *   out[ch][p] = mdfi_requantize_zp(P, shift, mode, bits, act, zo)
 * Strides (1, 0): [scale_channels] one scale per channel; (0, 1): scale_wh=1, one per position;
 * (plane, 1): [sam], one per element.  b, out: [c][plane]. */
int mdfi_scale_channels(const void *restrict a, int32_t a_type, int32_t za, int64_t a_cstride, int64_t a_pstride,
                        const void *restrict b, int32_t b_type, int32_t zb, int32_t c, int64_t plane,
                        int32_t shift, int32_t mode, int32_t bits, int32_t act, int32_t zo,
                        void *restrict out, int32_t out_type);

/* Detection-head lookup stage (QYolo / QRegion forward_ref, docs section 7):
 *   for every channel ch and pixel: q = in[ch][p];
 *     table_sel[ch] == 0: out = logistic[q - qmin]     (uint16 Q1.15)
 *     table_sel[ch] == 1: out = exp[q - qmin]          (int32 Q15.16)
 *     table_sel[ch] == 2: left for mdfi_softmax_int (not written here)
 * in: [c][plane] of in_type with values in [qmin, qmin + table_len - 1];
 * out: [c][plane] int32.  Tables have table_len entries. */
int mdfi_head_lookup(const void *restrict in, int32_t in_type, int32_t c, int64_t plane,
                     int32_t qmin, const uint16_t *restrict logistic, const int32_t *restrict exp_tab,
                     int32_t table_len, const uint8_t *restrict table_sel, int32_t *restrict out);

/* Integer softmax over `classes` channels starting at channel `first`, for each of `n`
 * anchors whose blocks are `stride_anchor` channels apart (heads.softmax_int):
 *   d = max_c q_c - q_c; e = expneg[d]; S = sum e; p = (e * 2^16 + S) / (2 S)
 * in: [c][plane], out: [c][plane] int32 (only the class channels are written). */
int mdfi_softmax_int(const void *restrict in, int32_t in_type, int32_t n, int32_t stride_anchor,
                     int32_t first, int32_t classes, int64_t plane,
                     const int32_t *restrict expneg, int32_t table_len, int32_t *restrict out);

/* Table lookup: the table activations (mdfi.actlut.lookup, docs/fixed-point.md section 4.1)
 * and the detection-head tables of single channels (heads.lookup):
 *   out[i] = table[clamp(in[i] - qmin, 0, table_len - 1)]
 * in: n elements of in_type (U8/S8/S16), whose values lie in [qmin, qmin + table_len - 1]
 * (the producer saturates to its width; the clamp only keeps any input from reading outside
 * the table); table: table_len int32 values; out: n elements of out_type (S8/S16/S32).
 * Every table value must fit out_type (else -2, nothing written).  One portable path: it is
 * memory-bound and a gather does not pay (docs/performance.md); threads split the elements. */
int mdfi_lut(const void *restrict in, int32_t in_type, int64_t n, int32_t qmin,
             const int32_t *restrict table, int32_t table_len, void *restrict out, int32_t out_type);
int mdfi_lut_ex(const void *restrict in, int32_t in_type, int64_t n, int32_t qmin,
                const int32_t *restrict table, int32_t table_len, void *restrict out, int32_t out_type,
                const mdfi_kopts *opts);

/* The same kernels with explicit options (threads through opts->pool, SIMD path).  Same
 * arguments and results as the plain functions above; opts == NULL means the defaults. */
/* Grouped convolution computed directly (mdfi_kernels_grouped.c; docs/fixed-point.md 3.6): for
 * output channel m of group j = m / (M/G), acc = bias[m] + sum over input channels
 * [j*C/G, (j+1)*C/G) and the k x k taps of w * x (padded taps = pad_value), exact in int64;
 * out[m] = mdfi_requantize_zp(acc, shift[m], rounding, bits, act, zero_out).
 *   in      : [C][H][W] of in_type (U8/S8/S16)
 *   weights : [M][C/G][k][k] int16 (any weights of <= 16 bits)
 *   bias    : [M] int64; shift: [M] int32 in [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT]
 *   out     : [M][OH][OW] of out_type (S8 with bits <= 8, S16), OH = (H + 2 pad - k)/stride + 1
 * The accumulator bound (section 3.2, K = (C/G) k k) keeps every sum below 2^47, and below 2^31
 * when acc32 is set (the layer's acc_bits <= 32: then int32 sums; -1 if a bias does not fit int32).  Threads split
 * the output channels.  Bodies by opts->simd: portable, AVX2, AVX-512 BW (+ VNNI where the CPU has it).  Returns 0, -1 (bad argument), -2 (bad output size), -3 (no memory). */
int mdfi_conv_grouped_ex(const void *restrict in, int32_t in_type, int32_t c, int32_t h, int32_t w,
                         const int16_t *restrict weights, const int64_t *restrict bias,
                         const int32_t *restrict shift, int32_t m, int32_t groups, int32_t k, int32_t stride,
                         int32_t pad, int32_t pad_value, int32_t rounding, int32_t bits, int32_t act,
                         int32_t zero_out, int32_t acc32, void *restrict out, int32_t out_type, int32_t oh,
                         int32_t ow, const mdfi_kopts *opts);
/* Testing: 0 keeps the grouped kernel's AVX-512 body off VNNI (vpmaddwd + vpaddd instead of
 * vpdpwssd) on a VNNI CPU, 1 (default) lets it use VNNI. */
void mdfi_grouped_set_vnni(int allowed);

int mdfi_maxpool_ex(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                    int32_t size, int32_t stride, int32_t pad,
                    void *restrict out, int32_t oh, int32_t ow, const mdfi_kopts *opts);
int mdfi_upsample_ex(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                     int32_t stride, void *restrict out, const mdfi_kopts *opts);
int mdfi_align_copy_ex(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                       int32_t mode, int32_t bits, void *restrict out, int32_t out_type,
                       const mdfi_kopts *opts);
int mdfi_shortcut_ex(const void *restrict a, int32_t a_type, int32_t fa,
                     const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                     int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                     void *restrict out, int32_t out_type, const mdfi_kopts *opts);
int mdfi_head_lookup_ex(const void *restrict in, int32_t in_type, int32_t c, int64_t plane,
                        int32_t qmin, const uint16_t *restrict logistic,
                        const int32_t *restrict exp_tab, int32_t table_len,
                        const uint8_t *restrict table_sel, int32_t *restrict out,
                        const mdfi_kopts *opts);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_KERNELS_H */
