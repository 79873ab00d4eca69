"""Dataset-scale jobs: one function mapped over many inputs, streamed, on every core or on a
Dask cluster (:mod:`mdfi.scale.cluster`).  ``docs/scale.md`` is the user's guide.

A **job** is plain data, never a pickled Python object:

* ``setup`` / ``run`` (or ``prepare`` + ``infer``): module-level functions named
  ``"package.module:function"``, imported by name where the job runs;
* ``shared``: ``{name: bytes}`` -- model files (``.mdfi``, cfg, weights) and the like, sent
  once per worker process and checked there against their sha256 before use;
* ``params``: a JSON object.

Each worker process calls ``setup(shared, params, threads)`` once per job (``threads``: the
engine threads it may use) and keeps the returned context; then ``run(context, item)`` per
item returns a JSON object, the item's **result**.  An item is
``{"key": str, "path": str}`` or ``{"key": str, "data": bytes}`` (images) or any JSON value
under ``"task"`` (:func:`map_evaluations`).  Results travel and are stored as canonical JSON
text (sorted keys, no spaces, exact float repr), so the bytes of a result do not depend on
where it was computed.  A job with ``prepare(params, item)`` and
``infer(context, item, payload)`` can also run split: prepare (decode, letterbox) in worker
processes and infer in this process.

:func:`execute` runs a job over an iterable of items: in this process (``workers=1``), in
``workers`` local processes, or on a Dask cluster (``cluster=``).  At most a few batches are
in flight at any time, so memory does not grow with the number of items; results are handed
to ``on_result(key, text)`` as they arrive, exactly once per key (a batch that is run again
after a worker died cannot duplicate one).  :class:`ResultsFile` is the JSON-lines journal
that makes a job resumable.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import JobError, MDFIError
from .results import RateProgress, ResultsFile, canonical  # noqa: F401 - ResultsFile re-exported

__all__ = ["Job", "PackedJob", "JobError", "ResultsFile", "RateProgress", "canonical", "execute", "map_evaluations",
           "available_cores", "pack_job", "function_ref"]

JOB_FORMAT = "mdfi-job"


def available_cores() -> int:
    """CPUs this process may run on (the default number of workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def engine_threads(workers_here: int) -> int:
    """Engine threads of each of ``workers_here`` worker processes on one machine: the
    engine's default (``MDFI_THREADS`` or the available cores) shared between them."""
    from ..engine import default_threads
    return max(1, default_threads() // max(1, workers_here))


# ============================================================================ function references


def function_ref(fn: Union[str, Callable]) -> str:
    """``"module:function"`` for a module-level function (checked), or the string given."""
    if isinstance(fn, str):
        resolve_ref(fn)
        return fn
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not mod or mod == "__main__" or "." in qual or "<" in qual:
        raise JobError(f"{qual or fn!r}: job functions must be module-level functions of an importable "
                       f"module (workers import them by name), not lambdas, closures or __main__ code")
    ref = f"{mod}:{qual}"
    if resolve_ref(ref) is not fn:
        raise JobError(f"{ref}: does not name the function given")
    return ref


def resolve_ref(ref: str) -> Callable:
    mod, _, name = str(ref).partition(":")
    try:
        fn = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise JobError(f"job function {ref!r} cannot be imported here: {exc}") from None
    if not callable(fn):
        raise JobError(f"job function {ref!r} is not callable")
    return fn


# ============================================================================ jobs as bytes


@dataclass(frozen=True)
class Job:
    """What to run per item (see the module docstring).  ``batch``: items per task."""

    name: str
    setup: str
    run: Optional[str] = None
    prepare: Optional[str] = None
    infer: Optional[str] = None
    params: Mapping[str, Any] = field(default_factory=dict)
    shared: Mapping[str, bytes] = field(default_factory=dict)
    batch: int = 4

    def __post_init__(self):
        if not self.run and not (self.prepare and self.infer):
            raise JobError(f"job {self.name}: needs run, or prepare and infer")


def _header(job: Job) -> dict:
    return {"format": JOB_FORMAT, "name": job.name, "setup": job.setup, "run": job.run,
            "prepare": job.prepare, "infer": job.infer, "params": dict(job.params),
            "shared": [{"name": k, "size": len(v), "sha256": hashlib.sha256(v).hexdigest()}
                       for k, v in sorted(job.shared.items())]}


@dataclass(frozen=True)
class PackedJob:
    """A :class:`Job` as it travels: ``blob`` (a JSON header line naming the functions, the
    parameters and every shared blob's size and sha256, then the shared bytes) and
    ``digest``, the sha256 of the header, which covers everything."""

    name: str
    blob: bytes
    digest: str
    batch: int
    splittable: bool

    def shared(self, name: str) -> bytes:
        return unpack_job(self.blob, self.digest)[1][name]


def pack_job(job: Job) -> PackedJob:
    """The job as one bytes object (the caller may then drop the :class:`Job` and its
    shared bytes: the packed form is all that is needed)."""
    head = canonical(_header(job)).encode("utf-8")
    blob = b"".join([head, b"\n", *(bytes(v) for _, v in sorted(job.shared.items()))])
    return PackedJob(job.name, blob, hashlib.sha256(head).hexdigest(), max(1, int(job.batch)),
                     bool(job.prepare and job.infer))


def unpack_job(blob: bytes, digest: str) -> Tuple[dict, Dict[str, bytes]]:
    """Inverse of :func:`pack_job`; every part is checked against its sha256."""
    if not isinstance(blob, bytes):
        blob = bytes(blob)
    mv = memoryview(blob)
    end = blob.find(b"\n", 0, 1 << 24)
    if end < 0:
        raise JobError("job blob: no header line")
    head = bytes(mv[:end])
    if hashlib.sha256(head).hexdigest() != digest:
        raise JobError("job blob: header checksum mismatch (corrupted in transit?)")
    header = json.loads(head.decode("utf-8"))
    if header.get("format") != JOB_FORMAT:
        raise JobError("job blob: not an MDFI job")
    shared, pos = {}, end + 1
    for part in header["shared"]:
        data = bytes(mv[pos:pos + part["size"]])
        if len(data) != part["size"] or hashlib.sha256(data).hexdigest() != part["sha256"]:
            raise JobError(f"job blob: {part['name']}: checksum mismatch (corrupted in transit?)")
        shared[part["name"]] = data
        pos += part["size"]
    return header, shared


# ============================================================================ worker side

_CONTEXTS: "OrderedDict[Tuple[str, int], Tuple[dict, Any]]" = OrderedDict()
_CONTEXT_LOCK = threading.Lock()
_KEEP_CONTEXTS = 2
_LOCAL_BLOB: Dict[str, Any] = {}


def worker_context(blob: Any, digest: str, threads: int) -> Tuple[dict, Any]:
    """(job header, context) for this process, built once per job (and thread count)."""
    key = (digest, int(threads))
    with _CONTEXT_LOCK:
        if key in _CONTEXTS:
            _CONTEXTS.move_to_end(key)
            return _CONTEXTS[key]
        header, shared = unpack_job(blob() if callable(blob) else blob, digest)
        ctx = resolve_ref(header["setup"])(shared, header["params"], threads)
        _CONTEXTS[key] = (header, ctx)
        while len(_CONTEXTS) > _KEEP_CONTEXTS:
            _CONTEXTS.popitem(last=False)
        return header, ctx


def run_item(header: dict, ctx: Any, item: dict) -> str:
    """One item's result as canonical JSON text.  :class:`MDFIError` (a bad image, ...) gives
    ``{"image": key, "error": message}``; any other exception propagates (a bug)."""
    key = item["key"]
    try:
        if item.get("error"):
            raise MDFIError(item["error"])
        if header.get("run"):
            result = resolve_ref(header["run"])(ctx, item)
        else:
            payload = resolve_ref(header["prepare"])(header["params"], item)
            result = resolve_ref(header["infer"])(ctx, item, payload)
    except MDFIError as exc:
        result = {"image": key, "error": " ".join(str(exc).split())}
    return canonical(result)


def run_batch(blob: Any, digest: str, items: Sequence[dict], threads: int) -> dict:
    """A task: ``{"results": [[key, text], ...]}``, or ``{"failure": message}`` when the job
    itself fails (setup error, bug).  Never raises, so nothing but data travels back."""
    key = None
    try:
        header, ctx = worker_context(blob, digest, threads)
        out = []
        for item in items:
            key = item["key"]
            out.append([key, run_item(header, ctx, item)])
        return {"results": out}
    except MDFIError as exc:
        return {"failure": " ".join(str(exc).split())}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as data, see docstring
        where = f" on {key}" if key is not None else ""
        return {"failure": f"worker error{where}: {type(exc).__name__}: {' '.join(str(exc).split())}"}


_PREP_HEADERS: Dict[str, dict] = {}


def prepare_batch(blob: Any, digest: str, items: Sequence[dict]) -> dict:
    """Split mode: ``{"payloads": [[key, payload or None, error or None], ...]}``."""
    try:
        header = _PREP_HEADERS.get(digest)
        if header is None:
            header, _ = unpack_job(blob() if callable(blob) else blob, digest)
            _PREP_HEADERS[digest] = header
        prep = resolve_ref(header["prepare"])
        out = []
        for item in items:
            try:
                if item.get("error"):
                    raise MDFIError(item["error"])
                out.append([item["key"], prep(header["params"], item), None])
            except MDFIError as exc:
                out.append([item["key"], None, " ".join(str(exc).split())])
        return {"payloads": out}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as data
        return {"failure": f"worker error: {type(exc).__name__}: {' '.join(str(exc).split())}"}


def _local_blob() -> bytes:
    return _LOCAL_BLOB["blob"]


def _local_init(blob: bytes, env: Mapping[str, str]) -> None:
    _LOCAL_BLOB["blob"] = blob
    os.environ.update(env)


def _local_run(digest: str, items: Sequence[dict], threads: int) -> dict:
    return run_batch(_local_blob, digest, items, threads)


def _local_prepare(digest: str, items: Sequence[dict]) -> dict:
    return prepare_batch(_local_blob, digest, items)


# ============================================================================ running a job


def _batches(items: Iterable[dict], size: int) -> Iterator[List[dict]]:
    batch: List[dict] = []
    for it in items:
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Sink:
    """Exactly once per key: results for keys already seen are dropped."""

    def __init__(self, on_result: Callable[[str, str], None], progress: Optional[RateProgress]):
        self.on_result, self.progress, self.seen = on_result, progress, set()

    def __call__(self, key: str, text: str) -> None:
        if key in self.seen:
            return
        self.seen.add(key)
        self.on_result(key, text)
        if self.progress is not None:
            self.progress.step(error=text.startswith('{"error":'))


def execute(job: Union[Job, PackedJob], items: Iterable[dict], on_result: Callable[[str, str], None], *,
            workers: Optional[int] = None, cluster: Optional[str] = None, split: Optional[str] = None,
            progress: Optional[RateProgress] = None, total: Optional[int] = None) -> None:
    """Run ``job`` over ``items``; ``on_result(key, text)`` once per item, as results come.

    ``workers``: processes on this machine (default: the available cores; 1 runs in this
    process), or with ``cluster`` the worker count of a ``"local"`` Dask cluster.
    ``cluster``: ``"local"`` or a scheduler address ``tcp://host:8786``.  ``split``:
    ``"item"`` (each worker runs the whole job on its items, the engine on ``cores // workers``
    threads) or ``"decode"`` (workers run ``prepare``, this process runs ``infer``); default
    ``$MDFI_PIPELINE_SPLIT`` or ``"item"`` (docs/scale.md compares the two).
    """
    packed = job if isinstance(job, PackedJob) else pack_job(job)
    if split is None:
        split = os.environ.get("MDFI_PIPELINE_SPLIT", "").strip() or "item"
        if not packed.splittable:
            split = "item"
    if split not in ("item", "decode"):
        raise JobError(f"split={split!r}: expected 'item' or 'decode'")
    if split == "decode" and not packed.splittable:
        raise JobError(f"job {packed.name} cannot run split (it has no prepare/infer)")
    sink = _Sink(on_result, progress)
    blob, digest = packed.blob, packed.digest
    batches = _batches(items, packed.batch)
    if cluster:
        from .cluster import run_on_dask
        run_on_dask(cluster, blob, digest, batches, sink, workers=workers)
        return
    workers = available_cores() if workers is None else int(workers)
    if workers < 1:
        raise JobError(f"workers={workers}: expected at least 1")
    if workers == 1:
        threads = engine_threads(1)
        for batch in batches:
            res = run_batch(blob, digest, batch, threads)
            if "failure" in res:
                raise JobError(res["failure"])
            for key, text in res["results"]:
                sink(key, text)
        return
    _run_local(blob, digest, batches, sink, workers, split)


def _run_local(blob: bytes, digest: str, batches: Iterator[List[dict]], sink: _Sink, workers: int,
               split: str) -> None:
    """``workers`` spawned processes, at most 2 batches per worker in flight; a broken pool (a
    worker killed) is replaced and its unfinished batches run again, up to 3 times."""
    header = ctx = None
    if split == "decode":
        threads = engine_threads(1)          # inference runs here on every core
        header, ctx = worker_context(blob, digest, threads)
    else:
        threads = engine_threads(workers)
    # Worker processes: one BLAS/OpenMP thread each (their numpy float path must not
    # oversubscribe the cores the other workers use); the engine threads are passed in.
    env = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    # Set here for the whole run (workers are spawned on demand, and a worker importing its
    # parent's main script may load numpy before the initializer runs); this process's own
    # numpy is loaded already and keeps its threads.
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        _pool_loop(blob, digest, batches, sink, workers, split, threads, env, header, ctx)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pool_loop(blob, digest, batches, sink, workers, split, threads, env, header, ctx) -> None:
    import concurrent.futures as cf
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    ctx_mp = multiprocessing.get_context("spawn")
    pending: Dict[Any, List[dict]] = {}
    retry: List[List[dict]] = []
    restarts = 0
    limit = 2 * workers

    def submit(ex, batch):
        fut = ex.submit(_local_prepare, digest, batch) if split == "decode" else \
            ex.submit(_local_run, digest, batch, threads)
        pending[fut] = batch

    ex = cf.ProcessPoolExecutor(workers, mp_context=ctx_mp, initializer=_local_init, initargs=(blob, env))
    exhausted = False
    try:
        while True:
            while len(pending) < limit and (retry or not exhausted):
                if retry:
                    submit(ex, retry.pop())
                    continue
                nxt = next(batches, None)
                if nxt is None:
                    exhausted = True
                    break
                submit(ex, nxt)
            if not pending:
                break
            done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in done:
                batch = pending.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    retry.append(batch)
                    broken = True
                    continue
                if "failure" in res:
                    raise JobError(res["failure"])
                if split == "decode":
                    for key, payload, err in res["payloads"]:
                        item = next(i for i in batch if i["key"] == key)
                        if err is not None:
                            sink(key, canonical({"image": key, "error": err}))
                        else:
                            sink(key, _infer_here(header, ctx, item, payload))
                else:
                    for key, text in res["results"]:
                        sink(key, text)
            if broken:
                restarts += 1
                retry.extend(pending.values())
                pending.clear()
                _terminate(ex)
                if restarts > 3:
                    raise JobError("worker processes keep dying (out of memory? a crashing input?); "
                                   "results so far are saved, run again to resume")
                print(f"note: a worker process died; restarting the workers and running the "
                      f"{len(retry)} unfinished batch(es) again", file=sys.stderr)
                ex = cf.ProcessPoolExecutor(workers, mp_context=ctx_mp, initializer=_local_init,
                                            initargs=(blob, env))
    except BaseException:
        _terminate(ex)
        raise
    ex.shutdown(wait=True)


def _infer_here(header: dict, ctx: Any, item: dict, payload: Any) -> str:
    try:
        result = resolve_ref(header["infer"])(ctx, item, payload)
    except MDFIError as exc:
        result = {"image": item["key"], "error": " ".join(str(exc).split())}
    return canonical(result)


def _terminate(ex) -> None:
    procs = list(getattr(ex, "_processes", {}).values())
    for p in procs:
        try:
            p.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.join(5)
        except Exception:  # noqa: BLE001
            pass


# ============================================================================ generic map


def _map_setup(shared: Dict[str, bytes], params: dict, threads: int):
    fn_setup = resolve_ref(params["setup"])
    return fn_setup(shared, params["params"], threads), resolve_ref(params["evaluate"])


def _map_run(ctx, item: dict) -> dict:
    user_ctx, evaluate = ctx
    return {"image": item["key"], "result": evaluate(user_ctx, item["task"])}


def map_evaluations(setup: Union[str, Callable], evaluate: Union[str, Callable], tasks: Sequence[Any], *,
                    shared: Optional[Mapping[str, bytes]] = None, params: Optional[Mapping[str, Any]] = None,
                    workers: Optional[int] = None, cluster: Optional[str] = None,
                    label: Optional[str] = "evaluations") -> List[Any]:
    """Independent evaluations in parallel: ``[evaluate(context, t) for t in tasks]``.

    For searches that evaluate many variants of a model (per-layer sensitivity, rounding or
    width choices).  ``setup(shared, params, threads) -> context`` runs once per worker
    process (load the float network, the calibration statistics, the evaluation images from
    ``shared`` bytes, e.g. ``{"cfg": ..., "weights": ..., "calib": ...}``); ``evaluate(context,
    task) -> result`` runs once per task.  Both must be module-level functions (workers
    import them by name, e.g. ``"mdfi.quant.quantize:sensitivity_eval"``); ``tasks`` and results
    must be JSON values (a task is a small description such as ``{"layer": 5, "wbits": 6}``,
    not a model).  Results come back in task order, identical whichever way the job ran
    (``workers=1`` runs here; ``workers=N`` local processes; ``cluster="local"`` or
    ``"tcp://host:8786"`` Dask).  An exception in ``evaluate`` stops the job
    (:class:`JobError`).  A progress line is written on stderr unless ``label`` is None.
    """
    tasks = list(tasks)
    job = Job(name="map", setup="mdfi.scale.pipeline:_map_setup", run="mdfi.scale.pipeline:_map_run", batch=1,
              params={"setup": function_ref(setup), "evaluate": function_ref(evaluate),
                      "params": dict(params or {})},
              shared=dict(shared or {}))
    out: List[Any] = [None] * len(tasks)
    prog = RateProgress(len(tasks), label, unit="tasks") if label else None

    def collect(key: str, text: str) -> None:
        rec = json.loads(text)
        if "error" in rec:
            raise JobError(f"task {key}: {rec['error']}")
        out[int(key)] = rec["result"]

    items = ({"key": str(i), "task": t} for i, t in enumerate(tasks))
    for t in tasks[:1]:
        canonical(t)                           # tasks must be JSON values
    execute(job, items, collect, workers=min(workers or available_cores(), max(1, len(tasks))),
            cluster=cluster, progress=prog)
    if prog is not None:
        prog.done()
    return out
