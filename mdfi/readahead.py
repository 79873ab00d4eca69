"""Decode the next image while this one runs (issue 12).

:func:`read_ahead` walks a list of images in order and hands back each one's decoded form
(or the error its decoding raised), while the *next* image is decoded on one background
thread: Pillow releases the GIL while it decodes a JPEG, so the decode of image i+1
overlaps the forward of image i.  At most ONE image is decoded ahead of the one being
used (memory stays bounded: the current image plus one); the loader runs every check it
runs today (pixel count, memory headroom) before its heavy work.  Results and errors come
back in input order; an error is delivered when its image's turn comes, exactly as a
sequential loop would meet it.

When the consumer stops early (an exception, ``break``, Ctrl-C), the generator's
``finally`` cancels nothing running -- a decode cannot be interrupted -- but drops the one
pending result and shuts the executor down without waiting; the worker finishes its one
image and exits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["read_ahead", "read_ahead_pays"]


def read_ahead_pays(threads: int) -> bool:
    """Whether to decode ahead for an engine running ``threads`` threads: always, the one place
    to change that policy.  Measured (docs/performance.md "Read-ahead", 2-core Zen 4): at 1
    thread it gains 1.07-1.42x on ``detect(list)`` and 1.08-1.56x on ``mdfi detect``; at 2
    threads (the forward already uses both cores) ``detect(list)`` is neutral (0.97-1.15x,
    within the run-to-run noise) and ``mdfi detect`` writing annotated images gains 1.07-1.26x."""
    del threads
    return True


def _call(load: Callable[[T], R], item: T) -> Tuple[bool, object]:
    """Run ``load(item)``; return (True, result) or (False, exception) -- never raise, so that
    the error travels to the consumer and is raised there, in order."""
    try:
        return True, load(item)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
        return False, exc


def read_ahead(items: Iterable[T], load: Callable[[T], R], *, enabled: bool = True) \
        -> Iterator[Tuple[T, bool, object]]:
    """Yield ``(item, ok, value)`` for every item in order: ``value`` is ``load(item)`` when
    ``ok``, else the exception it raised.  With ``enabled``, ``load`` of the next item runs on
    one background thread while the consumer works on this one (at most one ahead); without,
    everything runs in the caller's thread, one after the other."""
    items = list(items)
    if not enabled or len(items) < 2:
        for item in items:
            ok, value = _call(load, item)
            yield item, ok, value
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdfi-read-ahead")
    pending = None
    try:
        pending = pool.submit(_call, load, items[0])
        for i, item in enumerate(items):
            ok, value = pending.result()
            pending = pool.submit(_call, load, items[i + 1]) if i + 1 < len(items) else None
            yield item, ok, value
            del value
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
