"""The per-image jobs of ``mdfi eval``, ``mdfi calibrate`` and ``mdfi golden --images``.

Each job is a set of module-level functions run by :mod:`mdfi.scale.pipeline` in this process,
in local worker processes or on Dask workers: ``*_setup`` builds the models from the job's
shared bytes (never from a pickled object), ``*_prepare`` decodes and letterboxes one image,
``*_infer`` runs the networks and returns the image's result as a JSON object.  The drivers
(:func:`calibrate_images`, :func:`golden_images`, and :func:`mdfi.eval.run.run_eval`) run on
the client: they list the inputs, build the job, and consume the results as they arrive.

Inputs (:func:`list_inputs`): a folder (its image files, sorted by name, not recursive), a
list file (one image path per line, relative to the list's folder; blank lines and lines
starting with ``#`` skipped) or one image file.  Each image is known by its **key**: its file
name in a folder, its line in a list.  Results are keyed, stored and sorted by key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import pipeline
from ..errors import ImageError, MDFIError

#: Largest list file read (one path per line).
MAX_LIST_BYTES = 64 << 20


# ============================================================================ inputs


def list_inputs(spec: str) -> List[Tuple[str, str]]:
    """``[(key, path)]`` of a folder, a list file or a single image (see the module docstring)."""
    from ..quant.calibrate import IMAGE_EXTENSIONS
    from ..limits import require_regular_file
    name = os.fspath(spec)
    if os.path.isdir(name):
        try:
            entries = sorted(os.listdir(name))
        except OSError as exc:
            raise MDFIError(f"{name}: cannot list the image folder: {exc.strerror or exc}") from None
        out = [(e, os.path.join(name, e)) for e in entries
               if e.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(name, e))]
        if not out:
            raise MDFIError(f"{name}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        return out
    if not os.path.exists(name):
        raise MDFIError(f"{name}: no such image folder, list file or image")
    require_regular_file(name, MDFIError)
    if name.lower().endswith(IMAGE_EXTENSIONS):
        return [(os.path.basename(name), name)]
    try:
        if os.path.getsize(name) > MAX_LIST_BYTES:
            raise MDFIError(f"{name}: list file larger than {MAX_LIST_BYTES >> 20} MB")
        with open(name, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MDFIError(f"{name}: not a list of image paths (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise MDFIError(f"{name}: cannot read the list file: {exc.strerror or exc}") from None
    base = os.path.dirname(os.path.abspath(name))
    out, seen = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if "\x00" in key:
            raise MDFIError(f"{name}:{n}: NUL character; expected one image path per line")
        if key in seen:
            raise MDFIError(f"{name}:{n}: {key!r} is listed twice (first on line {seen[key]})")
        seen[key] = n
        out.append((key, key if os.path.isabs(key) else os.path.join(base, key)))
    if not out:
        raise MDFIError(f"{name}: the list file names no images")
    return out


def images_identity(inputs: Sequence[Tuple[str, str]]) -> str:
    """sha256 of the folders the images of ``inputs`` lie in (real paths): a results file
    records it, so that a rerun on another folder whose files share names is refused instead
    of reusing the other folder's results for them."""
    import hashlib
    folders = sorted({os.path.dirname(os.path.realpath(p)) for _, p in inputs})
    return hashlib.sha256("\n".join(folders).encode("utf-8", "surrogateescape")).hexdigest()


def make_items(inputs: Sequence[Tuple[str, str]], *, skip: Sequence[str] = (), ship: bool = False,
               extra: Optional[Callable[[str], Mapping[str, Any]]] = None) -> Iterator[dict]:
    """Items for :func:`mdfi.scale.pipeline.execute`, read lazily: ``{"key", "path"}``, or with
    ``ship`` the file's bytes as ``"data"`` (workers that do not see this machine's files)."""
    skip = set(skip)
    for key, path in inputs:
        if key in skip:
            continue
        item: Dict[str, Any] = {"key": key}
        if ship:
            try:
                with open(path, "rb") as fh:
                    item["data"] = fh.read()
            except OSError as exc:
                item["error"] = f"{path}: cannot read: {exc.strerror or exc}"
        else:
            item["path"] = os.path.abspath(path)
        if extra is not None:
            item.update(extra(key))
        yield item


def decode(item: Mapping[str, Any]) -> np.ndarray:
    """The item's image as HxWx3 uint8 (:func:`mdfi.image.load_image` rules)."""
    from ..image import load_image
    if "path" in item:
        return load_image(item["path"])
    return _load_bytes(item["data"], item["key"])


def _load_bytes(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    from ..image import _PilLimit, _bomb_error, _load_pil, _one_line, max_image_pixels
    limit = max_image_pixels()
    if not data:
        raise ImageError(f"{name}: file is empty, not an image")
    try:
        with _PilLimit(None):
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name, exc, limit) from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or an image format Pillow cannot read") from None
    except Exception as exc:  # noqa: BLE001 - header parsing raises many types
        raise ImageError(f"{name}: corrupt or unreadable image: {_one_line(exc)}") from None
    with img:
        return _load_pil(img, name)


def _letterbox(params: Mapping[str, Any], rgb: np.ndarray) -> np.ndarray:
    """The float network input, as :func:`mdfi.preprocess.network_input` makes it (letterbox,
    or AlexeyAB's plain resize: ``params["letter_box"]``)."""
    from ..preprocess import image_to_input
    w, h, c = params["net"]
    if c != 3:
        raise MDFIError(f"the network takes {c} channels; only 3-channel (RGB) networks run on images")
    return image_to_input(np.ascontiguousarray(rgb), w, h, bool(params.get("letter_box", True)))


def net_params(network) -> Dict[str, Any]:
    """What a worker needs to prepare inputs and rebuild ``network``: size, lineage, letterbox."""
    return {"net": [network.width, network.height, network.channels], "darknet": network.darknet,
            "letter_box": bool(network.letter_box), "cfg_name": os.path.basename(network.path)}


def float_network(shared: Mapping[str, bytes], cfg_name: str = "model.cfg", darknet: Optional[str] = None):
    """The float network from the job's ``cfg`` text and ``weights`` bytes (``darknet``: the
    lineage the client resolved, so both sides run the same float path)."""
    from ..darknet.cfgfile import parse_cfg_text
    from ..darknet.network import Network
    from ..darknet.weights import load_weights_bytes
    net = Network(parse_cfg_text(shared["cfg"].decode("utf-8"), cfg_name), cfg_name, warn=False, darknet=darknet)
    load_weights_bytes(net, shared["weights"], cfg_name.rsplit(".", 1)[0] + ".weights")
    return net


def read_file(path: str, what: str) -> bytes:
    try:
        with open(os.fspath(path), "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise MDFIError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def float_shared(network, weights_file) -> Dict[str, bytes]:
    """``{"cfg", "weights"}`` bytes of a float network (what :func:`float_network` reads)."""
    return {"cfg": read_file(network.path, "cfg"), "weights": read_file(weights_file, "weights")}


def dets_json(dets) -> List[list]:
    """Detections as ``[class_id, confidence, x1, y1, x2, y2]`` (exact floats)."""
    return [[int(d.class_id), float(d.confidence), *(float(v) for v in d.box)] for d in dets]


def _progress(total: int, label: str, enabled: bool, skipped: int = 0) -> Optional[pipeline.RateProgress]:
    if not enabled:
        return None
    p = pipeline.RateProgress(total, label)
    p.skipped = skipped
    return p


def report_errors(errors: Sequence[Tuple[str, str]], what: str) -> None:
    """One stderr line per failed image (at most 10, then a count)."""
    for key, msg in list(errors)[:10]:
        print(f"{what}: skipped {key}: {msg}", file=sys.stderr)
    if len(errors) > 10:
        print(f"{what}: ... {len(errors) - 10} more images could not be used", file=sys.stderr)


# ============================================================================ eval (worker side)


def eval_setup(shared: Mapping[str, bytes], params: Mapping[str, Any], threads: int):
    from ..quant import modelfile
    from ..engine import FixedEngine
    from ..model import FloatEngine, Model
    net = float_network(shared, params["cfg_name"], params.get("darknet"))
    names = params["names"]
    fixed = {}
    for tag in params["configs"]:
        qm = modelfile.loads(shared[tag], f"{params['label']}-{tag}.mdfi")
        fixed[tag] = Model(qm.network, names, FixedEngine(qm, params["engine"], threads), name=params["label"])
    return {"float": Model(net, names, FloatEngine(net), name=params["label"]), "fixed": fixed,
            "params": dict(params), "machine": machine_record(params["engine"], threads)}


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    import platform
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record(engine: str, threads: int) -> Dict[str, Any]:
    """Where an eval worker timed its models: CPU, fixed-point engine (the C engine's SIMD
    path) and threads -- ``mdfi eval`` prints the times with it."""
    path = ""
    if engine == "c":
        try:
            from .._ext import _conv
            path = _conv.simd_path()
        except Exception:   # noqa: BLE001 - a description only
            path = ""
    return {"cpu": cpu_name(), "engine": engine, "path": path, "threads": int(threads)}


def eval_prepare(params: Mapping[str, Any], item: Mapping[str, Any]):
    from ..model import Prepared
    rgb = decode(item)
    return Prepared(_letterbox(params, rgb), rgb.shape[1], rgb.shape[0])


#: Detections of one image and one model kept for the evaluation (the most confident ones; as
#: COCO's evaluation keeps at most 100). A trained model at a sane width finds far fewer; a
#: width that has lost the model (w2a2) finds tens of thousands per image, which would make
#: the agreement ranking hold gigabytes. The record says how many were dropped.
MAX_EVAL_DETECTIONS = 1000


def top_detections(dets: Sequence[Any], limit: int = 0) -> Tuple[List[Any], int]:
    """The ``limit`` (default MAX_EVAL_DETECTIONS) most confident detections, in their
    original order when nothing is dropped, and how many were dropped."""
    limit = limit or MAX_EVAL_DETECTIONS
    dets = list(dets)
    if len(dets) <= limit:
        return dets, 0
    order = sorted(range(len(dets)), key=lambda i: (-float(dets[i].confidence), i))[:limit]
    return [dets[i] for i in sorted(order)], len(dets) - limit


def eval_infer(ctx, item: Mapping[str, Any], prep) -> dict:
    p = ctx["params"]
    rec: Dict[str, Any] = {"image": item["key"], "size": [prep.width, prep.height], "float": [], "fixed": {}}
    dropped: Dict[str, int] = {}
    kept, dropped["float"] = top_detections(ctx["float"].detect(prep, thresh=p["gt_thresh"], nms=p["nms"]))
    rec["float"] = dets_json(kept)
    if p["stats"]:
        rec["saturation"] = {}
    times: Dict[str, float] = {}
    for tag, model in ctx["fixed"].items():
        stats: Optional[dict] = {} if p["stats"] else None
        t0 = time.perf_counter()
        found = model.detect(prep, thresh=p["min_thresh"], nms=p["nms"], stats=stats)
        if stats is not None:           # the counts ran the NumPy reference: time the engine itself
            t0 = time.perf_counter()
            model.detect(prep, thresh=p["min_thresh"], nms=p["nms"])
        times[tag] = round((time.perf_counter() - t0) * 1e3, 3)
        kept, dropped[tag] = top_detections(found)
        rec["fixed"][tag] = dets_json(kept)
        if stats is not None:
            rec["saturation"][tag] = [[i, int(v["saturated"]), int(v["total"])]
                                      for i, v in sorted(stats.items()) if v]
    if any(dropped.values()):
        rec["dropped"] = {k: v for k, v in dropped.items() if v}
    rec["ms"] = times
    rec["machine"] = ctx.get("machine")
    return rec


# ============================================================================ calibrate


def calib_setup(shared: Mapping[str, bytes], params: Mapping[str, Any], threads: int):
    return float_network(shared, params["cfg_name"], params.get("darknet"))


def calib_prepare(params: Mapping[str, Any], item: Mapping[str, Any]) -> List[np.ndarray]:
    rgb = decode(item)
    variants = [rgb, rgb[:, ::-1]] if params["augment"] else [rgb]
    return [_letterbox(params, v) for v in variants]


def calib_infer(network, item: Mapping[str, Any], xs: List[np.ndarray]) -> dict:
    """Per-image statistics in their exact form (:meth:`TensorStats.to_dict`), as
    :func:`mdfi.quant.calibrate.collect` gathers them."""
    from ..quant.calibrate import TensorStats
    stats = [TensorStats() for _ in network.layers]
    inp = TensorStats()

    def hook(i: int, out: np.ndarray) -> None:
        stats[i].update(out)
        stats[i].update_channels(out)

    for x in xs:
        inp.update(x)
        inp.update_channels(x)
        network.forward_float(x, keep="needed", hook=hook)
    return {"image": item["key"], "input": inp.to_dict(exact=True),
            "layers": [s.to_dict(exact=True) for s in stats]}


def calibrate_images(network, weights_file, images: str, *, augment: bool = False,
                     workers: Optional[int] = None, cluster: Optional[str] = None,
                     results: Optional[str] = None, ship: bool = False, progress: bool = True):
    """:func:`mdfi.quant.calibrate.collect` over a folder or list of images on every core or a
    cluster: per-image statistics merged exactly as they arrive (identical whichever way
    the images were split).  ``results``: JSON-lines journal of the per-image statistics
    (resumable).  Unreadable images are skipped and reported on stderr."""
    from ..quant.calibrate import CalibStats, TensorStats
    inputs = list_inputs(images)
    net_w, net_h = network.width, network.height
    job = pipeline.Job(
        name="calibrate", setup="mdfi.scale.imagejobs:calib_setup", prepare="mdfi.scale.imagejobs:calib_prepare",
        infer="mdfi.scale.imagejobs:calib_infer", batch=2, shared=float_shared(network, weights_file),
        params={**net_params(network), "augment": bool(augment)})
    job = pipeline.pack_job(job)
    layers = [TensorStats() for _ in network.layers]
    inp = TensorStats()
    ok: set = set()
    errors: List[Tuple[str, str]] = []

    def merge(text: str) -> None:
        rec = json.loads(text)
        if "error" in rec:
            errors.append((rec["image"], rec["error"]))
            return
        try:
            inp.merge(TensorStats.from_dict(rec["input"], "input"))
            for st, d in zip(layers, rec["layers"]):
                st.merge(TensorStats.from_dict(d))
        except (ValueError, KeyError, TypeError) as exc:
            raise pipeline.JobError(f"{results or 'calibration'}: bad statistics for {rec.get('image')}: "
                                    f"{exc}") from None
        ok.add(rec["image"])

    journal = None
    if results:
        journal = pipeline.ResultsFile(results, {"job": "calibrate", "digest": job.digest,
                                                 "images": images_identity(inputs)})
        for rec in journal.records():
            merge(pipeline.canonical(rec))

    def on_result(key: str, text: str) -> None:
        if journal is not None:
            journal.write(text)
        merge(text)

    done = journal.done if journal is not None else set()
    prog = _progress(len(inputs), "calibrating", progress, skipped=len(done & {k for k, _ in inputs}))
    try:
        pipeline.execute(job, make_items(inputs, skip=done, ship=ship), on_result, workers=workers,
                         cluster=cluster, progress=prog)
    finally:
        if journal is not None:
            journal.close()
    if prog is not None:
        prog.done()
    report_errors(errors, "calibrate")
    names = [os.path.basename(k) for k, _ in inputs if k in ok]
    if not names:
        raise MDFIError(f"{images}: no image could be used for calibration"
                        + (f" (first error: {errors[0][1]})" if errors else ""))
    return CalibStats(dict(enumerate(layers)), source=os.fspath(images), num_images=len(names),
                      input_size=(net_w, net_h), cfg=os.path.basename(network.path), method="images",
                      augment=augment, layer_kinds=[l.kind for l in network.layers], input=inp)


# ============================================================================ golden


def golden_setup(shared: Mapping[str, bytes], params: Mapping[str, Any], threads: int):
    from ..quant import modelfile
    from ..engine import FixedEngine
    from ..model import Model
    qm = modelfile.loads(shared["model"], params["model_file"])
    model = Model(qm.network, params["names"], FixedEngine(qm, params["engine"], threads), name=params["label"])
    return model, dict(params)


def golden_prepare(params: Mapping[str, Any], item: Mapping[str, Any]) -> np.ndarray:
    return decode(item)


def golden_infer(ctx, item: Mapping[str, Any], rgb: np.ndarray) -> dict:
    """:func:`mdfi.hw.golden.export` into ``OUT/<folder>`` (written into a hidden sibling and
    renamed when complete: a folder is whole or absent, and a batch run again after a worker
    died replaces it with the same bytes); then its parameter files become hard links to
    one shared copy."""
    from ..hw import golden
    model, p = ctx
    out, folder, key = item["out"], item["folder"], item["key"]
    final = os.path.join(out, folder)
    manifest = golden.export(model, rgb, final, layers=p["layers"], formats=p["formats"], stages=p["stages"],
                             thresh=p["thresh"], nms=p["nms"], image_name=key)
    try:
        with open(os.path.join(final, manifest.get("detections", "detections.json")), "rb") as fh:
            n_dets = len(json.loads(fh.read())["detections"])
        with open(os.path.join(final, "manifest.json"), "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except (OSError, ValueError, KeyError) as exc:
        raise MDFIError(f"{final}: cannot read back the export: {exc}") from None
    for f in manifest["files"]:
        if f["stage"] in golden.PARAM_STAGES:
            _share(os.path.join(final, f["path"]), os.path.join(out, SHARED_PARAMS), f"{f['sha256']}.{f['format']}")
    return {"image": key, "folder": folder, "files": len(manifest["files"]), "detections": n_dets,
            "manifest_sha256": digest}


#: Parameter files (weights, biases, shifts, tables) are the same for every image: one copy
#: here, hard-linked into every image's folder.
SHARED_PARAMS = ".shared-params"


def _share(path: str, folder: str, name: str) -> None:
    """Replace ``path`` by a hard link to ``folder/name`` (its first copy becomes that file).
    Where hard links are not possible the file simply stays a copy."""
    target = os.path.join(folder, name)
    try:
        os.makedirs(folder, exist_ok=True)
        try:
            os.link(path, target)
            return
        except FileExistsError:
            pass
        link = f"{path}.link"
        os.link(target, link)
        os.replace(link, path)
    except OSError:
        pass


def folder_names(keys: Sequence[str]) -> Dict[str, str]:
    """A sub-folder name per key: the file name's stem, made safe; stems that collide (case
    folded) get ``-`` and 8 hex digits of the key's sha256.  Depends only on the key list."""
    def stem(k: str) -> str:
        s = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(os.path.basename(k))[0])[:100]
        return "_" + s if not s or s[0] == "." else s
    stems = {k: stem(k) for k in keys}
    count: Dict[str, int] = {}
    for s in stems.values():
        count[s.lower()] = count.get(s.lower(), 0) + 1
    return {k: s if count[s.lower()] == 1 and s.lower() != "index"
            else f"{s}-{hashlib.sha256(k.encode('utf-8')).hexdigest()[:8]}" for k, s in stems.items()}


GOLDEN_INDEX = "index.json"
GOLDEN_JOURNAL = "index.jsonl"


def golden_images(model, images, out_dir: str, *, layers: Optional[Sequence[int]] = None,
                  formats: Optional[Sequence[str]] = None, stages: Optional[Sequence[str]] = None,
                  thresh: float = 0.25, nms: float = 0.45, workers: Optional[int] = None,
                  cluster: Optional[str] = None, ship: bool = False, progress: bool = True) -> dict:
    """``mdfi golden --images``: one :func:`mdfi.hw.golden.export` per image into
    ``OUT_DIR/<folder>/``, and ``OUT_DIR/index.json`` listing every image (its folder, file
    count, detections, the sha256 of its manifest, or its error), sorted by key.  The
    journal ``OUT_DIR/index.jsonl`` makes a rerun skip the images already exported.  With a
    cluster the workers write the folders: ``OUT_DIR`` must be on storage they share.
    ``images``: a folder, a list file or ``[(key, path)]`` (:func:`list_inputs`); the other
    options are :func:`mdfi.hw.golden.export`'s."""
    from ..hw import golden
    from ..quant import modelfile
    qm = getattr(model, "quantized", None)
    if qm is None:
        raise MDFIError("golden vectors need a fixed-point model (not the float path)")
    inputs = list_inputs(images) if isinstance(images, (str, os.PathLike)) else list(images)
    out = os.path.abspath(out_dir)
    journal_path = os.path.join(out, GOLDEN_JOURNAL)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise MDFIError(f"{out_dir}: exists and is not a folder")
    if os.path.isdir(out) and [e for e in os.listdir(out) if not e.startswith(".")] \
            and not os.path.exists(journal_path):
        raise MDFIError(f"{out_dir}: exists and is not an `mdfi golden --images` folder; give a new or "
                        f"empty folder")
    engine = getattr(model.engine, "backend", "c")
    label = model.name
    job = pipeline.Job(
        name="golden", setup="mdfi.scale.imagejobs:golden_setup", prepare="mdfi.scale.imagejobs:golden_prepare",
        infer="mdfi.scale.imagejobs:golden_infer", batch=1,
        shared={"model": modelfile.dumps(qm, model_name=label)},
        params={"model_file": f"{label}.mdfi", "names": list(model.names), "label": label, "engine": engine,
                "layers": None if layers is None else sorted(int(i) for i in layers),
                "formats": list(formats or golden.DEFAULT_FORMATS),
                "stages": list(stages) if stages is not None else None, "thresh": float(thresh), "nms": float(nms)})
    job = pipeline.pack_job(job)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise MDFIError(f"{out_dir}: cannot create the output folder: {exc.strerror or exc}") from None
    journal = pipeline.ResultsFile(journal_path, {"job": "golden", "digest": job.digest,
                                                  "images": images_identity(inputs)}, what="output folder")
    records: Dict[str, dict] = {r["image"]: r for r in journal.records()}
    names = folder_names([k for k, _ in inputs])
    names.update({k: r["folder"] for k, r in records.items() if "folder" in r})

    def on_result(key: str, text: str) -> None:
        journal.write(text)
        rec = json.loads(text)
        if "folder" in rec and not os.path.isfile(os.path.join(out, rec["folder"], "manifest.json")):
            raise pipeline.JobError(f"{out_dir}: a worker exported {key} but its folder is not here: with "
                                    f"a cluster the output folder must be on storage the workers share")
        records[key] = rec

    keys = {k for k, _ in inputs}
    prog = _progress(len(inputs), "golden", progress, skipped=len(journal.done & keys))
    items = make_items(inputs, skip=journal.done, ship=ship,
                       extra=lambda k: {"out": out, "folder": names[k]})
    try:
        pipeline.execute(job, items, on_result, workers=workers, cluster=cluster, progress=prog)
    finally:
        journal.close()
    if prog is not None:
        prog.done()
    for e in os.listdir(out):            # left by a worker killed in the middle of an export
        if e.startswith(".") and ".partial-" in e and os.path.isdir(os.path.join(out, e)):
            shutil.rmtree(os.path.join(out, e), ignore_errors=True)
    entries = [records[k] for k in sorted(keys) if k in records]
    errors = [(r["image"], r["error"]) for r in entries if "error" in r]
    report_errors(errors, "golden")
    index = {"format": "mdfi-golden-index", "version": 1,
             "model": {"name": qm.name, "cfg_name": qm.cfg_name, "options": qm.options, "engine": engine},
             "images": entries, "exported": len(entries) - len(errors), "errors": len(errors)}
    tmp = os.path.join(out, f".{GOLDEN_INDEX}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, os.path.join(out, GOLDEN_INDEX))
    return index
