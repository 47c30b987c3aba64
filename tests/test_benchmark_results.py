"""Every benchmark results file says what was measured: the machine, the commit and the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_a_results_file_records_its_commit_and_command(path: Path) -> None:
    results = json.loads(path.read_text())
    assert re.match(r"[0-9a-f]{40}\b", results.get("commit", "")), f"{path.name}: no commit"
    assert re.fullmatch(r"python benchmarks/\w+\.py( \S+)*", results.get("command", "")), f"{path.name}: no command"
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["measured"]


def test_the_results_writer_records_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    sys.path.insert(0, str(RESULTS.parent))
    try:
        import _results
    finally:
        sys.path.remove(str(RESULTS.parent))
    monkeypatch.setattr(_results, "RESULTS", tmp_path)
    monkeypatch.setattr(_results, "DOC", tmp_path / "missing.md")
    monkeypatch.setattr(sys, "argv", [str(RESULTS.parent / "example.py"), "--size", "10"])
    _results.write_results("example", {"value": 1}, "| table |")
    written = json.loads((tmp_path / "example.json").read_text())
    assert written["command"] == "python benchmarks/example.py --size 10"
    assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?", written["commit"]) and written["value"] == 1
