/* mdfi_post.h -- detection post-processing (head decoding, box correction, NMS, the final
 * list), the C twin of mdfi/postprocess.py and QYolo.decode_int (mdfi/layers/yolo.py).
 *
 * The Python code is the specification (`_ref`); every function here gives the same floats,
 * operation for operation and in the same order (float32 where NumPy computes in float32,
 * double where it computes in float64).  Build without -ffast-math and with
 * -ffp-contract=off (no fused multiply-add: NumPy's element-wise operations are not fused),
 * and on a target where float arithmetic is evaluated in float (FLT_EVAL_METHOD == 0,
 * mdfi_post_exact() says so; elsewhere the caller uses the Python code).
 *
 * What is not here: AlexeyAB's DIoU pow() (NumPy's float64 power is not libm's pow on every
 * CPU -- SVML on AVX-512 -- so the caller evaluates it with NumPy between
 * mdfi_nms_pairs and mdfi_nms_walk), the candidate cap with its warning, and NMS with more
 * pairs than the caller's buffer (the caller falls back to the Python code).
 *
 * Plain C11, no allocation, no Python headers.
 */
#ifndef MDFI_POST_H
#define MDFI_POST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build evaluates float expressions in float (the functions below are exact). */
int mdfi_post_exact(void);

/* Candidates of one integer [yolo] head: cells/anchors whose objectness code is > t_obj.
 *   out : [n][entries][cells] int32 (cells = lh*lw, entries = classes + 5)
 * Returns their count. */
int64_t mdfi_yolo_q_count(const int32_t *restrict out, int32_t n, int32_t entries, int64_t cells,
                          int64_t t_obj);

/* QYolo.decode_int: the candidates in Darknet's (cell, anchor) order.
 *   anchors : [n][2] double, the float32 anchors of the mask's entries (as float64)
 *   boxes   : [count][4] float32 x, y, w, h relative to the network input
 *   obj     : [count] float32 objectness; probs : [count][classes] float32
 * count is mdfi_yolo_q_count's. */
void mdfi_yolo_q_decode(const int32_t *restrict out, int32_t n, int32_t classes, int32_t lh, int32_t lw,
                        const double *restrict anchors, int32_t net_w, int32_t net_h, int64_t t_obj,
                        int64_t t_prob, float *restrict boxes, float *restrict obj, float *restrict probs);

/* correct_boxes in place.  mode 0 = "pjreddie", 1 = "alexeyab-letterbox", 2 = "none";
 * new_w/new_h: letterbox_geometry's (unused for "none").  boxes : [n][4] float32. */
void mdfi_correct_boxes(float *restrict boxes, int64_t n, int32_t mode, int32_t net_w, int32_t net_h,
                        int32_t new_w, int32_t new_h);

/* Rows with objectness != 0 (do_nms_sort's candidates), in order.  live : [n] int32.
 * Returns their count. */
int64_t mdfi_nms_live(const float *restrict obj, int64_t n, int32_t *restrict live);

/* The pairs (a, b), a < b, positions in live[], of live boxes whose IoU (box_iou_matrix, NaN
 * counting as 0) is > thr.  Up to cap of them are written to pairs [cap][2]; with diou, also
 * iou [cap] (+inf stored as FLT_MAX, as nan_to_num does), ratio [cap] = d/c of
 * box_diou_matrix (float32) and czero [cap] = (c == 0).  Returns the number of pairs (more
 * than cap: only cap were written). */
int64_t mdfi_nms_pairs(const float *restrict boxes, const int32_t *restrict live, int64_t nlive, float thr,
                       int32_t diou, int64_t cap, int32_t *restrict pairs, float *restrict iou,
                       float *restrict ratio, uint8_t *restrict czero);

/* do_nms_sort's per-class walk over the pairs (those with keep[p] != 0 when keep is not
 * NULL): per class, live rows with probs > 0 in descending order (ties: lower row first);
 * each one still alive zeroes the class probability of every later one it pairs with.
 *   probs   : [n][k] float32, updated in place
 *   scratch : mdfi_nms_walk_scratch(nlive, npairs) bytes, 8-byte aligned */
int64_t mdfi_nms_walk_scratch(int64_t nlive, int64_t npairs);
void mdfi_nms_walk(float *restrict probs, int32_t k, const int32_t *restrict live, int64_t nlive,
                   const int32_t *restrict pairs, const uint8_t *restrict keep, int64_t npairs,
                   void *restrict scratch);

/* to_detections: the (row, class) pairs with probs > thresh, sorted by confidence
 * (descending), then class, then row; with their image boxes (x1, y1, x2, y2) in double as
 * Python computes them: min(max((x - w/2)*img_w, 0), img_w) with Python's min/max.
 *   rows : [cap] int64, cls : [cap] int32, xyxy : [cap][4] double
 *   tmp  : [cap] int64 scratch
 * Returns the count (cap must be at least mdfi_post_count's). */
int64_t mdfi_post_count(const float *restrict probs, int64_t n, int32_t k, float thresh);
int64_t mdfi_post_extract(const float *restrict boxes, const float *restrict probs, int64_t n, int32_t k,
                          float thresh, int32_t img_w, int32_t img_h, int64_t cap, int64_t *restrict rows,
                          int32_t *restrict cls, double *restrict xyxy, int64_t *restrict tmp);

#ifdef __cplusplus
}
#endif

#endif /* MDFI_POST_H */
