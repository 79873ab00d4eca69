"""Darknet .cfg and .names files shipped with MDFI (installed as the package ``mdfi.cfg``)."""
