"""Giving freed memory back to the operating system (glibc's ``malloc_trim``).

CPython frees a bytes object at once, but glibc keeps the freed pages of its
heap for reuse: after a flood of unfinished 48 MiB messages was dropped, the
node's RSS stayed ~760 MiB above where it started (measured, issue 10). Once
enough unfinished-message memory was released (:mod:`mesh.net.inbound`), the
adapter calls :func:`trim_heap`: ``malloc_trim(0)`` returns free pages from the
top of every arena and (glibc >= 2.8) the whole free pages inside them. It
walks the heap, so it is rate-limited by its caller. On other C libraries it is
a no-op and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    return trim


def trim_heap() -> bool:
    """Return free heap pages to the OS; True when glibc's ``malloc_trim`` ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    released = trim(0)
    logger.debug("malloc_trim(0): %s", "released memory" if released else "nothing to release")
    return True
