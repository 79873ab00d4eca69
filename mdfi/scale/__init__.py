"""Dataset-scale jobs (docs/scale.md): one function mapped over many images, streamed, on
every core or on a Dask cluster, with resumable results.

* :mod:`~mdfi.scale.pipeline` -- jobs as plain data, :func:`~mdfi.scale.pipeline.execute`
  and :func:`~mdfi.scale.pipeline.map_evaluations`;
* :mod:`~mdfi.scale.cluster` -- the Dask backend (the ``cluster`` extra);
* :mod:`~mdfi.scale.results` -- canonical JSON, the resumable results file, the progress line;
* :mod:`~mdfi.scale.imagejobs` -- the per-image jobs of ``mdfi eval``, ``mdfi calibrate`` and
  ``mdfi golden --images``.
"""
