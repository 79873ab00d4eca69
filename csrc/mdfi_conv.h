/* mdfi_conv.h -- MDFI's integer convolution kernel (fused im2col + GEMM + requantize).
 *
 * Executable specification: mdfi.layers.convolutional.conv2d_int_ref.  For every output
 * channel m and output pixel p:
 *
 *     out[m][p] = sat(R(act(sum_k W[m][k] * col[k][p] + bias[m]) / 2^shift[m]) + zero_out,
 *                     out_bits)
 *               = mdfi_requantize_zp(sum + bias[m], shift[m], rounding, out_bits, act, zero_out)
 *
 * with col = Darknet's im2col of the input padded with pad_value (the input's zero point;
 * k = (c*ks + ky)*ks + kx).  A code q of a format with zero point z means (q - z) * 2^-frac.
 * mdfi_conv2d / mdfi_conv2d_pool / mdfi_conv2d_res are the zero-free forms (pad_value =
 * zero_out = 0); mdfi_conv2d_zp / mdfi_conv2d_pool_zp take both.  The
 * result is bit-identical to the reference for every input inside the accumulator contract
 * (below), on every code path (scalar, AVX2) and for every thread count.
 *
 * Buffers (all C-contiguous, row-major; nothing is retained after a call):
 *   x       : [C][H][W]              uint8 | int8 | int16 (xtype), the layer input
 *   w       : [M][C][ks][ks]         int8 | int16 (wtype), Darknet's weight order
 *   packed  : opaque bytes            made by mdfi_conv_pack_weights() once at model load
 *   bias    : [M]                    int64, at the accumulator scale
 *   shift   : [M]                    int32 requantizing shifts, MDFI_MIN_SHIFT..MDFI_MAX_SHIFT
 *   out     : [M][OH][OW]            int8 (out_bits <= 8) | int16 (out_bits <= 16)
 *   scratch : bytes                  mdfi_conv_scratch_size() of them, any alignment
 * with OH = (H + 2*pad - ks)/stride + 1 and OW likewise (both >= 1).
 *
 * Accumulator contract:
 *   acc64 == 0: the caller (the quantizer) guarantees |sum| + |bias| < 2^31 for every output,
 *               so the dot products are accumulated in int32 (arithmetic modulo 2^32 on every
 *               path, so the result is exact whenever the guarantee holds, and identical
 *               across paths even when it does not); the bias is added in int64.
 *   acc64 == 1: the sums are exact int64 (slower path, used for widths > 8; on the SIMD
 *               paths int32 chunks that cannot overflow, int16 activations split into
 *               two bytes when those chunks would be short, mdfi_conv.c).
 *   Always: |bias| <= 2^47 and K * max|W| * max|x-type| <= 2^47 (K = C*ks*ks), so the
 *   accumulator handed to mdfi_requantize stays below 2^48 (checked: MDFI_CONV_E_RANGE).
 *
 * Threads: nthreads workers of a small POSIX-thread pool (mdfi_conv_pool.c; the calling
 * thread is one of them).  Work is handed out dynamically, but every output element is
 * computed by exactly one thread with the same integer operations, so results never depend
 * on the thread count or the schedule.  Safe across fork(); a caller that finds the pool
 * busy (another thread is convolving) runs on its own thread.  Without POSIX threads the
 * kernel runs on the calling thread.
 *
 * Code paths (mdfi_conv_paths.c), chosen at run time from CPUID / getauxval, never from
 * build flags:
 *   scalar        portable C, int16 pairs (the reference every other path is tested against)
 *   avx2          int16 pairs, vpmaddwd ymm (8-bit 3x3 stride-1 layers of >= 32 channels:
 *                 integer Winograd F(2x2,3x3), mdfi_conv_wino.c)
 *   avx512bw      int16 pairs, vpmaddwd zmm (the same Winograd layers)
 *   avxvnni       8-bit layers: vpdpbusd ymm (VEX, AVX-VNNI); other layers: avx2
 *   avx512vnni    8-bit layers: vpdpbusd zmm; other layers: avx512bw
 *   amx           8-bit layers: tdpbusd (AMX tiles) where channels allow, else avx512vnni
 *   neon          int16 pairs, smlal (aarch64)
 *   neondot       8-bit layers: sdot (aarch64 dot product); other layers: neon
 *   avx512vnni-ymm, amx-sim, scalar8: test paths -- the avxvnni kernels compiled for
 *                 AVX512-VNNI ymm (EVEX; the tested twin of the VEX build), the amx kernel on
 *                 a C model of the tile instructions (its tested twin), and the 8-bit driver
 *                 with portable arithmetic.
 * "8-bit layers": int8/uint8 activations x int8 weights with int32 accumulation (acc64 == 0);
 * everything else (wider formats, acc64) takes the path's int16-pair kernels.  Every SIMD
 * path runs a small self-check against the scalar path on first use (zero-free and with zero
 * points) and falls back (one line on stderr) if it differs.  mdfi_conv_env_path() reads
 * MDFI_SIMD (a path name, "0" = scalar, unset/"auto" = best available); the caller reads it
 * once and passes the path to every call.
 *
 * Zero points (mdfi_conv2d_zp): the padding value goes into each path's padded copy of the
 * input (X2, the Winograd X2, the 8-bit family's X4 as pad_value ^ flip); the SIMD epilogues
 * clamp to [qmin - zero_out, qmax - zero_out] and add zero_out (the narrowing then cannot
 * saturate); with both 0 every path runs exactly the zero-free code.
 *
 * Plain C11, no Python headers, no floating point, no allocation.
 */
#ifndef MDFI_CONV_H
#define MDFI_CONV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of x / w / out. */
enum { MDFI_CONV_U8 = 0, MDFI_CONV_S8 = 1, MDFI_CONV_S16 = 2 };

/* Code paths (see above). */
enum {
    MDFI_CONV_PATH_SCALAR = 0,
    MDFI_CONV_PATH_AVX2 = 1,
    MDFI_CONV_PATH_AVX512BW = 2,
    MDFI_CONV_PATH_AVXVNNI = 3,
    MDFI_CONV_PATH_AVX512VNNI = 4,
    MDFI_CONV_PATH_AMX = 5,
    MDFI_CONV_PATH_NEON = 6,
    MDFI_CONV_PATH_NEONDOT = 7,
    MDFI_CONV_PATH_AVX512VNNI_YMM = 8,
    MDFI_CONV_PATH_SCALAR8 = 9,
    MDFI_CONV_PATH_AMX_SIM = 10,
    MDFI_CONV_NPATHS = 11
};

/* Return codes (0 = success; nothing is written on failure). */
enum {
    MDFI_CONV_OK = 0,
    MDFI_CONV_E_DIM = -1,      /* a dimension < 1 / pad < 0 / empty output / too large  */
    MDFI_CONV_E_PACKED = -2,   /* packed weights corrupt, wrong size or not matching     */
    MDFI_CONV_E_SCRATCH = -3,  /* scratch smaller than mdfi_conv_scratch_size()          */
    MDFI_CONV_E_BITS = -4,     /* out_bits outside 2..16 or too wide for the out type    */
    MDFI_CONV_E_SHIFT = -5,    /* a shift outside [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT]        */
    MDFI_CONV_E_CODE = -6,     /* unknown rounding / activation / type / acc64 code      */
    MDFI_CONV_E_RANGE = -7,    /* |bias| or K*max|w|*max|x| above 2^47                   */
    MDFI_CONV_E_THREADS = -8,  /* nthreads < 1                                            */
    MDFI_CONV_E_COUNT = -9,    /* x / out element count does not match the shapes        */
    MDFI_CONV_E_ZERO = -10     /* pad_value outside the input type / zero_out outside
                                  [qmin(out_bits), qmax(out_bits)] / zero points where the
                                  call cannot take them (fused shortcut)                   */
};

/* Register tile of the GEMM: MR output channels x NR output pixels. */
#define MDFI_CONV_MR 6
#define MDFI_CONV_NR 16

/* (n + 2*pad - ks)/stride + 1, or -1 if that is < 1 or an argument is out of range. */
int32_t mdfi_conv_out_size(int32_t n, int32_t ks, int32_t stride, int32_t pad);

/* Bytes of the packed weights of an M x C x ks x ks convolution, or -1 if too large. */
int64_t mdfi_conv_packed_size(int32_t m, int32_t c, int32_t ks);

/* Pack w ([M][C][ks][ks], wtype MDFI_CONV_S8 or MDFI_CONV_S16) into `packed`
 * (packed_size bytes, exactly mdfi_conv_packed_size(m, c, ks)).  Call once per model. */
int mdfi_conv_pack_weights(const void *w, int wtype, int32_t m, int32_t c, int32_t ks,
                           void *packed, int64_t packed_size);

/* Read the shape stored in a packed buffer (validating it).  Any out pointer may be NULL. */
int mdfi_conv_packed_info(const void *packed, int64_t packed_size, int32_t *m, int32_t *c,
                          int32_t *ks, int32_t *wtype, int32_t *wmax);

/* Bytes of scratch one call with these shapes needs, or -1 if the shapes are invalid. */
int64_t mdfi_conv_scratch_size(int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks,
                               int32_t stride, int32_t pad, int32_t nthreads);

/* The convolution.  x_count / out_count are the element counts of the x and out buffers
 * (checked against the shapes).  Returns MDFI_CONV_OK or a negative MDFI_CONV_E_* code. */
int mdfi_conv2d(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                const void *packed, int64_t packed_size,
                const int64_t *bias, const int32_t *shift, int32_t m,
                void *out, int otype, int64_t out_count,
                int32_t ks, int32_t stride, int32_t pad,
                int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size);

/* mdfi_conv2d with zero points: the padding holds pad_value (0..255 for U8 inputs, -128..127
 * for S8, -32768..32767 for S16) and zero_out (in [qmin(out_bits), qmax(out_bits)]) is added
 * to every output before the saturation (formula above); MDFI_CONV_E_ZERO otherwise.
 * pad_value = zero_out = 0 is mdfi_conv2d, bit for bit. */
int mdfi_conv2d_zp(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                   const void *packed, int64_t packed_size,
                   const int64_t *bias, const int32_t *shift, int32_t m,
                   void *out, int otype, int64_t out_count,
                   int32_t ks, int32_t stride, int32_t pad,
                   int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                   int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                   int32_t pad_value, int32_t zero_out);

/* A shortcut fused into the convolution (mdfi_conv2d_res): with a = the convolution's output
 * element (as stored: out_bits wide) and b the element of `b` at the same [M][OH][OW] index,
 *     res_out = mdfi_requantize(a * 2^da + b * 2^db, shift, rounding, bits, act)
 * computed exactly (int64) -- the shortcut of docs/fixed-point.md section 6 with da = fm - fa,
 * db = fm - fb, shift = fm - f_out.  The convolution's own output is written as well. */
typedef struct mdfi_conv_residual {
    const void *b;                    /* [M][OH][OW], b_type (MDFI_CONV_S8 | MDFI_CONV_S16)   */
    int32_t b_type;
    int32_t da, db;                   /* 0..16                                                 */
    int32_t shift, rounding, bits, act;   /* shift in [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT], bits 2..16 */
    void *out;                        /* [M][OH][OW], out_type (S8 for bits <= 8, else S16)    */
    int32_t out_type;
} mdfi_conv_residual;

/* mdfi_conv2d followed by the fused shortcut `res` (NULL: plain mdfi_conv2d).  res->b and
 * res->out hold out_count elements and must not overlap x, out or each other.  Paths whose
 * kernels cannot apply it in their epilogue run it as a pass over the output (same result). */
int mdfi_conv2d_res(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                    const void *packed, int64_t packed_size,
                    const int64_t *bias, const int32_t *shift, int32_t m,
                    void *out, int otype, int64_t out_count,
                    int32_t ks, int32_t stride, int32_t pad,
                    int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                    int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                    const mdfi_conv_residual *res);

/* mdfi_conv2d, and the 2x2 stride-2 max pool of its output (windows at the origin, the pool of
 * an output with even OH and OW: [M][OH/2][OW/2], otype, pool_count elements, not overlapping
 * x or out) written in the same pass where the path can (the Winograd kernels of the
 * int16-pair SIMD paths).  Returns 1 when `pool` was written, 0 when it was not (the caller
 * then runs the pool), or a negative MDFI_CONV_E_* code.  `out` is written unless the pool was
 * and `pool_only` is nonzero (for an output that nothing else reads). */
int mdfi_conv2d_pool(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                     const void *packed, int64_t packed_size,
                     const int64_t *bias, const int32_t *shift, int32_t m,
                     void *out, int otype, int64_t out_count,
                     int32_t ks, int32_t stride, int32_t pad,
                     int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                     int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                     void *pool, int64_t pool_count, int32_t pool_only);
/* mdfi_conv2d_pool with zero points (mdfi_conv2d_zp); the pool of stored codes is unaffected. */
int mdfi_conv2d_pool_zp(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                        const void *packed, int64_t packed_size,
                        const int64_t *bias, const int32_t *shift, int32_t m,
                        void *out, int otype, int64_t out_count,
                        int32_t ks, int32_t stride, int32_t pad,
                        int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                        int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                        void *pool, int64_t pool_count, int32_t pool_only,
                        int32_t pad_value, int32_t zero_out);

/* Best path this CPU supports; the path MDFI_SIMD selects (a path the CPU lacks falls back
 * to the best one); a path's name ("scalar", "avx2", ...; "unknown"); the path of a name
 * (-1 if none); whether this CPU and build can run a path; the path a call with `path`
 * really uses (after the self-check: `path`, or its fallback); a code's message. */
int32_t mdfi_conv_best_path(void);
int32_t mdfi_conv_env_path(void);
const char *mdfi_conv_path_name(int32_t path);
int32_t mdfi_conv_path_from_name(const char *name);
int mdfi_conv_path_available(int32_t path);
int32_t mdfi_conv_effective_path(int32_t path);
const char *mdfi_conv_strerror(int code);

/* Testing only: force the 8-bit family's register tile (index into the path's kernel list,
 * clamped; -1 = automatic) and B mode (1 = direct, 0 = packed, 2 = compact for kernels of 2x2 and more, else packed, -1 = automatic) for every later
 * call in this process. */
void mdfi_conv_q8_override(int32_t kernel, int32_t direct);
/* Testing / benchmarks: the 8-bit kernel-choice profile (-1 auto: Intel on the AVX512-VNNI zmm
 * path of an Intel CPU, else generic; 0 generic; 1 Intel on every path).  Choice only: every
 * profile computes the same bits. */
void mdfi_conv_q8_tune(int32_t profile);
/* Testing only: 0 turns the Winograd F(2x2,3x3) kernels of the int16-pair paths off (the
 * direct kernels then run every layer), 1 (default) on. */
void mdfi_conv_set_winograd(int32_t enable);
/* Testing / benchmarks: the split path of acc64 layers with int16 inputs on the SIMD paths
 * (mdfi_conv.c, conv_int16): -1 automatic (default), 0 never, 1 whenever it applies. */
void mdfi_conv_set_split(int32_t mode);
/* Testing: how many convolutions of this process took that split path. */
int64_t mdfi_conv_split_calls(void);
/* Testing: 16-bit-input convolutions run as AMX byte-split products (mdfi_q8_split_ok). */
int64_t mdfi_conv_q8_split_calls(void);
/* The 8-bit register tiles of a path: writes up to `max` (rows, vectors, lanes) triples into
 * tiles[3*i..3*i+2] and returns how many the path has (0: no 8-bit kernels). */
int32_t mdfi_conv_q8_tiles(int32_t path, int32_t *tiles, int32_t max);
/* Testing / benchmarks: the tile and B mode the 8-bit convolution of a path picks for a layer
 * (under the current profile and override): tile index * 4 + mode (0 packed, 1 direct,
 * 2 compact), or -1 (no 8-bit kernels, or a geometry they cannot take). */
int32_t mdfi_conv_q8_choice(int32_t path, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                            int32_t pad, int32_t nthreads);

/* The convolution's thread pool, for other kernels (mdfi_kopts.pool in mdfi_kernels.h):
 * calls job(arg, tid) on up to nthreads threads -- the caller (tid 0) and the workers that
 * join while it is busy -- and returns when every call has returned.  job must hand out its
 * work through an atomic counter (it is complete whoever joins).  Returns the number of
 * participants. */
int mdfi_conv_pool_run(void (*job)(void *arg, int tid), void *arg, int nthreads);

/* Join the worker threads (they are created on the first multi-threaded call and kept
 * for the next ones).  Optional: call it before exit for a clean shutdown (e.g. valgrind);
 * a later mdfi_conv2d starts them again. */
void mdfi_conv_shutdown(void);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_CONV_H */
