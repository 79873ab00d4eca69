/* mdfi_exec.h -- runs a loaded model layer by layer with the csrc kernels (the C twin of
 * mdfi/cengine.py's CRunner).  Activations are stored at their declared widths: uint8 pixels,
 * int8 (<= 8 bits), int16 (<= 16 bits), int32 head outputs; planar CHW.  A layer's output is
 * written (if selected) as soon as it is computed and freed after its last consumer ran.
 */
#ifndef MDFI_EXEC_H
#define MDFI_EXEC_H

#include <stdint.h>

#include "mdfi_model.h"
#include "mdfi_rt_util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mdfi_plan {
    const mdfi_model *model;
    int32_t nthreads;          /* convolution threads (>= 1)                                */
    int32_t path;              /* MDFI_CONV_PATH_*                                          */
    uint8_t *needed;           /* [nlayers] 1 if the layer runs (selected or feeds one)     */
    int32_t *last_use;         /* [nlayers + 1] last consumer of each tensor, -1 if none;
                                  slot 0 = the network input, slot i + 1 = layer i          */
    void **outs;               /* [nlayers] live layer outputs (NULL when not live)         */
    void *scratch;             /* scratch_size bytes shared by all convolutions             */
    void *pre;                 /* pre-activation codes of the table activations (largest)  */
    int64_t scratch_size;
} mdfi_plan;

/* Plan a run of `model` producing the layers flagged in selected[nlayers] (NULL: all). */
int mdfi_plan_init(mdfi_plan *plan, const mdfi_model *model, const uint8_t *selected, int32_t nthreads,
                   int32_t path, mdfi_err *err);
void mdfi_plan_free(mdfi_plan *plan);

/* One inference.  input: [C][H][W] uint8 pixels of the model's input shape.  If out_dir is
 * not NULL, the output of every layer flagged in selected (NULL: all) is written to
 * out_dir/lNNN.out.hex.  times_ms (NULL or [nlayers]) receives each layer's kernel time
 * (0 for layers that did not run). */
int mdfi_plan_run(mdfi_plan *plan, const uint8_t *input, const uint8_t *selected, const char *out_dir,
                  double *times_ms, mdfi_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_EXEC_H */
