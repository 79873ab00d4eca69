/* mdfi_image.h -- Darknet-exact image pre-processing (float32, host side).
 *
 * This is the only floating-point C in MDFI: it reproduces Darknet's letterbox_image()
 * (src/image.c, pjreddie/darknet) operation for operation, so that MDFI's network input is
 * bit-identical to Darknet's.  Compile without -ffast-math and with -ffp-contract=off
 * (no fused multiply-add): Darknet's build does not contract these expressions either.
 *
 * Plain C99, no allocation, no Python headers.
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

/* The same letterbox straight from 8-bit pixels to the 8-bit network input of the integer
 * engine, in one call: for every byte value and size it equals
 *     input_to_u8(letterbox_f32(rgb / 255.f))      (mdfi.quant.quantize.input_to_u8)
 * -- the same float32 operations in the same order (v / 255.f is looked up in a table of the
 * 256 values where letterbox_f32 reads a pixel), then p = floor(255*(double)v + 1/2) clamped to
 * 0..255 (v >= 0, so the truncating conversion is the floor; the 0.5 border becomes 128).
 * Only the source rows that the vertical pass reads are resized horizontally.
 *
 *   rgb     : [h][w][c]          uint8, interleaved (as decoded)
 *   scratch : floats             mdfi_letterbox_u8_scratch(c, h, new_w) of them
 *   dst     : [c][net_h][net_w]  uint8 output
 * Returns 0, or -1 on inconsistent sizes / scratch too small (nothing written).
 */
int64_t mdfi_letterbox_u8_scratch(int32_t c, int32_t h, int32_t new_w);
int mdfi_letterbox_u8(const uint8_t *restrict rgb, int32_t c, int32_t h, int32_t w, float *restrict scratch,
                      int64_t scratch_floats, uint8_t *restrict dst, int32_t new_h, int32_t new_w, int32_t net_h,
                      int32_t net_w);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_IMAGE_H */
