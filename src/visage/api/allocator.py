"""The server's memory allocator: jemalloc where it is installed, else glibc's malloc.

Under sustained load the SQLite server's memory creeps up though nothing it allocates is still
held; in the soak of benchmarks/soak.py it crept up at 0.61 times glibc's rate on jemalloc
(docs/performance.md). So ``visage
serve`` runs on jemalloc (Debian's ``libjemalloc2``, which ``make install`` adds) unless
``allocator`` is ``"system"`` (docs/operations.md, "Memory: the allocator").

A process's allocator is fixed when it starts, so :func:`preload` re-executes the same command
line with jemalloc in ``LD_PRELOAD``, once: :data:`REEXECUTED` marks the new process, so that a
loader that refuses the library cannot start a loop. Worker processes inherit the variable.
:func:`in_use` reads the process's own memory map, so the banner says what is loaded, not what
was asked for.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

from visage.config import Settings

#: Set in the environment of the process :func:`preload` starts.
REEXECUTED = "VISAGE_ALLOCATOR_PRELOADED"


def jemalloc_library() -> str | None:
    """The name the dynamic loader finds jemalloc by (``libjemalloc.so.2``), or None when it is not installed."""
    return ctypes.util.find_library("jemalloc")


def in_use(maps: Path = Path("/proc/self/maps")) -> Path | None:
    """The jemalloc library mapped into this process, or None (glibc's malloc, or no /proc to tell)."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return None
    return next((Path(line.split()[-1]) for line in lines if "libjemalloc" in line), None)


def preload(settings: Settings) -> None:
    """Re-execute this process's command with jemalloc preloaded, when ``settings`` ask for it,
    it is installed, and it is not in use yet; otherwise return. Call it before anything is
    opened or printed: the process is replaced."""
    if settings.allocator != "jemalloc" or not sys.platform.startswith("linux"):  # LD_PRELOAD is Linux's loader's
        return
    library = jemalloc_library()
    if library is None or REEXECUTED in os.environ or in_use():
        return
    preloaded = " ".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, "LD_PRELOAD": preloaded, REEXECUTED: "1"})


def describe(settings: Settings) -> str:
    """The banner's line: which allocator this process runs on, and why."""
    library = in_use()
    if library is not None:
        return f"jemalloc ({library})"
    if settings.allocator == "system":
        return "glibc's malloc (--allocator system, or VISAGE_ALLOCATOR=system)"
    if jemalloc_library() is None:
        return "glibc's malloc: jemalloc is not installed (apt-get install libjemalloc2; docs/operations.md)"
    return "glibc's malloc: the loader did not preload jemalloc (LD_PRELOAD)"
