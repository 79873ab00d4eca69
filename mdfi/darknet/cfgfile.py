"""Darknet ``.cfg`` reader.

Follows Darknet's ``read_cfg`` (src/parser.c) with stricter error reporting:

* A line whose first non-blank character is ``[`` opens a section.  The name is what
  stands between the brackets (``[convolutional]``, ``[net]``...).
* Blank lines and lines starting with ``#`` or ``;`` are comments.  MDFI also drops an
  inline comment after a value (``filters=255  # head``); Darknet's ``atoi`` happens to
  ignore such tails for integers, MDFI ignores them for every value.
* Other lines are ``key = value``; Darknet's ``strip()`` removes every space, tab and
  newline from a line (pjreddie src/utils.c:302-313; AlexeyAB src/utils.c:424-435 also
  removes carriage returns), so ``mask = 6, 7,8`` is ``mask=6,7,8``.  Other white space
  (no-break space, vertical tab, form feed, U+3000 ...) stays in the value, where Darknet's
  ``atoi`` stops at it (``filters=1<NBSP>6`` is 1 for Darknet): MDFI refuses such a value
  instead of reading another number.  A line without ``=`` is a malformed line (Darknet:
  "Config file error").
* When a key repeats inside one section Darknet's ``option_find`` returns the first one;
  MDFI does the same and warns.
* Numbers are plain ASCII (sign, digits; for reals a point and an exponent), what Darknet's
  ``atoi``/``atof`` read: Python-only spellings such as ``1_6`` (Darknet: 1) or non-ASCII
  digits are errors, not silently different values.  Lines end at ``\n``, ``\r\n`` or ``\r``.

Every value is read through :class:`Section` accessors, which record the line of each key
so that an error says ``file:line``.  Keys a section never reads are reported as warnings
(Darknet prints "Unused field"); the key audit (:mod:`mdfi.darknet.cfgkeys`) decides first which keys
are training-only (accepted silently) and which are refused.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import CfgError, shown
from ..limits import MAX_LAYERS

# Which keys are implemented, ignored (training only) or refused: mdfi/darknet/cfgkeys.py (the key
# audit against both Darknet parsers); Network marks the ignored ones used after building
# its layers, so only keys neither Darknet reads are left to warn about.


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
        if not _INT.fullmatch(raw):
            hint = ""
            if re.match(r"[ \t\n\v\f\r]*[+-]?[0-9]", raw):
                hint = f" (Darknet's atoi would read {darknet_atoi(raw)}; write the number alone)"
            raise self.error(f"{key}={_clip(raw)}: expected an integer{hint}", key)
        if len(raw) > MAX_NUMBER_CHARS:
            raise self.error(f"{key}={_clip(raw)}: integer out of range", key)
        value = int(raw, 10)
        self._check_range(key, value, minimum, maximum)
        return value

    def get_float(self, key: str, default: Optional[float] = None, *, required: bool = False) -> float:
        raw = self._raw(key)
        if raw is None:
            if required or default is None:
                raise self.error(f"missing required key '{key}'")
            return default
        if not _FLOAT.fullmatch(raw):
            raise self.error(f"{key}={_clip(raw)}: expected a number", key)
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(f"{key}={_clip(raw)}: expected a finite number", key)
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
        if not items or not all(_INT.fullmatch(s) for s in items):
            raise self.error(f"{key}={_clip(raw)}: expected a comma-separated list of integers", key)
        if any(len(s) > MAX_NUMBER_CHARS for s in items):
            raise self.error(f"{key}={_clip(raw)}: integer out of range", key)
        return [int(s, 10) for s in items]

    def get_float_list(self, key: str) -> Optional[List[float]]:
        raw = self._raw(key)
        if raw is None:
            return None
        items = [s for s in raw.split(",") if s != ""]
        if not all(_FLOAT.fullmatch(s) for s in items):
            raise self.error(f"{key}={_clip(raw)}: expected a comma-separated list of numbers", key)
        values = [float(s) for s in items]
        if not values or any(v != v or abs(v) == float("inf") for v in values):
            raise self.error(f"{key}={_clip(raw)}: expected a comma-separated list of finite numbers", key)
        return values

    def _check_range(self, key: str, value: int, minimum: Optional[int], maximum: Optional[int]) -> None:
        if minimum is not None and value < minimum:
            raise self.error(f"{key}={value}: must be >= {minimum}", key)
        if maximum is not None and value > maximum:
            raise self.error(f"{key}={value}: must be <= {maximum}", key)

    def unused_keys(self) -> List[Tuple[str, Option]]:
        return [(k, o) for k, o in self.options.items() if not o.used]


#: Numbers as Darknet's atoi/atof read them: ASCII digits only.  (Python's int()/float() also
#: take "1_6" and non-ASCII digits such as "\u0661\u0666", which Darknet reads differently.)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)
#: Line ends (universal newlines).  str.splitlines() would also split at form feeds,
#: U+2028 and the like, which makes the line numbers of errors differ from editors'.
_LINE_END = re.compile(r"\r\n|\r|\n")
#: Longer integers are refused outright (int() of a megabyte of digits is slow and any
#: such value is far beyond every limit); longer section names too (they appear in messages).
MAX_NUMBER_CHARS = 40
MAX_SECTION_NAME = 64
#: Warnings of each kind printed per file (a file of a million duplicate keys would print a
#: million lines).
MAX_WARNINGS = 20


#: Darknet's strip() removes these characters anywhere in a line (CR: AlexeyAB's fork; MDFI
#: splits lines at CR anyway).
_STRIP = {ord(" "): None, ord("\t"): None, ord("\n"): None, ord("\r"): None}


def _clip(text: str, limit: int = 60) -> str:
    """``text`` for an error message: shortened (a cfg line can be megabytes long) and with
    control characters and other invisible characters escaped."""
    return shown(text, limit)


def darknet_atoi(text: str) -> int:
    """What C's ``atoi`` returns for ``text`` (leading white space, sign, digits up to the
    first other character; 0 when there are none): for messages."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]*)", text)
    digits = m.group(1) if m else ""
    try:
        return int(digits[:MAX_NUMBER_CHARS]) if digits.strip("+-") else 0
    except ValueError:
        return 0


def parse_cfg_text(text: str, path: str = "<cfg>") -> List[Section]:
    """Split cfg text into sections.  Structural errors name ``path:line``."""
    sections: List[Section] = []
    max_layers = MAX_LAYERS.value     # checked while parsing: a file of "[maxpool]" lines stays cheap
    duplicates = 0
    for lineno, raw_line in enumerate(_LINE_END.split(text), start=1):
        line = raw_line.translate(_STRIP)  # Darknet's strip(): space, tab, newline (and CR)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"malformed section header {_clip(raw_line.strip())!r} (expected [name])", path, lineno)
            if len(line) > MAX_SECTION_NAME + 2:
                raise CfgError(f"malformed section header {_clip(raw_line.strip())!r} (name longer than "
                               f"{MAX_SECTION_NAME} characters)", path, lineno)
            sections.append(Section(name=line[1:-1].lower(), line=lineno, path=path))
            if len(sections) - 1 > max_layers:
                MAX_LAYERS.check(len(sections) - 1, f"{path}:{lineno}: number of layers")
            continue
        # Drop an inline comment after the value.
        for mark in "#;":
            cut = line.find(mark)
            if cut >= 0:
                line = line[:cut]
        if "=" not in line:
            raise CfgError(f"malformed line {_clip(raw_line.strip())!r} (expected key=value)", path, lineno)
        key, value = line.split("=", 1)
        if not key:
            raise CfgError(f"malformed line {_clip(raw_line.strip())!r} (empty key)", path, lineno)
        if not sections:
            raise CfgError(f"option {_clip(key)!r} before the first [section]", path, lineno)
        sec = sections[-1]
        if key in sec.options:
            # Darknet's option_find returns the first occurrence; keep it.
            duplicates += 1
            if duplicates <= MAX_WARNINGS:
                print(f"warning: {path}:{lineno}: duplicate key '{_clip(key)}' in [{sec.name}] "
                      f"(first value, line {sec.options[key].line}, is used, as in Darknet)", file=sys.stderr)
            continue
        if value == "":
            raise CfgError(f"malformed line {_clip(raw_line.strip())!r} (empty value)", path, lineno)
        sec.options[key] = Option(value=value, line=lineno)
    if duplicates > MAX_WARNINGS:
        print(f"warning: {path}: {duplicates - MAX_WARNINGS:,} more duplicate keys", file=sys.stderr)
    if not sections:
        raise CfgError("no sections found (is this a Darknet .cfg file?)", path, None)
    return sections


def read_cfg_text(path: "os.PathLike[str] | str") -> str:
    """The text of a ``.cfg`` file, read through :mod:`mdfi.inputs` (regular file, at most
    :data:`MAX_CFG_BYTES`, strict UTF-8; a UTF-8 byte-order mark is dropped)."""
    from ..inputs import read_text
    return read_text(path, CfgError, what="Darknet .cfg file", max_bytes=MAX_CFG_BYTES)


def read_cfg(path: "os.PathLike[str] | str") -> List[Section]:
    """Read and split a ``.cfg`` file; I/O and decoding errors become :class:`CfgError`."""
    return parse_cfg_text(read_cfg_text(path), os.fspath(path))


#: Real Darknet cfgs are a few tens of kB; refuse anything absurdly large before parsing.
MAX_CFG_BYTES = 4 * 1024 * 1024


def warn_unused(sections: Sequence[Section]) -> None:
    """Print Darknet-style "unused field" warnings for keys nothing read."""
    unused = [(sec, key, opt) for sec in sections for key, opt in sec.unused_keys()]
    for sec, key, opt in unused[:MAX_WARNINGS]:
        print(f"warning: {sec.path}:{opt.line}: unused key '{_clip(key)}' in [{sec.name}]", file=sys.stderr)
    if len(unused) > MAX_WARNINGS:
        print(f"warning: {sections[0].path}: {len(unused) - MAX_WARNINGS:,} more unused keys", file=sys.stderr)
