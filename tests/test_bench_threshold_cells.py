"""benchmarks/bench_threshold_cells.py: the bucket table of threshold crossings, on logits
built by hand (objectness and class logits whose probabilities are known)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_threshold_cells as btc  # noqa: E402


def logit(p):
    return float(np.log(p / (1.0 - p)))


def test_cell_table_counts_crossings_by_float_objectness():
    # one head, 1 anchor, entries = 4 box + objectness + 2 classes, a 1x4 grid
    zf = np.full((1, 7, 1, 4), logit(0.999))           # class 0 sure: confidence = objectness
    zq = zf.copy()
    zf[0, 4, 0] = [logit(0.005), logit(0.2), logit(0.3), logit(0.7)]
    zq[0, 4, 0] = [logit(0.005) + 0.5, logit(0.3), logit(0.2), logit(0.71)]
    rows = {b: (n, d, up, down) for b, n, d, up, down in btc.cell_table([zf], [zq])}
    assert rows[(0.0, 0.01)] == (1, 0.5, 0, 0)          # background: rises, does not cross
    n, d, up, down = rows[(0.1, 0.25)]
    assert (n, up, down) == (1, 1, 0) and np.isclose(d, logit(0.3) - logit(0.2))
    n, d, up, down = rows[(0.25, 0.5)]
    assert (n, up, down) == (1, 0, 1) and np.isclose(d, logit(0.2) - logit(0.3))
    assert rows[(0.5, 1.01)][0] == 1 and rows[(0.5, 1.01)][2:] == (0, 0)
    assert rows[(0.01, 0.05)] == (0, 0.0, 0, 0)
