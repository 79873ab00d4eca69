"""Evaluation (``mdfi eval``): fixed point against the float path, and against labels.

* :mod:`~mdfi.eval.evaluate` -- mAP@0.5, fixed-point vs float agreement, reports (post-processing
  on lists of detections only; no network is run);
* :mod:`~mdfi.eval.labels` -- ground truth: COCO instances JSON and Pascal VOC XML loaders;
* :mod:`~mdfi.eval.run` -- ``mdfi eval`` over a folder or list of images (through :mod:`mdfi.scale`);
* :mod:`~mdfi.eval.plot` -- ``mdfi eval --plot`` (matplotlib, the ``plots`` extra);
* :mod:`~mdfi.eval.progress` -- a minimal progress line (re-exported by :mod:`~mdfi.eval.evaluate`).
"""
