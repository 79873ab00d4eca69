/* mdfi_model_load.c -- loading a model exported by `mdfi golden` (see mdfi_model.h): reads
 * MODEL_DIR/model.txt for the parser (mdfi_model.c: mdfi_model_parse), then the parameter .hex
 * files its lines name (convolution weights, packed for the kernel once here; bias and shift;
 * the yolo/region lookup tables; table activations), and frees them (mdfi_model_free).
 */
#include "mdfi_model.h"

#include <stdlib.h>
#include <string.h>

#include "../mdfi_conv.h"
#include "../mdfi_fixedpoint.h"
#include "mdfi_hexio.h"

static const mdfi_tensor_desc *producer(const mdfi_model *m, int32_t i)
{
    return i < 0 ? &m->input : &m->layers[i].out;
}

/* ---- parameters ----------------------------------------------------------------------- */
static int load_conv(const mdfi_model *m, mdfi_layer *l, mdfi_err *err)
{
    const mdfi_tensor_desc *in = producer(m, l->in[0]);
    char path[MDFI_PATH_LEN];
    const int32_t g = l->groups, mg = l->m / g, cg = in->c / g;
    const int64_t nw = (int64_t)l->m * cg * l->k * l->k;
    const int wide = l->wbits > 8;
    void *w = mdfi_alloc(nw, wide ? 2 : 1);     /* [M][C/groups][k][k] int8 or int16, Darknet order */
    if (w == NULL) return mdfi_fail(err, m->txt, l->line, "layer %d: out of memory", (int)l->index);
    if (mdfi_join_path(path, m->dir, l->file[0], err) ||
        mdfi_hex_read(path, nw, l->wbits, 1, w, wide ? MDFI_ELEM_I16 : MDFI_ELEM_I8, err)) {
        free(w);
        return -1;
    }
    /* one packed block per group (groups = 1: the whole layer), each on a 64-byte boundary */
    const int64_t psz = mdfi_conv_packed_size(mg, cg, l->k);
    l->packed_size = psz;
    l->packed_stride = psz > 0 ? (psz + 63) / 64 * 64 : 0;
    l->packed = psz > 0 && l->packed_stride <= INT64_MAX / g ? mdfi_alloc64(l->packed_stride * g) : NULL;
    if (l->packed == NULL) {
        free(w);
        return mdfi_fail(err, m->txt, l->line, "layer %d: out of memory for the packed weights", (int)l->index);
    }
    if (g > 1 && cg <= MDFI_RT_GROUPED_DIRECT_MAX) {
        l->w16 = mdfi_alloc(nw, sizeof *l->w16);
        if (l->w16 == NULL) {
            free(w);
            return mdfi_fail(err, m->txt, l->line, "layer %d: out of memory", (int)l->index);
        }
        for (int64_t i = 0; i < nw; ++i) l->w16[i] = wide ? ((const int16_t *)w)[i] : ((const int8_t *)w)[i];
    }
    int rc = MDFI_CONV_OK;
    for (int32_t j = 0; j < g && rc == MDFI_CONV_OK; ++j)
        rc = mdfi_conv_pack_weights((const char *)w + (size_t)j * mg * cg * l->k * l->k * (wide ? 2 : 1),
                                    wide ? MDFI_CONV_S16 : MDFI_CONV_S8, mg, cg, l->k,
                                    (char *)l->packed + j * l->packed_stride, psz);
    free(w);
    if (rc != MDFI_CONV_OK)
        return mdfi_fail(err, m->txt, l->line, "layer %d: packing the weights failed: %s", (int)l->index,
                         mdfi_conv_strerror(rc));
    l->bias = mdfi_alloc(l->m, sizeof *l->bias);
    l->shift = mdfi_alloc(l->m, sizeof *l->shift);
    if (l->bias == NULL || l->shift == NULL) return mdfi_fail(err, m->txt, l->line, "out of memory");
    if (mdfi_join_path(path, m->dir, l->file[1], err) ||
        mdfi_hex_read(path, l->m, l->acc_bits, 1, l->bias, MDFI_ELEM_I64, err))
        return -1;
    if (mdfi_join_path(path, m->dir, l->file[2], err) ||
        mdfi_hex_read(path, l->m, 8, 1, l->shift, MDFI_ELEM_I32, err))
        return -1;
    for (int32_t i = 0; i < l->m; ++i)
        if (l->shift[i] < MDFI_MIN_SHIFT || l->shift[i] > MDFI_MAX_SHIFT)
            return mdfi_fail(err, path, 0, "channel %d: shift %d outside [%d, %d]", (int)i, (int)l->shift[i],
                             MDFI_MIN_SHIFT, MDFI_MAX_SHIFT);
    return 0;
}

static int load_head(const mdfi_model *m, mdfi_layer *l, mdfi_err *err)
{
    char path[MDFI_PATH_LEN];
    const int64_t len = (int64_t)1 << l->tbits;
    l->logistic = mdfi_alloc(len, sizeof *l->logistic);
    l->exp_tab = mdfi_alloc(len, sizeof *l->exp_tab);
    if (l->logistic == NULL || l->exp_tab == NULL) return mdfi_fail(err, m->txt, l->line, "out of memory");
    if (mdfi_join_path(path, m->dir, l->file[0], err) ||
        mdfi_hex_read(path, len, 16, 0, l->logistic, MDFI_ELEM_U16, err) ||
        mdfi_join_path(path, m->dir, l->file[1], err) ||
        mdfi_hex_read(path, len, 32, 1, l->exp_tab, MDFI_ELEM_I32, err))
        return -1;
    if (l->kind == MDFI_K_REGION && l->softmax) {
        l->expneg = mdfi_alloc(len, sizeof *l->expneg);
        if (l->expneg == NULL) return mdfi_fail(err, m->txt, l->line, "out of memory");
        if (mdfi_join_path(path, m->dir, l->file[2], err) ||
            mdfi_hex_read(path, len, 32, 1, l->expneg, MDFI_ELEM_I32, err))
            return -1;
    }
    if (l->kind == MDFI_K_YOLO && l->file[2][0] != '\0') {
        l->xy_tab = mdfi_alloc(len, sizeof *l->xy_tab);
        if (l->xy_tab == NULL) return mdfi_fail(err, m->txt, l->line, "out of memory");
        if (mdfi_join_path(path, m->dir, l->file[2], err) ||
            mdfi_hex_read(path, len, 32, 1, l->xy_tab, MDFI_ELEM_I32, err))
            return -1;
    }
    return 0;
}

/* The activation table of a table activation: 2^pre_bits output codes of out.bits bits. */
static int load_act_table(const mdfi_model *m, mdfi_layer *l, mdfi_err *err)
{
    char path[MDFI_PATH_LEN];
    const int64_t len = (int64_t)1 << l->pre_bits;
    l->lut = mdfi_alloc(len, sizeof *l->lut);
    if (l->lut == NULL) return mdfi_fail(err, m->txt, l->line, "out of memory");
    if (mdfi_join_path(path, m->dir, l->file[3], err) ||
        mdfi_hex_read(path, len, l->out.bits, 1, l->lut, MDFI_ELEM_I32, err))
        return -1;
    return 0;
}

int mdfi_model_load(mdfi_model *model, const char *dir, int load_params, mdfi_err *err)
{
    memset(model, 0, sizeof *model);
    const size_t nd = strlen(dir);
    if (nd == 0 || nd >= sizeof model->dir) return mdfi_fail(err, dir, 0, "invalid model folder");
    memcpy(model->dir, dir, nd + 1);
    if (mdfi_join_path(model->txt, dir, "model.txt", err)) return -1;
    char *text = NULL;
    int64_t len = 0;
    if (mdfi_read_file(model->txt, MDFI_RT_MAX_MODEL_TXT, &text, &len, err)) return -1;
    int rc = mdfi_model_parse(model, text, len, err);
    free(text);
    for (int32_t i = 0; rc == 0 && load_params && i < model->nlayers; ++i) {
        mdfi_layer *l = &model->layers[i];
        if (l->kind == MDFI_K_CONV) rc = load_conv(model, l, err);
        else if (l->kind == MDFI_K_YOLO || l->kind == MDFI_K_REGION) rc = load_head(model, l, err);
        if (rc == 0 && (l->kind == MDFI_K_CONV || l->kind == MDFI_K_SHORTCUT) && l->act >= MDFI_RT_ACT_TABLE)
            rc = load_act_table(model, l, err);
    }
    if (rc) mdfi_model_free(model);
    return rc;
}

void mdfi_model_free(mdfi_model *model)
{
    for (int32_t i = 0; i < model->nlayers; ++i) {
        mdfi_layer *l = &model->layers[i];
        free(l->packed);
        free(l->w16);
        free(l->bias);
        free(l->shift);
        free(l->sel);
        free(l->logistic);
        free(l->exp_tab);
        free(l->expneg);
        free(l->xy_tab);
        free(l->lut);
    }
    free(model->layers);
    model->layers = NULL;
    model->nlayers = 0;
}
