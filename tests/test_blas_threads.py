"""The float path's products run on one BLAS thread (mdfi/blas.py), so its floats do not depend
on the process's BLAS thread count: a worker process (one thread) and the caller (all cores)
give the same bytes.  On the AVX2-only AMD EPYC of stop 36 OpenBLAS's products of every
yolov3-tiny convolution shape differed between one and two threads; test_scale.py's "same bytes
every way" tests failed there before this."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from mdfi import blas


def _openblas():
    if not blas.blas_threads():
        pytest.skip("no OpenBLAS found in this process (NumPy built on another BLAS)")


def _set_all(n):
    for setter, _ in blas._libs:
        setter(n)


def test_one_thread_sets_and_restores():
    _openblas()
    before = blas.blas_threads()
    try:
        _set_all(2)
        assert set(blas.blas_threads()) == {2}
        with blas.one_thread():
            assert set(blas.blas_threads()) == {1}
            with blas.one_thread():
                assert set(blas.blas_threads()) == {1}
            assert set(blas.blas_threads()) == {1}     # the outer context still holds it
        assert set(blas.blas_threads()) == {2}
        # overlapping contexts in two threads: the last one out restores
        inside = threading.Barrier(2)
        seen = []

        def work():
            with blas.one_thread():
                inside.wait()
                seen.append(tuple(blas.blas_threads()))
                inside.wait()
        ts = [threading.Thread(target=work) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert seen == [(1,) * len(before)] * 2 and set(blas.blas_threads()) == {2}
    finally:
        for (setter, _), n in zip(blas._libs, before):
            setter(n)


def test_float_convolutions_do_not_depend_on_blas_threads(tiny_net):
    """Every float layer output of yolov3-tiny is the same bytes with OpenBLAS set to 1 and to
    2 threads outside the float path."""
    _openblas()
    before = blas.blas_threads()
    x = np.random.default_rng(5).random(tiny_net.input_shape, dtype=np.float32)
    try:
        outs = {}
        for n in (1, 2):
            _set_all(n)
            outs[n] = tiny_net.forward_float(x, keep="all")
            assert set(blas.blas_threads()) == {n}     # restored after the forward
        for a, b in zip(outs[1], outs[2]):
            assert np.array_equal(a, b)
    finally:
        for (setter, _), n in zip(blas._libs, before):
            setter(n)
