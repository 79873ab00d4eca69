/* mdfi_image.c -- see mdfi_image.h.  Darknet's resize_image() + embed_image(). */
#include "mdfi_image.h"

#include <stddef.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define MDFI_IMAGE_X86 1
#include <immintrin.h>
#else
#define MDFI_IMAGE_X86 0
#endif

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
 *
 * One pass over the canvas rows: every canvas row y inside the pasted image needs the
 * horizontally resized source rows iy and iy+1 (mdfi_letterbox_f32's vertical pass); they are
 * computed on demand into a two-row ring per thread (iy never decreases along y), so the
 * horizontal pass runs only on the rows the vertical pass reads and its output stays in L1.
 * Threads take chunks of canvas rows; a row at a chunk boundary may be resized by two
 * threads, each into its own ring, with the same operations: the result does not depend on
 * the thread count or the schedule.
 * ------------------------------------------------------------------------------------- */
#if !defined(MDFI_NO_THREADS) && !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#define MDFI_IMG_ATOMIC 1
typedef _Atomic int64_t img_counter;
#else
#define MDFI_IMG_ATOMIC 0
typedef int64_t img_counter;
#endif

int mdfi_image_have_avx2(void)
{
#if MDFI_IMAGE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int64_t mdfi_letterbox_u8_scratch(int32_t c, int32_t new_w, int32_t nthreads)
{
    if (c < 1 || new_w < 1 || nthreads < 1) return -1;
    /* the 256 pixel values, dx and ix [new_w], the AVX2 path's dx and byte offsets [new_w],
     * a ring [2][c][new_w] per thread */
    return 256 + 4 * (int64_t)new_w + (int64_t)nthreads * 2 * c * new_w;
}

/* floor(255 v + 1/2) clamped to 0..255, for 0 <= v (v <= 1 + 2^-22 here: a convex
 * combination of values in [0, 1]).  (double)v * 255 + 0.5 is exact (v has 24 significant
 * bits), and for d >= 0 the truncating conversion is the floor. */
static inline uint8_t to_pixel(float v)
{
    double d = (double)v * 255.0 + 0.5;
    d = d < 255.0 ? d : 255.0;
    return (uint8_t)(int32_t)d;
}

typedef struct {
    const uint8_t *rgb;          /* [h] rows of row_stride bytes, pixel_stride bytes a pixel */
    int64_t row_stride;
    int32_t pix, c, h, w;
    const float *val;            /* [256]   (float)p / 255.f                              */
    const float *dxs;            /* [new_w] dx of each output column                      */
    const int32_t *ixs;          /* [new_w] left source column, -1: the last column       */
    const float *vdx;            /* [new_w] AVX2 path: dx, 1 for the last column          */
    const int32_t *voff;         /* [new_w] AVX2 path: byte offset of the left pixel      */
    int32_t avx2;                /* 1: the AVX2 twins of the two passes                   */
    float *rings;                /* [nthreads][2][c][new_w]                               */
    uint8_t *dst;                /* [c][net_h][net_w]                                     */
    int32_t new_h, new_w, net_h, net_w, off_x, off_y, nthreads;
    float h_scale;
    int64_t chunk, nchunks;
    img_counter next;
} lb_job;

/* mdfi_letterbox_f32's horizontal pass of source row r, every channel: out [c][new_w]. */
static void lb_hrow(const lb_job *j, int32_t r, float *restrict out)
{
    const uint8_t *restrict row = j->rgb + (int64_t)r * j->row_stride;
    const float *restrict val = j->val;
    const int32_t c = j->c, pix = j->pix, new_w = j->new_w;
    for (int32_t k = 0; k < c; ++k) {
        float *restrict o = out + (size_t)k * (size_t)new_w;
        const float last = val[row[(size_t)(j->w - 1) * (size_t)pix + (size_t)k]];
        for (int32_t col = 0; col < new_w; ++col) {
            const int32_t ix = j->ixs[col];
            if (ix < 0) {
                o[col] = last;
            } else {
                const float dx = j->dxs[col];
                const uint8_t *a = row + (size_t)ix * (size_t)pix + (size_t)k;
                o[col] = (1.0f - dx) * val[a[0]] + dx * val[a[pix]];
            }
        }
    }
}


#if MDFI_IMAGE_X86
/* AVX2 twin of lb_hrow for c == 3: eight columns at a time, the same float operations.  One
 * 32-bit gather reads the three channels of the left pixels, one those of the right pixels;
 * v / 255.f is computed (vdivps is IEEE division: the table's value).  The last column reads
 * the pixels w-2 and w-1 with dx = 1: (1-1)*a + 1*b = b exactly, the table value of the last
 * pixel (needs w >= 2).  A gather reads 4 bytes from a pixel's start: blocks that could read
 * past the image's last byte (`avail` bytes from this row's start) go to the scalar tail. */
__attribute__((target("avx2")))
static void lb_hrow3_avx2(const lb_job *j, int32_t r, float *restrict out)
{
    const uint8_t *restrict row = j->rgb + (int64_t)r * j->row_stride;
    const int64_t avail = (int64_t)(j->h - 1 - r) * j->row_stride + (int64_t)j->w * j->pix;
    const int32_t new_w = j->new_w, pix = j->pix;
    const __m256i m8 = _mm256_set1_epi32(0xff);
    const __m256 k255 = _mm256_set1_ps(255.0f), one = _mm256_set1_ps(1.0f);
    int32_t col = 0;
    for (; col + 8 <= new_w && (int64_t)j->voff[col + 7] + pix + 4 <= avail; col += 8) {
        const __m256i off = _mm256_loadu_si256((const __m256i *)(j->voff + col));
        const __m256i ga = _mm256_i32gather_epi32((const int *)(const void *)row, off, 1);
        const __m256i gb = _mm256_i32gather_epi32((const int *)(const void *)(row + pix), off, 1);
        const __m256 dx = _mm256_loadu_ps(j->vdx + col);
        const __m256 wa = _mm256_sub_ps(one, dx);
        for (int k = 0; k < 3; ++k) {
            const __m256i ia = _mm256_and_si256(_mm256_srli_epi32(ga, 8 * k), m8);
            const __m256i ib = _mm256_and_si256(_mm256_srli_epi32(gb, 8 * k), m8);
            const __m256 va = _mm256_div_ps(_mm256_cvtepi32_ps(ia), k255);
            const __m256 vb = _mm256_div_ps(_mm256_cvtepi32_ps(ib), k255);
            _mm256_storeu_ps(out + (size_t)k * new_w + col,
                             _mm256_add_ps(_mm256_mul_ps(wa, va), _mm256_mul_ps(dx, vb)));
        }
    }
    for (int k = 0; k < 3; ++k) {                /* tail: lb_hrow's loop */
        float *restrict o = out + (size_t)k * (size_t)new_w;
        const float last = j->val[row[(size_t)(j->w - 1) * (size_t)pix + (size_t)k]];
        for (int32_t cc = col; cc < new_w; ++cc) {
            const int32_t ix = j->ixs[cc];
            if (ix < 0) {
                o[cc] = last;
            } else {
                const float dx = j->dxs[cc];
                const uint8_t *a = row + (size_t)ix * (size_t)pix + (size_t)k;
                o[cc] = (1.0f - dx) * j->val[a[0]] + dx * j->val[a[pix]];
            }
        }
    }
}

/* AVX2 twin of the vertical pass of one channel row: o[col] = to_pixel((1-dy)*p0 + dy*p1)
 * (p1 == NULL: to_pixel((1-dy)*p0)), eight columns at a time, the same float and double
 * operations (no fused multiply-add), the same clamp and truncation. */
__attribute__((target("avx2")))
static void lb_vrow_avx2(const float *restrict p0, const float *restrict p1, float dy, uint8_t *restrict o,
                         int32_t n)
{
    const __m256 wy = _mm256_set1_ps(1.0f - dy), vy = _mm256_set1_ps(dy);
    const __m256d k255 = _mm256_set1_pd(255.0), half = _mm256_set1_pd(0.5);
    int32_t col = 0;
    for (; col + 8 <= n; col += 8) {
        __m256 v = _mm256_mul_ps(wy, _mm256_loadu_ps(p0 + col));
        if (p1 != NULL) v = _mm256_add_ps(v, _mm256_mul_ps(vy, _mm256_loadu_ps(p1 + col)));
        __m256d dl = _mm256_add_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), k255), half);
        __m256d dh = _mm256_add_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), k255), half);
        dl = _mm256_min_pd(dl, k255);
        dh = _mm256_min_pd(dh, k255);
        const __m128i w16 = _mm_packus_epi32(_mm256_cvttpd_epi32(dl), _mm256_cvttpd_epi32(dh));
        _mm_storel_epi64((__m128i *)(void *)(o + col), _mm_packus_epi16(w16, w16));
    }
    const float wyf = 1.0f - dy;
    for (; col < n; ++col) {
        if (p1 == NULL) {
            o[col] = to_pixel(wyf * p0[col]);
        } else {
            const float t = wyf * p0[col];
            o[col] = to_pixel(t + dy * p1[col]);
        }
    }
}
#endif

static void lb_hrow_any(const lb_job *j, int32_t r, float *restrict out)
{
#if MDFI_IMAGE_X86
    if (j->avx2) {
        lb_hrow3_avx2(j, r, out);
        return;
    }
#endif
    lb_hrow(j, r, out);
}

static void lb_rows(lb_job *j, int64_t y0, int64_t y1, float *ring)
{
    const int32_t c = j->c, new_w = j->new_w, net_w = j->net_w, h = j->h;
    const size_t plane = (size_t)j->net_h * (size_t)net_w, row_floats = (size_t)c * (size_t)new_w;
    int32_t tag[2] = {-1, -1};                   /* source row held by each ring slot */
    for (int64_t y = y0; y < y1; ++y) {
        const int32_t r = (int32_t)y - j->off_y;
        if (r < 0 || r >= j->new_h) {            /* the 0.5 border: 127.5 -> 128 */
            for (int32_t k = 0; k < c; ++k) memset(j->dst + (size_t)k * plane + (size_t)y * net_w, 128, (size_t)net_w);
            continue;
        }
        const float sy = (float)r * j->h_scale;
        int32_t iy = (int32_t)sy;
        const float dy = sy - (float)iy;
        if (iy > h - 1) iy = h - 1;
        const int one = (r == j->new_h - 1 || h == 1 || iy >= h - 1);
        /* slots: s0 holds iy, s1 holds iy + 1 (when read) */
        int s0 = tag[0] == iy ? 0 : tag[1] == iy ? 1 : -1;
        if (s0 < 0) {
            s0 = (!one && tag[0] == iy + 1) ? 1 : 0;
            lb_hrow_any(j, iy, ring + (size_t)s0 * row_floats);
            tag[s0] = iy;
        }
        const int s1 = 1 - s0;
        if (!one && tag[s1] != iy + 1) {
            lb_hrow_any(j, iy + 1, ring + (size_t)s1 * row_floats);
            tag[s1] = iy + 1;
        }
        for (int32_t k = 0; k < c; ++k) {
            uint8_t *restrict out = j->dst + (size_t)k * plane + (size_t)y * net_w;
            memset(out, 128, (size_t)j->off_x);
            memset(out + j->off_x + new_w, 128, (size_t)(net_w - j->off_x - new_w));
            uint8_t *restrict o = out + j->off_x;
            const float *restrict p0 = ring + (size_t)s0 * row_floats + (size_t)k * new_w;
#if MDFI_IMAGE_X86
            if (j->avx2) {
                lb_vrow_avx2(p0, one ? NULL : ring + (size_t)s1 * row_floats + (size_t)k * new_w, dy, o, new_w);
                continue;
            }
#endif
            if (one) {
                for (int32_t col = 0; col < new_w; ++col) o[col] = to_pixel((1.0f - dy) * p0[col]);
            } else {
                const float *restrict p1 = ring + (size_t)s1 * row_floats + (size_t)k * new_w;
                for (int32_t col = 0; col < new_w; ++col) {
                    const float t = (1.0f - dy) * p0[col];
                    o[col] = to_pixel(t + dy * p1[col]);
                }
            }
        }
    }
}

static void lb_worker(void *arg, int tid)
{
    lb_job *j = (lb_job *)arg;
    if (tid < 0 || tid >= j->nthreads) return;  /* (never: the pool numbers its threads 0..n-1) */
    float *ring = j->rings + (size_t)tid * 2 * (size_t)j->c * (size_t)j->new_w;
    for (;;) {
#if MDFI_IMG_ATOMIC
        const int64_t k = atomic_fetch_add(&j->next, 1);
#else
        const int64_t k = j->next++;
#endif
        if (k >= j->nchunks) break;
        const int64_t y0 = k * j->chunk, y1 = y0 + j->chunk < j->net_h ? y0 + j->chunk : j->net_h;
        lb_rows(j, y0, y1, ring);
    }
}

int mdfi_letterbox_u8(const uint8_t *restrict rgb, int32_t c, int32_t h, int32_t w, int32_t pixel_stride,
                      int64_t row_stride, float *restrict scratch, int64_t scratch_floats, uint8_t *restrict dst,
                      int32_t new_h, int32_t new_w, int32_t net_h, int32_t net_w, mdfi_image_pool_fn pool,
                      int32_t nthreads, int32_t simd)
{
    if (c < 1 || h < 1 || w < 1 || new_w < 1 || new_h < 1 || new_w > net_w || new_h > net_h ||
        pixel_stride < c || row_stride < (int64_t)w * pixel_stride || nthreads < 1 || simd < 0 || simd > 1 ||
        scratch_floats < mdfi_letterbox_u8_scratch(c, new_w, nthreads))
        return -1;
    float *val = scratch;                                /* val[p] = (float)p / 255.f */
    float *dxs = val + 256;
    int32_t *ixs = (int32_t *)(void *)(dxs + new_w);     /* -1: the last column       */
    float *vdx = (float *)(void *)(ixs + new_w);
    int32_t *voff = (int32_t *)(void *)(vdx + new_w);
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
    /* the AVX2 path's columns: the last column as pixels w-2, w-1 with dx = 1 (w >= 2) */
    for (int32_t col = 0; col < new_w; ++col) {
        const int32_t last = ixs[col] < 0;
        voff[col] = (last ? w - 2 : ixs[col]) * pixel_stride;
        vdx[col] = last ? 1.0f : dxs[col];
    }
    lb_job j;
    j.rgb = rgb;
    j.row_stride = row_stride;
    j.pix = pixel_stride;
    j.c = c;
    j.h = h;
    j.w = w;
    j.val = val;
    j.dxs = dxs;
    j.ixs = ixs;
    j.vdx = vdx;
    j.voff = voff;
    j.rings = (float *)(void *)(voff + new_w);
    j.avx2 = 0;
#if MDFI_IMAGE_X86
    j.avx2 = simd && c == 3 && w >= 2 && mdfi_image_have_avx2();
#endif
    j.dst = dst;
    j.new_h = new_h;
    j.new_w = new_w;
    j.net_h = net_h;
    j.net_w = net_w;
    j.off_x = (net_w - new_w) / 2;
    j.off_y = (net_h - new_h) / 2;
    j.h_scale = (new_h > 1) ? (float)(h - 1) / (float)(new_h - 1) : 0.0f;
    j.nthreads = (MDFI_IMG_ATOMIC && pool != NULL) ? nthreads : 1;
    /* about four chunks a thread, of at least 8 rows */
    int64_t chunk = (net_h + 4 * (int64_t)j.nthreads - 1) / (4 * (int64_t)j.nthreads);
    j.chunk = chunk < 8 ? 8 : chunk;
    j.nchunks = (net_h + j.chunk - 1) / j.chunk;
    j.next = 0;
    if (j.nthreads <= 1 || j.nchunks <= 1) {
        j.nthreads = 1;
        lb_rows(&j, 0, net_h, j.rings);
    } else {
        pool(lb_worker, &j, (int)j.nthreads);
    }
    return 0;
}
