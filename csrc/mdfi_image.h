/* mdfi_image.h -- Darknet-exact image pre-processing (float32, host side).
 *
 * This is the only floating-point C in MDFI: it reproduces Darknet's letterbox_image()
 * (src/image.c, pjreddie/darknet) operation for operation, so that MDFI's network input is
 * bit-identical to Darknet's.  Compile without -ffast-math and with -ffp-contract=off
 * (no fused multiply-add): Darknet's build does not contract these expressions either.
 *
 * Plain C11 (C11 atomics for the thread split of the 8-bit letterbox, when available), no
 * allocation, no Python headers.
 */
#ifndef MDFI_IMAGE_H
#define MDFI_IMAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Letterbox one planar image into a network input canvas.
 *
 *   src     : [c][h][w]          float32, planar (Darknet image layout), values in [0,1]
 *   part    : [c][h][new_w]      float32 scratch (the horizontally resized image)
 *   dst     : [c][net_h][net_w]  float32 output; filled with 0.5, then the image resized
 *                                to new_w x new_h is pasted at ((net_w-new_w)/2, (net_h-new_h)/2)
 *
 * new_w/new_h come from the caller (mdfi.preprocess.letterbox_geometry computes them the
 * way Darknet does) and must satisfy 1 <= new_w <= net_w, 1 <= new_h <= net_h.
 * Returns 0 on success, -1 on inconsistent sizes (nothing is written then).
 */
int mdfi_letterbox_f32(const float *restrict src, int32_t c, int32_t h, int32_t w,
                       float *restrict part, int32_t new_h, int32_t new_w,
                       float *restrict dst, int32_t net_h, int32_t net_w);

/* A thread pool: pool(job, arg, n) calls job(arg, tid) on up to n threads (tid 0..n-1, the
 * caller included) and returns when every call has returned; job takes its work from an
 * atomic counter, so it is complete whichever threads join.  mdfi_conv_pool_run (mdfi_conv.h)
 * is one (the same type as mdfi_pool_fn in mdfi_kernels.h). */
typedef int (*mdfi_image_pool_fn)(void (*job)(void *arg, int tid), void *arg, int nthreads);

/* The same letterbox straight from 8-bit pixels to the 8-bit network input of the integer
 * engine, in one call: for every byte value and size it equals
 *     input_to_u8(letterbox_f32(rgb / 255.f))      (mdfi.quant.quantize.input_to_u8)
 * -- the same float32 operations in the same order (v / 255.f is looked up in a table of the
 * 256 values where letterbox_f32 reads a pixel), then p = floor(255*(double)v + 1/2) clamped to
 * 0..255 (v >= 0, so the truncating conversion is the floor; the 0.5 border becomes 128).
 * Only the source rows that the vertical pass reads are resized horizontally, each into a
 * small per-thread ring of two rows (no [c][h][new_w] intermediate).
 *
 *   rgb     : [h] rows of row_stride bytes; pixel x of row y at rgb + y*row_stride +
 *             x*pixel_stride, its c channels consecutive (pixel_stride >= c: 3 for packed
 *             RGB, 4 for Pillow's RGBX storage)
 *   scratch : floats             mdfi_letterbox_u8_scratch(c, new_w, nthreads) of them
 *   dst     : [c][net_h][net_w]  uint8 output
 *   pool    : NULL (this thread only) or a pool (above) running the canvas rows on up to
 *             nthreads threads; the result does not depend on the thread count
 *   simd    : 0 = portable C; 1 = the AVX2 twins of both passes where the CPU has AVX2 (and
 *             c == 3, w >= 2): the same float32/double operations in the same order, equal
 * Returns 0, or -1 on inconsistent sizes / scratch too small (nothing written).
 */
int mdfi_image_have_avx2(void);
int64_t mdfi_letterbox_u8_scratch(int32_t c, int32_t new_w, int32_t nthreads);
int mdfi_letterbox_u8(const uint8_t *restrict rgb, int32_t c, int32_t h, int32_t w, int32_t pixel_stride,
                      int64_t row_stride, float *restrict scratch, int64_t scratch_floats, uint8_t *restrict dst,
                      int32_t new_h, int32_t new_w, int32_t net_h, int32_t net_w, mdfi_image_pool_fn pool,
                      int32_t nthreads, int32_t simd);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_IMAGE_H */
