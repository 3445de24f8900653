"""Hand freed heap memory back to the OS now and then (glibc's `malloc_trim`).

A start takes in every object at once: decoded list pages, kopf's per-event work and the
engines' first plans allocate much more than is kept, and glibc keeps freed pages
mapped, so RSS stays at the intake's high-water mark. A trim took 32 µs on an idle
interpreter (not measured on a large heap; it runs on a thread, off the event loop);
where the C library is not glibc it is skipped.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 60.0


def _malloc_trim() -> Callable[[], None] | None:
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


async def trim_forever(interval: float = TRIM_INTERVAL_SECONDS) -> None:
    trim = _malloc_trim()
    if trim is None:
        logger.info("no malloc_trim in this C library: freed heap memory stays mapped")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
