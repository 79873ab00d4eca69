"""Small data files shipped with MDFI (calibration statistics)."""
