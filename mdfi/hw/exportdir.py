"""Writing a folder of files all at once: a half-written folder is never left behind.

:class:`ExportFolder` checks the destination before any heavy work (an existing file, a
folder holding someone else's files, a path under a file, a read-only parent, not enough
free space: one-line :class:`~mdfi.errors.MDFIError`), lets the caller write into a
hidden sibling folder, and renames it into place only when everything was written.  On
any error (full disk, interruption) the partial folder is removed and an earlier export
at the destination is left untouched.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from typing import Callable, Iterable, Optional, Type

from ..errors import MDFIError


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if exc.errno == errno.EFBIG:
        return "file too large (file size limit reached)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOTDIR:
        return "a component of the path is a file, not a folder"
    return exc.strerror or type(exc).__name__


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class ExportFolder:
    """Context manager: ``with ExportFolder(dest, owned=...) as tmp: write into tmp``.

    ``owned(names)`` says whether an existing non-empty destination may be replaced: it
    gets the set of names in it and returns None (yes) or a reason (no).  ``need_bytes``
    (an estimate) is compared with the free space before anything is written.
    """

    def __init__(self, dest: str, *, owned: Callable[[str, Iterable[str]], Optional[str]],
                 need_bytes: int = 0, error: Type[MDFIError] = MDFIError, what: str = "export"):
        self.shown = os.fspath(dest)
        self.error = error
        self.what = what
        self.dest = os.path.realpath(self.shown)
        self.parent = os.path.dirname(self.dest) or "."
        self.tmp: Optional[str] = None
        self._check(owned, need_bytes)

    def fail(self, msg: str) -> MDFIError:
        return self.error(f"{self.shown}: {msg}")

    def _check(self, owned, need_bytes: int) -> None:
        if os.path.lexists(self.dest):
            if not os.path.isdir(self.dest):
                raise self.fail(f"exists and is not a folder (the {self.what} is a folder of files; give a new "
                                f"or empty folder)")
            try:
                names = os.listdir(self.dest)
            except OSError as exc:
                raise self.fail(f"cannot list the existing folder: {_reason(exc)}") from None
            if names:
                why = owned(self.dest, names)
                if why:
                    raise self.fail(why)
        # The nearest existing ancestor decides (missing parents are created only when writing).
        anc = self.parent
        while not os.path.lexists(anc) and os.path.dirname(anc) != anc:
            anc = os.path.dirname(anc)
        if not os.path.isdir(anc):
            raise self.fail(f"cannot create it: {anc} exists and is not a folder")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise self.fail(f"cannot write into {anc}: permission denied")
        self.free_parent = anc
        if need_bytes > 0:
            try:
                free = shutil.disk_usage(self.free_parent).free
            except OSError:
                free = None
            if free is not None and free < need_bytes:
                raise self.fail(f"the {self.what} needs about {_mb(need_bytes)} but only {_mb(free)} are free "
                                f"there; write less (fewer layers, stages or formats) or choose another disk")

    def __enter__(self) -> str:
        try:
            os.makedirs(self.parent, exist_ok=True)
        except OSError as exc:
            raise self.fail(f"cannot create its parent folder: {_reason(exc)}") from None
        base = os.path.basename(self.dest) or "export"
        for _ in range(100):
            cand = os.path.join(self.parent, f".{base}.partial-{secrets.token_hex(4)}")
            try:
                os.mkdir(cand)
            except FileExistsError:
                continue
            except OSError as exc:
                raise self.fail(f"cannot write into {self.parent}: {_reason(exc)}") from None
            self.tmp = cand
            return cand
        raise self.fail(f"cannot create a temporary folder in {self.parent}")

    def __exit__(self, exc_type, exc, tb) -> bool:
        tmp = self.tmp
        if tmp is None:
            return False
        if exc_type is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise self.fail(f"cannot write the {self.what}: {_reason(exc)} (nothing was changed; the "
                                f"partial files were removed)") from None
            return False
        try:
            self._commit(tmp)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise self.fail(f"cannot move the finished {self.what} into place: {_reason(exc)}") from None
        return False

    def _commit(self, tmp: str) -> None:
        if not os.path.lexists(self.dest):
            os.rename(tmp, self.dest)
            return
        old = os.path.join(self.parent, f".{os.path.basename(self.dest)}.old-{secrets.token_hex(4)}")
        os.rename(self.dest, old)
        try:
            os.rename(tmp, self.dest)
        except OSError:
            os.rename(old, self.dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
