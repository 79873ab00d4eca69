/* mdfi_model.h -- a model exported by `mdfi golden` (model.txt + parameter .hex files),
 * loaded for the standalone runner.  Line format: docs/golden-format.md.
 *
 * mdfi_model_load() parses and validates every line of MODEL_DIR/model.txt (errors name
 * the line), derives every tensor's shape, storage type and width from the layer inputs,
 * checks them against the values the line declares, and loads the parameters named by the
 * lines from MODEL_DIR (convolution weights are packed for the kernel once, here).  After
 * a successful load every kernel call of mdfi_exec.c has arguments that are in range.
 */
#ifndef MDFI_MODEL_H
#define MDFI_MODEL_H

#include <stdint.h>

#include "mdfi_rt_util.h"

/* Grouped layers with at most this many input channels per group (depthwise) run on the direct
 * kernel of csrc/mdfi_kernels_grouped.c, as in the Python engine (mdfi/cengine.py
 * GROUPED_DIRECT_MAX); wider groups one GEMM call per group.  Same integers either way. */
#define MDFI_RT_GROUPED_DIRECT_MAX 2

#ifdef __cplusplus
extern "C" {
#endif

/* Limits (refused beyond them). */
#define MDFI_RT_MAX_LAYERS 65536
#define MDFI_RT_MAX_INPUTS 32                    /* inputs of one route */
#define MDFI_RT_MAX_DIM (1 << 20)                /* any of C, H, W */
#define MDFI_RT_MAX_ELEMS ((int64_t)1 << 31)     /* elements of one tensor */
#define MDFI_RT_MAX_KPARAM 4096                  /* kernel size, stride, padding */
#define MDFI_RT_MAX_NAME 255                     /* parameter file names */
#define MDFI_RT_MAX_MODEL_TXT ((int64_t)64 << 20)

/* act values of model.txt beyond MDFI_ACT_* (linear, leaky, relu): the table activations,
 * computed through lut= (docs/golden-format.md). */
enum { MDFI_RT_ACT_TABLE = 3, MDFI_RT_ACT_COUNT = 8 };

enum mdfi_kind {
    MDFI_K_CONV = 0, MDFI_K_MAXPOOL, MDFI_K_UPSAMPLE, MDFI_K_REORG, MDFI_K_ROUTE,
    MDFI_K_SHORTCUT, MDFI_K_YOLO, MDFI_K_REGION, MDFI_K_AVGPOOL, MDFI_K_SCALE, MDFI_K_COUNT
};

/* Name of a kind as model.txt spells it. */
const char *mdfi_kind_name(int32_t kind);

/* A tensor: shape [c][h][w] (planar CHW), storage type (enum mdfi_type of mdfi_kernels.h:
 * MDFI_U8 pixels, MDFI_S8 / MDFI_S16 activations, MDFI_S32 head outputs) and declared width
 * (bits; the .hex width: 8 for pixels, out_bits, 32 for heads). */
typedef struct mdfi_tensor_desc {
    int32_t c, h, w;
    int32_t type;
    int32_t bits;
} mdfi_tensor_desc;

/* One layer.  Fields not used by the layer's kind are 0 / NULL. */
typedef struct mdfi_layer {
    int32_t index;                      /* position in the network                     */
    int32_t kind;                       /* enum mdfi_kind                              */
    int64_t line;                       /* line in model.txt (for messages)            */
    int32_t nin;                        /* number of inputs                            */
    int32_t in[MDFI_RT_MAX_INPUTS];     /* input layer indices, -1 = the network input */
    mdfi_tensor_desc out;               /* output tensor                               */
    /* shared */
    int32_t rounding;                   /* MDFI_ROUND_*                                */
    int32_t act;                        /* MDFI_ACT_*                                  */
    int32_t stride;                     /* conv, maxpool, upsample, reorg              */
    int32_t pad;                        /* conv (pixels each side), maxpool (total)    */
    /* table activations (conv, shortcut; act >= MDFI_RT_ACT_TABLE): the kernel writes the
       linear pre-activation code Q(pre_bits, pre_frac), then out = lut[code - qmin(pre_bits)] */
    int32_t pre_bits, pre_frac;
    int32_t *lut;                       /* [2^pre_bits] output codes (int32 copy)         */
    /* conv */
    int32_t m, k, wbits, acc64, acc_bits;
    void *packed;                       /* mdfi_conv_pack_weights() of each group's
                                           [M/groups][C/groups][k][k] weights: groups
                                           blocks of packed_size bytes, packed_stride
                                           apart (conv groups: see route below)        */
    int64_t packed_size, packed_stride;
    int16_t *w16;                       /* [M][C/groups][k][k] int16 weights of a grouped layer
                                           of <= MDFI_RT_GROUPED_DIRECT_MAX channels per group
                                           (the direct kernel, mdfi_conv_grouped_ex), else NULL */
    int64_t *bias;                      /* [M] biases at the accumulator scale         */
    int32_t *shift;                     /* [M] requantizing shifts                     */
    /* zero points (docs/fixed-point.md 1.1; model.txt pad_value=, zero_out=, zero_in=, zero_a=, zero_b=;
       absent = 0): conv: the padding value (the input's zero point) and the output's zero
       point added before the saturation; route: zero_in per input, zero_out; shortcut:
       zero_in[0], zero_in[1] (zero_a=, zero_b=), zero_out */
    int32_t pad_value, zero_out;
    int32_t zero_in[MDFI_RT_MAX_INPUTS];
    /* maxpool */
    int32_t size;
    /* route */
    int32_t shifts[MDFI_RT_MAX_INPUTS]; /* alignment right shift of each input         */
    int32_t groups, group_id;           /* AlexeyAB: copy channel slice group_id of
                                           groups of every input (1, 0: whole inputs);
                                           conv: groups of a grouped convolution       */
    /* shortcut */
    int32_t fa, fb, out_frac;
    /* avgpool (docs/fixed-point.md 9.1): d = out_frac - in_frac; zero_in[0] = zero_in=, zero_out.
       scale_channels (9.2): mode (0 channels, 1 spatial, 2 elementwise), requantizing shift;
       zero_in[0], zero_in[1] (zero_a=, zero_b=), zero_out */
    int32_t d, mode, rshift;
    /* yolo / region */
    int32_t qmin, tbits;                /* input code range start, table index width   */
    int32_t softmax, n, entries, classes;
    uint8_t *sel;                       /* [C] table per channel: 0 logistic, 1 exp,
                                           2 softmax (region)                          */
    uint16_t *logistic;                 /* [2^tbits] Q1.15, entry i for code qmin + i  */
    int32_t *exp_tab;                   /* [2^tbits] Q15.16, same indexing             */
    int32_t *expneg;                    /* [2^tbits] Q15.16, entry d = max - q; NULL
                                           unless region softmax                       */
    int32_t *xy_tab;                    /* [2^tbits] signed Q.15 x/y (sel 2, yolo with
                                           scale_x_y or new_coords); NULL otherwise     */
    /* parameter files named by the line (conv: weights, bias, shift; heads: logistic,
       exp, expneg / xy), "" if absent; file[3]: the activation table (lut=) */
    char file[4][MDFI_RT_MAX_NAME + 1];
} mdfi_layer;

typedef struct mdfi_model {
    char dir[MDFI_PATH_LEN];            /* MODEL_DIR                                   */
    char txt[MDFI_PATH_LEN];            /* MODEL_DIR/model.txt                         */
    mdfi_tensor_desc input;             /* the network input: [c][h][w] uint8 pixels   */
    int32_t nlayers;
    mdfi_layer *layers;                 /* [nlayers]                                   */
} mdfi_model;

/* Load MODEL_DIR.  On failure everything allocated so far is freed and err is set.
 * load_params = 0 parses model.txt only (no parameter files are read). */
int mdfi_model_load(mdfi_model *model, const char *dir, int load_params, mdfi_err *err);

/* Free what mdfi_model_load allocated (safe on a zeroed or failed model). */
void mdfi_model_free(mdfi_model *model);

/* mdfi_model.c: parse model.txt (text[0..len), model->dir and model->txt already set; named in
 * the errors) into model->layers, every line validated, no parameter read (mdfi_model_load
 * calls it, then loads the parameters). */
int mdfi_model_parse(mdfi_model *model, char *text, int64_t len, mdfi_err *err);

/* Elements of a tensor (c*h*w). */
static inline int64_t mdfi_tensor_elems(const mdfi_tensor_desc *t)
{
    return (int64_t)t->c * t->h * t->w;
}

#ifdef __cplusplus
}
#endif
#endif /* MDFI_MODEL_H */
