"""Handing the memory a server has freed back to the operating system (glibc's ``malloc_trim``).

glibc's malloc keeps what a program frees in its heaps, one per thread that allocates (up to
eight per core), and returns it to the system only when the free space sits at a heap's top.
A server whose threads decode images and run the models on buffers of ever-changing sizes
leaves its heaps with free holes that nothing returns, and its resident memory creeps up
although what it holds does not (``benchmarks/soak.py`` measures both ways, with and without
trimming: docs/performance.md). ``malloc_trim(0)`` gives the free pages of every heap back.

:func:`trim_heap_every` runs in the app's lifespan, in each worker process: every
``Settings.heap_trim_seconds`` it calls ``malloc_trim(0)`` on a thread of its own, so the
event loop never waits on the heap locks it takes. Elsewhere than glibc (musl, macOS) there is
no such call and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_MALLOC_TRIM = _find_malloc_trim()


def trim_heap() -> bool:
    """Give the free pages of every malloc heap back to the system; whether any was given (False where
    the C library cannot)."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


async def trim_heap_every(seconds: float) -> None:
    """:func:`trim_heap` every ``seconds`` (on a thread) until cancelled; returns at once if ``seconds`` <= 0."""
    if seconds <= 0 or _MALLOC_TRIM is None:
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(seconds)
        await loop.run_in_executor(None, trim_heap)
