# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrapper of csrc/mdfi_post.c (detection post-processing): shapes are checked and
buffers allocated here, all arithmetic is in C.  mdfi/postprocess.py orchestrates."""

from libc.stdint cimport int32_t, int64_t, uint8_t
import numpy as np
from mdfi._ext.cpost cimport (mdfi_post_exact, mdfi_yolo_q_count, mdfi_yolo_q_decode, mdfi_correct_boxes,
                             mdfi_nms_live, mdfi_nms_pairs, mdfi_nms_walk_scratch, mdfi_nms_walk,
                             mdfi_post_count, mdfi_post_extract)
from mdfi.errors import ShapeError

#: True when the C post-processing reproduces the Python floats (float evaluated in float).
EXACT = bool(mdfi_post_exact())


def yolo_q_decode(const int32_t[:, :, ::1] out not None, int classes, int lh, int lw,
                  const double[:, ::1] anchors not None, int net_w, int net_h, int64_t t_obj, int64_t t_prob):
    """QYolo.decode_int of ``out`` (n, classes + 5, lh*lw): (boxes, objectness, probs)."""
    cdef Py_ssize_t n = out.shape[0]
    if out.shape[1] != classes + 5 or out.shape[2] != <Py_ssize_t>lh * lw or lh < 1 or lw < 1:
        raise ShapeError(f"yolo decode: output {tuple(out.shape)[:3]} does not match {classes} classes, {lh}x{lw}")
    if anchors.shape[0] != n or anchors.shape[1] != 2 or n < 1 or net_w < 1 or net_h < 1:
        raise ShapeError("yolo decode: anchors or network size inconsistent")
    cdef int64_t m
    with nogil:
        m = mdfi_yolo_q_count(&out[0, 0, 0], <int32_t>n, classes + 5, <int64_t>lh * lw, t_obj)
    boxes = np.empty((m, 4), np.float32)
    obj = np.empty(m, np.float32)
    probs = np.empty((m, classes), np.float32)
    if m == 0:
        return boxes, obj, probs
    cdef float[:, ::1] b = boxes
    cdef float[::1] o = obj
    cdef float[:, ::1] p = probs
    with nogil:
        mdfi_yolo_q_decode(&out[0, 0, 0], <int32_t>n, classes, lh, lw, &anchors[0, 0], net_w, net_h, t_obj, t_prob,
                           &b[0, 0], &o[0], &p[0, 0])
    return boxes, obj, probs


def correct_boxes(float[:, ::1] boxes not None, int mode, int net_w, int net_h, int new_w, int new_h):
    """correct_boxes in place (mode 0 pjreddie, 1 alexeyab-letterbox, 2 none)."""
    if boxes.shape[1] != 4 or not 0 <= mode <= 2:
        raise ShapeError("correct_boxes: boxes must be (N, 4), mode 0..2")
    if boxes.shape[0] == 0:
        return
    with nogil:
        mdfi_correct_boxes(&boxes[0, 0], boxes.shape[0], mode, net_w, net_h, new_w, new_h)


def nms_live(const float[::1] obj not None):
    """Positions of the rows with objectness != 0 (int32)."""
    live = np.empty(obj.shape[0], np.int32)
    cdef int32_t[::1] lv = live
    cdef int64_t m = 0
    if obj.shape[0]:
        with nogil:
            m = mdfi_nms_live(&obj[0], obj.shape[0], &lv[0])
    return live[:m]


def nms_pairs(const float[:, ::1] boxes not None, const int32_t[::1] live not None, float thr, bint diou,
              int64_t cap):
    """(count, pairs (cap, 2) int32, iou, ratio, czero) -- the last three only with diou;
    when count > cap only cap pairs were written."""
    if boxes.shape[1] != 4 or cap < 1:
        raise ShapeError("nms_pairs: boxes must be (N, 4), cap >= 1")
    cdef Py_ssize_t i
    for i in range(live.shape[0]):
        if not 0 <= live[i] < boxes.shape[0]:
            raise ShapeError("nms_pairs: live index out of range")
    pairs = np.empty((cap, 2), np.int32)
    cdef int32_t[:, ::1] pv = pairs
    cdef float *piou = NULL
    cdef float *pratio = NULL
    cdef uint8_t *pcz = NULL
    cdef float[::1] iv, rv
    cdef uint8_t[::1] cv
    iou = ratio = czero = None
    if diou:
        iou = np.empty(cap, np.float32); ratio = np.empty(cap, np.float32); czero = np.empty(cap, np.uint8)
        iv = iou; rv = ratio; cv = czero
        piou = &iv[0]; pratio = &rv[0]; pcz = &cv[0]
    cdef int64_t m = 0
    if live.shape[0] > 1:
        with nogil:
            m = mdfi_nms_pairs(&boxes[0, 0], &live[0], live.shape[0], thr, diou, cap, &pv[0, 0], piou, pratio, pcz)
    return m, pairs, iou, ratio, czero


def nms_walk(float[:, ::1] probs not None, const int32_t[::1] live not None, const int32_t[:, ::1] pairs not None,
             int64_t npairs, keep=None):
    """The per-class walk of do_nms_sort on ``probs`` in place, over the first ``npairs`` pairs
    (those with ``keep`` true when given)."""
    cdef Py_ssize_t nlive = live.shape[0], i
    if npairs < 0 or npairs > pairs.shape[0] or pairs.shape[1] != 2:
        raise ShapeError("nms_walk: pairs inconsistent")
    for i in range(nlive):
        if not 0 <= live[i] < probs.shape[0]:
            raise ShapeError("nms_walk: live index out of range")
    for i in range(npairs):
        if not (0 <= pairs[i, 0] < nlive and 0 <= pairs[i, 1] < nlive):
            raise ShapeError("nms_walk: pair index out of range")
    cdef const uint8_t[::1] kv
    cdef const uint8_t *pk = NULL
    if keep is not None:
        kv = np.ascontiguousarray(keep, dtype=np.uint8)
        if kv.shape[0] < npairs:
            raise ShapeError("nms_walk: keep shorter than the pairs")
        if kv.shape[0]:
            pk = &kv[0]
    if nlive == 0 or probs.shape[1] == 0:
        return
    scratch = np.empty(mdfi_nms_walk_scratch(nlive, npairs) // 8 + 1, np.int64)
    cdef int64_t[::1] sv = scratch
    cdef const int32_t *pp = &pairs[0, 0] if pairs.shape[0] else NULL
    with nogil:
        mdfi_nms_walk(&probs[0, 0], <int32_t>probs.shape[1], &live[0], nlive, pp, pk, npairs, &sv[0])


def extract(const float[:, ::1] boxes not None, const float[:, ::1] probs not None, float thresh,
            int img_w, int img_h):
    """to_detections' pairs in its order: (rows int64, classes int32, image boxes (M, 4) float64)."""
    cdef Py_ssize_t n = probs.shape[0]
    cdef int k = <int>probs.shape[1]
    if boxes.shape[0] != n or boxes.shape[1] != 4:
        raise ShapeError("extract: boxes and probs disagree")
    cdef int64_t m = 0
    if n and k:
        with nogil:
            m = mdfi_post_count(&probs[0, 0], n, k, thresh)
    rows = np.empty(m, np.int64); cls = np.empty(m, np.int32); xyxy = np.empty((m, 4), np.float64)
    tmp = np.empty(m, np.int64)
    if m == 0:
        return rows, cls, xyxy
    cdef int64_t[::1] rv = rows, tv = tmp
    cdef int32_t[::1] cv = cls
    cdef double[:, ::1] xv = xyxy
    with nogil:
        m = mdfi_post_extract(&boxes[0, 0], &probs[0, 0], n, k, thresh, img_w, img_h, m, &rv[0], &cv[0],
                              &xv[0, 0], &tv[0])
    return rows, cls, xyxy
