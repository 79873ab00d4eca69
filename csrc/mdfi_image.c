/* mdfi_image.c -- see mdfi_image.h.  Darknet's resize_image() + embed_image(). */
#include "mdfi_image.h"

#include <stddef.h>

int mdfi_letterbox_f32(const float *restrict src, int32_t c, int32_t h, int32_t w,
                       float *restrict part, int32_t new_h, int32_t new_w,
                       float *restrict dst, int32_t net_h, int32_t net_w)
{
    if (c < 1 || h < 1 || w < 1 || new_w < 1 || new_h < 1 ||
        new_w > net_w || new_h > net_h)
        return -1;

    const int32_t off_x = (net_w - new_w) / 2;   /* integer offset, as embed_image() */
    const int32_t off_y = (net_h - new_h) / 2;

    /* fill_image(boxed, .5) */
    const size_t plane = (size_t)net_h * (size_t)net_w;
    for (size_t i = 0; i < (size_t)c * plane; ++i) dst[i] = 0.5f;

    /* Darknet: w_scale = (float)(im.w - 1) / (w - 1).  For new_w == 1 this divides by 0
     * (inf), but then every column is the last one and the scale is never used. */
    const float w_scale = (new_w > 1) ? (float)(w - 1) / (float)(new_w - 1) : 0.0f;
    const float h_scale = (new_h > 1) ? (float)(h - 1) / (float)(new_h - 1) : 0.0f;

    /* Pass 1: horizontal.  part[k][r][col] */
    for (int32_t k = 0; k < c; ++k) {
        for (int32_t r = 0; r < h; ++r) {
            const float *row = src + ((size_t)k * h + r) * (size_t)w;
            float *out = part + ((size_t)k * h + r) * (size_t)new_w;
            for (int32_t col = 0; col < new_w; ++col) {
                float val;
                if (col == new_w - 1 || w == 1) {
                    val = row[w - 1];
                } else {
                    const float sx = (float)col * w_scale;
                    const int32_t ix = (int32_t)sx;
                    const float dx = sx - (float)ix;
                    /* ix <= w-2 holds mathematically; the guard only keeps a rounding
                     * accident from reading past the row (Darknet would). */
                    val = (ix >= w - 1) ? row[w - 1]
                                        : (1.0f - dx) * row[ix] + dx * row[ix + 1];
                }
                out[col] = val;
            }
        }
    }

    /* Pass 2: vertical, written straight into the canvas (embed_image). */
    for (int32_t k = 0; k < c; ++k) {
        for (int32_t r = 0; r < new_h; ++r) {
            const float sy = (float)r * h_scale;
            int32_t iy = (int32_t)sy;
            const float dy = sy - (float)iy;
            if (iy > h - 1) iy = h - 1;            /* same guard as above */
            const float *p0 = part + ((size_t)k * h + iy) * (size_t)new_w;
            float *out = dst + (size_t)k * plane + (size_t)(r + off_y) * (size_t)net_w + off_x;
            for (int32_t col = 0; col < new_w; ++col) out[col] = (1.0f - dy) * p0[col];
            if (r == new_h - 1 || h == 1 || iy >= h - 1) continue;
            const float *p1 = p0 + new_w;
            for (int32_t col = 0; col < new_w; ++col) out[col] += dy * p1[col];
        }
    }
    return 0;
}
