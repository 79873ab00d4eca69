/* mdfi_conv_pack.c -- the packed weights of the convolution (mdfi_conv.h: mdfi_conv_packed_size,
 * mdfi_conv_pack_weights, mdfi_conv_packed_info): their geometry (mdfi_conv_packed_geometry,
 * also used by the driver, mdfi_conv.c), the packing of int8/int16 weights into every layout
 * (the int16-pair panels A, the 8-bit wsum and A4 panels, the AMX tiles AT on x86 builds and
 * the Winograd weights of mdfi_conv_wino.c) and the check of a packed buffer's header.
 * Layouts: mdfi_conv_internal.h and mdfi_conv_q8.h.
 */
#include "mdfi_conv.h"
#include "mdfi_conv_internal.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const char MAGIC[8] = {'M', 'D', 'F', 'I', 'c', 'v', '0', '3'};

static void wr32(unsigned char *p, int32_t v) { memcpy(p, &v, sizeof v); }

int mdfi_conv_packed_geometry(int32_t m, int32_t c, int32_t ks, packed_geom *g)
{
    if (m < 1 || c < 1 || ks < 1) return -1;
    const int64_t cc2 = ((int64_t)c + 1) / 2;
    const int64_t kk2 = (int64_t)ks * ks * cc2;
    const int64_t p = ((int64_t)m + MR - 1) / MR;
    if (kk2 > INT32_MAX / 64) return -1;            /* K2*MR*2 elements per panel fit int32 */
    const int64_t per_panel = kk2 * MR * 2 * 2;     /* bytes */
    if (p > (INT64_MAX / 16) / per_panel) return -1;
    const int64_t c4 = ((int64_t)c + 3) / 4, c4b = (c4 + 15) / 16, np16 = ((int64_t)m + 15) / 16;
    const int64_t a4 = np16 * (int64_t)ks * ks * c4 * 64;   /* <= 4 * pair bytes */
    const int64_t at = PACK_AT ? np16 * (int64_t)ks * ks * c4b * 1024 : 0;
    const int64_t wsum_off = (MDFI_CONV_HDR + p * per_panel + 63) & ~(int64_t)63;
    const int64_t a4_off = (wsum_off + (int64_t)m * 4 + 63) & ~(int64_t)63;
    const int64_t at_off = (a4_off + a4 + 63) & ~(int64_t)63;
    /* x86 builds, 3x3 kernels: the Winograd F(2x2,3x3) weights of the int16-pair paths */
    const int64_t wino = PACK_AT && ks == 3 ? mdfi_wino_packed_bytes(m, c) : 0;
    const int64_t wino_off = (at_off + at + 63) & ~(int64_t)63;
    const int64_t total = wino_off + wino;
    if ((uint64_t)total > (uint64_t)SIZE_MAX / 2 || total > INT64_MAX / 4) return -1;
    g->c2 = (int32_t)cc2;
    g->k2 = (int32_t)kk2;
    g->np = (int32_t)p;
    g->c4 = (int32_t)c4;
    g->c4b = (int32_t)c4b;
    g->np16 = (int32_t)np16;
    g->wsum_off = wsum_off;
    g->a4_off = a4_off;
    g->at_off = PACK_AT ? at_off : 0;
    g->wino_off = wino ? wino_off : 0;
    g->bytes = total;
    return 0;
}

int64_t mdfi_conv_packed_size(int32_t m, int32_t c, int32_t ks)
{
    packed_geom g;
    return mdfi_conv_packed_geometry(m, c, ks, &g) ? -1 : g.bytes;
}

int mdfi_conv_pack_weights(const void *w, int wtype, int32_t m, int32_t c, int32_t ks,
                           void *packed, int64_t packed_size)
{
    packed_geom g;
    if (wtype != MDFI_CONV_S8 && wtype != MDFI_CONV_S16) return MDFI_CONV_E_CODE;
    if (mdfi_conv_packed_geometry(m, c, ks, &g)) return MDFI_CONV_E_DIM;
    if (packed_size != g.bytes) return MDFI_CONV_E_PACKED;
    const int32_t c2 = g.c2, k2 = g.k2, np = g.np;

    unsigned char *hdr = (unsigned char *)packed;
    int16_t *a = (int16_t *)(void *)(hdr + MDFI_CONV_HDR);
    const int8_t *w8 = (const int8_t *)w;
    const int16_t *w16 = (const int16_t *)w;
    const int32_t taps = ks * ks;
    int32_t wmax = 0;
    /* A[p][kp = tap*C2 + cc][r][e] = w[p*MR + r][2*cc + e][tap] */
    for (int32_t p = 0; p < np; ++p) {
        for (int32_t tap = 0; tap < taps; ++tap) {
            for (int32_t cc = 0; cc < c2; ++cc) {
                int16_t *dst = a + (((size_t)p * k2 + (size_t)tap * c2 + cc) * MR) * 2;
                for (int32_t r = 0; r < MR; ++r) {
                    for (int32_t e = 0; e < 2; ++e) {
                        const int64_t mm = (int64_t)p * MR + r, ch = 2 * (int64_t)cc + e;
                        int32_t v = 0;
                        if (mm < m && ch < c) {
                            const size_t idx = ((size_t)mm * c + (size_t)ch) * (size_t)taps + tap;
                            v = wtype == MDFI_CONV_S8 ? w8[idx] : w16[idx];
                        }
                        const int32_t av = v < 0 ? -v : v;
                        if (av > wmax) wmax = av;
                        dst[r * 2 + e] = (int16_t)v;
                    }
                }
            }
        }
    }
    /* the 8-bit layout (int8 weights): wsum and A4, zero-padded */
    int32_t *wsum = (int32_t *)(void *)(hdr + g.wsum_off);
    int8_t *a4 = (int8_t *)(void *)(hdr + g.a4_off);
    memset(hdr + g.wsum_off, 0, (size_t)(g.bytes - g.wsum_off));
    if (wtype == MDFI_CONV_S8) {
        for (int32_t mm = 0; mm < m; ++mm) {
            int64_t sum = 0;                       /* kept modulo 2^32, as it is used */
            for (int64_t k = 0; k < (int64_t)c * taps; ++k) sum += w8[(size_t)mm * (size_t)c * taps + (size_t)k];
            wsum[mm] = mdfi_wrap_i32((uint32_t)sum);
            for (int32_t ch = 0; ch < c; ++ch)
                for (int32_t tap = 0; tap < taps; ++tap)
                {
                    const int8_t v = w8[((size_t)mm * c + (size_t)ch) * taps + tap];
                    a4[((((size_t)(mm / 16) * taps + tap) * (size_t)g.c4 + (size_t)(ch / 4)) * 16 + (size_t)(mm % 16)) * 4 +
                       (size_t)(ch % 4)] = v;
                    if (PACK_AT)
                        ((int8_t *)(void *)(hdr + g.at_off))[((((size_t)(mm / 16) * taps + tap) * (size_t)g.c4b +
                                                               (size_t)(ch / 64)) * 16 + (size_t)(mm % 16)) * 64 +
                                                             (size_t)(ch % 64)] = v;
                }
        }
    }
    /* max over m of sum_k |w[m][k]| (header offset 48): <= K * 32768 < 2^47 */
    int64_t rsum = 0;
    for (int32_t mm = 0; mm < m; ++mm) {
        int64_t sum = 0;
        for (int64_t k = 0; k < (int64_t)c * taps; ++k) {
            const size_t idx = (size_t)mm * (size_t)c * taps + (size_t)k;
            const int32_t v = wtype == MDFI_CONV_S8 ? w8[idx] : w16[idx];
            sum += v < 0 ? -v : v;
        }
        if (sum > rsum) rsum = sum;
    }
    int32_t umax = -1;                              /* no Winograd weights */
    if (g.wino_off) umax = mdfi_wino_pack(w, wtype, m, c, (int16_t *)(void *)(hdr + g.wino_off));
    memset(hdr, 0, MDFI_CONV_HDR);
    memcpy(hdr, MAGIC, sizeof MAGIC);
    wr32(hdr + 44, umax);
    wr32(hdr + 8, m);
    wr32(hdr + 12, c);
    wr32(hdr + 16, ks);
    wr32(hdr + 20, wtype);
    wr32(hdr + 24, MR);
    wr32(hdr + 28, c2);
    wr32(hdr + 32, k2);
    wr32(hdr + 36, np);
    wr32(hdr + 40, wmax);
    memcpy(hdr + 48, &rsum, sizeof rsum);
    return MDFI_CONV_OK;
}

int mdfi_conv_packed_info(const void *packed, int64_t packed_size, int32_t *m, int32_t *c,
                          int32_t *ks, int32_t *wtype, int32_t *wmax)
{
    const unsigned char *hdr = (const unsigned char *)packed;
    packed_geom g;
    if (packed == NULL || packed_size < MDFI_CONV_HDR) return MDFI_CONV_E_PACKED;
    if (memcmp(hdr, MAGIC, sizeof MAGIC) != 0) return MDFI_CONV_E_PACKED;
    const int32_t hm = mdfi_conv_rd32(hdr + 8), hc = mdfi_conv_rd32(hdr + 12), hk = mdfi_conv_rd32(hdr + 16);
    const int32_t ht = mdfi_conv_rd32(hdr + 20), hw = mdfi_conv_rd32(hdr + 40);
    if (mdfi_conv_packed_geometry(hm, hc, hk, &g)) return MDFI_CONV_E_PACKED;
    if (g.bytes != packed_size || mdfi_conv_rd32(hdr + 24) != MR || mdfi_conv_rd32(hdr + 28) != g.c2 ||
        mdfi_conv_rd32(hdr + 32) != g.k2 || mdfi_conv_rd32(hdr + 36) != g.np)
        return MDFI_CONV_E_PACKED;
    if ((ht != MDFI_CONV_S8 && ht != MDFI_CONV_S16) || hw < 0 || hw > mdfi_conv_type_max_abs(ht))
        return MDFI_CONV_E_PACKED;
    /* the row-sum bound lies between max|w| and K * max|w| (it is trusted for exactness) */
    const int64_t rs = mdfi_conv_rd64(hdr + 48);
    if (rs < hw || rs > (int64_t)hc * hk * hk * hw) return MDFI_CONV_E_PACKED;
    if (m) *m = hm;
    if (c) *c = hc;
    if (ks) *ks = hk;
    if (wtype) *wtype = ht;
    if (wmax) *wmax = hw;
    return MDFI_CONV_OK;
}
