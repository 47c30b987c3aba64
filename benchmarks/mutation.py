"""Mutation score of the fast tests: how many small bugs put into the code they catch.

mutmut (configured in pyproject.toml's ``[tool.mutmut]``) changes one thing at a time in
the modules whose every branch is behaviour (service.py, engine/quality.py,
api/protocol.py, api/sigv4.py, engine/similarity.py: an operator, a constant, a string,
an argument) and runs the in-process tests that cover the changed function against each
mutant. A mutant no test fails on has *survived*. This script runs mutmut (or, with
``--report``, reads the results of the last run in ``mutants/``), then writes the score per
module and every survivor, with why it is harmless where it is (``EQUIVALENT``), to
``benchmarks/results/mutation.*`` and to the ``mutation`` block of docs/testing.md.

The score counts killed (a test failed) and timed-out mutants over all mutants that a
selected test covers; "no tests" are mutants of functions that only the slower tests,
through a running server, reach: they are counted apart, not as caught.

    python benchmarks/mutation.py [--max-children 2]     # about an hour on 2 cores
    python benchmarks/mutation.py --report               # the last run's results again
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, ROOT, command, commit, machine, replace_block

MUTMUT = Path(sys.executable).with_name("mutmut")
DOC = ROOT / "docs" / "testing.md"

#: Mutants no test can catch, because they do not change what the code does, and why.
EQUIVALENT = {
    "visage.service.xǁRekognitionServiceǁlist_users__mutmut_29": (
        "asks the store for limit + 2 users instead of limit + 1: only page[:limit] and len(page) > limit are used"
    ),
    "visage.api.protocol.xǁServiceModelǁparse_target__mutmut_5": (
        "splits X-Amz-Target at the last dot instead of the first: neither the prefix nor any operation has a dot"
    ),
    "visage.api.protocol.xǁServiceModelǁencode_response__mutmut_13": (
        "starts the output path at None instead of '': output shapes are structures, where both give the same names"
    ),
    "visage.api.protocol.x__encode_scalar__mutmut_39": "decodes base64 with codec 'ASCII' instead of 'ascii': the same",
    "visage.service.xǁRekognitionServiceǁcompare_faces__mutmut_27": (
        "drops the quality_filter argument: the engine's own default is the same NONE"
    ),
    "visage.service.xǁRekognitionServiceǁcompare_faces__mutmut_29": (
        "QualityFilter defaults to None: a level without a bar (QUALITY_BARS.get) is NONE, the default"
    ),
    "visage.service.xǁRekognitionServiceǁcompare_faces__mutmut_31": (
        "request.get('QualityFilter') without a default: None, treated as NONE, the default"
    ),
    "visage.service.xǁRekognitionServiceǁcompare_faces__mutmut_35": (
        "QualityFilter defaults to 'XXNONEXX': no such bar, so NONE, the default"
    ),
    "visage.service.xǁRekognitionServiceǁcompare_faces__mutmut_36": (
        "QualityFilter defaults to 'none': no such bar, so NONE, the default"
    ),
    "visage.api.protocol.xǁServiceModelǁ_io_shape__mutmut_13": (
        "an empty input or output shape without 'members' reads as empty: _member_shapes defaults to {}"
    ),
    "visage.api.protocol.xǁServiceModelǁ_io_shape__mutmut_14": "the same as mutant 13 of _io_shape",
    "visage.api.protocol.xǁServiceModelǁcheck_request__mutmut_12": (
        "the top-level path None instead of '': _join treats both as empty, and the top level is always an object"
    ),
    "visage.api.protocol.xǁServiceModelǁdecode_request__mutmut_14": (
        "the top-level path None instead of '': _parse_json has already refused bodies that are not objects"
    ),
}

#: Survivors of the last run caught by tests added after it (their commit says which): function -> mutant
#: numbers and the tests. Each was checked by applying the mutant by hand for at least one per function;
#: the next `make mutate` counts them as killed.
CAUGHT_SINCE = {
    "RekognitionService.search_users": (
        {*range(11, 15), *range(18, 22), 24, 26, *range(39, 43), *range(50, 77), 82, 87, 93, 94, 100, 101}
        | set(range(105, 112)),
        "test_service.py::test_search_users_*",
    ),
    "RekognitionService._user_match": ({15, 16, 17}, "test_service.py::test_search_users_*"),
    "_decode_scalar": (
        {74, 75, 95, *range(129, 152)},
        "test_protocol.py: the MEASURE_MODEL decoding tables",
    ),
    "ServiceModel._decode": (set(range(90, 96)), "test_protocol.py: TagResource with a list for Tags"),
    "ServiceModel._io_shape": (
        {6, 9, 10, 11, 12},
        "test_protocol.py::test_an_operation_without_input_or_output_takes_and_gives_an_empty_object",
    ),
    "ServiceModel._member_shapes": ({4, 6}, "test_protocol.py: a structure without members decodes"),
    "ServiceModel.check_request": ({4}, "test_protocol.py: check_request of an unknown operation"),
    "RekognitionService.compare_faces": (
        {23, 28, 30, 32, 33, 34},
        "test_service.py::test_compare_faces_holds_faces_to_the_quality_filter_only_when_asked",
    ),
    "RekognitionService.search_faces": (
        {17, 19, 28, 33, 34, 38, 39, 40, 46, 47, 53, 54, 58, 59},
        "test_service.py::test_search_faces_finds_the_other_faces_like_the_stored_one",
    ),
    "RekognitionService.review_match": (
        {11, 13, *range(16, 20), 22, 24, 25, *range(28, 31), 47, 58, 59, *range(68, 75)},
        "test_reviews.py::test_a_decision_is_checked_stored_and_audited",
    ),
}

_LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+?)\s*$")


def mutmut(*args: str) -> str:
    return subprocess.run([str(MUTMUT), *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def statuses() -> dict[str, str]:
    """Every mutant of the last run, by name, with mutmut's status for it."""
    found = {}
    for line in mutmut("results", "--all", "true").splitlines():
        match = _LINE.match(line)
        if match and "__mutmut_" in match["name"]:
            found[match["name"]] = match["status"]
    if not found:
        raise SystemExit("mutmut has no results: run `python benchmarks/mutation.py` (or `make mutate`) first.")
    return found


def changed_lines(name: str) -> tuple[str, str]:
    """The line a mutant changes, before and after (from mutmut's own diff, read in this process:
    ``mutmut show`` takes seconds a mutant)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    os.chdir(ROOT)
    diff = get_diff_for_mutant(name, path=module_of(name)).splitlines()
    before = next((d[1:].strip() for d in diff if d.startswith("-") and not d.startswith("---")), "")
    after = next((d[1:].strip() for d in diff if d.startswith("+") and not d.startswith("+++")), "")
    return before, after


def module_of(name: str) -> str:
    """``visage.api.protocol.xǁServiceModelǁ_encode__mutmut_3`` -> ``src/visage/api/protocol.py``."""
    dotted = name.split(".x", 1)[0]
    return "src/" + dotted.replace(".", "/") + ".py"


def function_of(name: str) -> str:
    tail = name.split(".x", 1)[1].split("__mutmut_")[0]
    return tail.strip("ǁ").replace("ǁ", ".") if tail.startswith("ǁ") else tail[1:]


def caught_since(name: str) -> str | None:
    """The tests added since the run that catch this surviving mutant, if any."""
    numbers, tests = CAUGHT_SINCE.get(function_of(name), (set(), ""))
    return f"caught since: {tests}" if int(name.rsplit("__mutmut_", 1)[1]) in numbers else None


def report(found: dict[str, str], run_command: str) -> None:
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in found.items():
        per_module[module_of(name)][status] += 1
    survivors = sorted(name for name, status in found.items() if status == "survived")
    rows, totals = [], Counter[str]()
    for module in sorted(per_module):
        c = per_module[module]
        totals.update(c)
        rows.append((module, c))
    rows.append(("all", totals))

    def score(c: Counter[str]) -> str:
        caught = c["killed"] + c["timeout"]
        covered = caught + c["survived"] + c["suspicious"]
        return f"{100 * caught / covered:.1f} %" if covered else "-"

    lines = [
        "| module | mutants | killed | timed out | survived | no covering fast test | not checked "
        "| score (caught / checked and covered) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for module, c in rows:
        shown = f"`{module}`" if module != "all" else "**all**"
        lines.append(
            f"| {shown} | {sum(c.values()):,} | {c['killed']:,} | {c['timeout']:,} | {c['survived']:,} "
            f"| {c['no tests']:,} | {c['not checked']:,} | {score(c)} |"
        )
    equivalent = [s for s in survivors if s in EQUIVALENT]
    since = {s: caught_since(s) for s in survivors if s not in EQUIVALENT and caught_since(s)}
    uncaught = [s for s in survivors if s not in EQUIVALENT and s not in since]
    checked = sum(c for status, c in totals.items() if status != "not checked")
    lines += [
        "",
        f"{checked:,} of {sum(totals.values()):,} mutants checked"
        + (
            f" (mutmut tries the quickest to test first; the {totals['not checked']:,} others, "
            "each covered by many tests, were not reached in this run)"
            if totals["not checked"]
            else ""
        )
        + f". {len(survivors)} survived: {len(equivalent)} equivalent, {len(since)} caught by tests added since, "
        f"{len(uncaught)} not caught.",
        "",
    ]
    survivor_rows = []
    if survivors:
        lines += ["| mutant | function | changes | why it survives |", "|---|---|---|---|"]
        for name in survivors:
            before, after = changed_lines(name)
            reason = EQUIVALENT.get(name) or since.get(name) or "**not caught**: no fast test fails on it"
            survivor_rows.append({"mutant": name, "before": before, "after": after, "reason": reason})
            change = f"`{before}` → `{after}`".replace("|", "\\|")
            lines.append(f"| {name.rsplit('__mutmut_', 1)[1]} | `{function_of(name)}` | {change} | {reason} |")
    lines += [
        "",
        f"Measured at commit {commit()[:12]} with `{run_command}`; the fast tests are pyproject.toml's "
        "`pytest_add_cli_args_test_selection`.",
    ]
    markdown = "\n".join(lines)
    data = {
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "mutmut_command": run_command,
        "per_module": {module: dict(c) for module, c in rows},
        "survivors": survivor_rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mutation.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "mutation.md").write_text(markdown + "\n")
    replace_block(DOC, "mutation", markdown)
    print(markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--report", action="store_true", help="only report the last run (mutants/)")
    args = parser.parse_args()
    run_command = f"mutmut run --max-children {args.max_children}"
    if not args.report:
        subprocess.run(["rm", "-rf", str(ROOT / "mutants")], check=True)
        subprocess.run([str(MUTMUT), "run", "--max-children", str(args.max_children)], cwd=ROOT, check=True)
    report(statuses(), run_command)


if __name__ == "__main__":
    main()
