/* mdfi_rt_util.h -- small helpers of the standalone runner (mdfi_run): error reports,
 * path joining, checked allocation and whole-file reading.
 *
 * Error convention of every runner function: return 0 on success; on failure fill the
 * caller's mdfi_err with one line "FILE:LINE: message" (or "FILE: message" when no line
 * applies) and return -1.  main() prints "mdfi_run: <message>" and exits with status 2.
 * Plain C11, no globals.
 */
#ifndef MDFI_RT_UTIL_H
#define MDFI_RT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MDFI_ERR_LEN 8192
#define MDFI_PATH_LEN 4096

/* Room for one error line. */
typedef struct mdfi_err {
    char msg[MDFI_ERR_LEN];
} mdfi_err;

#if defined(__GNUC__)
#define MDFI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MDFI_PRINTF(a, b)
#endif

/* Format "file:line: message" (line <= 0: "file: message"; file NULL: "message") into err.
 * Always returns -1, so callers can write `return mdfi_fail(...)`. */
int mdfi_fail(mdfi_err *err, const char *file, int64_t line, const char *fmt, ...) MDFI_PRINTF(4, 5);

/* out = dir + "/" + name (out has MDFI_PATH_LEN bytes).  -1 (err set) if too long. */
int mdfi_join_path(char *out, const char *dir, const char *name, mdfi_err *err);

/* malloc(count * size) with overflow check; never returns a pointer for 0 bytes
 * (allocates 1 byte instead).  NULL if the size overflows or memory is exhausted. */
void *mdfi_alloc(int64_t count, size_t size);

/* bytes on a 64-byte boundary (released with free): packed weights, whose 64-byte rows the
 * AMX kernels load (a row across two cache lines costs two) */
void *mdfi_alloc64(int64_t bytes);

/* Read a whole file into a NUL-terminated buffer (*data, *len bytes excluding the NUL).
 * Files larger than max_bytes are refused.  The caller frees *data. */
int mdfi_read_file(const char *path, int64_t max_bytes, char **data, int64_t *len, mdfi_err *err);

/* Strict decimal integer in [lo, hi]: optional '-', digits only, no overflow.  0 or -1. */
int mdfi_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_RT_UTIL_H */
