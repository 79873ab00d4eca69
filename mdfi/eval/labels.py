"""Ground-truth labels for evaluation: COCO instances JSON and Pascal VOC XML loaders.

:func:`load_coco_json` and :func:`load_voc_xml` map category names to the indices of a
class-name list (:data:`NAME_ALIASES`, :func:`class_index_for`) and return
``{image file name: [GroundTruth, ...]}``; :func:`align_labels` orders them like a list of
image paths.  Malformed, oversized or unsafe files raise :class:`LabelError` naming the file.
The metrics that consume these boxes are in :mod:`mdfi.eval.evaluate`, which re-exports every
public name of this module.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import MDFIError, PathLike
from ..limits import Limit, require_regular_file

__all__ = [
    "GroundTruth", "LabelError", "LabelWarning", "NAME_ALIASES", "class_index_for",
    "load_coco_json", "load_voc_xml", "align_labels",
]

Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth box.  ``difficult`` boxes (VOC difficult, COCO iscrowd) are ignored:
    they do not count as positives, and predictions on them are neither TP nor FP.
    ``crowd`` (COCO iscrowd) additionally measures overlap as intersection / prediction area."""

    class_id: int
    label: str
    box: Box
    difficult: bool = False
    crowd: bool = False


class LabelError(MDFIError):
    """A ground-truth annotation file (COCO JSON, VOC XML) that cannot be used.

    The message starts with the file name and says what is wrong."""

    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelWarning(UserWarning):
    """Annotations skipped while loading labels (unknown category names)."""


#: Groups of equivalent class names (compared after lower-casing and removing whitespace).
#: The first of each group is the Darknet ``coco.names`` / ``voc.names`` spelling, the others
#: are COCO's.  Any member maps to whichever member the class-name list contains.
NAME_ALIASES: Tuple[Tuple[str, ...], ...] = (
    ("motorbike", "motorcycle"),
    ("aeroplane", "airplane"),
    ("sofa", "couch"),
    ("pottedplant", "potted plant"),
    ("diningtable", "dining table"),
    ("tvmonitor", "tv", "tv monitor"),
)

#: Cap on VOC XML annotation files (one file describes one image: a few kB).
MAX_VOC_XML = Limit("VOC annotation file size", "MDFI_MAX_VOC_XML_MB", 10, "MB")
#: Cap on a COCO instances JSON (instances_train2017.json is ~450 MB).
MAX_COCO_JSON = Limit("COCO annotation file size", "MDFI_MAX_COCO_JSON_MB", 1024, "MB")


def _norm_name(name: str) -> str:
    return "".join(str(name).lower().split())


_ALIAS_GROUP: Dict[str, Tuple[str, ...]] = {}
for _grp in NAME_ALIASES:
    for _n in _grp:
        _ALIAS_GROUP[_norm_name(_n)] = tuple(_norm_name(x) for x in _grp)


def class_index_for(names: Sequence[str]) -> Dict[str, int]:
    """{normalised name -> class index} for a class-name list, aliases included.

    Names are compared lower-cased with whitespace removed; every alias of a listed name (see
    :data:`NAME_ALIASES`) maps to the same index.  A name listed twice keeps its first index.
    """
    index: Dict[str, int] = {}
    for i, n in enumerate(names):
        index.setdefault(_norm_name(n), i)
    for i, n in enumerate(names):
        for alias in _ALIAS_GROUP.get(_norm_name(n), ()):
            index.setdefault(alias, i)
    return index


def _resolve(index: Mapping[str, int], name: str) -> Optional[int]:
    return index.get(_norm_name(name))


def _report_unknown(path: str, unknown: Dict[str, int], on_unknown: str) -> None:
    if not unknown:
        return
    listing = ", ".join(f"{n!r} ({k} box{'es' if k != 1 else ''})"
                        for n, k in sorted(unknown.items()))
    if on_unknown == "error":
        raise LabelError(path, f"class names not in the class-name list: {listing}; "
                               f"pass on_unknown='warn' to skip them")
    if on_unknown == "warn":
        warnings.warn(f"{path}: skipped annotations of class names not in the class-name list: "
                      f"{listing}", LabelWarning, stacklevel=3)


def _check_on_unknown(on_unknown: str) -> None:
    if on_unknown not in ("error", "warn", "skip"):
        raise ValueError(f"on_unknown must be 'error', 'warn' or 'skip', got {on_unknown!r}")


def _read_capped(path: str, limit: Limit, kind: str) -> bytes:
    try:
        require_regular_file(path, MDFIError)
    except MDFIError as exc:
        raise LabelError(path, str(exc).split(": ", 1)[-1]) from None
    try:
        size = os.path.getsize(path)
        limit.check(-(-size // (1 << 20)), path)
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LabelError(path, f"cannot read {kind} ({exc.strerror or exc})") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_coco_json(path: PathLike, names: Sequence[str], *, on_unknown: str = "warn"
                   ) -> Dict[str, List[GroundTruth]]:
    """Ground truth from a COCO instances JSON: ``{image file_name: [GroundTruth, ...]}``.

    Every image of ``images`` gets an entry (possibly empty).  ``bbox = [x, y, w, h]`` becomes
    ``(x, y, x + w, y + h)``.  Categories are mapped to indices of ``names`` (e.g. Darknet's
    ``coco.names``) by *name*, using :data:`NAME_ALIASES` ("motorcycle" -> "motorbike", ...);
    COCO's category ids are not used as indices.  ``iscrowd`` boxes are kept with
    ``difficult=crowd=True``: ignored the COCO way (predictions on them are neither TP nor FP,
    overlap measured over the prediction's area).

    Annotations whose category name is not in ``names``: ``on_unknown="warn"`` (default)
    skips them and emits one :class:`LabelWarning` listing the names and counts, ``"skip"``
    skips silently, ``"error"`` raises :class:`LabelError`.  A malformed file raises
    :class:`LabelError` naming the file and the offending entry.
    """
    _check_on_unknown(on_unknown)
    p = os.fspath(path)
    raw = _read_capped(p, MAX_COCO_JSON, "COCO annotation file")
    from ..safejson import Refused, parse
    try:
        data = parse(raw.decode("utf-8-sig"))          # depth and integer limits (hardening.md)
    except Refused as exc:
        raise LabelError(p, f"not usable JSON: {exc}") from None
    except UnicodeDecodeError:
        raise LabelError(p, "not UTF-8 text; expected a COCO instances JSON file") from None
    except json.JSONDecodeError as exc:
        raise LabelError(p, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                         ) from None
    if not isinstance(data, dict):
        raise LabelError(p, f"expected a JSON object with 'images', 'annotations' and "
                            f"'categories', found {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise LabelError(p, f"missing or non-list {key!r}; expected a COCO instances file")

    index = class_index_for(names)
    cats: Dict[Any, Tuple[str, Optional[int]]] = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise LabelError(p, f"categories[{k}]: expected an object with 'id' and 'name'")
        cats[cat["id"]] = (cat["name"], _resolve(index, cat["name"]))

    out: Dict[str, List[GroundTruth]] = {}
    files: Dict[Any, str] = {}
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise LabelError(p, f"images[{k}]: expected an object with 'id' and 'file_name'")
        fname = img["file_name"]
        if img["id"] in files:
            raise LabelError(p, f"images[{k}]: duplicate image id {img['id']!r}")
        if fname in out:
            raise LabelError(p, f"images[{k}]: duplicate file_name {fname!r}")
        files[img["id"]] = fname
        out[fname] = []

    unknown: Dict[str, int] = {}
    for k, ann in enumerate(data["annotations"]):
        where = f"annotations[{k}]"
        if not isinstance(ann, dict):
            raise LabelError(p, f"{where}: expected an object")
        if isinstance(ann.get("id"), (int, str)):
            where += f" (id {ann['id']})"
        if ann.get("image_id") not in files:
            raise LabelError(p, f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in cats:
            raise LabelError(p, f"{where}: category_id {ann.get('category_id')!r} is not in "
                                f"'categories'")
        bbox = ann.get("bbox")
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox)
                or bbox[2] < 0 or bbox[3] < 0):
            raise LabelError(p, f"{where}: bbox must be [x, y, width, height] with finite "
                                f"numbers and width, height >= 0, found {bbox!r}")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1, True, False):
            raise LabelError(p, f"{where}: iscrowd must be 0 or 1, found {crowd!r}")
        cname, cid = cats[ann["category_id"]]
        if cid is None:
            unknown[cname] = unknown.get(cname, 0) + 1
            continue
        x, y, w, h = (float(v) for v in bbox)
        out[files[ann["image_id"]]].append(GroundTruth(
            cid, str(names[cid]), (x, y, x + w, y + h), difficult=bool(crowd), crowd=bool(crowd)))
    _report_unknown(p, unknown, on_unknown)
    return out


_XML_DECL = re.compile(r"^\s*<\?xml\s.*?\?>", re.DOTALL)
_XML_DECL_ENC = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._\-]+)[\"']")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def _safe_xml_root(path: str) -> ET.Element:
    """Parse an XML file with ElementTree after refusing DTDs.

    ElementTree (expat) expands internal entities, so a "billion laughs" file could exhaust
    memory.  The file is size-capped (:data:`MAX_VOC_XML`), decoded here (BOM, then the
    declared encoding, default UTF-8), refused if it contains ``<!DOCTYPE`` or ``<!ENTITY``
    (any case) or NUL characters, and the *same decoded text* is handed to the parser
    re-encoded as UTF-8 with the XML declaration removed, so no other decoding can hide a DTD.
    """
    raw = _read_capped(path, MAX_VOC_XML, "VOC annotation file")
    enc = next((e for bom, e in _BOMS if raw.startswith(bom)), None)
    if enc is None:
        m = _XML_DECL_ENC.match(raw)
        enc = m.group(1).decode("ascii") if m else "utf-8"
    try:
        text = raw.decode(enc)
    except LookupError:
        raise LabelError(path, f"unknown encoding {enc!r} in the XML declaration") from None
    except UnicodeDecodeError as exc:
        raise LabelError(path, f"not valid {enc} text at byte {exc.start}") from None
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise LabelError(path, "NUL character in XML text; expected a VOC annotation file")
    low = text.lower()
    for bad in ("<!DOCTYPE", "<!ENTITY"):
        if bad.lower() in low:
            raise LabelError(path, f"refusing XML with a {bad} declaration; VOC annotation "
                                   f"files have none and entity expansion is unsafe")
    text = _XML_DECL.sub("", text, count=1)
    try:
        return ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        raise LabelError(path, f"malformed XML: {exc}") from None


def _voc_files(folder_or_files: Union[PathLike, Iterable[PathLike]]) -> List[str]:
    if isinstance(folder_or_files, (str, bytes, os.PathLike)):
        p = os.fsdecode(folder_or_files)
        if os.path.isdir(p):
            files = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.lower().endswith(".xml"))
            if not files:
                raise LabelError(p, "no .xml annotation files in this folder")
            return files
        return [p]
    return [os.fsdecode(f) for f in folder_or_files]


def load_voc_xml(folder_or_files: Union[PathLike, Iterable[PathLike]], names: Sequence[str], *,
                 on_unknown: str = "warn", one_based: bool = True
                 ) -> Dict[str, List[GroundTruth]]:
    """Ground truth from Pascal VOC annotation XML: ``{filename: [GroundTruth, ...]}``.

    ``folder_or_files`` is a folder (every ``*.xml`` in it, not recursive), one file or an
    iterable of files.  Each file needs ``<annotation><filename>`` and per ``<object>`` a
    ``<name>`` and ``<bndbox>`` with ``xmin ymin xmax ymax``; ``<difficult>1</difficult>``
    marks an ignored box.  Names are mapped to indices of ``names`` like
    :func:`load_coco_json` (aliases, case and whitespace insensitive; the VOC spellings
    "aeroplane", "motorbike", "sofa", ... are Darknet's).  VOC coordinates are 1-based pixel
    indices; with ``one_based`` (default) 1 is subtracted, as Darknet's ``voc_label.py`` does
    (box ``(xmin - 1, ymin - 1, xmax - 1, ymax - 1)``).

    Unknown class names: see ``on_unknown`` of :func:`load_coco_json` (one warning per file).
    Malformed or unsafe files (DTD/entity declarations, larger than :data:`MAX_VOC_XML`) raise
    :class:`LabelError` naming the file and the reason; two files describing the same
    ``filename`` too.
    """
    _check_on_unknown(on_unknown)
    index = class_index_for(names)
    shift = 1.0 if one_based else 0.0
    out: Dict[str, List[GroundTruth]] = {}
    origin: Dict[str, str] = {}
    for path in _voc_files(folder_or_files):
        root = _safe_xml_root(path)
        if root.tag != "annotation":
            raise LabelError(path, f"root element is <{root.tag}>; expected <annotation>")
        fname = (root.findtext("filename") or "").strip()
        if not fname:
            raise LabelError(path, "missing or empty <filename>")
        if fname in out:
            raise LabelError(path, f"<filename> {fname!r} is also described by {origin[fname]}")
        gts: List[GroundTruth] = []
        unknown: Dict[str, int] = {}
        for k, obj in enumerate(root.findall("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise LabelError(path, f"<object> #{k}: missing or empty <name>")
            diff_text = (obj.findtext("difficult") or "0").strip()
            if diff_text not in ("0", "1"):
                raise LabelError(path, f"<object> #{k} ({name}): <difficult> must be 0 or 1, "
                                       f"found {diff_text!r}")
            bb = obj.find("bndbox")
            if bb is None:
                raise LabelError(path, f"<object> #{k} ({name}): missing <bndbox>")
            coords = []
            for tag in ("xmin", "ymin", "xmax", "ymax"):
                t = (bb.findtext(tag) or "").strip()
                try:
                    v = float(t)
                except ValueError:
                    v = float("nan")
                if not math.isfinite(v):
                    raise LabelError(path, f"<object> #{k} ({name}): <{tag}> must be a number, "
                                           f"found {t!r}")
                coords.append(v - shift)
            x1, y1, x2, y2 = coords
            if x2 < x1 or y2 < y1:
                raise LabelError(path, f"<object> #{k} ({name}): xmax < xmin or ymax < ymin "
                                       f"in bndbox {tuple(v + shift for v in coords)}")
            cid = _resolve(index, name)
            if cid is None:
                unknown[name] = unknown.get(name, 0) + 1
                continue
            gts.append(GroundTruth(cid, str(names[cid]), (x1, y1, x2, y2),
                                   difficult=diff_text == "1"))
        _report_unknown(path, unknown, on_unknown)
        out[fname] = gts
        origin[fname] = path
    return out


def align_labels(images: Sequence[PathLike], labels: Mapping[str, List[GroundTruth]]
                 ) -> List[List[GroundTruth]]:
    """Per-image ground truth for a list of image paths, in the same order.

    An image is looked up by its path as given, then by its base name, then by its base name
    without extension (if that is unambiguous).  An image with no entry raises
    :class:`LabelError` (a missing label would turn every detection into a false positive);
    the message lists up to five such images.
    """
    by_base: Dict[str, str] = {}
    by_stem: Dict[str, Optional[str]] = {}
    for key in labels:
        base = os.path.basename(key)
        by_base.setdefault(base, key)
        stem = os.path.splitext(base)[0]
        by_stem[stem] = key if stem not in by_stem else None
    out: List[List[GroundTruth]] = []
    missing: List[str] = []
    for img in images:
        s = os.fsdecode(img)
        base = os.path.basename(s)
        key = (s if s in labels else by_base.get(base)
               or by_stem.get(os.path.splitext(base)[0]))
        if key is None:
            missing.append(s)
            out.append([])
        else:
            out.append(list(labels[key]))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise LabelError(missing[0], f"no ground truth for {len(missing)} image(s): "
                                     f"{', '.join(missing[:5])}{more}")
    return out
