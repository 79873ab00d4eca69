"""Hardware export and verification: MDFI as an RTL golden model (docs/golden-model.md).

* :mod:`~mdfi.hw.golden` -- ``mdfi golden``: per-layer golden vectors and their manifest
  (docs/golden-format.md); :mod:`~mdfi.hw.golden_describe` -- what the manifest says about
  each layer; :mod:`~mdfi.hw.exportdir` -- an export folder written all at once;
* :mod:`~mdfi.hw.vectors` -- the vector files (``.hex``, ``.dat``, ``.npy``);
* :mod:`~mdfi.hw.golden_reader` -- a standalone reader of an export for test benches
  (standard library and NumPy only: copy it beside a bench);
* :mod:`~mdfi.hw.verify` -- ``mdfi verify``: a device's dumps against the vectors, with
  :mod:`~mdfi.hw.verify_report` (the report), :mod:`~mdfi.hw.verify_hints` and
  :mod:`~mdfi.hw.verify_rules` (which arithmetic change explains a difference).

The integer arithmetic these files carry is :mod:`mdfi.fixedpoint` (docs/fixed-point.md).
"""
