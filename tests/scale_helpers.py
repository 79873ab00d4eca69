"""Job functions for tests/test_scale.py.  Workers (local processes, Dask) import them by
name, so they live in a module of their own (``scale_helpers``) on the tests' path."""

from __future__ import annotations

import os
import time


def setup(shared, params, threads):
    return {"factor": int(shared["factor"].decode()), "dir": params.get("dir"),
            "delay": float(params.get("delay", 0.0))}


def evaluate(ctx, task):
    """A deterministic result; with ``dir`` a marker file per start, with ``delay`` slow."""
    if ctx["dir"]:
        with open(os.path.join(ctx["dir"], f"start-{task}-{os.getpid()}"), "w"):
            pass
    time.sleep(ctx["delay"])
    if task == "boom":
        raise RuntimeError("boom")
    return {"task": task, "value": task * ctx["factor"]}


def run_with_pid(ctx, item):
    """A ``run`` function: the result names the process that computed it."""
    return {"image": item["key"], "result": evaluate(ctx, item["task"]), "pid": os.getpid()}


def run_die_once(ctx, item):
    """Task 3 kills its worker process the first time it runs."""
    import signal
    marker = os.path.join(ctx["dir"], "died")
    if item["task"] == 3 and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return {"image": item["key"], "result": item["task"] * ctx["factor"]}
