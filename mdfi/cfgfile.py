"""Darknet ``.cfg`` reader.

Follows Darknet's ``read_cfg`` (src/parser.c) with stricter error reporting:

* A line whose first non-blank character is ``[`` opens a section.  The name is what
  stands between the brackets (``[convolutional]``, ``[net]``...).
* Blank lines and lines starting with ``#`` or ``;`` are comments.  MDFI also drops an
  inline comment after a value (``filters=255  # head``); Darknet's ``atoi`` happens to
  ignore such tails for integers, MDFI ignores them for every value.
* Other lines are ``key = value``; Darknet strips *all* white space from a line
  (``strip()`` in utils.c), so ``mask = 6, 7,8`` is ``mask=6,7,8``.  A line without ``=``
  is a malformed line (Darknet: "Config file error").
* When a key repeats inside one section Darknet's ``option_find`` returns the first one;
  MDFI does the same and warns.

Every value is read through :class:`Section` accessors, which record the line of each key
so that an error says ``file:line``.  Keys a section never reads are reported as warnings
(Darknet prints "Unused field"), except the training keys listed in :data:`IGNORED_KEYS`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import CfgError

# Keys Darknet reads only for training (or for features MDFI's forward does not need).
# They are accepted silently.  Source: parse_net_options / parse_yolo / parse_region /
# parse_convolutional in pjreddie/darknet src/parser.c.
IGNORED_KEYS = frozenset("""
batch subdivisions momentum decay angle saturation exposure hue learning_rate burn_in
max_batches policy steps scales power gamma step rate max_crop min_crop aspect
flip center time_steps notruth random adam B1 B2 eps jitter ignore_thresh truth_thresh
object_scale noobject_scale class_scale coord_scale thresh rescore bias_match absolute
sqrt log classfix softmax_tree tree map max num_iteration iou_normalizer
cls_normalizer iou_loss nms_kind beta_nms scale_x_y label_smooth_eps counters_per_class
resize max_delta binary xnor flipped dot smooth stopbackward dontload dontloadscales
learning_scale_scale mask_scale bias_match burn_in_layers track sequential
""".split())


@dataclass
class Option:
    value: str
    line: int
    used: bool = False


@dataclass
class Section:
    """One ``[name]`` block: its options in file order, with line numbers."""

    name: str
    line: int
    path: str
    options: Dict[str, Option] = field(default_factory=dict)

    # -- error helpers ---------------------------------------------------------------
    def error(self, message: str, key: Optional[str] = None) -> CfgError:
        line = self.options[key].line if key is not None and key in self.options else self.line
        return CfgError(f"[{self.name}]: {message}", self.path, line)

    def has(self, key: str) -> bool:
        return key in self.options

    def _raw(self, key: str) -> Optional[str]:
        opt = self.options.get(key)
        if opt is None:
            return None
        opt.used = True
        return opt.value

    # -- typed accessors (Darknet's option_find_int / _float / _str) ---------------
    def get_int(self, key: str, default: Optional[int] = None, *, required: bool = False,
                minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
        raw = self._raw(key)
        if raw is None:
            if required or default is None:
                raise self.error(f"missing required key '{key}'")
            return default
        try:
            value = int(raw, 10)
        except ValueError:
            raise self.error(f"{key}={raw}: expected an integer", key) from None
        self._check_range(key, value, minimum, maximum)
        return value

    def get_float(self, key: str, default: Optional[float] = None, *, required: bool = False) -> float:
        raw = self._raw(key)
        if raw is None:
            if required or default is None:
                raise self.error(f"missing required key '{key}'")
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{key}={raw}: expected a number", key) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(f"{key}={raw}: expected a finite number", key)
        return value

    def get_str(self, key: str, default: Optional[str] = None, *, required: bool = False) -> str:
        raw = self._raw(key)
        if raw is None:
            if required or default is None:
                raise self.error(f"missing required key '{key}'")
            return default
        return raw

    def get_int_list(self, key: str, *, required: bool = False) -> Optional[List[int]]:
        raw = self._raw(key)
        if raw is None:
            if required:
                raise self.error(f"missing required key '{key}'")
            return None
        items = [s for s in raw.split(",") if s != ""]
        if not items:
            raise self.error(f"{key}={raw}: expected a comma-separated list of integers", key)
        try:
            return [int(s, 10) for s in items]
        except ValueError:
            raise self.error(f"{key}={raw}: expected a comma-separated list of integers", key) from None

    def get_float_list(self, key: str) -> Optional[List[float]]:
        raw = self._raw(key)
        if raw is None:
            return None
        items = [s for s in raw.split(",") if s != ""]
        try:
            values = [float(s) for s in items]
        except ValueError:
            raise self.error(f"{key}={raw}: expected a comma-separated list of numbers", key) from None
        if not values or any(v != v or abs(v) == float("inf") for v in values):
            raise self.error(f"{key}={raw}: expected a comma-separated list of finite numbers", key)
        return values

    def _check_range(self, key: str, value: int, minimum: Optional[int], maximum: Optional[int]) -> None:
        if minimum is not None and value < minimum:
            raise self.error(f"{key}={value}: must be >= {minimum}", key)
        if maximum is not None and value > maximum:
            raise self.error(f"{key}={value}: must be <= {maximum}", key)

    def unused_keys(self) -> List[Tuple[str, Option]]:
        return [(k, o) for k, o in self.options.items() if not o.used and k not in IGNORED_KEYS]


def parse_cfg_text(text: str, path: str = "<cfg>") -> List[Section]:
    """Split cfg text into sections.  Structural errors name ``path:line``."""
    sections: List[Section] = []
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = "".join(raw_line.split())  # Darknet's strip(): removes all white space
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"malformed section header {raw_line.strip()!r} (expected [name])", path, lineno)
            sections.append(Section(name=line[1:-1].lower(), line=lineno, path=path))
            continue
        # Drop an inline comment after the value.
        for mark in "#;":
            cut = line.find(mark)
            if cut >= 0:
                line = line[:cut]
        if "=" not in line:
            raise CfgError(f"malformed line {raw_line.strip()!r} (expected key=value)", path, lineno)
        key, value = line.split("=", 1)
        if not key:
            raise CfgError(f"malformed line {raw_line.strip()!r} (empty key)", path, lineno)
        if not sections:
            raise CfgError(f"option {key!r} before the first [section]", path, lineno)
        sec = sections[-1]
        if key in sec.options:
            # Darknet's option_find returns the first occurrence; keep it.
            print(f"warning: {path}:{lineno}: duplicate key '{key}' in [{sec.name}] "
                  f"(first value, line {sec.options[key].line}, is used, as in Darknet)", file=sys.stderr)
            continue
        if value == "":
            raise CfgError(f"malformed line {raw_line.strip()!r} (empty value)", path, lineno)
        sec.options[key] = Option(value=value, line=lineno)
    if not sections:
        raise CfgError("no sections found (is this a Darknet .cfg file?)", path, None)
    return sections


def read_cfg(path: "os.PathLike[str] | str") -> List[Section]:
    """Read and split a ``.cfg`` file; I/O and decoding errors become :class:`CfgError`."""
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as fh:
            data = fh.read(MAX_CFG_BYTES + 1)
    except FileNotFoundError:
        raise CfgError("file not found", spath) from None
    except IsADirectoryError:
        raise CfgError("is a directory, expected a .cfg file", spath) from None
    except OSError as exc:
        raise CfgError(f"cannot read: {exc.strerror or exc}", spath) from None
    if len(data) > MAX_CFG_BYTES:
        raise CfgError(f"file is larger than {MAX_CFG_BYTES} bytes; not a Darknet cfg", spath)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CfgError("not a text file (invalid UTF-8)", spath, line) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CfgError("not a text file (NUL byte)", spath, line)
    return parse_cfg_text(text, spath)


#: Real Darknet cfgs are a few tens of kB; refuse anything absurdly large before parsing.
MAX_CFG_BYTES = 4 * 1024 * 1024


def warn_unused(sections: Sequence[Section]) -> None:
    """Print Darknet-style "unused field" warnings for keys nothing read."""
    for sec in sections:
        for key, opt in sec.unused_keys():
            print(f"warning: {sec.path}:{opt.line}: unused key '{key}' in [{sec.name}]", file=sys.stderr)
