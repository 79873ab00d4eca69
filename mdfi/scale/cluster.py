"""Dask distributed backend of :func:`mdfi.scale.pipeline.execute` (the ``mdfi[cluster]`` extra).

``cluster="tcp://host:8786"`` (or ``$MDFI_DASK_SCHEDULER``) connects to a running scheduler;
``cluster="local"`` starts a ``LocalCluster`` of worker processes on 127.0.0.1 for the
duration of the job.  What travels (docs/scale.md):

* the job, once per worker: one bytes object (a JSON header naming the job's functions, its
  parameters and the sha256 of every shared blob, then the blobs: ``.mdfi`` models, cfg and
  weights bytes) scattered to the workers; each worker checks every checksum and builds
  its models from those bytes, once per job;
* per task: a batch of items (image paths, or image bytes when the workers do not see the
  client's files) and back a list of ``[key, canonical JSON text]`` results;
* Dask's own messages.  Functions are referenced by module and name: workers need the same
  MDFI version installed.

A worker that dies has its running and queued batches rerun by the scheduler (Dask's
``allowed-failures``, default 3); results are keyed by item and the client keeps the first
one, so nothing is lost or written twice.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional

from ..errors import MDFIError
from .pipeline import JobError, available_cores, run_batch

#: Seconds to wait for a scheduler before giving up (``$MDFI_DASK_TIMEOUT`` overrides).
CONNECT_TIMEOUT = 5.0
SCHEDULER_ENV = "MDFI_DASK_SCHEDULER"
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+$")


def _timeout() -> float:
    raw = os.environ.get("MDFI_DASK_TIMEOUT", "").strip()
    if not raw:
        return CONNECT_TIMEOUT
    try:
        v = float(raw)
    except ValueError:
        raise JobError(f"MDFI_DASK_TIMEOUT={raw!r}: expected a number of seconds") from None
    if not 0 < v <= 3600:
        raise JobError(f"MDFI_DASK_TIMEOUT={raw!r}: expected 0 < seconds <= 3600")
    return v


def _distributed():
    try:
        import distributed
    except ImportError:
        raise JobError("--cluster needs Dask distributed: pip install 'mdfi[cluster]'") from None
    return distributed


def check_address(address: str) -> str:
    """``"local"`` or a scheduler address like ``tcp://host:8786``."""
    address = str(address).strip()
    if address == "local" or _ADDRESS.match(address):
        return address
    if re.match(r"^[\w.-]+:\d+$", address):
        return "tcp://" + address
    raise JobError(f"--cluster {address!r}: expected 'local' or a Dask scheduler address like "
                   f"tcp://host:8786")


def probe(address: str) -> None:
    """Fail fast, in one line, when a scheduler cannot be reached: called before any model
    is loaded (connects and disconnects; ``"local"`` is not probed)."""
    import socket
    address = check_address(address)
    if address == "local":
        return
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:/]+):(\d+)$", address)
    if m:                                  # refused or unknown host: say so at once
        try:
            socket.create_connection((m.group(1).strip("[]"), int(m.group(2))), timeout=_timeout()).close()
        except OSError as exc:
            reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            raise JobError(f"cannot reach the Dask scheduler at {address} ({reason})") from None
    with connect(address):
        pass


@contextmanager
def connect(address: str, workers: Optional[int] = None) -> Iterator[Any]:
    """A Dask client: connected to ``address``, or with ``"local"`` to a new LocalCluster of
    ``workers`` single-threaded worker processes (default: the available cores)."""
    distributed = _distributed()
    address = check_address(address)
    timeout = _timeout()
    cluster = None
    try:
        import dask
        with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"}):
            if address == "local":
                cluster = distributed.LocalCluster(
                    n_workers=workers or available_cores(), threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit=0,
                    silence_logs=logging.ERROR)
                client = distributed.Client(cluster, timeout=f"{timeout}s")
            else:
                client = distributed.Client(address, timeout=f"{timeout}s")
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, garbage from a non-Dask port ...
        if cluster is not None:
            cluster.close()
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if not isinstance(exc, (OSError, TimeoutError)):
            reason = f"{type(exc).__name__}: {reason}; is it a Dask scheduler?"
        where = "start a local Dask cluster" if address == "local" else f"reach the Dask scheduler at {address}"
        raise JobError(f"cannot {where} ({reason}; connect timeout {timeout:g} s, "
                       f"$MDFI_DASK_TIMEOUT)") from None
    try:
        yield client
    finally:
        try:
            client.close()
        finally:
            if cluster is not None:
                cluster.close()


def _dask_task(blob: bytes, digest: str, items: List[dict]) -> dict:
    """Runs on a worker: the engine gets the cores not used by the worker's other threads."""
    try:
        from distributed import get_worker
        w = get_worker()
        nthreads = getattr(getattr(w, "state", w), "nthreads", 1) or 1
    except (ImportError, ValueError):
        nthreads = 1
    from ..engine import default_threads
    return run_batch(blob, digest, items, max(1, default_threads() // int(nthreads)))


def run_on_dask(address: str, blob: bytes, digest: str, batches: Iterator[List[dict]], sink,
                *, workers: Optional[int] = None) -> None:
    """Submit the batches (at most two per worker thread in flight), hand every result to
    ``sink(key, text)`` as its batch completes."""
    distributed = _distributed()
    with connect(address, workers) as client:
        try:
            client.wait_for_workers(1, timeout=max(_timeout(), 30.0))
        except (TimeoutError, OSError):
            raise JobError(f"the Dask cluster at {address} has no workers") from None
        info = client.scheduler_info()
        threads = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()) or 1
        limit = 2 * threads + 1
        [blob_f] = client.scatter([blob], broadcast=True, hash=False)
        run_id = uuid.uuid4().hex[:10]
        ac = distributed.as_completed()
        n = 0

        def submit_next() -> bool:
            nonlocal n
            batch = next(batches, None)
            if batch is None:
                return False
            fut = client.submit(_dask_task, blob_f, digest, batch, pure=False, key=f"mdfi-{run_id}-{n}")
            n += 1
            ac.add(fut)
            return True

        in_flight = 0
        while in_flight < limit and submit_next():
            in_flight += 1
        try:
            for fut in ac:
                in_flight -= 1
                try:
                    res = fut.result()
                except MDFIError:
                    raise
                except Exception as exc:  # noqa: BLE001 - KilledWorker, lost data, ...
                    raise JobError(f"Dask task failed: {type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:300]}") from None
                fut.release()
                if "failure" in res:
                    raise JobError(res["failure"])
                for key, text in res["results"]:
                    sink(key, text)
                if submit_next():
                    in_flight += 1
        finally:
            for f in list(ac.futures) if hasattr(ac, "futures") else []:
                f.cancel()
            blob_f.release()
