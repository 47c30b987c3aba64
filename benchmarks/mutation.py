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

    python benchmarks/mutation.py [--max-children 2]     # hours on 2 cores
    python benchmarks/mutation.py --report               # the last run's results again
    python benchmarks/mutation.py --recheck [MODULE...]  # the published survivors, and MODULEs whole, again
    python benchmarks/mutation.py --recheck [MODULE...] --report   # the last recheck's results again
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import RESULTS, ROOT, command, commit, machine, replace_block

MUTMUT = Path(sys.executable).with_name("mutmut")
DOC = ROOT / "docs" / "testing.md"
#: The commit a recheck ran at (mutants/ is mutmut's, and outlives commits).
RUN_COMMIT = ROOT / "mutants" / "run-commit"

#: Mutants no test can catch, because they do not change what the code does, and why.
EQUIVALENT = {
    "visage.engine.similarity.xǁSimilarityMapǁraw_threshold__mutmut_14": "side='left' is np.searchsorted's default",
    "visage.engine.similarity.xǁSimilarityMapǁraw_threshold__mutmut_24": (
        "float(None) in a branch no map reaches: i is the first knot at or above the Similarity asked, so the knot "
        "before it is below and s1 > s0 (the branch is removed since)"
    ),
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
    "visage.api.sigv4.x__canonical_uri__mutmut_21": "safe='/' instead of '/~': quote() never encodes '~' (Python 3.7 and later) and '/' is its default",
    "visage.api.sigv4.x__canonical_uri__mutmut_27": "adds 'X' to quote()'s safe characters: letters are never encoded",
    "visage.api.sigv4.x__uri_encode__mutmut_5": "adds 'X' to quote()'s safe characters: letters and '-_.~' are never encoded",
    "visage.api.sigv4.x_verify_request__mutmut_55": "joins repeated X-Amz-Content-Sha256 values with another separator: with one value none is used; with two, either join holds a ',' and cannot equal a hex digest, so both refuse alike",
    "visage.service.xǁRekognitionServiceǁ_faces_or_fail__mutmut_17": "the separator between missing FaceIds: every caller passes one FaceId",
    "visage.service.xǁRekognitionServiceǁassociate_faces__mutmut_60": "reads the user's faces with a limit of 102 instead of 101: a user never holds more than 100 (the 101st is refused)",
    "visage.service.xǁRekognitionServiceǁsearch_users_by_image__mutmut_13": "QualityFilter defaults to None: a level without a bar is NONE, the default",
    "visage.service.xǁRekognitionServiceǁsearch_users_by_image__mutmut_15": "request.get('QualityFilter') without a default: None, treated as NONE, the default",
    "visage.service.xǁRekognitionServiceǁsearch_users_by_image__mutmut_19": "QualityFilter defaults to 'XXNONEXX': no such bar, so NONE, the default",
    "visage.service.xǁRekognitionServiceǁsearch_users_by_image__mutmut_20": "QualityFilter defaults to 'none': no such bar, so NONE, the default",
    "visage.service.xǁRekognitionServiceǁ_search_users__mutmut_27": "'>' to '>=' on a user's best score: on a tie an equal score replaces an equal score",
    "visage.service.xǁRekognitionServiceǁ_search_users__mutmut_34": "float('-INF') is float('-inf')",
    "visage.service.xǁRekognitionServiceǁdelete_faces__mutmut_46": "calls the store's delete_faces with no FaceIds too: it deletes nothing and returns []",
    "visage.service.xǁRekognitionServiceǁface_page__mutmut_29": "asks the store for limit + 2 rows instead of limit + 1: only page[:limit] and len(page) > limit are used",
    "visage.service.xǁRekognitionServiceǁlist_collections__mutmut_22": "asks the store for limit + 2 collections instead of limit + 1: only page[:limit] and len(page) > limit are used",
    "visage.service.xǁRekognitionServiceǁlist_faces__mutmut_33": "asks the store for limit + 2 faces instead of limit + 1: only page[:limit] and len(page) > limit are used",
}

#: Mutants that change an answer only for inputs where the changed answer is right too, and why no test pins them.
HARMLESS = {
    name: (
        "harmless, not equivalent: without validate=True, b64decode drops stray bytes, so the answer differs only "
        "for base64 of a JPEG or PNG with 4, 8 or 12 stray bytes among its first 16 (indented by 4 spaces, say), "
        "where the hint it gives, that the bytes are base64 text of an image, is true as well"
    )
    for name in (
        "visage.service.x__is_base64_of_an_image__mutmut_5",
        "visage.service.x__is_base64_of_an_image__mutmut_7",
    )
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


def report(
    found: dict[str, str],
    run_command: str,
    counts: dict[str, Counter[str]] | None = None,
    moved: dict[str, dict[str, str]] | None = None,
    base: dict[str, Any] | None = None,
    run_commit: str | None = None,
) -> None:
    """Writes the score per module and every survivor. ``found`` holds every mutant's status, or,
    for a recheck, the rechecked ones, with ``counts`` the per-module counts to publish, ``moved``
    the survivors whose function changed since ``base`` (the full run rechecked: its commit, counts and
    survivors, kept in the results so a later recheck starts from it too), and
    ``run_commit`` the commit the recheck ran at."""
    run_commit = run_commit or commit()
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    if counts is not None:
        per_module.update(counts)
    else:
        for name, status in found.items():
            per_module[module_of(name)][status] += 1
    moved = moved or {}
    survivors = sorted(name for name, status in found.items() if status == "survived")
    rows, totals = [], Counter[str]()
    for module in sorted(per_module):
        c = per_module[module]
        totals.update(c)
        rows.append((module, c))
    rows.append(("all", totals))

    def score(c: Counter[str]) -> str:
        caught = c["killed"] + c["timeout"] + c["segfault"]  # a crash fails the test run too
        covered = caught + c["survived"] + c["suspicious"]
        return f"{100 * caught / covered:.1f} %" if covered else "-"

    lines = [
        "| module | mutants | killed | timed out or crashed | survived | no covering fast test | not checked "
        "| score (caught / checked and covered) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for module, c in rows:
        shown = f"`{module}`" if module != "all" else "**all**"
        lines.append(
            f"| {shown} | {sum(c.values()):,} | {c['killed']:,} | {c['timeout'] + c['segfault']:,} | {c['survived']:,} "
            f"| {c['no tests']:,} | {c['not checked']:,} | {score(c)} |"
        )
    equivalent = [s for s in survivors if s in EQUIVALENT]
    harmless = [s for s in survivors if s in HARMLESS]
    uncaught = [s for s in survivors if s not in EQUIVALENT and s not in HARMLESS]
    checked = sum(c for status, c in totals.items() if status != "not checked")
    recheck = (
        f"The run that checked them was published at commit {base['commit'][:12]}; every one of its survivors "
        f"was run again at commit {run_commit[:12]} against that commit's tests ({len(moved)} could not be: their function "
        "has changed since, so mutmut's numbering no longer names the same mutant). "
        if base
        else ""
    )
    lines += [
        "",
        recheck
        + f"{checked:,} of {sum(totals.values()):,} mutants checked"
        + (
            f" (mutmut tries the quickest to test first; the {totals['not checked']:,} others, "
            "each covered by many tests, were not reached in this run)"
            if totals["not checked"]
            else ""
        )
        + f". {len(survivors)} survived: {len(equivalent)} equivalent, {len(harmless)} harmless (a different answer "
        f"only where it is right too), {len(uncaught)} not caught.",
        "",
    ]
    survivor_rows = []
    if survivors:
        lines += ["| mutant | function | changes | why it survives |", "|---|---|---|---|"]
        for name in survivors:
            before, after = (moved[name]["before"], moved[name]["after"]) if name in moved else changed_lines(name)
            reason = (
                EQUIVALENT.get(name)
                or HARMLESS.get(name)
                or ("not run again: its function has changed since" if name in moved else None)
                or "**not caught**: no fast test fails on it"
            )
            survivor_rows.append({"mutant": name, "before": before, "after": after, "reason": reason})
            change = f"`{before}` → `{after}`".replace("|", "\\|")
            lines.append(f"| {name.rsplit('__mutmut_', 1)[1]} | `{function_of(name)}` | {change} | {reason} |")
    lines += [
        "",
        f"Measured at commit {run_commit[:12]} with `{run_command}`; the fast tests are pyproject.toml's "
        "`pytest_add_cli_args_test_selection`.",
    ]
    markdown = "\n".join(lines)
    data = {
        "machine": machine(),
        "commit": run_commit,
        "command": command(),
        "mutmut_command": run_command,
        "per_module": {module: dict(c) for module, c in rows},
        "survivors": survivor_rows,
        **({"recheck_of": base} if base else {}),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mutation.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "mutation.md").write_text(markdown + "\n")
    replace_block(DOC, "mutation", markdown)
    print(markdown)


def recheck(max_children: int, modules: list[str], rerun: bool = True) -> None:
    """Runs again, on today's code and tests, every survivor of the published run (a mutant is the
    same one when mutmut's diff of it is the same line, before and after) and every mutant of
    ``modules`` (dotted, e.g. ``visage.engine.quality``), then publishes the published run's
    counts with those answers in: a survivor now killed counts as killed; ``modules`` count as
    this run found them."""
    # the full run a recheck starts from: the published one, or, if that is a recheck, the run it started from
    published = json.loads((RESULTS / "mutation.json").read_text())
    published = published.get("recheck_of", published)
    previous = {s["mutant"]: s for s in published["survivors"]}
    # a survivor of a module run whole is run with it; the others by name
    names = [n for n in previous if not any(n.startswith(m + ".") for m in modules)]
    patterns = [f"{m}.*" for m in modules]
    run_command = f"mutmut run --max-children {max_children} <the published run's survivors> " + " ".join(patterns)
    if rerun:
        subprocess.run(["rm", "-rf", str(ROOT / "mutants")], check=True)
        command = [str(MUTMUT), "run", "--max-children", str(max_children), *names, *patterns]
        subprocess.run(command, cwd=ROOT, check=True)
        RUN_COMMIT.write_text(commit() + "\n")
    now = statuses()
    found: dict[str, str] = {}
    for name, status in now.items():
        if any(name.startswith(m + ".") for m in modules):
            found[name] = status
    moved = {}
    for name, old in previous.items():
        if name in found:
            continue
        if name not in now or changed_lines(name) != (old["before"], old["after"]):
            moved[name] = old  # the function changed since: its numbering is not the published run's
            found[name] = "survived"
        else:
            found[name] = now[name]
    counts = {m: Counter(c) for m, c in published["per_module"].items() if m != "all"}
    for name in previous:
        if not any(name.startswith(m + ".") for m in modules):
            counts[module_of(name)]["survived"] -= 1
            counts[module_of(name)][found[name]] += 1
    for module in modules:
        path = "src/" + module.replace(".", "/") + ".py"
        counts[path] = Counter(status for name, status in found.items() if module_of(name) == path)
    base = {key: published[key] for key in ("commit", "command", "mutmut_command", "per_module", "survivors")}
    report(found, run_command, counts, moved, base, RUN_COMMIT.read_text().strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once")
    parser.add_argument(
        "--report", action="store_true", help="only report the last run (mutants/); with --recheck, the last recheck"
    )
    parser.add_argument(
        "--recheck",
        nargs="*",
        metavar="MODULE",
        help="run again the published run's survivors, and every mutant of each MODULE (dotted)",
    )
    args = parser.parse_args()
    if args.recheck is not None:
        recheck(args.max_children, args.recheck, rerun=not args.report)
        return
    run_command = f"mutmut run --max-children {args.max_children}"
    if not args.report:
        subprocess.run(["rm", "-rf", str(ROOT / "mutants")], check=True)
        subprocess.run([str(MUTMUT), "run", "--max-children", str(args.max_children)], cwd=ROOT, check=True)
    report(statuses(), run_command)


if __name__ == "__main__":
    main()
