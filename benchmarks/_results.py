"""Shared by the benchmarks: timing summaries and writing results where the docs read them.

Each benchmark writes ``benchmarks/results/<name>.json`` (machine-readable) and
``<name>.md`` (a table), and replaces the block between
``<!-- <name>:start -->`` and ``<!-- <name>:end -->`` in docs/performance.md, so
no figure in the docs is typed by hand. Every JSON records the machine, the commit the
code was at (with ``+changes`` when the work tree differed from it) and the command
that measured it (tests/test_benchmark_results.py checks each file has them).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        # On a shared machine the wall clock also counts waiting for a core: this says how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def commit() -> str:
    """The commit the code is at, with ``+changes`` if the work tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    return head + ("+changes" if changed else "")


def command() -> str:
    """The command line that ran this benchmark, as it would be typed from the repository's root."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join(["python", str(shown), *sys.argv[1:]])


def write_results(name: str, data: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    provenance = {"machine": machine(), "commit": commit(), "command": data.pop("command", None) or command()}
    (RESULTS / f"{name}.json").write_text(json.dumps({**provenance, **data}, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown + "\n")
    if DOC.exists():
        replace_block(DOC, name, markdown)
    print(f"results: {RESULTS / (name + '.json')}")


def replace_block(doc: Path, name: str, markdown: str) -> None:
    """Puts ``markdown`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``doc``
    (appended with the markers if they are not there)."""
    text = doc.read_text()
    block = f"<!-- {name}:start -->\n{markdown}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    doc.write_text(pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block + "\n")
