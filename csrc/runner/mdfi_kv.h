/* mdfi_kv.h -- the key=value tokens of one model.txt line (mdfi_model.c's parser).
 *
 * Every kv_* function returns 0 on success; on failure it fills err with
 * "model.txt:LINE: layer N: message" and returns -1.  Values are checked for syntax and
 * range here; meaning is checked by the per-kind parsers.
 */
#ifndef MDFI_KV_H
#define MDFI_KV_H

#include <stddef.h>
#include <stdint.h>

#include "mdfi_rt_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MAX_TOKENS 64                   /* key=value tokens of one line */
#define MDFI_KV_MAX_NAME 255            /* parameter file names (= MDFI_RT_MAX_NAME) */

typedef struct {
    const char *key[MAX_TOKENS];        /* NUL-terminated, point into the line */
    const char *val[MAX_TOKENS];
    int used[MAX_TOKENS];
    int n;
    const char *file;                   /* model.txt path, for messages */
    int64_t line;
    int32_t layer;                      /* -1 on the input line */
} kvline;

/* "layer N: " (empty on the input line) into pre[n]. */
int kv_fail_prefix(const kvline *kv, char *pre, size_t n);
/* The value of `key`, or NULL (error if required). */
int kv_get(kvline *kv, const char *key, int required, const char **val, mdfi_err *err);
/* Integer value of `key` in [lo, hi].  *present tells whether it was given (optional keys). */
int kv_int(kvline *kv, const char *key, int64_t lo, int64_t hi, int required, int32_t *out, int *present,
           mdfi_err *err);
/* Value of `key` among names[0..count-1] -> its index. */
int kv_enum(kvline *kv, const char *key, const char *const *names, int count, int32_t *out, int required,
            int *present, mdfi_err *err);
/* Comma-separated integers in [lo, hi], at most max of them. */
int kv_list(kvline *kv, const char *key, int64_t lo, int64_t hi, int64_t max, int32_t *out, int64_t *count,
            mdfi_err *err);
/* A parameter file name: a plain name inside MODEL_DIR (no directories); dst has
 * MDFI_KV_MAX_NAME + 1 bytes. */
int kv_name(kvline *kv, const char *key, int required, char *dst, mdfi_err *err);
/* Every token must have been consumed. */
int kv_check_all_used(const kvline *kv, const char *what, mdfi_err *err);
/* Split tokens[first..] ("key=value") into kv. */
int kv_split(kvline *kv, char **tokens, int ntok, int first, mdfi_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_KV_H */
