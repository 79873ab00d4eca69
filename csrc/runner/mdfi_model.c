/* mdfi_model.c -- the model.txt parser: every line checked, every tensor's shape, type and width
 * derived (see mdfi_model.h; the files themselves are read by mdfi_model_load.c). */
#include "mdfi_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mdfi_conv.h"
#include "../mdfi_fixedpoint.h"
#include "../mdfi_kernels.h"
#include "mdfi_kv.h"

_Static_assert(MDFI_KV_MAX_NAME == MDFI_RT_MAX_NAME, "file name limits of mdfi_kv.h and mdfi_model.h");


static const char *const KIND_NAMES[MDFI_K_COUNT] = {
    "conv", "maxpool", "upsample", "reorg", "route", "shortcut", "yolo", "region", "avgpool", "scale_channels"};

const char *mdfi_kind_name(int32_t kind)
{
    return (kind >= 0 && kind < MDFI_K_COUNT) ? KIND_NAMES[kind] : "unknown";
}

/* ---- shapes and types ----------------------------------------------------------------- */
static int32_t act_type(int32_t bits) { return bits <= 8 ? MDFI_S8 : MDFI_S16; }

static int32_t ceil_log2(int64_t k)
{
    int32_t e = 0;
    while (((int64_t)1 << e) < k) ++e;
    return e;
}

/* Is (c, h, w) a tensor the runner accepts? */
static int shape_ok(int64_t c, int64_t h, int64_t w)
{
    return c >= 1 && h >= 1 && w >= 1 && c <= MDFI_RT_MAX_DIM && h <= MDFI_RT_MAX_DIM && w <= MDFI_RT_MAX_DIM &&
           c * h * w <= MDFI_RT_MAX_ELEMS;
}

static const mdfi_tensor_desc *producer(const mdfi_model *m, int32_t i)
{
    return i < 0 ? &m->input : &m->layers[i].out;
}

/* The codes a tensor's storage holds: 0..255 for pixels, qmin..qmax(bits) otherwise. */
static void code_range(const mdfi_tensor_desc *t, int64_t *lo, int64_t *hi)
{
    *lo = t->type == MDFI_U8 ? 0 : mdfi_qmin(t->bits);
    *hi = t->type == MDFI_U8 ? 255 : mdfi_qmax(t->bits);
}

/* Optional c=/h=/w= keys must equal the input shape. */
static int check_in_shape(kvline *kv, const mdfi_tensor_desc *in, mdfi_err *err)
{
    static const char *const keys[3] = {"c", "h", "w"};
    const int32_t have[3] = {in->c, in->h, in->w};
    for (int i = 0; i < 3; ++i) {
        int32_t v = 0;
        int present;
        if (kv_int(kv, keys[i], 1, MDFI_RT_MAX_DIM, 0, &v, &present, err)) return -1;
        if (present && v != have[i])
            return mdfi_fail(err, kv->file, kv->line, "layer %d: %s=%d but the input is %dx%dx%d (c x h x w)",
                             (int)kv->layer, keys[i], (int)v, (int)in->c, (int)in->h, (int)in->w);
    }
    return 0;
}

static int set_out(kvline *kv, mdfi_layer *l, int64_t c, int64_t h, int64_t w, int32_t type, int32_t bits,
                   mdfi_err *err)
{
    if (!shape_ok(c, h, w))
        return mdfi_fail(err, kv->file, kv->line, "layer %d: output shape %lldx%lldx%lld is empty or too large",
                         (int)l->index, (long long)c, (long long)h, (long long)w);
    l->out.c = (int32_t)c;
    l->out.h = (int32_t)h;
    l->out.w = (int32_t)w;
    l->out.type = type;
    l->out.bits = bits;
    return 0;
}

/* MDFI_ACT_* order, then the table activations (MDFI_RT_ACT_TABLE..) */
static const char *const ACT_NAMES[] = {"linear", "leaky", "relu", "logistic", "mish", "swish", "hard_mish",
                                        "relu6"};
static const char *const ROUND_NAMES[] = {"half_up", "truncate"};               /* MDFI_ROUND_* */
static const char *const TYPE_NAMES[] = {"u8", "s8", "s16"};                    /* MDFI_U8.. */

/* ---- per-kind line parsers ------------------------------------------------------------ */
/* Table activations: pre_bits= pre_frac= lut= go with act >= MDFI_RT_ACT_TABLE, never without. */
static int parse_table_keys(mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    int have_bits = 0, have_frac = 0;
    if (kv_int(kv, "pre_bits", 2, 16, 0, &l->pre_bits, &have_bits, err) ||
        kv_int(kv, "pre_frac", -64, 64, 0, &l->pre_frac, &have_frac, err) || kv_name(kv, "lut", 0, l->file[3], err))
        return -1;
    const int table = l->act >= MDFI_RT_ACT_TABLE, have_lut = l->file[3][0] != '\0';
    if (table != have_bits || table != have_frac || table != have_lut)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: act=%s %s pre_bits=, pre_frac= and lut=", (int)l->index,
                         ACT_NAMES[l->act], table ? "needs" : "takes no");
    return 0;
}

static int parse_conv(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    int32_t in_type = 0;
    int have_type;
    l->groups = 1;                                      /* grouped convolution: absent = 1 */
    if (check_in_shape(kv, in, err) || kv_int(kv, "m", 1, MDFI_RT_MAX_DIM, 1, &l->m, NULL, err) ||
        kv_int(kv, "groups", 1, MDFI_RT_MAX_DIM, 0, &l->groups, NULL, err) ||
        kv_int(kv, "k", 1, MDFI_RT_MAX_KPARAM, 1, &l->k, NULL, err) ||
        kv_int(kv, "stride", 1, MDFI_RT_MAX_KPARAM, 1, &l->stride, NULL, err) ||
        kv_int(kv, "pad", 0, MDFI_RT_MAX_KPARAM, 1, &l->pad, NULL, err) ||
        kv_enum(kv, "act", ACT_NAMES, MDFI_RT_ACT_COUNT, &l->act, 1, NULL, err) ||
        parse_table_keys(l, kv, err) ||
        kv_enum(kv, "rounding", ROUND_NAMES, 2, &l->rounding, 1, NULL, err) ||
        kv_enum(kv, "in_type", TYPE_NAMES, 3, &in_type, 0, &have_type, err) ||
        kv_int(kv, "wbits", 2, 16, 1, &l->wbits, NULL, err) ||
        kv_int(kv, "out_bits", 2, 16, 1, &l->out.bits, NULL, err) ||
        kv_int(kv, "acc64", 0, 1, 1, &l->acc64, NULL, err) || kv_name(kv, "weights", 1, l->file[0], err) ||
        kv_name(kv, "bias", 1, l->file[1], err) || kv_name(kv, "shift", 1, l->file[2], err))
        return -1;
    if (have_type && in_type != in->type)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: in_type=%s but the input is stored as %s", (int)l->index,
                         TYPE_NAMES[in_type], TYPE_NAMES[in->type]);
    if (in->c % l->groups || l->m % l->groups)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: groups=%d must divide c=%d and m=%d", (int)l->index,
                         (int)l->groups, (int)in->c, (int)l->m);
    const int32_t oh = mdfi_conv_out_size(in->h, l->k, l->stride, l->pad);
    const int32_t ow = mdfi_conv_out_size(in->w, l->k, l->stride, l->pad);
    if (oh < 1 || ow < 1)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: kernel %d does not fit the padded %dx%d input",
                         (int)l->index, (int)l->k, (int)in->h, (int)in->w);
    const int64_t kvol = (int64_t)(in->c / l->groups) * l->k * l->k;     /* <= 2^44: no overflow */
    if (kvol > MDFI_RT_MAX_ELEMS / l->m)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: more than 2^31 weights", (int)l->index);
    l->acc_bits = l->wbits + (in->type == MDFI_U8 ? in->bits + 1 : in->bits) + ceil_log2(kvol);
    if (l->acc_bits > MDFI_MAX_ACC_BITS)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: the accumulator needs %d bits (> %d)", (int)l->index,
                         (int)l->acc_bits, MDFI_MAX_ACC_BITS);
    if (l->acc64 != (l->acc_bits > 32))
        return mdfi_fail(err, kv->file, kv->line, "layer %d: acc64=%d but the accumulator has %d bits",
                         (int)l->index, (int)l->acc64, (int)l->acc_bits);
    /* Optional checks: acc_bits= (the width of bias.hex values), oh=/ow= (the output size). */
    int32_t acc_bits = 0, eoh = 0, eow = 0;
    int have_acc, have_oh, have_ow;
    if (kv_int(kv, "acc_bits", 2, 64, 0, &acc_bits, &have_acc, err) ||
        kv_int(kv, "oh", 1, MDFI_RT_MAX_DIM, 0, &eoh, &have_oh, err) ||
        kv_int(kv, "ow", 1, MDFI_RT_MAX_DIM, 0, &eow, &have_ow, err))
        return -1;
    if (have_acc && acc_bits != l->acc_bits)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: acc_bits=%d but the accumulator bound gives %d bits",
                         (int)l->index, (int)acc_bits, (int)l->acc_bits);
    if ((have_oh && eoh != oh) || (have_ow && eow != ow))
        return mdfi_fail(err, kv->file, kv->line, "layer %d: oh/ow=%dx%d but the convolution gives %dx%d",
                         (int)l->index, (int)(have_oh ? eoh : oh), (int)(have_ow ? eow : ow), (int)oh, (int)ow);
    if (mdfi_conv_packed_size(l->m / l->groups, in->c / l->groups, l->k) < 0)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: weights too large", (int)l->index);
    if (l->act >= MDFI_RT_ACT_TABLE && l->pre_bits < l->out.bits)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: pre_bits=%d is narrower than out_bits=%d", (int)l->index,
                         (int)l->pre_bits, (int)l->out.bits);
    /* zero points (optional, absent = 0): pad_value a code of the input, zero_out one of the
       output; a table activation has the output's folded into its table (no zero_out=) */
    int64_t plo, phi;
    int have_zo;
    code_range(in, &plo, &phi);
    if (kv_int(kv, "pad_value", plo, phi, 0, &l->pad_value, NULL, err) ||
        kv_int(kv, "zero_out", mdfi_qmin(l->out.bits), mdfi_qmax(l->out.bits), 0, &l->zero_out, &have_zo, err))
        return -1;
    if (have_zo && l->act >= MDFI_RT_ACT_TABLE)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: zero_out= with a table activation (the table holds "
                         "the output's zero point)", (int)l->index);
    return set_out(kv, l, l->m, oh, ow, act_type(l->out.bits), l->out.bits, err);
}

static int parse_maxpool(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    int32_t oh = 0, ow = 0;
    int have_oh, have_ow;
    if (check_in_shape(kv, in, err) || kv_int(kv, "size", 1, MDFI_RT_MAX_KPARAM, 1, &l->size, NULL, err) ||
        kv_int(kv, "stride", 1, MDFI_RT_MAX_KPARAM, 1, &l->stride, NULL, err) ||
        kv_int(kv, "pad", 0, MDFI_RT_MAX_KPARAM, 1, &l->pad, NULL, err) ||
        kv_int(kv, "oh", 1, MDFI_RT_MAX_DIM, 0, &oh, &have_oh, err) ||
        kv_int(kv, "ow", 1, MDFI_RT_MAX_DIM, 0, &ow, &have_ow, err))
        return -1;
    if ((l->pad + 1) / 2 > l->size - 1)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: pad=%d is too large for size=%d", (int)l->index,
                         (int)l->pad, (int)l->size);
    if ((int64_t)in->h + l->pad < l->size || (int64_t)in->w + l->pad < l->size)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: window %d larger than the padded input",
                         (int)l->index, (int)l->size);
    const int32_t eh = (in->h + l->pad - l->size) / l->stride + 1, ew = (in->w + l->pad - l->size) / l->stride + 1;
    if ((have_oh && oh != eh) || (have_ow && ow != ew))
        return mdfi_fail(err, kv->file, kv->line, "layer %d: oh/ow=%dx%d but the pooling gives %dx%d",
                         (int)l->index, (int)(have_oh ? oh : eh), (int)(have_ow ? ow : ew), (int)eh, (int)ew);
    return set_out(kv, l, in->c, eh, ew, in->type, in->bits, err);
}

static int parse_upsample(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    if (check_in_shape(kv, in, err) || kv_int(kv, "stride", 1, MDFI_RT_MAX_KPARAM, 1, &l->stride, NULL, err))
        return -1;
    return set_out(kv, l, in->c, (int64_t)in->h * l->stride, (int64_t)in->w * l->stride, in->type, in->bits, err);
}

static int parse_reorg(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    if (check_in_shape(kv, in, err) || kv_int(kv, "stride", 1, MDFI_RT_MAX_KPARAM, 1, &l->stride, NULL, err))
        return -1;
    const int32_t s = l->stride;
    if (in->h % s || in->w % s || in->c % (s * s))
        return mdfi_fail(err, kv->file, kv->line,
                         "layer %d: stride=%d does not divide the input %dx%dx%d (C by stride^2, H and W by stride)",
                         (int)l->index, (int)s, (int)in->c, (int)in->h, (int)in->w);
    return set_out(kv, l, (int64_t)in->c * s * s, in->h / s, in->w / s, in->type, in->bits, err);
}

static int parse_route(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    int64_t ns = 0;
    int have_g = 0, have_gid = 0;
    l->groups = 1;
    l->group_id = 0;
    if (kv_list(kv, "shifts", 0, MDFI_MAX_SHIFT, MDFI_RT_MAX_INPUTS, l->shifts, &ns, err) ||
        kv_enum(kv, "rounding", ROUND_NAMES, 2, &l->rounding, 1, NULL, err) ||
        kv_int(kv, "out_bits", 2, 16, 1, &l->out.bits, NULL, err) ||
        kv_int(kv, "groups", 1, MDFI_RT_MAX_DIM, 0, &l->groups, &have_g, err) ||
        kv_int(kv, "group_id", 0, MDFI_RT_MAX_DIM, 0, &l->group_id, &have_gid, err))
        return -1;
    if (l->group_id >= l->groups)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: group_id=%d must be below groups=%d", (int)l->index,
                         (int)l->group_id, (int)l->groups);
    if (ns != l->nin)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: %lld shifts for %d inputs", (int)l->index,
                         (long long)ns, (int)l->nin);
    const mdfi_tensor_desc *first = producer(m, l->in[0]);
    int64_t c = 0;
    int32_t widest = 0;
    for (int32_t i = 0; i < l->nin; ++i) {
        const mdfi_tensor_desc *t = producer(m, l->in[i]);
        if (t->h != first->h || t->w != first->w)
            return mdfi_fail(err, kv->file, kv->line, "layer %d: input %d is %dx%d but input %d is %dx%d",
                             (int)l->index, (int)l->in[0], (int)first->h, (int)first->w, (int)l->in[i], (int)t->h,
                             (int)t->w);
        if (t->c % l->groups)
            return mdfi_fail(err, kv->file, kv->line, "layer %d: input %d has %d channels, not divisible by groups=%d",
                             (int)l->index, (int)l->in[i], (int)t->c, (int)l->groups);
        c += t->c / l->groups;
        if (t->bits > widest) widest = t->bits;
    }
    if (l->out.bits != widest)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: out_bits=%d but the widest input has %d bits",
                         (int)l->index, (int)l->out.bits, (int)widest);
    /* zero points (optional, absent = 0): zero_in= one code per input, zero_out= one of the output */
    int64_t nz = 0;
    const char *zi = NULL;
    if (kv_get(kv, "zero_in", 0, &zi, err)) return -1;
    if (zi != NULL) {
        if (kv_list(kv, "zero_in", -32768, 65535, MDFI_RT_MAX_INPUTS, l->zero_in, &nz, err)) return -1;
        if (nz != l->nin)
            return mdfi_fail(err, kv->file, kv->line, "layer %d: %lld zero_in values for %d inputs", (int)l->index,
                             (long long)nz, (int)l->nin);
        for (int32_t i = 0; i < l->nin; ++i) {
            int64_t lo, hi;
            code_range(producer(m, l->in[i]), &lo, &hi);
            if (l->zero_in[i] < lo || l->zero_in[i] > hi)
                return mdfi_fail(err, kv->file, kv->line, "layer %d: zero_in=%d is not a code of input %d",
                                 (int)l->index, (int)l->zero_in[i], (int)l->in[i]);
        }
    }
    if (kv_int(kv, "zero_out", mdfi_qmin(l->out.bits), mdfi_qmax(l->out.bits), 0, &l->zero_out, NULL, err))
        return -1;
    return set_out(kv, l, c, first->h, first->w, act_type(l->out.bits), l->out.bits, err);
}

static int parse_shortcut(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    if (kv_int(kv, "fa", -64, 64, 1, &l->fa, NULL, err) || kv_int(kv, "fb", -64, 64, 1, &l->fb, NULL, err) ||
        kv_int(kv, "out_frac", -64, 64, 1, &l->out_frac, NULL, err) ||
        kv_enum(kv, "act", ACT_NAMES, MDFI_RT_ACT_COUNT, &l->act, 1, NULL, err) || parse_table_keys(l, kv, err) ||
        kv_enum(kv, "rounding", ROUND_NAMES, 2, &l->rounding, 1, NULL, err) ||
        kv_int(kv, "out_bits", 2, 16, 1, &l->out.bits, NULL, err))
        return -1;
    const mdfi_tensor_desc *a = producer(m, l->in[0]), *b = producer(m, l->in[1]);
    /* the channel counts may differ: b is added to the first min(Ca, Cb) channels of a */
    if (a->h != b->h || a->w != b->w)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: inputs have different sizes %dx%dx%d and %dx%dx%d",
                         (int)l->index, (int)a->c, (int)a->h, (int)a->w, (int)b->c, (int)b->h, (int)b->w);
    const int32_t fm = l->fa > l->fb ? l->fa : l->fb;
    const int32_t sf = l->act >= MDFI_RT_ACT_TABLE ? l->pre_frac : l->out_frac;      /* the kernel's target */
    if (fm - l->fa > 16 || fm - l->fb > 16)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: fa=%d and fb=%d differ by more than 16", (int)l->index,
                         (int)l->fa, (int)l->fb);
    if (fm - sf < MDFI_MIN_SHIFT || fm - sf > MDFI_MAX_SHIFT)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: shift %d outside [%d, %d]", (int)l->index,
                         (int)(fm - sf), MDFI_MIN_SHIFT, MDFI_MAX_SHIFT);
    if (l->act >= MDFI_RT_ACT_TABLE && l->pre_bits < l->out.bits)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: pre_bits=%d is narrower than out_bits=%d", (int)l->index,
                         (int)l->pre_bits, (int)l->out.bits);
    /* zero points (optional, absent = 0): zero_a, zero_b codes of the inputs, zero_out one of
       the output; a table activation has the output's folded into its table (no zero_out=) */
    int64_t alo, ahi, blo, bhi;
    int have_zo;
    code_range(a, &alo, &ahi);
    code_range(b, &blo, &bhi);
    if (kv_int(kv, "zero_a", alo, ahi, 0, &l->zero_in[0], NULL, err) ||
        kv_int(kv, "zero_b", blo, bhi, 0, &l->zero_in[1], NULL, err) ||
        kv_int(kv, "zero_out", mdfi_qmin(l->out.bits), mdfi_qmax(l->out.bits), 0, &l->zero_out, &have_zo, err))
        return -1;
    if (have_zo && l->act >= MDFI_RT_ACT_TABLE)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: zero_out= with a table activation (the table holds "
                         "the output's zero point)", (int)l->index);
    return set_out(kv, l, a->c, a->h, a->w, act_type(l->out.bits), l->out.bits, err);
}

/* avgpool (docs/fixed-point.md 9.1): c/h/w of the input (optional checks), d = out_frac - in_frac,
 * zero_in= / zero_out= (absent = 0); output [c][1][1]. */
static int parse_avgpool(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    if (check_in_shape(kv, in, err) || kv_int(kv, "d", -24, 20, 1, &l->d, NULL, err) ||
        kv_enum(kv, "rounding", ROUND_NAMES, 2, &l->rounding, 1, NULL, err) ||
        kv_int(kv, "out_bits", 2, 16, 1, &l->out.bits, NULL, err))
        return -1;
    if ((int64_t)in->h * in->w > ((int64_t)1 << 24))
        return mdfi_fail(err, kv->file, kv->line, "layer %d: an average over %lld positions (at most 2^24)",
                         (int)l->index, (long long)in->h * in->w);
    int64_t lo, hi;
    code_range(in, &lo, &hi);
    if (kv_int(kv, "zero_in", lo, hi, 0, &l->zero_in[0], NULL, err) ||
        kv_int(kv, "zero_out", mdfi_qmin(l->out.bits), mdfi_qmax(l->out.bits), 0, &l->zero_out, NULL, err))
        return -1;
    return set_out(kv, l, in->c, 1, 1, act_type(l->out.bits), l->out.bits, err);
}

/* scale_channels (9.2): in=SCALE,FROM; c/h/w of the output (the from layer's shape; optional
 * checks); mode channels (scale [c][1][1]), spatial ([1][h][w]) or elementwise ([c][h][w]). */
static int parse_scale(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    static const char *const MODES[] = {"channels", "spatial", "elementwise"};
    const mdfi_tensor_desc *a = producer(m, l->in[0]), *b = producer(m, l->in[1]);
    if (check_in_shape(kv, b, err) || kv_enum(kv, "mode", MODES, 3, &l->mode, 1, NULL, err) ||
        kv_int(kv, "shift", MDFI_MIN_SHIFT, MDFI_MAX_SHIFT, 1, &l->rshift, NULL, err) ||
        kv_enum(kv, "act", ACT_NAMES, 3, &l->act, 1, NULL, err) ||
        kv_enum(kv, "rounding", ROUND_NAMES, 2, &l->rounding, 1, NULL, err) ||
        kv_int(kv, "out_bits", 2, 16, 1, &l->out.bits, NULL, err))
        return -1;
    const int32_t wc = l->mode == 1 ? 1 : b->c, wh = l->mode == 0 ? 1 : b->h, ww = l->mode == 0 ? 1 : b->w;
    if (a->c != wc || a->h != wh || a->w != ww)
        return mdfi_fail(err, kv->file, kv->line, "layer %d: mode=%s needs a %dx%dx%d scale, input %d is %dx%dx%d",
                         (int)l->index, MODES[l->mode], (int)wc, (int)wh, (int)ww, (int)l->in[0], (int)a->c,
                         (int)a->h, (int)a->w);
    int64_t alo, ahi, blo, bhi;
    code_range(a, &alo, &ahi);
    code_range(b, &blo, &bhi);
    if (kv_int(kv, "zero_a", alo, ahi, 0, &l->zero_in[0], NULL, err) ||
        kv_int(kv, "zero_b", blo, bhi, 0, &l->zero_in[1], NULL, err) ||
        kv_int(kv, "zero_out", mdfi_qmin(l->out.bits), mdfi_qmax(l->out.bits), 0, &l->zero_out, NULL, err))
        return -1;
    return set_out(kv, l, b->c, b->h, b->w, act_type(l->out.bits), l->out.bits, err);
}

static int parse_head(mdfi_model *m, mdfi_layer *l, kvline *kv, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    const int region = l->kind == MDFI_K_REGION;
    int32_t *sel = NULL;               /* [C] parsed sel= list, copied into l->sel (uint8) */
    int64_t nsel = 0;
    if (check_in_shape(kv, in, err) || kv_int(kv, "qmin", -32768, 0, 1, &l->qmin, NULL, err) ||
        kv_int(kv, "bits", 2, 16, 1, &l->tbits, NULL, err) || kv_name(kv, "logistic", 1, l->file[0], err) ||
        kv_name(kv, "exp", 1, l->file[1], err) || (!region && kv_name(kv, "xy", 0, l->file[2], err)))
        return -1;
    const int xy = !region && l->file[2][0] != '\0';
    if (region &&
        (kv_int(kv, "softmax", 0, 1, 1, &l->softmax, NULL, err) ||
         kv_int(kv, "n", 1, MDFI_RT_MAX_DIM, 1, &l->n, NULL, err) ||
         kv_int(kv, "entries", 1, MDFI_RT_MAX_DIM, 1, &l->entries, NULL, err) ||
         kv_int(kv, "classes", 1, MDFI_RT_MAX_DIM, 1, &l->classes, NULL, err) ||
         kv_name(kv, "expneg", 0, l->file[2], err)))
        return -1;
    if (l->tbits != in->bits || l->qmin != mdfi_qmin(in->bits))
        return mdfi_fail(err, kv->file, kv->line, "layer %d: qmin=%d bits=%d do not match the %d-bit input",
                         (int)l->index, (int)l->qmin, (int)l->tbits, (int)in->bits);
    if (region) {
        if ((int64_t)l->n * l->entries != in->c || l->entries != l->classes + 5)
            return mdfi_fail(err, kv->file, kv->line,
                             "layer %d: n=%d x entries=%d (classes=%d + 5) does not match the %d input channels",
                             (int)l->index, (int)l->n, (int)l->entries, (int)l->classes, (int)in->c);
        if (l->softmax && l->file[2][0] == '\0')
            return mdfi_fail(err, kv->file, kv->line, "layer %d: softmax=1 needs expneg=", (int)l->index);
    }
    sel = mdfi_alloc(in->c, sizeof *sel);
    l->sel = mdfi_alloc(in->c, sizeof *l->sel);
    if (sel == NULL || l->sel == NULL) {
        free(sel);
        return mdfi_fail(err, kv->file, kv->line, "out of memory");
    }
    if (kv_list(kv, "sel", 0, (region || xy) ? 2 : 1, in->c, sel, &nsel, err)) {
        free(sel);
        return -1;
    }
    int rc = 0;
    if (nsel != in->c)
        rc = mdfi_fail(err, kv->file, kv->line, "layer %d: sel has %lld entries for %d channels", (int)l->index,
                       (long long)nsel, (int)in->c);
    for (int32_t ch = 0; ch < in->c && rc == 0; ++ch) {
        l->sel[ch] = (uint8_t)sel[ch];
        /* softmax channels are exactly the classes of every anchor (what the kernel writes);
           on a yolo line with xy= any channel may take the x/y table (sel 2) */
        const int want2 = region && l->softmax && ch % l->entries >= 5;
        if (!xy && (sel[ch] == 2) != want2)
            rc = mdfi_fail(err, kv->file, kv->line, "layer %d: sel entry %d (%d) %s", (int)l->index, (int)ch,
                           (int)sel[ch], want2 ? "must be 2 (softmax class)" : "cannot be 2 here");
    }
    free(sel);
    if (rc) return rc;
    return set_out(kv, l, in->c, in->h, in->w, MDFI_S32, 32, err);
}

typedef int (*parse_fn)(mdfi_model *, mdfi_layer *, kvline *, mdfi_err *);

/* Keys each kind accepts (space-separated; c/h/w/oh/ow/in_type are optional checks). */
static const char *const KIND_KEYS[MDFI_K_COUNT] = {
    " in c h w m k stride pad act rounding in_type wbits out_bits acc64 acc_bits oh ow weights bias shift "
    "pre_bits pre_frac lut pad_value zero_out groups ",
    " in c h w size stride pad oh ow ",
    " in c h w stride ",
    " in c h w stride ",
    " in shifts rounding out_bits groups group_id zero_in zero_out ",
    " in fa fb out_frac act rounding out_bits pre_bits pre_frac lut zero_a zero_b zero_out ",
    " in c h w qmin bits sel logistic exp xy ",
    " in c h w qmin bits sel softmax n entries classes logistic exp expneg ",
    " in c h w d rounding out_bits zero_in zero_out ",
    " in c h w mode shift act rounding out_bits zero_a zero_b zero_out "};

/* A key the kind does not know is reported before anything else (typos). */
static int check_known_keys(const kvline *kv, int32_t kind, mdfi_err *err)
{
    for (int i = 0; i < kv->n; ++i) {
        char pat[72];                                   /* " key " */
        const size_t len = strlen(kv->key[i]);
        int known = 0;
        if (len + 3 <= sizeof pat) {
            snprintf(pat, sizeof pat, " %s ", kv->key[i]);
            known = strstr(KIND_KEYS[kind], pat) != NULL;
        }
        if (!known)
            return mdfi_fail(err, kv->file, kv->line, "layer %d: unknown key '%.64s' for a %s layer", (int)kv->layer,
                             kv->key[i], KIND_NAMES[kind]);
    }
    return 0;
}

/* One "layer" line: tokens[0] = "layer". */
static int parse_layer_line(mdfi_model *m, char **tokens, int ntok, kvline *kv, mdfi_err *err)
{
    static const parse_fn PARSERS[MDFI_K_COUNT] = {parse_conv, parse_maxpool, parse_upsample, parse_reorg,
                                                   parse_route, parse_shortcut, parse_head, parse_head,
                                                   parse_avgpool, parse_scale};
    int64_t idx;
    if (ntok < 3) return mdfi_fail(err, kv->file, kv->line, "expected 'layer INDEX KIND key=value ...'");
    if (mdfi_parse_int(tokens[1], 0, MDFI_RT_MAX_LAYERS - 1, &idx))
        return mdfi_fail(err, kv->file, kv->line, "layer index '%.32s' is not an integer in [0, %d]", tokens[1],
                         MDFI_RT_MAX_LAYERS - 1);
    if (idx != m->nlayers)
        return mdfi_fail(err, kv->file, kv->line, "layer %lld out of order (expected layer %d)", (long long)idx,
                         (int)m->nlayers);
    int32_t kind = -1;
    for (int32_t k = 0; k < MDFI_K_COUNT; ++k)
        if (strcmp(tokens[2], KIND_NAMES[k]) == 0) kind = k;
    if (kind < 0) return mdfi_fail(err, kv->file, kv->line, "layer %lld: unknown kind '%.32s'", (long long)idx, tokens[2]);
    kv->layer = (int32_t)idx;
    if (kv_split(kv, tokens, ntok, 3, err) || check_known_keys(kv, kind, err)) return -1;

    /* append a zeroed layer */
    if (m->nlayers % 64 == 0) {
        mdfi_layer *nl = realloc(m->layers, sizeof *nl * (size_t)(m->nlayers + 64));
        if (nl == NULL) return mdfi_fail(err, kv->file, kv->line, "out of memory");
        m->layers = nl;
    }
    mdfi_layer *l = &m->layers[m->nlayers];
    memset(l, 0, sizeof *l);
    m->nlayers++;
    l->index = (int32_t)idx;
    l->kind = kind;
    l->line = kv->line;

    int64_t nin = 0;
    if (kv_list(kv, "in", -1, idx - 1, MDFI_RT_MAX_INPUTS, l->in, &nin, err)) return -1;
    l->nin = (int32_t)nin;
    const int64_t want = kind == MDFI_K_ROUTE ? -1 : (kind == MDFI_K_SHORTCUT || kind == MDFI_K_SCALE ? 2 : 1);
    if (want > 0 && nin != want)
        return mdfi_fail(err, kv->file, kv->line, "layer %lld: a %s layer takes %lld input%s, got %lld", (long long)idx,
                         KIND_NAMES[kind], (long long)want, want > 1 ? "s" : "", (long long)nin);
    /* Like the quantizer: routes, shortcuts and heads take activations, not pixel-domain
     * (uint8) data; nothing consumes a head's output. */
    const int needs_act = kind == MDFI_K_ROUTE || kind == MDFI_K_SHORTCUT || kind == MDFI_K_YOLO ||
                          kind == MDFI_K_REGION || kind == MDFI_K_AVGPOOL || kind == MDFI_K_SCALE;
    for (int32_t i = 0; i < l->nin; ++i) {
        const int32_t t = producer(m, l->in[i])->type;
        if (t == MDFI_S32)
            return mdfi_fail(err, kv->file, kv->line, "layer %lld: input %d is a detection head's output",
                             (long long)idx, (int)l->in[i]);
        if (t == MDFI_U8 && needs_act)
            return mdfi_fail(err, kv->file, kv->line,
                             "layer %lld: a %s layer on the raw pixel input (uint8) is not supported", (long long)idx,
                             KIND_NAMES[kind]);
    }
    if (PARSERS[kind](m, l, kv, err)) return -1;
    char what[32];
    snprintf(what, sizeof what, "a %s layer", KIND_NAMES[kind]);
    return kv_check_all_used(kv, what, err);
}

/* ---- model.txt ------------------------------------------------------------------------ */
int mdfi_model_parse(mdfi_model *m, char *text, int64_t len, mdfi_err *err)
{
    if (memchr(text, '\0', (size_t)len) != NULL) return mdfi_fail(err, m->txt, 0, "binary data, not a model.txt");
    kvline kv;
    memset(&kv, 0, sizeof kv);
    kv.file = m->txt;
    int header = 0, have_input = 0;
    char *tokens[MAX_TOKENS + 3];
    char *p = text;
    for (int64_t lineno = 1; *p; ++lineno) {
        char *line = p, *nl = strchr(p, '\n');
        if (nl) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p += strlen(p);
        }
        size_t ll = strlen(line);
        if (ll > 0 && line[ll - 1] == '\r') line[--ll] = '\0';
        kv.line = lineno;
        kv.layer = -1;
        /* tokens separated by spaces (tabs tolerated) */
        int ntok = 0;
        for (char *q = line; *q;) {
            while (*q == ' ' || *q == '\t') *q++ = '\0';
            if (*q == '\0') break;
            if (ntok == MAX_TOKENS + 3) return mdfi_fail(err, m->txt, lineno, "too many tokens on one line");
            tokens[ntok++] = q;
            while (*q && *q != ' ' && *q != '\t') ++q;
        }
        if (ntok == 0 || tokens[0][0] == '#') continue;                 /* blank line, comment */
        if (!header) {
            int64_t ver;
            if (strcmp(tokens[0], "mdfi-model") != 0 || ntok != 2)
                return mdfi_fail(err, m->txt, lineno, "not an MDFI model description (expected 'mdfi-model 1' first)");
            if (mdfi_parse_int(tokens[1], 0, INT32_MAX, &ver) || ver != 1)
                return mdfi_fail(err, m->txt, lineno, "unsupported model.txt version '%.32s' (this runner reads 1)",
                                 tokens[1]);
            header = 1;
        } else if (strcmp(tokens[0], "input") == 0) {
            if (have_input) return mdfi_fail(err, m->txt, lineno, "a second 'input' line");
            if (m->nlayers > 0) return mdfi_fail(err, m->txt, lineno, "'input' must come before the layers");
            if (kv_split(&kv, tokens, ntok, 1, err) ||
                kv_int(&kv, "c", 1, MDFI_RT_MAX_DIM, 1, &m->input.c, NULL, err) ||
                kv_int(&kv, "h", 1, MDFI_RT_MAX_DIM, 1, &m->input.h, NULL, err) ||
                kv_int(&kv, "w", 1, MDFI_RT_MAX_DIM, 1, &m->input.w, NULL, err) ||
                kv_check_all_used(&kv, "the input line", err))
                return -1;
            if (!shape_ok(m->input.c, m->input.h, m->input.w))
                return mdfi_fail(err, m->txt, lineno, "input shape too large");
            m->input.type = MDFI_U8;
            m->input.bits = 8;
            have_input = 1;
        } else if (strcmp(tokens[0], "layer") == 0) {
            if (!have_input) return mdfi_fail(err, m->txt, lineno, "'layer' before the 'input' line");
            if (m->nlayers >= MDFI_RT_MAX_LAYERS)
                return mdfi_fail(err, m->txt, lineno, "more than %d layers", MDFI_RT_MAX_LAYERS);
            if (parse_layer_line(m, tokens, ntok, &kv, err)) return -1;
        } else if (strcmp(tokens[0], "mdfi-model") == 0) {
            return mdfi_fail(err, m->txt, lineno, "a second 'mdfi-model' header");
        } else {
            return mdfi_fail(err, m->txt, lineno, "unknown record '%.32s' (expected input or layer)", tokens[0]);
        }
    }
    if (!header) return mdfi_fail(err, m->txt, 0, "empty: no 'mdfi-model 1' header");
    if (!have_input) return mdfi_fail(err, m->txt, 0, "no 'input' line");
    if (m->nlayers == 0) return mdfi_fail(err, m->txt, 0, "no layers");
    return 0;
}
