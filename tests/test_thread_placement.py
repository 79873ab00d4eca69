"""The convolution's worker threads (csrc/mdfi_conv_pool.c): where a sleeping worker wakes.

Before it wakes sleeping workers the caller narrows their CPU affinity to exclude its own CPU
(Linux: otherwise a worker may wake on the caller's CPU while another CPU is idle, and the first
layers run on one CPU); the worker restores its affinity as soon as it runs, and a worker that
finds itself on the caller's CPU moves off it.  What must hold whatever the scheduler does: the
results are those of the reference, no thread is left with a narrowed affinity, and a process
held to one CPU (taskset) still runs (nothing to move to).  Runs in a child process, so that
the affinity it changes is its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "sched_getaffinity"),
                                reason="CPU affinity: Linux only")

CHILD = textwrap.dedent(r"""
    import os, sys, time
    cpus = [int(c) for c in sys.argv[1].split(",")]
    # Threads that exist before any code of ours: none natively, but qemu-user (an emulated
    # aarch64 Python, tests/run_aarch64_python.sh) has its own RCU thread, which keeps the
    # affinity it started with; the main thread is checked anyway.
    before = set(os.listdir("/proc/self/task")) - {str(os.getpid())}
    os.sched_setaffinity(0, set(cpus))        # before any thread starts (NumPy's BLAS starts some)
    import numpy as np
    from mdfi.cengine import CRunner
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import random_weights
    from mdfi.quant.quantize import quantize_network
    text = ("[net]\nwidth=96\nheight=64\nchannels=3\n"
            + "[convolutional]\nfilters=32\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
            + "[maxpool]\nsize=2\nstride=2\n"
            + "[convolutional]\nfilters=64\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
            + "[convolutional]\nfilters=64\nsize=1\nstride=1\npad=1\nactivation=linear\n")
    net = Network(parse_cfg_text(text, "t.cfg"), "t.cfg", warn=False)
    random_weights(net, 3)
    qm = quantize_network(net, cfg_text=text)
    x = np.random.default_rng(1).integers(0, 256, net.input_shape).astype(np.uint8)
    ref = qm.forward_ref(x)
    runner = CRunner(qm, threads=int(sys.argv[2]))
    for settle in (0.0, 0.05, 0.0, 0.02, 0.05):       # workers spinning, then asleep (> 1 ms idle)
        time.sleep(settle)
        out = runner.run(x)
        assert all(np.array_equal(a, b) for a, b in zip(ref, out)), settle
    time.sleep(0.01)
    tasks = set(os.listdir("/proc/self/task")) - before
    for tid in tasks:
        assert os.sched_getaffinity(int(tid)) == set(cpus), (tid, os.sched_getaffinity(int(tid)))
    print("ok", len(tasks))
""")


def _child(cpus, threads):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, "-c", CHILD, ",".join(map(str, cpus)), str(threads)], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok")


def test_every_cpu_we_may_use():
    cpus = sorted(os.sched_getaffinity(0))
    _child(cpus, 2)
    _child(cpus, 3)


def test_held_to_one_cpu():
    _child([min(os.sched_getaffinity(0))], 2)
