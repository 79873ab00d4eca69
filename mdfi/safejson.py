"""The one JSON reader for files from outside (``.mdfi`` headers, golden manifests, COCO
labels, calibration statistics, ...): docs/hardening.md.

Python's :func:`json.loads` raises ``RecursionError`` on deeply nested input and
``ValueError`` on integers of more than 4,300 digits; :func:`loads` turns every failure into
the caller's one-line :class:`~mdfi.errors.MDFIError` naming the file:

* nesting deeper than :data:`MAX_DEPTH` (checked after parsing, iteratively, so nothing
  downstream can recurse out of the stack either; the parser's own recursion limit is
  caught too);
* integers longer than :data:`MAX_INT_DIGITS` digits (refused before ``int()`` sees them);
* ``NaN``/``Infinity`` (not JSON) unless ``allow_constants``;
* syntax errors, with line and column.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Type, Union

from .errors import FormatError, MDFIError, PathLike

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "Refused", "parse", "loads", "load"]

#: Deepest nesting accepted (MDFI's own files nest 4 levels, COCO labels 4).
MAX_DEPTH = 64
#: Longest integer accepted, in digits (sign excluded): far beyond every id, size or offset.
MAX_INT_DIGITS = 40


class Refused(ValueError):
    """Valid JSON that MDFI does not accept (too deep, a huge integer, NaN/Infinity)."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Refused(f"an integer of {len(text.lstrip('-')):,} digits (limit {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str):
    raise Refused(f"non-finite number {name} (not JSON)")


def _check_depth(obj: Any, max_depth: int) -> None:
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise Refused(f"nested deeper than {max_depth} levels")
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, (list, dict)):
                stack.append((child, depth + 1))


def parse(text: str, *, allow_constants: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """:func:`json.loads` with the limits above, for callers that word their own errors:
    raises :class:`json.JSONDecodeError` for invalid JSON and :class:`Refused` (a
    ValueError) for JSON MDFI does not accept."""
    kw = {} if allow_constants else {"parse_constant": _no_constant}
    try:
        obj = json.loads(text, parse_int=_parse_int, **kw)
    except RecursionError:
        raise Refused(f"nested deeper than {max_depth} levels") from None
    if isinstance(obj, (list, dict)):
        _check_depth(obj, max_depth)
    return obj


def loads(data: Union[str, bytes], where: str, *, error: Type[MDFIError] = FormatError,
          allow_constants: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text (bytes are decoded as UTF-8, a byte-order mark accepted).  Failures
    raise ``error("<where>: ...")`` with one line."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = bytes(data)[: exc.start].count(b"\n") + 1
            raise error(f"{where}:{line}: not UTF-8 text, so not JSON") from None
    try:
        obj = parse(data, allow_constants=allow_constants, max_depth=max_depth)
    except Refused as exc:
        raise error(f"{where}: not usable JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    except (ValueError, MemoryError) as exc:
        raise error(f"{where}: not usable JSON ({' '.join(str(exc).split())[:120]})") from None
    return obj


def load(path: PathLike, *, error: Type[MDFIError] = FormatError, what: str = "JSON file",
         max_bytes: Optional[int] = None, limit_hint: str = "", allow_constants: bool = False) -> Any:
    """Read a regular JSON file through :func:`mdfi.inputs.read_bytes` (size checked before
    reading) and parse it with :func:`loads`."""
    from .inputs import as_path, read_bytes
    p = as_path(path, what)
    return loads(read_bytes(p, error, what=what, max_bytes=max_bytes, limit_hint=limit_hint), p,
                 error=error, allow_constants=allow_constants)
