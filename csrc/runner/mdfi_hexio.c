/* mdfi_hexio.c -- see mdfi_hexio.h.  Streams files in 64 KB chunks (no whole-file copy). */
#include "mdfi_hexio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 65536

size_t mdfi_elem_size(int32_t elem)
{
    switch (elem) {
    case MDFI_ELEM_U8: case MDFI_ELEM_I8: return 1;
    case MDFI_ELEM_U16: case MDFI_ELEM_I16: return 2;
    case MDFI_ELEM_I32: return 4;
    case MDFI_ELEM_I64: return 8;
    default: return 0;
    }
}

/* Range of an element type. */
static void elem_range(int32_t elem, int64_t *lo, int64_t *hi)
{
    switch (elem) {
    case MDFI_ELEM_U8: *lo = 0; *hi = UINT8_MAX; break;
    case MDFI_ELEM_I8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case MDFI_ELEM_U16: *lo = 0; *hi = UINT16_MAX; break;
    case MDFI_ELEM_I16: *lo = INT16_MIN; *hi = INT16_MAX; break;
    case MDFI_ELEM_I32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    default: *lo = INT64_MIN; *hi = INT64_MAX; break;
    }
}

static void store_elem(void *dst, int32_t elem, int64_t i, int64_t v)
{
    switch (elem) {
    case MDFI_ELEM_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
    case MDFI_ELEM_I8: ((int8_t *)dst)[i] = (int8_t)v; break;
    case MDFI_ELEM_U16: ((uint16_t *)dst)[i] = (uint16_t)v; break;
    case MDFI_ELEM_I16: ((int16_t *)dst)[i] = (int16_t)v; break;
    case MDFI_ELEM_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
    default: ((int64_t *)dst)[i] = v; break;
    }
}

static int64_t load_elem(const void *src, int32_t elem, int64_t i)
{
    switch (elem) {
    case MDFI_ELEM_U8: return ((const uint8_t *)src)[i];
    case MDFI_ELEM_I8: return ((const int8_t *)src)[i];
    case MDFI_ELEM_U16: return ((const uint16_t *)src)[i];
    case MDFI_ELEM_I16: return ((const int16_t *)src)[i];
    case MDFI_ELEM_I32: return ((const int32_t *)src)[i];
    default: return ((const int64_t *)src)[i];
    }
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int is_space(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Tokenizer states. */
enum { S_WS, S_VALUE, S_ADDR, S_SLASH, S_COMMENT };

/* State of one read. */
typedef struct {
    const char *path;
    int64_t n;            /* values expected */
    int32_t bits;
    int is_signed;
    void *dst;            /* [n] of elem */
    int32_t elem;
    int64_t lo, hi;       /* range of elem */
    int64_t count;        /* values stored */
    int64_t line;         /* current line (1-based) */
    uint64_t acc;         /* value of the current token */
    int32_t sig;          /* significant digits of the current token */
    int32_t ndig;         /* digits of the current token */
} hex_reader;

/* The current value token is complete. */
static int finish_value(hex_reader *r, mdfi_err *err)
{
    if (r->sig > 16 || (r->bits < 64 && (r->acc >> r->bits) != 0))
        return mdfi_fail(err, r->path, r->line, "value wider than %d bits", (int)r->bits);
    if (r->count >= r->n)
        return mdfi_fail(err, r->path, r->line, "more than the %lld values expected", (long long)r->n);
    int64_t v;
    const uint64_t u = r->acc;
    if (r->is_signed && ((u >> (r->bits - 1)) & 1u)) {
        const uint64_t mask = r->bits < 64 ? (((uint64_t)1 << r->bits) - 1) : ~(uint64_t)0;
        v = -(int64_t)(~u & mask) - 1;                    /* u - 2^bits, without overflow */
    } else if (u > (uint64_t)INT64_MAX) {
        return mdfi_fail(err, r->path, r->line, "value does not fit a signed 64-bit integer");
    } else {
        v = (int64_t)u;
    }
    if (v < r->lo || v > r->hi)
        return mdfi_fail(err, r->path, r->line, "value %lld out of range for its array", (long long)v);
    store_elem(r->dst, r->elem, r->count, v);
    r->count++;
    return 0;
}

/* The current "@address" token is complete: it must name the next value's index. */
static int finish_addr(hex_reader *r, mdfi_err *err)
{
    if (r->ndig == 0) return mdfi_fail(err, r->path, r->line, "empty address marker '@'");
    if (r->sig > 16 || r->acc != (uint64_t)r->count)
        return mdfi_fail(err, r->path, r->line,
                         "address marker is not sequential (expected @%llx); only sequential files are supported",
                         (unsigned long long)r->count);
    return 0;
}

int mdfi_hex_read(const char *path, int64_t n, int32_t bits, int is_signed, void *restrict dst, int32_t elem,
                  mdfi_err *err)
{
    if (bits < 1 || bits > 64 || n < 0 || mdfi_elem_size(elem) == 0 || (n > 0 && dst == NULL))
        return mdfi_fail(err, path, 0, "internal error: invalid read request");
    hex_reader r = {path, n, bits, is_signed, dst, elem, 0, 0, 0, 1, 0, 0, 0};
    elem_range(elem, &r.lo, &r.hi);
    FILE *fh = fopen(path, "rb");
    if (fh == NULL) return mdfi_fail(err, path, 0, "cannot open: %s", strerror(errno));
    unsigned char *buf = malloc(CHUNK);        /* [CHUNK] bytes of the file at a time */
    if (buf == NULL) {
        fclose(fh);
        return mdfi_fail(err, path, 0, "out of memory");
    }
    int state = S_WS, rc = 0;
    size_t got;
    while (rc == 0 && (got = fread(buf, 1, CHUNK, fh)) > 0) {
        for (size_t i = 0; i < got && rc == 0; ++i) {
            const int ch = buf[i];
            if (state == S_COMMENT) {
                if (ch == '\n') {
                    state = S_WS;
                    r.line++;
                }
                continue;
            }
            if (state == S_SLASH) {
                if (ch != '/') {
                    rc = mdfi_fail(err, path, r.line, "stray '/' (comments start with //)");
                    break;
                }
                state = S_COMMENT;
                continue;
            }
            const int d = hexval(ch);
            if (d >= 0) {
                if (state == S_WS) {
                    state = S_VALUE;
                    r.acc = 0;
                    r.sig = 0;
                    r.ndig = 0;
                }
                r.ndig++;
                if (r.sig > 0 || d != 0) r.sig++;
                if (r.sig <= 16) r.acc = (r.acc << 4) | (uint64_t)d;
                continue;
            }
            /* any other character ends a token */
            if (state == S_VALUE) rc = finish_value(&r, err);
            else if (state == S_ADDR) rc = finish_addr(&r, err);
            if (rc) break;
            state = S_WS;
            if (is_space(ch)) {
                if (ch == '\n') r.line++;
            } else if (ch == '/') {
                state = S_SLASH;
            } else if (ch == '@') {
                state = S_ADDR;
                r.acc = 0;
                r.sig = 0;
                r.ndig = 0;
            } else if (ch >= 0x20 && ch < 0x7f) {
                rc = mdfi_fail(err, path, r.line, "unexpected character '%c' in a hex vector file", ch);
            } else {
                rc = mdfi_fail(err, path, r.line, "unexpected byte 0x%02x in a hex vector file", ch);
            }
        }
    }
    if (rc == 0 && ferror(fh)) rc = mdfi_fail(err, path, 0, "read error: %s", strerror(errno));
    if (rc == 0) {
        if (state == S_VALUE) rc = finish_value(&r, err);
        else if (state == S_ADDR) rc = finish_addr(&r, err);
        else if (state == S_SLASH) rc = mdfi_fail(err, path, r.line, "stray '/' at the end of the file");
    }
    if (rc == 0 && r.count != n)
        rc = mdfi_fail(err, path, r.line, "the file ends after %lld values, %lld expected",
                       (long long)r.count, (long long)n);
    free(buf);
    fclose(fh);
    return rc;
}

int mdfi_hex_write(const char *path, const void *restrict src, int32_t elem, int64_t n, int32_t bits,
                   mdfi_err *err)
{
    static const char digits[] = "0123456789abcdef";
    if (bits < 1 || bits > 64 || n < 0 || mdfi_elem_size(elem) == 0)
        return mdfi_fail(err, path, 0, "internal error: invalid write request");
    const int nd = (bits + 3) / 4;
    const uint64_t mask = bits < 64 ? (((uint64_t)1 << bits) - 1) : ~(uint64_t)0;
    FILE *fh = fopen(path, "wb");
    if (fh == NULL) return mdfi_fail(err, path, 0, "cannot create: %s", strerror(errno));
    char *buf = malloc(CHUNK);                 /* output text, flushed when nearly full */
    if (buf == NULL) {
        fclose(fh);
        return mdfi_fail(err, path, 0, "out of memory");
    }
    size_t used = 0;
    int ok = 1;
    for (int64_t i = 0; i < n && ok; ++i) {
        if (used + 17 > CHUNK) {
            ok = fwrite(buf, 1, used, fh) == used;
            used = 0;
        }
        const uint64_t u = (uint64_t)load_elem(src, elem, i) & mask;   /* two's complement */
        for (int k = nd - 1; k >= 0; --k) buf[used++] = digits[(u >> (4 * k)) & 0xf];
        buf[used++] = '\n';
    }
    if (ok && used > 0) ok = fwrite(buf, 1, used, fh) == used;
    free(buf);
    const int eno = errno;
    if (fclose(fh) != 0) ok = 0;
    if (!ok) return mdfi_fail(err, path, 0, "cannot write: %s", strerror(errno ? errno : eno));
    return 0;
}
