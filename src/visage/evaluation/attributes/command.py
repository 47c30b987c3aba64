"""``visage eval attributes``: EyesOpen, MouthOpen and Smile thresholds fitted on half the hand labels, checked on the rest.

Writes ``<docs>/attributes/attributes.json`` and replaces the block between
``<!-- attributes:start -->`` and ``<!-- attributes:end -->`` in ``<docs>/engine.md``.
Importing this module loads no model and no data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from visage.evaluation.cli import DOCS


@click.command("attributes")
@click.option("--docs", "docs", type=click.Path(file_okay=False, path_type=Path), default=DOCS, show_default=True)
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Evaluation data folder (default: VISAGE_EVAL_DATA or ../shared/eval).",
)
def attributes_command(docs: Path, data: Path | None) -> None:
    """Fit the landmark-ratio thresholds on half the hand labels and check them on the other half."""
    from visage.engine import Engine
    from visage.evaluation.attributes.fit import attribute_markdown, attribute_report
    from visage.evaluation.data import eval_data_dir

    report = attribute_report(Engine(), data or eval_data_dir())
    out = docs / "attributes" / "attributes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    click.echo(str(out))
    table = attribute_markdown(report)
    engine_doc = docs / "engine.md"
    block = f"<!-- attributes:start -->\n{table}\n<!-- attributes:end -->"
    pattern = re.compile(r"<!-- attributes:start -->.*?<!-- attributes:end -->", re.S)
    text = engine_doc.read_text()
    if not pattern.search(text):
        raise click.ClickException(f"{engine_doc} has no <!-- attributes:start --> block to replace")
    engine_doc.write_text(pattern.sub(lambda _: block, text))
    click.echo(table)
