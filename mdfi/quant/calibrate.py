"""Activation statistics and the choice of per-layer fixed-point formats.

Fixed-point inference needs, for every layer output, a format ``Q(bits, frac)``
(:mod:`mdfi.fixedpoint`).  This module measures what the float network really produces
and turns those measurements into ``frac`` values:

* :class:`TensorStats` -- statistics of one tensor accumulated over images: exact count,
  min, max, zeros and two log2-histograms of ``|v|`` (positive and negative values apart).
* :class:`CalibStats` -- layer index -> :class:`TensorStats` plus metadata, saved as plain
  JSON (:meth:`CalibStats.to_json`, :meth:`CalibStats.from_json`).
* :func:`collect` / :func:`collect_from_dir` -- run float forward passes on calibration
  images and record every layer output.
* :func:`estimate_from_batchnorm` -- data-free, approximate statistics from the batch-norm
  parameters (used when no calibration images are given).
* :func:`choose_frac` / :func:`choose_formats` -- ``frac`` per layer by one of the methods
  ``"max"``, ``"percentile"`` or ``"mse"``.

The histogram geometry, the exact sums and :class:`TensorStats` live in
:mod:`mdfi.quant.calib_stats` (its module docstring describes the bins); every public name of it
is re-exported here.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
# One tensor's statistics live in mdfi.quant.calib_stats; re-exported here (calib_estimate and
# user code import them from this module).
from .calib_stats import (  # noqa: F401  (re-exported)
    _BIN_LO, _EDGES32, BINS_PER_OCTAVE, LOG2_MAX, LOG2_MIN, NBINS, TensorStats, _bin_index,
    _exact_from_text, _exact_to_text, _nonneg_int, bin_centres, bin_edges,
)
from ..errors import FormatError, MDFIError, ModelFileError, PathLike
from ..limits import require_regular_file
from ..progress import StatusLine

__all__ = [
    "BINS_PER_OCTAVE", "LOG2_MIN", "LOG2_MAX", "NBINS", "SCHEMA", "SCHEMA_VERSION",
    "GATHER_METHODS", "FRAC_METHODS", "IMAGE_EXTENSIONS",
    "TensorStats", "CalibStats", "bin_edges", "bin_centres",
    "collect", "collect_from_dir", "list_images", "estimate_from_batchnorm",
    "choose_frac", "choose_formats",
]

SCHEMA = "mdfi-calibration"
SCHEMA_VERSION = 1
#: How a :class:`CalibStats` was gathered.
GATHER_METHODS = ("images", "batchnorm-estimate")
#: Methods of :func:`choose_frac` and their options (with defaults).
FRAC_METHODS: Dict[str, Dict[str, Any]] = {
    "max": {"signed": True},
    "percentile": {"signed": True, "p": 99.99},
    "mse": {"signed": True, "clip_budget": 0.01},
}
#: Extensions :func:`collect_from_dir` reads (case-insensitive).
# The calibration images and inputs (list_images, load_inputs, corner crops) live in
# mdfi.quant.calib_inputs; re-exported here.
from .calib_inputs import (  # noqa: E402,F401  (re-exported)
    CORNER_CROPS, IMAGE_EXTENSIONS, calibration_variants, corner_crops, list_images, load_inputs,
)

#: Largest calibration file :meth:`CalibStats.from_json` reads (a real one is < 1 MB per
#: hundred layers).
MAX_FILE_BYTES = 256 << 20

#: fracs are kept inside the range :class:`mdfi.fixedpoint.QFormat` accepts.
MIN_FRAC, MAX_FRAC = fp.QFormat.MIN_FRAC, fp.QFormat.MAX_FRAC


# =================================================================================================
# CalibStats


class CalibStats:
    """Statistics of every layer output of a network: ``layers[i]`` is a :class:`TensorStats`.

    ``meta`` holds: ``source`` (where the data came from), ``num_images``, ``input_size``
    ``[width, height]`` of the network input, ``cfg`` (the cfg file name), ``method``
    (``"images"`` or ``"batchnorm-estimate"``), ``augment`` (flipped copies used),
    ``layer_kinds`` (kind of every layer of the network, to check that the statistics
    belong to it) and ``mdfi_version``.  ``input`` optionally holds the statistics of the
    network input itself (not a layer; not used by :func:`choose_formats`).
    """

    def __init__(self, layers: Optional[Mapping[int, TensorStats]] = None, *, source: str = "",
                 num_images: int = 0, input_size: Sequence[int] = (0, 0), cfg: str = "",
                 method: str = "images", augment: bool = False,
                 layer_kinds: Optional[Sequence[str]] = None, input: Optional[TensorStats] = None,
                 meta: Optional[Mapping[str, Any]] = None):
        from .. import __version__
        self.layers: Dict[int, TensorStats] = {int(k): v for k, v in (layers or {}).items()}
        self.input = input
        self.path: Optional[str] = None      # the file it was read from, if any
        if method not in GATHER_METHODS:
            raise FormatError(f"unknown calibration method {method!r} (expected one of "
                              f"{', '.join(GATHER_METHODS)})")
        self.meta: Dict[str, Any] = {
            "source": str(source), "num_images": int(num_images),
            "input_size": [int(v) for v in input_size], "cfg": str(cfg), "method": method,
            "augment": bool(augment), "layer_kinds": list(layer_kinds) if layer_kinds is not None else None,
            "mdfi_version": __version__,
        }
        if meta:
            self.meta.update(meta)

    # -- convenience --------------------------------------------------------------------------
    source = property(lambda self: self.meta["source"])
    num_images = property(lambda self: self.meta["num_images"])
    input_size = property(lambda self: tuple(self.meta["input_size"]))
    cfg = property(lambda self: self.meta["cfg"])
    method = property(lambda self: self.meta["method"])

    def __getitem__(self, index: int) -> TensorStats:
        return self.layers[index]

    def __contains__(self, index: object) -> bool:
        return index in self.layers

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(sorted(self.layers))

    def items(self):
        return sorted(self.layers.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalibStats):
            return NotImplemented
        return self.meta == other.meta and self.layers == other.layers and self.input == other.input

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"CalibStats({len(self.layers)} layers, method={self.method!r}, "
                f"num_images={self.num_images}, source={self.source!r})")

    def merge(self, other: "CalibStats") -> "CalibStats":
        """Add another run on the same network (e.g. a second image folder), in place."""
        kinds_a, kinds_b = self.meta.get("layer_kinds"), other.meta.get("layer_kinds")
        if kinds_a is not None and kinds_b is not None and kinds_a != kinds_b:
            raise MDFIError("cannot merge calibration statistics of different networks")
        if self.method != other.method:
            raise MDFIError(f"cannot merge {self.method!r} statistics with {other.method!r} ones")
        for i, s in other.layers.items():
            if i in self.layers:
                self.layers[i].merge(s)
            else:
                self.layers[i] = s.copy()
        if other.input is not None:
            self.input = other.input.copy() if self.input is None else self.input.merge(other.input)
        self.meta["num_images"] += other.meta["num_images"]
        if other.source and other.source != self.source:
            self.meta["source"] = f"{self.source} + {other.source}" if self.source else other.source
        self.meta["augment"] = bool(self.meta["augment"] or other.meta["augment"])
        return self

    def check_network(self, network) -> None:
        """Raise :class:`~mdfi.errors.ModelFileError` if these statistics do not belong to
        ``network`` (different layer count or kinds)."""
        where = self.path or "calibration statistics"
        kinds = [l.kind for l in network.layers]
        mine = self.meta.get("layer_kinds")
        if mine is not None and mine != kinds:
            if len(mine) != len(kinds):
                why = f"they were gathered on a network of {len(mine)} layers, this one has {len(kinds)}"
            else:
                j = next(j for j, (a, b) in enumerate(zip(mine, kinds)) if a != b)
                why = f"layer {j} was a {mine[j]} layer there but is a {kinds[j]} layer here"
            raise ModelFileError(f"{where}: do not match the network {network.path}: {why}")
        bad = [i for i in self.layers if not 0 <= i < len(kinds)]
        if bad:
            raise ModelFileError(f"{where}: layer index {bad[0]} is outside the network's "
                                 f"layers 0..{len(kinds) - 1}")
        for i, st in sorted(self.layers.items()) + [(-1, self.input)]:
            mean = None if st is None else st.channel_mean
            if mean is not None and len(mean) != network.shape_of(i)[0]:     # bias correction skipped them, silently
                raise ModelFileError(f"{where}: do not match the network {network.path}: "
                                     f"{'the input' if i == -1 else f'layer {i}'} has {network.shape_of(i)[0]} "
                                     f"channels, the statistics' channel means {len(mean)}")

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"format": SCHEMA, "version": SCHEMA_VERSION,
                "histogram": {"bins_per_octave": BINS_PER_OCTAVE, "log2_min": LOG2_MIN, "log2_max": LOG2_MAX},
                "meta": dict(self.meta),
                "input": None if self.input is None else self.input.to_dict(),
                "layers": {str(i): s.to_dict() for i, s in sorted(self.layers.items())}}

    def channel_mean(self, index: int) -> Optional[np.ndarray]:
        """Per-channel mean of layer ``index``'s output (-1: the network input), or None."""
        st = self.input if index == -1 else self.layers.get(index)
        return None if st is None else st.channel_mean

    def digest(self) -> str:
        """sha256 of the canonical JSON form (identifies the statistics in cache keys)."""
        import hashlib
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()

    def to_json(self, path: PathLike) -> None:
        """Write plain JSON (one line per layer), atomically (temporary file + rename)."""
        d = self.to_dict()
        dump = lambda v: json.dumps(v, separators=(",", ":"), allow_nan=False)  # noqa: E731
        lines = ["{"]
        for key in ("format", "version", "histogram", "meta", "input"):
            lines.append(f" {json.dumps(key)}: {dump(d[key])},")
        items = list(d["layers"].items())
        if items:
            lines.append(' "layers": {')
            for j, (k, v) in enumerate(items):
                lines.append(f"  {json.dumps(k)}: {dump(v)}{',' if j + 1 < len(items) else ''}")
            lines.append(" }")
        else:
            lines.append(' "layers": {}')
        lines.append("}")
        text = "\n".join(lines) + "\n"
        target = os.fspath(path)
        tmp = f"{target}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            parent = os.path.dirname(os.path.abspath(target))
            os.makedirs(parent, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # umask applies
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            raise MDFIError(f"{target}: cannot write calibration statistics: "
                            f"{exc.strerror or exc}") from None

    @classmethod
    def from_json(cls, path: PathLike) -> "CalibStats":
        """Read a file written by :meth:`to_json`.

        Raises :class:`~mdfi.errors.ModelFileError` naming the file and the problem for a
        missing, unreadable, truncated, corrupt or inconsistent file, or one of another
        schema version.
        """
        name = os.fspath(path)
        require_regular_file(name, ModelFileError)
        try:
            size = os.path.getsize(name)
            if size > MAX_FILE_BYTES:
                raise ModelFileError(f"{name}: {size:,} bytes is too large for a calibration file "
                                     f"(limit {MAX_FILE_BYTES:,})")
            with open(name, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise ModelFileError(f"{name}: no such calibration file") from None
        except IsADirectoryError:
            raise ModelFileError(f"{name}: is a directory, not a calibration file") from None
        except OSError as exc:
            raise ModelFileError(f"{name}: cannot read calibration file: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{name}: not a calibration file (not UTF-8 text)") from None
        if not text.strip():
            raise ModelFileError(f"{name}: calibration file is empty")

        from ..safejson import parse
        try:
            d = parse(text)                 # depth, integer and NaN/Infinity limits
        except json.JSONDecodeError as exc:
            what = "truncated" if exc.pos >= len(text.rstrip()) else "corrupt"
            raise ModelFileError(f"{name}: {what} calibration file: invalid JSON at line {exc.lineno} "
                                 f"column {exc.colno} ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:
            raise ModelFileError(f"{name}: corrupt calibration file: {exc}") from None
        try:
            calib = cls._from_dict(d)
        except ValueError as exc:
            raise ModelFileError(f"{name}: {exc}") from None
        calib.path = name
        return calib

    @classmethod
    def _from_dict(cls, d: Any) -> "CalibStats":
        if not isinstance(d, dict) or d.get("format") != SCHEMA:
            raise ValueError(f"not an MDFI calibration file (expected \"format\": \"{SCHEMA}\")")
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError(f"missing or invalid schema version {version!r:.40}")
        if version != SCHEMA_VERSION:
            newer = " (written by a newer MDFI)" if version > SCHEMA_VERSION else ""
            raise ValueError(f"calibration schema version {version}{newer}; this MDFI reads "
                             f"version {SCHEMA_VERSION}")
        hist = d.get("histogram")
        want = {"bins_per_octave": BINS_PER_OCTAVE, "log2_min": LOG2_MIN, "log2_max": LOG2_MAX}
        if hist != want:
            raise ValueError(f"histogram geometry {hist!r:.80} differs from this MDFI's {want}")
        for key in ("meta", "layers"):
            if not isinstance(d.get(key), dict):
                raise ValueError(f"missing or invalid \"{key}\" object")
        m = d["meta"]
        for key, typ in (("source", str), ("num_images", int), ("input_size", list), ("cfg", str),
                         ("method", str), ("augment", bool)):
            if key not in m:
                raise ValueError(f"meta: missing field {key!r}")
            if not isinstance(m[key], typ) or (typ is int and isinstance(m[key], bool)):
                raise ValueError(f"meta: {key} has the wrong type ({type(m[key]).__name__})")
        if m["method"] not in GATHER_METHODS:
            raise ValueError(f"meta: unknown method {m['method']!r} (expected one of "
                             f"{', '.join(GATHER_METHODS)})")
        _nonneg_int(m["num_images"], "meta: num_images")
        if len(m["input_size"]) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in m["input_size"]):
            raise ValueError("meta: input_size must be [width, height]")
        kinds = m.get("layer_kinds")
        if kinds is not None and not (isinstance(kinds, list) and all(isinstance(k, str) for k in kinds)):
            raise ValueError("meta: layer_kinds must be a list of layer kinds")
        layers: Dict[int, TensorStats] = {}
        for key, v in d["layers"].items():
            if not (key.isdigit() and key.isascii()) or (len(key) > 1 and key[0] == "0"):
                raise ValueError(f"layers: invalid layer index {key!r:.40}")
            i = int(key)
            if kinds is not None and i >= len(kinds):
                raise ValueError(f"layers: layer {i} is outside the network's {len(kinds)} layers")
            layers[i] = TensorStats.from_dict(v, f"layer {i}")
            if m["method"] == "images":          # gathered from values (an estimate's max is analytic)
                layers[i].check_extremes(f"layer {i}")
        inp = d.get("input")
        calib = cls(layers, method=m["method"],
                    input=None if inp is None else TensorStats.from_dict(inp, "input"))
        calib.meta = dict(m)
        return calib


# =================================================================================================
# collecting statistics from images


class _Progress:
    """``calibrating: 3/12 images, astronaut.png`` on stderr: updated in place on a TTY,
    one line per image otherwise."""

    def __init__(self, total: Optional[int], enabled: bool):
        self.total = total
        self.line = StatusLine(enabled=enabled)

    def update(self, done: int, name: str) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        self.line.write(f"calibrating: {done}{of} images, {name}")

    def close(self) -> None:
        self.line.end_line()


class StatsGatherer:
    """Per-layer and input statistics of float forward passes over letterboxed inputs (what
    :func:`collect` gathers from images, and :mod:`mdfi.quant.align` from inputs)."""

    def __init__(self, network):
        self.network = network
        self.layers: Dict[int, TensorStats] = {l.index: TensorStats() for l in network.layers}
        self.input = TensorStats()

    def _hook(self, i: int, out: np.ndarray) -> None:
        self.layers[i].update(out)
        self.layers[i].update_channels(out)

    def add(self, x: np.ndarray) -> None:
        self.input.update(x)
        self.input.update_channels(x)
        self.network.forward_float(x, keep="needed", hook=self._hook)

    def stats(self, source: str, num_images: int, **meta: Any) -> CalibStats:
        net = self.network
        return CalibStats(self.layers, source=source, num_images=num_images, input_size=(net.width, net.height),
                          cfg=os.path.basename(net.path), method="images", layer_kinds=[l.kind for l in net.layers],
                          input=self.input, **meta)


def _image_name(src: Any, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.path.basename(os.fspath(src)) or os.fspath(src)
    filename = getattr(src, "filename", "")
    if filename:
        return os.path.basename(os.fspath(filename))
    return f"image #{index}"


def _describe_sources(names: List[str]) -> str:
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"{len(names)} image{'s' if len(names) != 1 else ''}: {shown}"


def collect(network, images: Iterable[Any], *, progress: bool = True, augment: bool = False,
            source: Optional[str] = None) -> CalibStats:
    """Statistics of every layer output over float forward passes of ``images``.

    ``images``: an iterable of image paths, ``PIL`` images or ``HxWx3`` uint8 arrays (anything
    :func:`mdfi.image.load_image` takes); each is letterboxed to the network input
    (:func:`mdfi.preprocess.network_input`: letterboxed or resized as the model's Darknet
    lineage does) exactly as for inference.  The forward pass keeps
    only the outputs later layers still need (``keep="needed"``), so memory stays that of
    inference.  Every layer's output (all kinds) and the network input are recorded.

    ``augment=True`` also runs a horizontally mirrored copy of every image (left-right flip
    before letterboxing): it doubles the data at no cost in images and makes the ranges
    symmetric in x; ``count`` then grows by two forward passes per image, ``num_images``
    counts the original images only.

    ``progress``: ``calibrating: 3/12 images, astronaut.png`` on stderr, updated in place on
    a terminal, one line per image otherwise.  ``source`` describes the data in the metadata
    (default: the first image names).  Raises :class:`~mdfi.errors.MDFIError` if ``images``
    is empty; image errors (:class:`~mdfi.errors.ImageError`) propagate.
    """
    from ..image import load_image
    from ..preprocess import network_input

    total = len(images) if hasattr(images, "__len__") else None  # type: ignore[arg-type]
    gather = StatsGatherer(network)
    bar = _Progress(total, progress)
    names: List[str] = []
    try:
        for n, src in enumerate(images, 1):
            name = _image_name(src, n)
            rgb = load_image(src)
            variants = [rgb, rgb[:, ::-1]] if augment else [rgb]
            for img in variants:
                gather.add(network_input(np.ascontiguousarray(img), network))
            names.append(name)
            bar.update(n, name)
    finally:
        bar.close()
    if not names:
        raise MDFIError("calibration needs at least one image, none were given")
    return gather.stats(source if source is not None else _describe_sources(names), len(names), augment=augment)


def collect_from_dir(network, folder: PathLike, *, progress: bool = True, augment: bool = False) -> CalibStats:
    """:func:`collect` on every image file in ``folder`` (see :func:`list_images`)."""
    files = list_images(folder)
    return collect(network, files, progress=progress, augment=augment, source=os.fspath(folder))


# =================================================================================================
# data-free estimate from batch norm: mdfi/quant/calib_estimate.py


def estimate_from_batchnorm(network) -> CalibStats:
    """Data-free, approximate statistics from the batch-norm parameters
    (:func:`mdfi.quant.calib_estimate.estimate_from_batchnorm`, which documents the model)."""
    from .calib_estimate import estimate_from_batchnorm as estimate
    return estimate(network)


# =================================================================================================
# choosing formats


def _check_options(method: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    if method not in FRAC_METHODS:
        raise FormatError(f"unknown format method {method!r} (expected one of: {', '.join(FRAC_METHODS)})")
    allowed = FRAC_METHODS[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise FormatError(f"method {method!r} has no option {', '.join(map(repr, unknown))} "
                          f"(options: {', '.join(allowed)})")
    opts = dict(allowed)
    opts.update(options)
    if "p" in opts:
        p = opts["p"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
            raise FormatError(f"percentile p={p!r} must be in (0, 100]")
    cb = opts.get("clip_budget")
    if cb is not None and (isinstance(cb, bool) or not isinstance(cb, (int, float)) or not 0 <= cb < 100):
        raise FormatError(f"clip_budget={cb!r} must be a percentage in [0, 100) or None")
    return opts


def _clamp(f: int) -> int:
    return int(min(max(f, MIN_FRAC), MAX_FRAC))


def _range_frac(lo: float, hi: float, bits: int, signed: bool) -> Optional[int]:
    """Largest frac at which [lo, hi] fits after round-half-up (None: all zero)."""
    if not signed:
        lo = 0.0
    f = fp.max_frac(min(lo, 0.0), max(hi, 0.0), bits, signed)
    return None if f is None else _clamp(f)


def choose_frac(stats: TensorStats, bits: int, method: str = "mse", **options) -> int:
    """Fractional bits for a tensor with statistics ``stats`` in a ``bits``-wide format.

    Methods (``options`` in brackets):

    * ``"max"``: the largest frac at which the observed min and max still fit after
      round-half-up (``floor(v*2**frac + 1/2)`` inside ``[qmin, qmax]``): nothing clips.
    * ``"percentile"`` (``p``, default 99.99): like ``"max"`` for the ``p``-th percentile
      ``t`` of ``|v|`` (from the histograms; an upper bound within one bin, so at most
      ``100 - p`` % of the values clip): the range ``[max(min, -t), min(max, t)]`` must fit.
    * ``"mse"`` (``clip_budget``, default 0.01 %): among ``fmax - 2 .. fmax + 4`` (``fmax`` the
      ``"max"`` frac), the one with the smallest expected squared error over the histograms,
      each bin represented by its geometric centre (clamped to the observed range): a value
      in range costs ``min(step**2/12, v**2)``, one beyond ``qmax*step`` (``qmin*step``) costs
      the squared distance to it.  Ties go to the smaller frac (more headroom).  The result
      is then capped at the ``"percentile"`` frac for ``p = 100 - clip_budget``: at most
      ``clip_budget`` % of the values may clip, however small their squared error looks.
      Large activations are the salient ones; docs/quantization.md measures the effect
      (``clip_budget=None`` gives the pure minimum-error choice).

    All methods take ``signed`` (default True); for an unsigned format negative values clip
    to 0.  A tensor without non-zero values gets ``bits - 1`` (range [-1, 1)).  The result
    is kept in ``[QFormat.MIN_FRAC, QFormat.MAX_FRAC]``.  Raises
    :class:`~mdfi.errors.FormatError` for a width outside 2..16, an unknown method or option.
    """
    bits = fp.check_bits(bits, "activation width")
    opts = _check_options(method, options)
    signed = bool(opts["signed"])
    if stats.min is None or stats.nonzero == 0:
        return _clamp(bits - 1)
    fmax = _range_frac(stats.min, stats.max, bits, signed)
    if fmax is None:
        return _clamp(bits - 1)
    if method == "max":
        return fmax
    if method == "percentile":
        t = stats.abs_percentile(float(opts["p"]))
        f = _range_frac(max(stats.min, -t), min(stats.max, t), bits, signed)
        return fmax if f is None else max(f, fmax)
    # mse
    vals, cnts = hist_points(stats)
    best_f, best_err = fmax, None
    for f in range(fmax - 2, fmax + 5):
        if f != _clamp(f):
            continue
        err = _expected_sq_error(vals, cnts, f, bits, signed)
        if best_err is None or err < best_err * (1 - 1e-12):
            best_f, best_err = f, err
    if opts.get("clip_budget") is not None:
        best_f = min(best_f, choose_frac(stats, bits, "percentile", p=100.0 - float(opts["clip_budget"]),
                                         signed=signed))
    return int(best_f)


def hist_points(stats: TensorStats):
    """(values, counts) of the histograms as the ``mse`` criterion sees them: each non-empty
    bin by its geometric centre, clamped to the observed range."""
    centres = bin_centres()
    rep_pos = np.minimum(centres, max(stats.max, 0.0))
    rep_neg = -np.minimum(centres, max(-stats.min, 0.0))
    vals = np.concatenate([rep_pos[stats.pos > 0], rep_neg[stats.neg > 0]])
    cnts = np.concatenate([stats.pos[stats.pos > 0], stats.neg[stats.neg > 0]]).astype(np.float64)
    return vals, cnts


def _expected_sq_error(vals: np.ndarray, cnts: np.ndarray, frac: int, bits: int, signed: bool) -> float:
    step = 2.0 ** -frac
    hi = fp.qmax(bits, signed) * step
    lo = fp.qmin(bits, signed) * step
    inside = np.minimum(step * step / 12.0, vals * vals)
    err = np.where(vals > hi, (vals - hi) ** 2, np.where(vals < lo, (vals - lo) ** 2, inside))
    return float((err * cnts).sum())


def choose_formats(calib: CalibStats, network, bits: int, method: str = "mse", **options) -> Dict[int, int]:
    """``{layer index: frac}`` for every layer that has statistics in ``calib``.

    Checks first that ``calib`` was gathered on a network with the same layers
    (:meth:`CalibStats.check_network`).  ``method`` and ``options``: see :func:`choose_frac`.
    """
    bits = fp.check_bits(bits, "activation width")
    _check_options(method, options)
    calib.check_network(network)
    return {i: choose_frac(s, bits, method, **options) for i, s in sorted(calib.layers.items())}
