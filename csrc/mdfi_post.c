/* mdfi_post.c -- detection post-processing, the C twin of mdfi/postprocess.py (see
 * mdfi_post.h).  Every expression below names the NumPy/Python line it reproduces; the
 * evaluation order is NumPy's (left to right), float32 where NumPy is in float32, double
 * where it is in float64.  No FMA contraction (-ffp-contract=off in every build). */
#include "mdfi_post.h"

#include <float.h>
#include <string.h>

int mdfi_post_exact(void)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    return 1;
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------------------------------
 * QYolo.decode_int (mdfi/layers/yolo.py) */

int64_t mdfi_yolo_q_count(const int32_t *restrict out, int32_t n, int32_t entries, int64_t cells,
                          int64_t t_obj)
{
    int64_t count = 0;
    for (int32_t a = 0; a < n; a++) {
        const int32_t *o = out + ((int64_t)a * entries + 4) * cells;   /* [cells] objectness */
        for (int64_t i = 0; i < cells; i++)
            count += (int64_t)o[i] > t_obj;
    }
    return count;
}

void mdfi_yolo_q_decode(const int32_t *restrict out, int32_t n, int32_t classes, int32_t lh, int32_t lw,
                        const double *restrict anchors, int32_t net_w, int32_t net_h, int64_t t_obj,
                        int64_t t_prob, float *restrict boxes, float *restrict obj, float *restrict probs)
{
    const int64_t cells = (int64_t)lh * lw;
    const int32_t entries = classes + 5;
    const double pscale = 1.0 / 32768.0;        /* 2.0 ** -PROB_FRAC (15) */
    const double escale = 1.0 / 65536.0;        /* 2.0 ** -EXP_FRAC (16) */
    const double p2scale = 1.0 / 1073741824.0;  /* 2.0 ** -(2 * PROB_FRAC) */
    int64_t m = 0;
    /* np.nonzero((p[:, 4] > t_obj).T): cell-major, then anchor */
    for (int64_t cell = 0; cell < cells; cell++) {
        for (int32_t a = 0; a < n; a++) {
            const int32_t *base = out + (int64_t)a * entries * cells + cell;   /* entry e at base[e*cells] */
            const int64_t obj_q = base[4 * cells];
            if (!(obj_q > t_obj))
                continue;
            const int64_t row = cell / lw, col = cell % lw;
            const double ex = (double)(int64_t)base[0], ey = (double)(int64_t)base[cells];
            const double ew = (double)(int64_t)base[2 * cells], eh = (double)(int64_t)base[3 * cells];
            /* xy = (stack([col, row]) + ent[:, 0:2] * 2.0**-15) / (lw, lh) */
            const double x = ((double)col + ex * pscale) / (double)lw;
            const double y = ((double)row + ey * pscale) / (double)lh;
            /* wh = ent[:, 2:4] * 2.0**-16 * a / (net_w, net_h) */
            const double w = ew * escale * anchors[2 * a] / (double)net_w;
            const double h = eh * escale * anchors[2 * a + 1] / (double)net_h;
            float *b = boxes + 4 * m;
            b[0] = (float)x; b[1] = (float)y; b[2] = (float)w; b[3] = (float)h;
            obj[m] = (float)((double)obj_q * pscale);                    /* to_float_prob(obj_q) */
            float *pr = probs + (int64_t)classes * m;
            for (int32_t c = 0; c < classes; c++) {
                int64_t q = obj_q * (int64_t)base[(int64_t)(5 + c) * cells];   /* obj_q * ent[:, 5:] */
                if (!(q > t_prob))
                    q = 0;
                pr[c] = (float)((double)q * p2scale);                    /* to_float_prob(prob_q, 30) */
            }
            m++;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * correct_boxes (mdfi/postprocess.py) */

void mdfi_correct_boxes(float *restrict boxes, int64_t n, int32_t mode, int32_t net_w, int32_t net_h,
                        int32_t new_w, int32_t new_h)
{
    if (mode == 2)
        return;                                                        /* "none": the identity */
    double dx, dy, rx, ry;
    float sw, sh;
    if (mode == 1) {                                                   /* "alexeyab-letterbox" */
        const float rw = (float)new_w / (float)net_w, rh = (float)new_h / (float)net_h;
        dx = (double)(float)(net_w - new_w) / 2.0 / (double)net_w;     /* float(f32(net_w - new_w)) / 2.0 / net_w */
        dy = (double)(float)(net_h - new_h) / 2.0 / (double)net_h;
        rx = (double)rw; ry = (double)rh;
        sw = 1.0f / rw; sh = 1.0f / rh;                                /* f32(1) / rw */
    } else {                                                           /* "pjreddie" */
        dx = (double)(net_w - new_w) / 2.0 / (double)net_w;            /* (net_w - new_w) / 2.0 / net_w */
        dy = (double)(net_h - new_h) / 2.0 / (double)net_h;
        rx = (double)((float)new_w / (float)net_w); ry = (double)((float)new_h / (float)net_h);
        sw = (float)net_w / (float)new_w; sh = (float)net_h / (float)new_h;
    }
    for (int64_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        b[0] = (float)(((double)b[0] - dx) / rx);
        b[1] = (float)(((double)b[1] - dy) / ry);
        b[2] = b[2] * sw;
        b[3] = b[3] * sh;
    }
}

/* ---------------------------------------------------------------------------------------
 * do_nms_sort */

/* np.maximum / np.minimum on float32: NaN when either operand is NaN. */
static inline float np_maximum(float a, float b) { return a != a ? a : (b != b ? b : (a >= b ? a : b)); }
static inline float np_minimum(float a, float b) { return a != a ? a : (b != b ? b : (a <= b ? a : b)); }

/* box_iou_matrix's overlap() */
static inline float overlap(float x1, float w1, float x2, float w2)
{
    const float half = 0.5f;
    const float left = np_maximum(x1 - w1 * half, x2 - w2 * half);
    const float right = np_minimum(x1 + w1 * half, x2 + w2 * half);
    return right - left;
}

/* box_iou_matrix for one pair, after its nan_to_num (NaN -> 0, +-inf -> +-FLT_MAX). */
static inline float box_iou(const float *restrict a, const float *restrict b)
{
    const float w = overlap(a[0], a[2], b[0], b[2]);
    const float h = overlap(a[1], a[3], b[1], b[3]);
    const float inter = (w < 0 || h < 0) ? 0.0f : w * h;
    const float uni = a[2] * a[3] + b[2] * b[3] - inter;
    float iou = inter / uni;
    if (iou != iou)
        iou = 0.0f;
    else if (iou > FLT_MAX)
        iou = FLT_MAX;
    else if (iou < -FLT_MAX)
        iou = -FLT_MAX;
    return iou;
}

/* box_diou_matrix's d / c and c == 0 for one pair (float32). */
static inline float diou_ratio(const float *restrict a, const float *restrict b, uint8_t *restrict czero)
{
    const float two = 2.0f;
    const float ax = a[0], ay = a[1], aw = a[2], ah = a[3];
    const float bx = b[0], by = b[1], bw = b[2], bh = b[3];
    const float top = np_minimum(ay - ah / two, by - bh / two);
    const float bot = np_maximum(ay + ah / two, by + bh / two);
    const float left = np_minimum(ax - aw / two, bx - bw / two);
    const float right = np_maximum(ax + aw / two, bx + bw / two);
    const float w = right - left;
    const float h = bot - top;
    const float c = w * w + h * h;
    const float d = (ax - bx) * (ax - bx) + (ay - by) * (ay - by);
    *czero = c == 0.0f;
    return d / c;
}

int64_t mdfi_nms_live(const float *restrict obj, int64_t n, int32_t *restrict live)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (obj[i] != 0.0f)                    /* live = objectness != 0 (NaN counts) */
            live[m++] = (int32_t)i;
    return m;
}

int64_t mdfi_nms_pairs(const float *restrict boxes, const int32_t *restrict live, int64_t nlive, float thr,
                       int32_t diou, int64_t cap, int32_t *restrict pairs, float *restrict iou,
                       float *restrict ratio, uint8_t *restrict czero)
{
    int64_t m = 0;
    for (int64_t a = 0; a < nlive; a++) {
        const float *ba = boxes + 4 * (int64_t)live[a];
        for (int64_t b = a + 1; b < nlive; b++) {
            const float *bb = boxes + 4 * (int64_t)live[b];
            const float v = box_iou(ba, bb);
            if (!(v > thr))
                continue;
            if (m < cap) {
                pairs[2 * m] = (int32_t)a;
                pairs[2 * m + 1] = (int32_t)b;
                if (diou) {
                    iou[m] = v;
                    ratio[m] = diou_ratio(ba, bb, &czero[m]);
                }
            }
            m++;
        }
    }
    return m;
}

/* Stable bottom-up merge sort of idx[0..n) (tmp: n scratch) by `before`. */
typedef int (*before_fn)(const void *ctx, int64_t x, int64_t y);   /* 1: x strictly before y */

static void merge_sort(int64_t *restrict idx, int64_t *restrict tmp, int64_t n, before_fn before, const void *ctx)
{
    int64_t *src = idx, *dst = tmp;
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                dst[o++] = before(ctx, src[j], src[i]) ? src[j++] : src[i++];
            while (i < mid)
                dst[o++] = src[i++];
            while (j < hi)
                dst[o++] = src[j++];
        }
        int64_t *t = src; src = dst; dst = t;
    }
    if (src != idx)
        memcpy(idx, src, (size_t)n * sizeof(int64_t));
}

/* argsort(-col, kind="stable"): larger value first. */
static int value_desc(const void *ctx, int64_t x, int64_t y)
{
    const float *v = (const float *)ctx;
    return v[x] > v[y];
}

int64_t mdfi_nms_walk_scratch(int64_t nlive, int64_t npairs)
{
    /* starts[nlive+1] i64, cand[nlive] i64, tmp[nlive] i64, key[nlive] f32, rank[nlive] i32,
       cols[2*npairs] i32, alive[nlive] u8 */
    return 8 * (3 * nlive + 1) + 4 * (2 * nlive + 2 * npairs) + nlive + 8;
}

void mdfi_nms_walk(float *restrict probs, int32_t k, const int32_t *restrict live, int64_t nlive,
                   const int32_t *restrict pairs, const uint8_t *restrict keep, int64_t npairs,
                   void *restrict scratch)
{
    int64_t *starts = (int64_t *)scratch;           /* [nlive + 1] CSR row starts */
    int64_t *cand = starts + nlive + 1;             /* [nlive] */
    int64_t *tmp = cand + nlive;                    /* [nlive] */
    float *key = (float *)(tmp + nlive);            /* [nlive] the class column of the live rows */
    int32_t *rank = (int32_t *)(key + nlive);       /* [nlive] */
    int32_t *cols = rank + nlive;                   /* [2 * npairs] CSR neighbours */
    uint8_t *alive = (uint8_t *)(cols + 2 * npairs);/* [nlive] */

    /* _neighbours: both directions of every pair, as CSR (neighbour order does not matter) */
    memset(starts, 0, (size_t)(nlive + 1) * sizeof(int64_t));
    for (int64_t p = 0; p < npairs; p++) {
        if (keep && !keep[p])
            continue;
        starts[pairs[2 * p] + 1]++;
        starts[pairs[2 * p + 1] + 1]++;
    }
    for (int64_t i = 0; i < nlive; i++)
        starts[i + 1] += starts[i];
    for (int64_t i = 0; i < nlive; i++)
        cand[i] = starts[i];                        /* fill cursors */
    for (int64_t p = 0; p < npairs; p++) {
        if (keep && !keep[p])
            continue;
        const int32_t a = pairs[2 * p], b = pairs[2 * p + 1];
        cols[cand[a]++] = b;
        cols[cand[b]++] = a;
    }
    for (int64_t i = 0; i < nlive; i++)
        rank[i] = -1;

    for (int32_t c = 0; c < k; c++) {
        int64_t m = 0;
        for (int64_t i = 0; i < nlive; i++) {
            key[i] = probs[(int64_t)live[i] * k + c];
            if (key[i] > 0.0f)                       /* cand = flatnonzero(col > 0) */
                cand[m++] = i;
        }
        if (m == 0)
            continue;
        merge_sort(cand, tmp, m, value_desc, key);  /* order = cand[argsort(-col[cand], stable)] */
        for (int64_t r = 0; r < m; r++) {
            rank[cand[r]] = (int32_t)r;
            alive[r] = 1;
        }
        for (int64_t r = 0; r < m; r++) {
            if (!alive[r])
                continue;
            const int64_t i = cand[r];
            for (int64_t q = starts[i]; q < starts[i + 1]; q++) {
                const int32_t nr = rank[cols[q]];
                if (nr > r)
                    alive[nr] = 0;
            }
        }
        for (int64_t r = 0; r < m; r++) {
            if (!alive[r])
                probs[(int64_t)live[cand[r]] * k + c] = 0.0f;   /* col[order[~alive]] = 0 */
            rank[cand[r]] = -1;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * to_detections */

int64_t mdfi_post_count(const float *restrict probs, int64_t n, int32_t k, float thresh)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n * (int64_t)k; i++)
        m += probs[i] > thresh;
    return m;
}

struct det_ctx { const float *probs; int32_t k; };

/* out.sort(key=lambda d: (-d.confidence, d.class_id)), stable over np.nonzero's row-major order */
static int det_before(const void *ctx, int64_t x, int64_t y)
{
    const struct det_ctx *d = (const struct det_ctx *)ctx;
    const float px = d->probs[x], py = d->probs[y];
    if (px != py)
        return px > py;
    return x % d->k < y % d->k;
}

/* Python's max(v, lo) and min(v, hi): the first argument unless the second is strictly beyond. */
static inline double py_clip(double v, double lo, double hi)
{
    if (lo > v)
        v = lo;
    if (hi < v)
        v = hi;
    return v;
}

int64_t mdfi_post_extract(const float *restrict boxes, const float *restrict probs, int64_t n, int32_t k,
                          float thresh, int32_t img_w, int32_t img_h, int64_t cap, int64_t *restrict rows,
                          int32_t *restrict cls, double *restrict xyxy, int64_t *restrict tmp)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n * (int64_t)k && m < cap; i++)
        if (probs[i] > thresh)
            rows[m++] = i;                          /* flat index first, split below */
    struct det_ctx ctx = {probs, k};
    merge_sort(rows, tmp, m, det_before, &ctx);
    const double fw = (double)img_w, fh = (double)img_h;
    for (int64_t j = 0; j < m; j++) {
        const int64_t r = rows[j] / k;
        cls[j] = (int32_t)(rows[j] % k);
        rows[j] = r;
        const double x = boxes[4 * r], y = boxes[4 * r + 1], w = boxes[4 * r + 2], h = boxes[4 * r + 3];
        double *o = xyxy + 4 * j;
        o[0] = py_clip((x - w / 2) * fw, 0.0, fw);
        o[1] = py_clip((y - h / 2) * fh, 0.0, fh);
        o[2] = py_clip((x + w / 2) * fw, 0.0, fw);
        o[3] = py_clip((y + h / 2) * fh, 0.0, fh);
    }
    return m;
}
