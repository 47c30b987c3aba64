"""The docs a newcomer reads agree with the files they quote and with the code: the README's
generated blocks, one embedding time everywhere, a Python snippet that runs, search as it is,
and the evaluation cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from visage.config import Settings
from visage.engine.registry import MODEL_NAMES
from visage.engine.similarity import SimilarityMap
from visage.evaluation.accuracy.report import label_noise_section, users_section
from visage.evaluation.published import Sources, stale_blocks

ROOT = Path(__file__).resolve().parent.parent
SOURCES = Sources(
    results=ROOT / "docs" / "accuracy",
    benchmark=ROOT / "benchmarks" / "results" / "engine_speed.json",
    audit=ROOT / "docs" / "bias-audit" / "audit.json",
    several_photos=ROOT / "benchmarks" / "results" / "several_photos.json",
    label_cleaning=ROOT / "benchmarks" / "results" / "label_cleaning.json",
)
RERUN = "rerun `visage eval docs --out docs --pages README.md --pages docs/engine.md`"


def test_the_readme_and_engine_doc_agree_with_the_result_files() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "engine.md"):
        assert stale_blocks(page, SOURCES) == [], f"{page.name} is stale: {RERUN}"
    readme = (ROOT / "README.md").read_text()
    assert "<!-- generated: face-models -->" in readme and "<!-- generated: cost-of-99 -->" in readme
    assert "<!-- generated: embed-time -->" in (ROOT / "docs" / "engine.md").read_text()


def test_the_accuracy_doc_says_what_several_photos_per_person_measured() -> None:
    section = users_section(SOURCES)
    assert "the Similarity of its best face" in section
    assert section in (ROOT / "docs" / "accuracy.md").read_text(), f"docs/accuracy.md is stale: {RERUN}"


def test_the_accuracy_doc_says_what_the_held_out_checks_failures_come_from() -> None:
    section = label_noise_section(SOURCES, {m: SimilarityMap.load(m) for m in MODEL_NAMES})
    assert "photos per person" in section and "look-alike relatives" in section
    assert section in (ROOT / "docs" / "accuracy.md").read_text(), f"docs/accuracy.md is stale: {RERUN}"
    readme = (ROOT / "README.md").read_text()
    assert "docs/accuracy.md#what-the-failures-come-from" in readme
    data = json.loads(SOURCES.label_cleaning.read_text())  # type: ignore[union-attr]
    capped = data["checks"][data["capped_variant"]]
    said = f"at most {data['photos_per_person']} photos of each person, the same check holds on"
    assert f"{said} {sum(s['passed'] for s in capped)} of {len(capped)} splits" in readme


def test_the_readme_says_what_99_costs_next_to_the_advice_to_use_it() -> None:
    readme = (ROOT / "README.md").read_text()
    advice = readme.index("Use high\nthresholds (99)")
    cost = readme.index("What 99 costs (sface on LFW, at most 20 photos of each person): it misses ")
    assert 0 < cost - advice < 400
    assert "per person (averaged over" in readme[cost : cost + 400]


def test_one_embedding_time_in_every_doc() -> None:
    accuracy = (ROOT / "docs" / "accuracy.md").read_text()
    engine = (ROOT / "docs" / "engine.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for model in MODEL_NAMES:
        ms = f"{SOURCES.embed_ms(model):g}"
        assert re.search(rf"^\| {model} \| {model}-\d+ \| .* \| {re.escape(ms)} \|$", accuracy, re.M), model
        assert f"`{model}` {ms} ms" in engine
        assert re.search(rf"^\| `{model}` \| .* \| {re.escape(ms)} \| [\d.]+ \|$", readme, re.M), model
    for text in (accuracy, engine):  # no other figure for it survives
        assert "12.9 ms" not in text and "wall / CPU" not in text


def test_the_readmes_python_api_snippet_runs_as_written(portraits: Path, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "from visage import Engine" in b)
    for name in re.findall(r'open\("([^"]+)"', snippet):  # every file it opens, a real photo
        source = (
            "solvay_conference_1927.jpg"
            if "group" in name
            else ("person_a_1.jpg" if "2019" in name else "person_a_2.jpg")
        )
        shutil.copy(portraits / source, tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path, timeout=600, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("29 faces; 1 match at 99")


def test_the_docs_describe_search_as_the_stores_do_it() -> None:
    limit = f"{Settings.default('exact_search_limit'):,}"
    api = " ".join((ROOT / "docs" / "api.md").read_text().split())
    assert f"A collection of up to {limit} faces (`VISAGE_EXACT_SEARCH_LIMIT`) is searched exactly" in api
    assert "product-quantised index" in api and "HNSW" not in api  # both stores: PostgreSQL's HNSW went (issue 15)
    store_row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| Store |"))
    assert f"exact search up to {limit} faces" in store_row and "product-quantised" in store_row
    assert "HNSW" not in store_row  # neither store searches an HNSW graph


def test_the_evaluation_cache_is_documented_with_how_to_clear_it() -> None:
    from visage.evaluation.cache import cache_dir

    home = Path("~").expanduser()
    default = cache_dir() if "VISAGE_EVAL_CACHE" not in os.environ else None
    readme = (ROOT / "README.md").read_text()
    assert "`~/.cache/visage/eval` (or `VISAGE_EVAL_CACHE`)" in readme
    assert "`rm -rf ~/.cache/visage`" in readme
    if default is not None:
        assert default == home / ".cache" / "visage" / "eval"
