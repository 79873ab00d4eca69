/* mdfi_exec.c -- see mdfi_exec.h.  Per-layer logic follows mdfi/cengine.py exactly. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */

#include "mdfi_exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../mdfi_conv.h"
#include "../mdfi_fixedpoint.h"
#include "../mdfi_kernels.h"
#include "mdfi_hexio.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static const mdfi_tensor_desc *producer(const mdfi_model *m, int32_t i)
{
    return i < 0 ? &m->input : &m->layers[i].out;
}

static int conv_type(int32_t t)   /* enum mdfi_type -> MDFI_CONV_* */
{
    return t == MDFI_U8 ? MDFI_CONV_U8 : (t == MDFI_S8 ? MDFI_CONV_S8 : MDFI_CONV_S16);
}

static int32_t elem_of(int32_t t)  /* enum mdfi_type -> enum mdfi_elem */
{
    switch (t) {
    case MDFI_U8: return MDFI_ELEM_U8;
    case MDFI_S8: return MDFI_ELEM_I8;
    case MDFI_S16: return MDFI_ELEM_I16;
    default: return MDFI_ELEM_I32;
    }
}

int mdfi_plan_init(mdfi_plan *plan, const mdfi_model *model, const uint8_t *selected, int32_t nthreads,
                   int32_t path, mdfi_err *err)
{
    memset(plan, 0, sizeof *plan);
    const int32_t n = model->nlayers;
    plan->model = model;
    plan->nthreads = nthreads;
    plan->path = path;
    plan->needed = mdfi_alloc(n, 1);
    plan->last_use = mdfi_alloc((int64_t)n + 1, sizeof *plan->last_use);
    plan->outs = mdfi_alloc(n, sizeof *plan->outs);
    if (plan->needed == NULL || plan->last_use == NULL || plan->outs == NULL) {
        mdfi_plan_free(plan);
        return mdfi_fail(err, NULL, 0, "out of memory");
    }
    /* needed: the selected layers and, backwards, everything they depend on */
    for (int32_t i = 0; i < n; ++i) {
        plan->needed[i] = selected == NULL || selected[i] != 0;
        plan->outs[i] = NULL;
    }
    for (int32_t i = n - 1; i >= 0; --i) {
        if (!plan->needed[i]) continue;
        const mdfi_layer *l = &model->layers[i];
        for (int32_t k = 0; k < l->nin; ++k)
            if (l->in[k] >= 0) plan->needed[l->in[k]] = 1;
    }
    for (int32_t i = 0; i <= n; ++i) plan->last_use[i] = -1;
    int64_t scratch = 0, pre = 0;
    for (int32_t i = 0; i < n; ++i) {
        if (!plan->needed[i]) continue;
        const mdfi_layer *l = &model->layers[i];
        for (int32_t k = 0; k < l->nin; ++k) plan->last_use[l->in[k] + 1] = i;
        if (l->act >= MDFI_RT_ACT_TABLE && (l->kind == MDFI_K_CONV || l->kind == MDFI_K_SHORTCUT)) {
            const int64_t bytes = mdfi_tensor_elems(&l->out) * (l->pre_bits <= 8 ? 1 : 2);
            if (bytes > pre) pre = bytes;
        }
        if (l->kind == MDFI_K_CONV) {
            const mdfi_tensor_desc *in = producer(model, l->in[0]);
            const int64_t s = mdfi_conv_scratch_size(in->c / l->groups, in->h, in->w, l->m / l->groups, l->k, l->stride,
                                                     l->pad, nthreads);     /* one group's call */
            if (s < 0) {
                mdfi_plan_free(plan);
                return mdfi_fail(err, model->txt, l->line, "layer %d: convolution too large for the kernel",
                                 (int)l->index);
            }
            if (s > scratch) scratch = s;
        }
    }
    plan->pre = pre > 0 ? mdfi_alloc(pre, 1) : NULL;
    if (pre > 0 && plan->pre == NULL) {
        mdfi_plan_free(plan);
        return mdfi_fail(err, NULL, 0, "out of memory (%lld bytes of pre-activation codes)", (long long)pre);
    }
    plan->scratch_size = scratch;
    plan->scratch = scratch > 0 ? mdfi_alloc(scratch, 1) : NULL;
    if (scratch > 0 && plan->scratch == NULL) {
        mdfi_plan_free(plan);
        return mdfi_fail(err, NULL, 0, "out of memory (%lld bytes of convolution scratch)", (long long)scratch);
    }
    return 0;
}

void mdfi_plan_free(mdfi_plan *plan)
{
    if (plan->outs != NULL && plan->model != NULL)
        for (int32_t i = 0; i < plan->model->nlayers; ++i) free(plan->outs[i]);
    free(plan->outs);
    free(plan->needed);
    free(plan->last_use);
    free(plan->scratch);
    free(plan->pre);
    memset(plan, 0, sizeof *plan);
}

/* Run layer l: xs[k] = its inputs (descs ins[k]), out = its output buffer. */
static int run_layer(const mdfi_plan *plan, const mdfi_layer *l, const void *const *xs,
                     const mdfi_tensor_desc *const *ins, void *out, mdfi_err *err)
{
    const mdfi_tensor_desc *in = ins[0], *o = &l->out;
    const int64_t in_plane = (int64_t)in->h * in->w;
    /* the other kernels share the convolution's threads and SIMD path */
    const mdfi_kopts kopts = {mdfi_conv_pool_run, plan->nthreads, plan->path != MDFI_CONV_PATH_SCALAR};
    int rc = 0;
    /* table activations: the kernel writes the linear pre-activation code into plan->pre,
       then the table gives the output (docs/fixed-point.md section 4.1) */
    const int table = l->act >= MDFI_RT_ACT_TABLE;
    void *dst = table ? plan->pre : out;
    const int32_t dst_bits = table ? l->pre_bits : o->bits;
    const int32_t dst_type = table ? (l->pre_bits <= 8 ? MDFI_S8 : MDFI_S16) : o->type;
    const int32_t kact = table ? MDFI_ACT_LINEAR : l->act;
    switch (l->kind) {
    case MDFI_K_CONV:
        /* zero points: the padding holds pad_value, the epilogue adds zero_out (both 0 without) */
        /* grouped (docs/fixed-point.md 3.6): group j convolves input channels [j*C/g, (j+1)*C/g)
           into output channels [j*M/g, (j+1)*M/g), contiguous slices of both tensors */
        if (l->w16 != NULL) {       /* depthwise and the like: the direct kernel (same integers) */
            rc = mdfi_conv_grouped_ex(xs[0], in->type, in->c, in->h, in->w, l->w16, l->bias, l->shift, l->m,
                                      l->groups, l->k, l->stride, l->pad, l->pad_value, l->rounding, dst_bits, kact,
                                      l->zero_out, !l->acc64, dst, dst_type, o->h, o->w, &kopts);
            if (rc) return mdfi_fail(err, plan->model->txt, l->line, "layer %d: grouped convolution failed (%d)",
                                     (int)l->index, rc);
        }
        for (int32_t j = 0, g = l->groups, cg = in->c / g, mg = l->m / g; j < g && !rc && l->w16 == NULL; ++j) {
            const int64_t xe = (int64_t)cg * in->h * in->w, oe = (int64_t)mg * o->h * o->w;
            rc = mdfi_conv2d_zp((const char *)xs[0] + j * xe * (int64_t)mdfi_elem_size(elem_of(in->type)), conv_type(in->type),
                                cg, in->h, in->w, xe, (const char *)l->packed + j * l->packed_stride,
                                l->packed_size, l->bias + (int64_t)j * mg, l->shift + (int64_t)j * mg, mg,
                                (char *)dst + j * oe * (int64_t)mdfi_elem_size(elem_of(dst_type)), conv_type(dst_type), oe,
                                l->k, l->stride, l->pad, l->rounding, dst_bits, kact, l->acc64, plan->nthreads,
                                plan->path, plan->scratch, plan->scratch_size, l->pad_value, l->zero_out);
        }
        if (rc) return mdfi_fail(err, plan->model->txt, l->line, "layer %d: convolution failed: %s", (int)l->index,
                                 mdfi_conv_strerror(rc));
        if (table)
            rc = mdfi_lut_ex(dst, dst_type, mdfi_tensor_elems(o), mdfi_qmin(l->pre_bits), l->lut,
                             (int32_t)1 << l->pre_bits, out, o->type, &kopts);
        break;
    case MDFI_K_MAXPOOL:
        rc = mdfi_maxpool_ex(xs[0], in->type, in->c, in->h, in->w, l->size, l->stride, l->pad, out, o->h, o->w,
                             &kopts);
        break;
    case MDFI_K_UPSAMPLE:
        rc = mdfi_upsample_ex(xs[0], in->type, in->c, in->h, in->w, l->stride, out, &kopts);
        break;
    case MDFI_K_REORG:
        rc = mdfi_reorg(xs[0], in->type, in->c, in->h, in->w, l->stride, out);
        break;
    case MDFI_K_ROUTE: {
        /* each input (its channel slice group_id of groups) is aligned into its channel slice
           of out ([C_total][H][W]) */
        const size_t es = mdfi_type_size(o->type);
        unsigned char *d = out;
        for (int32_t k = 0; k < l->nin && rc == 0; ++k) {
            const int64_t n = mdfi_tensor_elems(ins[k]) / l->groups;
            const unsigned char *src = (const unsigned char *)xs[k] +
                                       (size_t)(n * l->group_id) * mdfi_type_size(ins[k]->type);
            rc = mdfi_align_copy_zp(src, ins[k]->type, n, l->shifts[k], l->rounding, o->bits, d, o->type,
                                    l->zero_in[k], l->zero_out, &kopts);
            d += (size_t)n * es;
        }
        break;
    }
    case MDFI_K_SHORTCUT: {
        /* b is added to the first min(|a|, |b|) elements; the rest of a takes b's real value 0
           (b == NULL: the term b - zero_b is 0).  Zero points: zero_in[0], zero_in[1] (a, b)
           subtracted, zero_out added before the saturation (0 without). */
        const int64_t na = mdfi_tensor_elems(o), nb = mdfi_tensor_elems(ins[1]);
        const int64_t nc = na < nb ? na : nb;
        const int32_t sf = table ? l->pre_frac : l->out_frac;
        const size_t ea = mdfi_type_size(ins[0]->type), eo = mdfi_type_size(dst_type);
        rc = mdfi_shortcut_zp(xs[0], ins[0]->type, l->fa, xs[1], ins[1]->type, l->fb, nc, sf, l->rounding,
                              dst_bits, kact, dst, dst_type, l->zero_in[0], l->zero_in[1], l->zero_out, &kopts);
        if (rc == 0 && nc < na)
            rc = mdfi_shortcut_zp((const unsigned char *)xs[0] + (size_t)nc * ea, ins[0]->type, l->fa, NULL,
                                  ins[1]->type, l->fb, na - nc, sf, l->rounding, dst_bits, kact,
                                  (unsigned char *)dst + (size_t)nc * eo, dst_type, l->zero_in[0], l->zero_in[1],
                                  l->zero_out, &kopts);
        if (rc == 0 && table)
            rc = mdfi_lut_ex(dst, dst_type, na, mdfi_qmin(l->pre_bits), l->lut, (int32_t)1 << l->pre_bits, out,
                             o->type, &kopts);
        break;
    }
    case MDFI_K_AVGPOOL:
        rc = mdfi_avgpool(xs[0], in->type, l->zero_in[0], in->c, in_plane, l->d, l->rounding, o->bits, l->zero_out,
                          out, o->type);
        break;
    case MDFI_K_SCALE: {
        /* the scale of element (ch, p): a[ch] (channels), a[p] (spatial) or a[ch][p] (elementwise) */
        const int64_t plane = (int64_t)o->h * o->w;
        const int64_t cs = l->mode == 0 ? 1 : (l->mode == 1 ? 0 : plane), ps = l->mode == 0 ? 0 : 1;
        rc = mdfi_scale_channels(xs[0], ins[0]->type, l->zero_in[0], cs, ps, xs[1], ins[1]->type, l->zero_in[1],
                                 o->c, plane, l->rshift, l->rounding, o->bits, l->act, l->zero_out, out, o->type);
        break;
    }
    case MDFI_K_YOLO:
    case MDFI_K_REGION: {
        const int32_t len = (int32_t)1 << l->tbits;
        rc = mdfi_head_lookup_ex(xs[0], in->type, in->c, in_plane, l->qmin, l->logistic, l->exp_tab, len, l->sel,
                                 (int32_t *)out, &kopts);
        /* yolo with scale_x_y / new_coords: channels with sel 2 go through the x/y table */
        for (int32_t ch = 0; rc == 0 && l->xy_tab != NULL && ch < in->c; ++ch)
            if (l->sel[ch] == 2)
                rc = mdfi_lut_ex((const unsigned char *)xs[0] + (size_t)(ch * in_plane) * mdfi_type_size(in->type),
                                 in->type, in_plane, l->qmin, l->xy_tab, len, (int32_t *)out + ch * in_plane, MDFI_S32,
                                 &kopts);
        if (rc == 0 && l->kind == MDFI_K_REGION && l->softmax)
            rc = mdfi_softmax_int(xs[0], in->type, l->n, l->entries, 5, l->classes, in_plane, l->expneg, len,
                                  (int32_t *)out);
        break;
    }
    default:
        rc = -100;
        break;
    }
    if (rc) return mdfi_fail(err, plan->model->txt, l->line, "layer %d (%s): kernel error %d", (int)l->index,
                             mdfi_kind_name(l->kind), rc);
    return 0;
}

int mdfi_plan_run(mdfi_plan *plan, const uint8_t *input, const uint8_t *selected, const char *out_dir,
                  double *times_ms, mdfi_err *err)
{
    const mdfi_model *m = plan->model;
    int rc = 0;
    for (int32_t i = 0; i < m->nlayers && rc == 0; ++i) {
        if (times_ms) times_ms[i] = 0.0;
        if (!plan->needed[i]) continue;
        const mdfi_layer *l = &m->layers[i];
        const void *xs[MDFI_RT_MAX_INPUTS];                 /* input buffers, in order */
        const mdfi_tensor_desc *ins[MDFI_RT_MAX_INPUTS];
        for (int32_t k = 0; k < l->nin; ++k) {
            xs[k] = l->in[k] < 0 ? (const void *)input : plan->outs[l->in[k]];
            ins[k] = producer(m, l->in[k]);
        }
        /* output: [C][H][W] of the layer's storage type */
        void *out = mdfi_alloc(mdfi_tensor_elems(&l->out), mdfi_type_size(l->out.type));
        if (out == NULL) {
            rc = mdfi_fail(err, m->txt, l->line, "layer %d: out of memory for the output", (int)l->index);
            break;
        }
        plan->outs[i] = out;
        const double t0 = times_ms ? now_ms() : 0.0;
        rc = run_layer(plan, l, xs, ins, out, err);
        if (times_ms) times_ms[i] = now_ms() - t0;
        if (rc == 0 && out_dir != NULL && (selected == NULL || selected[i])) {
            char name[32], path[MDFI_PATH_LEN];
            snprintf(name, sizeof name, "l%03d.out.hex", (int)i);
            rc = mdfi_join_path(path, out_dir, name, err);
            if (rc == 0)
                rc = mdfi_hex_write(path, out, (int32_t)elem_of(l->out.type), mdfi_tensor_elems(&l->out), l->out.bits,
                                    err);
        }
        /* free inputs whose last consumer this was, and outputs nobody consumes */
        for (int32_t k = 0; k < l->nin; ++k) {
            const int32_t j = l->in[k];
            if (j >= 0 && plan->last_use[j + 1] == i) {
                free(plan->outs[j]);
                plan->outs[j] = NULL;
            }
        }
        if (plan->last_use[i + 1] < 0) {
            free(plan->outs[i]);
            plan->outs[i] = NULL;
        }
    }
    for (int32_t i = 0; i < m->nlayers; ++i) {      /* normally all freed already; errors too */
        free(plan->outs[i]);
        plan->outs[i] = NULL;
    }
    return rc;
}
