/* mdfi_rt_util.c -- see mdfi_rt_util.h. */
#include "mdfi_rt_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mdfi_fail(mdfi_err *err, const char *file, int64_t line, const char *fmt, ...)
{
    if (err == NULL) return -1;
    int n = 0;
    if (file != NULL && line > 0)
        n = snprintf(err->msg, sizeof err->msg, "%s:%lld: ", file, (long long)line);
    else if (file != NULL)
        n = snprintf(err->msg, sizeof err->msg, "%s: ", file);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof err->msg) {          /* else: the prefix filled it (truncated) */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* one line: replace any embedded line break */
    for (char *p = err->msg; *p; ++p)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

int mdfi_join_path(char *out, const char *dir, const char *name, mdfi_err *err)
{
    const size_t nd = strlen(dir), nn = strlen(name);
    const int slash = nd > 0 && dir[nd - 1] != '/';
    if (nd + (size_t)slash + nn + 1 > MDFI_PATH_LEN)
        return mdfi_fail(err, dir, 0, "path too long");
    memcpy(out, dir, nd);
    if (slash) out[nd] = '/';
    memcpy(out + nd + (size_t)slash, name, nn + 1);
    return 0;
}

void *mdfi_alloc(int64_t count, size_t size)
{
    if (count < 0 || size == 0) return NULL;
    if (count > 0 && (uint64_t)count > (uint64_t)SIZE_MAX / size) return NULL;
    const size_t bytes = (size_t)count * size;
    return malloc(bytes > 0 ? bytes : 1);
}

void *mdfi_alloc64(int64_t bytes)
{
    if (bytes < 0 || (uint64_t)bytes > (uint64_t)SIZE_MAX - 64) return NULL;
    const size_t n = ((size_t)bytes + 63) & ~(size_t)63;
#if defined(_WIN32)
    return malloc(n > 0 ? n : 1);      /* MSVC has no aligned_alloc that free() releases */
#else
    return aligned_alloc(64, n > 0 ? n : 64);
#endif
}

int mdfi_read_file(const char *path, int64_t max_bytes, char **data, int64_t *len, mdfi_err *err)
{
    *data = NULL;
    *len = 0;
    if (max_bytes < 1 || (uint64_t)max_bytes > (uint64_t)SIZE_MAX / 4)
        return mdfi_fail(err, path, 0, "invalid size limit");
    FILE *fh = fopen(path, "rb");
    if (fh == NULL) return mdfi_fail(err, path, 0, "cannot open: %s", strerror(errno));
    size_t cap = 65536, n = 0;           /* buffer: cap bytes, n read, one kept for the NUL */
    char *buf = malloc(cap);
    const char *why = buf == NULL ? "out of memory" : NULL;
    while (why == NULL) {
        if (n == cap - 1) {                                 /* full: grow up to limit + 2 */
            size_t ncap = cap * 2;
            if ((uint64_t)ncap > (uint64_t)max_bytes + 2) ncap = (size_t)max_bytes + 2;
            char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (nb == NULL) {
                why = "out of memory";
                break;
            }
            buf = nb;
            cap = ncap;
        }
        const size_t got = fread(buf + n, 1, cap - 1 - n, fh);
        n += got;
        if ((uint64_t)n > (uint64_t)max_bytes) why = "file too large";
        else if (got == 0) break;
    }
    if (why == NULL && ferror(fh)) why = strerror(errno);
    fclose(fh);
    if (why != NULL) {
        free(buf);
        if (strcmp(why, "file too large") == 0)
            return mdfi_fail(err, path, 0, "larger than the %lld-byte limit", (long long)max_bytes);
        return mdfi_fail(err, path, 0, "%s", why);
    }
    buf[n] = '\0';
    *data = buf;
    *len = (int64_t)n;
    return 0;
}

int mdfi_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        ++s;
    } else if (*s == '+') {
        ++s;
    }
    if (*s == '\0') return -1;
    uint64_t v = 0;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9') return -1;
        if (v > ((uint64_t)1 << 62)) return -1;           /* far beyond any limit used */
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > ((uint64_t)1 << 62)) return -1;
    const int64_t x = neg ? -(int64_t)v : (int64_t)v;
    if (x < lo || x > hi) return -1;
    *out = x;
    return 0;
}
