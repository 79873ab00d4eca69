/* mdfi_kv.c -- see mdfi_kv.h. */
#include "mdfi_kv.h"

#include <stdio.h>
#include <string.h>

int kv_fail_prefix(const kvline *kv, char *pre, size_t n)
{
    if (kv->layer >= 0) return snprintf(pre, n, "layer %d: ", (int)kv->layer);
    pre[0] = '\0';
    return 0;
}

/* The value of `key`, or NULL (error if required). */
int kv_get(kvline *kv, const char *key, int required, const char **val, mdfi_err *err)
{
    *val = NULL;
    for (int i = 0; i < kv->n; ++i)
        if (strcmp(kv->key[i], key) == 0) {
            kv->used[i] = 1;
            *val = kv->val[i];
            return 0;
        }
    if (required) {
        char pre[32];
        kv_fail_prefix(kv, pre, sizeof pre);
        return mdfi_fail(err, kv->file, kv->line, "%smissing key '%s'", pre, key);
    }
    return 0;
}

/* Integer value of `key` in [lo, hi].  *present tells whether it was given (optional keys). */
int kv_int(kvline *kv, const char *key, int64_t lo, int64_t hi, int required, int32_t *out,
                  int *present, mdfi_err *err)
{
    const char *v;
    if (present) *present = 0;
    if (kv_get(kv, key, required, &v, err)) return -1;
    if (v == NULL) return 0;
    int64_t x;
    if (mdfi_parse_int(v, lo, hi, &x)) {
        char pre[32];
        kv_fail_prefix(kv, pre, sizeof pre);
        return mdfi_fail(err, kv->file, kv->line, "%s%s=%.64s: expected an integer in [%lld, %lld]", pre, key, v,
                         (long long)lo, (long long)hi);
    }
    *out = (int32_t)x;
    if (present) *present = 1;
    return 0;
}

/* Value of `key` among names[0..count-1] -> its index. */
int kv_enum(kvline *kv, const char *key, const char *const *names, int count, int32_t *out,
                   int required, int *present, mdfi_err *err)
{
    const char *v;
    if (present) *present = 0;
    if (kv_get(kv, key, required, &v, err)) return -1;
    if (v == NULL) return 0;
    for (int i = 0; i < count; ++i)
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            if (present) *present = 1;
            return 0;
        }
    char pre[32], list[128] = "";
    size_t used = 0;
    for (int i = 0; i < count && used < sizeof list; ++i)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    kv_fail_prefix(kv, pre, sizeof pre);
    return mdfi_fail(err, kv->file, kv->line, "%s%s=%.64s: expected one of %s", pre, key, v, list);
}

/* Comma-separated integers in [lo, hi], at most max of them. */
int kv_list(kvline *kv, const char *key, int64_t lo, int64_t hi, int64_t max, int32_t *out,
                   int64_t *count, mdfi_err *err)
{
    const char *v;
    char pre[32];
    kv_fail_prefix(kv, pre, sizeof pre);
    if (kv_get(kv, key, 1, &v, err)) return -1;
    int64_t n = 0;
    const char *p = v;
    for (;;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[32];
        int64_t x;
        if (len == 0 || len >= sizeof item)
            return mdfi_fail(err, kv->file, kv->line, "%s%s: item %lld is empty or too long", pre, key,
                             (long long)n + 1);
        memcpy(item, p, len);
        item[len] = '\0';
        if (mdfi_parse_int(item, lo, hi, &x))
            return mdfi_fail(err, kv->file, kv->line, "%s%s: item %lld (%s) is not an integer in [%lld, %lld]",
                             pre, key, (long long)n + 1, item, (long long)lo, (long long)hi);
        if (n >= max)
            return mdfi_fail(err, kv->file, kv->line, "%s%s: more than %lld items", pre, key, (long long)max);
        out[n++] = (int32_t)x;
        if (end == NULL) break;
        p = end + 1;
    }
    *count = n;
    return 0;
}

/* A parameter file name: a plain name inside MODEL_DIR (no directories). */
int kv_name(kvline *kv, const char *key, int required, char *dst, mdfi_err *err)
{
    const char *v;
    dst[0] = '\0';
    if (kv_get(kv, key, required, &v, err)) return -1;
    if (v == NULL) return 0;
    const size_t len = strlen(v);
    char pre[32];
    kv_fail_prefix(kv, pre, sizeof pre);
    if (len == 0 || len > MDFI_KV_MAX_NAME || strchr(v, '/') || strchr(v, '\\') || strcmp(v, ".") == 0 ||
        strcmp(v, "..") == 0)
        return mdfi_fail(err, kv->file, kv->line, "%s%s=%.64s: expected a file name inside the model folder",
                         pre, key, v);
    memcpy(dst, v, len + 1);
    return 0;
}

/* Every token must have been consumed. */
int kv_check_all_used(const kvline *kv, const char *what, mdfi_err *err)
{
    for (int i = 0; i < kv->n; ++i)
        if (!kv->used[i]) {
            char pre[32];
            kv_fail_prefix(kv, pre, sizeof pre);
            return mdfi_fail(err, kv->file, kv->line, "%sunknown key '%.64s' for %s", pre, kv->key[i], what);
        }
    return 0;
}

/* Split tokens[first..] ("key=value") into kv. */
int kv_split(kvline *kv, char **tokens, int ntok, int first, mdfi_err *err)
{
    kv->n = 0;
    char pre[32];
    kv_fail_prefix(kv, pre, sizeof pre);
    for (int i = first; i < ntok; ++i) {
        char *eq = strchr(tokens[i], '=');
        if (eq == NULL || eq == tokens[i])
            return mdfi_fail(err, kv->file, kv->line, "%s'%.64s' is not a key=value token", pre, tokens[i]);
        *eq = '\0';
        for (int j = 0; j < kv->n; ++j)
            if (strcmp(kv->key[j], tokens[i]) == 0)
                return mdfi_fail(err, kv->file, kv->line, "%skey '%.64s' given twice", pre, tokens[i]);
        kv->key[kv->n] = tokens[i];
        kv->val[kv->n] = eq + 1;
        kv->used[kv->n] = 0;
        kv->n++;
    }
    return 0;
}

