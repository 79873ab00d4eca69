"""Darknet I/O and the float reference (docs/darknet.md).

* :mod:`~mdfi.darknet.cfgfile` -- the ``.cfg`` reader (Darknet's ``read_cfg``);
* :mod:`~mdfi.darknet.cfgkeys` -- the key audit: every key either parser reads, and what MDFI does with it;
* :mod:`~mdfi.darknet.lineage` -- which Darknet a cfg belongs to (pjreddie's or AlexeyAB's);
* :mod:`~mdfi.darknet.network` -- the network built from a cfg and its float32 forward pass;
* :mod:`~mdfi.darknet.weights` -- the ``.weights`` reader;
* :mod:`~mdfi.darknet.activations` -- the float activations of each lineage.

The layer types themselves are :mod:`mdfi.layers` (one module per Darknet section type).
"""
