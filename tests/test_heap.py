"""Giving freed heap memory back to the system (visage.api.heap), on this machine's glibc."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading

import psutil
import pytest

from visage.api import heap

BLOCK = 64 * 1024  # under glibc's mmap threshold: taken from a heap, not mapped on its own
BLOCKS = 3000  # about 190 MiB


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_trimming_gives_back_what_a_thread_freed_in_the_middle_of_its_heap() -> None:
    """Blocks freed below one still held stay resident until trim_heap gives their pages back."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    readings: dict[str, float] = {}

    def allocate_free_and_trim() -> None:  # a thread of its own, so the blocks come from another heap than the main one
        blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
        for block in blocks:
            ctypes.memset(block, 1, BLOCK)  # touched, so resident
        readings["held"] = _rss_mib()
        for block in blocks[:-1]:  # the last block stays, so the free space is not at the heap's top
            libc.free(block)
        readings["freed"] = _rss_mib()
        readings["trimmed_anything"] = heap.trim_heap()
        readings["trimmed"] = _rss_mib()
        libc.free(blocks[-1])

    worker = threading.Thread(target=allocate_free_and_trim)
    worker.start()
    worker.join()
    size_mib = BLOCK * BLOCKS / 2**20
    assert readings["freed"] > readings["held"] - size_mib / 2, readings  # free() alone kept most of it
    assert readings["trimmed_anything"], readings
    assert readings["trimmed"] < readings["freed"] - size_mib / 2, readings


def test_the_trimming_task_stops_when_cancelled_and_is_off_at_zero() -> None:
    async def run() -> None:
        assert await asyncio.wait_for(heap.trim_heap_every(0), 1) is None  # off: returns at once
        task = asyncio.create_task(heap.trim_heap_every(1))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
