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

#ifdef __cplusplus
}
#endif
#endif /* MDFI_IMAGE_H */
