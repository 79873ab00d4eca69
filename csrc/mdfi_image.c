/* mdfi_image.c -- see mdfi_image.h.  Darknet's resize_image() + embed_image(). */
#include "mdfi_image.h"

#include <stddef.h>
#include <string.h>

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

/* ---------------------------------------------------------------------------------------
 * 8-bit pixels in, 8-bit network input out (see mdfi_image.h)
 * ------------------------------------------------------------------------------------- */
int64_t mdfi_letterbox_u8_scratch(int32_t c, int32_t h, int32_t new_w)
{
    if (c < 1 || h < 1 || new_w < 1) return -1;
    /* part [c][h][new_w], the 256 pixel values, dx [new_w], ix [new_w], needed rows [h] */
    return (int64_t)c * h * new_w + 256 + 2 * (int64_t)new_w + h;
}

static inline uint8_t to_pixel(float v)
{
    const double d = (double)v * 255.0 + 0.5;        /* exact: v has 24 significant bits */
    return d >= 255.0 ? 255 : (uint8_t)(int32_t)d;   /* v >= 0: truncation is the floor  */
}

int mdfi_letterbox_u8(const uint8_t *restrict rgb, int32_t c, int32_t h, int32_t w, float *restrict scratch,
                      int64_t scratch_floats, uint8_t *restrict dst, int32_t new_h, int32_t new_w, int32_t net_h,
                      int32_t net_w)
{
    if (c < 1 || h < 1 || w < 1 || new_w < 1 || new_h < 1 || new_w > net_w || new_h > net_h ||
        scratch_floats < mdfi_letterbox_u8_scratch(c, h, new_w))
        return -1;
    float *part = scratch;
    float *val = part + (size_t)c * h * new_w;          /* val[p] = (float)p / 255.f      */
    float *dxs = val + 256;
    int32_t *ixs = (int32_t *)(void *)(dxs + new_w);    /* -1: the last column            */
    unsigned char *need = (unsigned char *)(void *)(ixs + new_w);
    for (int p = 0; p < 256; ++p) val[p] = (float)p / 255.0f;

    /* columns: the source positions of mdfi_letterbox_f32's horizontal pass */
    const float w_scale = (new_w > 1) ? (float)(w - 1) / (float)(new_w - 1) : 0.0f;
    for (int32_t col = 0; col < new_w; ++col) {
        ixs[col] = -1;
        dxs[col] = 0.0f;
        if (col == new_w - 1 || w == 1) continue;
        const float sx = (float)col * w_scale;
        const int32_t ix = (int32_t)sx;
        if (ix >= w - 1) continue;
        ixs[col] = ix;
        dxs[col] = sx - (float)ix;
    }
    /* rows the vertical pass reads */
    const float h_scale = (new_h > 1) ? (float)(h - 1) / (float)(new_h - 1) : 0.0f;
    for (int32_t r = 0; r < h; ++r) need[r] = 0;
    for (int32_t r = 0; r < new_h; ++r) {
        const float sy = (float)r * h_scale;
        int32_t iy = (int32_t)sy;
        if (iy > h - 1) iy = h - 1;
        need[iy] = 1;
        if (!(r == new_h - 1 || h == 1 || iy >= h - 1)) need[iy + 1] = 1;
    }
    /* horizontal pass on the needed rows */
    for (int32_t r = 0; r < h; ++r) {
        if (!need[r]) continue;
        const uint8_t *row = rgb + (size_t)r * (size_t)w * (size_t)c;
        for (int32_t k = 0; k < c; ++k) {
            float *out = part + ((size_t)k * h + r) * (size_t)new_w;
            const float last = val[row[(size_t)(w - 1) * c + k]];
            for (int32_t col = 0; col < new_w; ++col) {
                const int32_t ix = ixs[col];
                if (ix < 0) {
                    out[col] = last;
                } else {
                    const float dx = dxs[col];
                    out[col] = (1.0f - dx) * val[row[(size_t)ix * c + k]] + dx * val[row[(size_t)(ix + 1) * c + k]];
                }
            }
        }
    }
    /* vertical pass into the canvas, then to pixels */
    const int32_t off_x = (net_w - new_w) / 2, off_y = (net_h - new_h) / 2;
    const size_t plane = (size_t)net_h * (size_t)net_w;
    for (int32_t k = 0; k < c; ++k) {
        for (int32_t y = 0; y < net_h; ++y) {
            uint8_t *out = dst + (size_t)k * plane + (size_t)y * (size_t)net_w;
            const int32_t r = y - off_y;
            if (r < 0 || r >= new_h) {                  /* the 0.5 border: 127.5 -> 128 */
                memset(out, 128, (size_t)net_w);
                continue;
            }
            memset(out, 128, (size_t)off_x);
            memset(out + off_x + new_w, 128, (size_t)(net_w - off_x - new_w));
            const float sy = (float)r * h_scale;
            int32_t iy = (int32_t)sy;
            const float dy = sy - (float)iy;
            if (iy > h - 1) iy = h - 1;
            const float *p0 = part + ((size_t)k * h + iy) * (size_t)new_w;
            uint8_t *o = out + off_x;
            if (r == new_h - 1 || h == 1 || iy >= h - 1) {
                for (int32_t col = 0; col < new_w; ++col) o[col] = to_pixel((1.0f - dy) * p0[col]);
            } else {
                const float *p1 = p0 + new_w;
                for (int32_t col = 0; col < new_w; ++col) {
                    const float t = (1.0f - dy) * p0[col];
                    o[col] = to_pixel(t + dy * p1[col]);
                }
            }
        }
    }
    return 0;
}
