# C declarations of csrc/mdfi_post.h (no code here).
from libc.stdint cimport int32_t, int64_t, uint8_t

cdef extern from "mdfi_post.h" nogil:
    int mdfi_post_exact()
    int64_t mdfi_yolo_q_count(const int32_t *out, int32_t n, int32_t entries, int64_t cells, int64_t t_obj)
    void mdfi_yolo_q_decode(const int32_t *out, int32_t n, int32_t classes, int32_t lh, int32_t lw,
                            const double *anchors, int32_t net_w, int32_t net_h, int64_t t_obj,
                            int64_t t_prob, float *boxes, float *obj, float *probs)
    void mdfi_correct_boxes(float *boxes, int64_t n, int32_t mode, int32_t net_w, int32_t net_h,
                            int32_t new_w, int32_t new_h)
    int64_t mdfi_nms_live(const float *obj, int64_t n, int32_t *live)
    int64_t mdfi_nms_pairs(const float *boxes, const int32_t *live, int64_t nlive, float thr,
                           int32_t diou, int64_t cap, int32_t *pairs, float *iou, float *ratio, uint8_t *czero)
    int64_t mdfi_nms_walk_scratch(int64_t nlive, int64_t npairs)
    void mdfi_nms_walk(float *probs, int32_t k, const int32_t *live, int64_t nlive,
                       const int32_t *pairs, const uint8_t *keep, int64_t npairs, void *scratch)
    int64_t mdfi_post_count(const float *probs, int64_t n, int32_t k, float thresh)
    int64_t mdfi_post_extract(const float *boxes, const float *probs, int64_t n, int32_t k,
                              float thresh, int32_t img_w, int32_t img_h, int64_t cap, int64_t *rows,
                              int32_t *cls, double *xyxy, int64_t *tmp)
