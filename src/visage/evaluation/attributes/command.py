"""``visage eval attributes``: EyesOpen, MouthOpen and Smile thresholds fitted on half the hand labels, checked on the rest.

Writes ``<out>/attributes/attributes.json`` and, where ``<out>/engine.md`` exists (``--out docs``
publishes), replaces its block between ``<!-- attributes:start -->`` and ``<!-- attributes:end -->``.
Importing this module loads no model and no data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from visage.evaluation.cli import new_output_folder, output_option


@click.command("attributes")
@output_option("attributes/attributes.json and, if it holds one, engine.md's table", "--out docs")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Evaluation data folder (default: VISAGE_EVAL_DATA or ../shared/eval).",
)
def attributes_command(out: Path | None, data: Path | None) -> None:
    """Fit the landmark-ratio thresholds on half the hand labels and check them on the other half."""
    from visage.engine import Engine
    from visage.evaluation.attributes.fit import attribute_markdown, attribute_report
    from visage.evaluation.data import eval_data_dir

    folder = out or new_output_folder("attributes")
    report = attribute_report(Engine(), data or eval_data_dir())
    written = folder / "attributes" / "attributes.json"
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(json.dumps(report, indent=1) + "\n")
    click.echo(str(written))
    table = attribute_markdown(report)
    click.echo(table)
    engine_doc = folder / "engine.md"
    if not engine_doc.exists():
        return
    block = f"<!-- attributes:start -->\n{table}\n<!-- attributes:end -->"
    pattern = re.compile(r"<!-- attributes:start -->.*?<!-- attributes:end -->", re.S)
    text = engine_doc.read_text()
    if not pattern.search(text):
        raise click.ClickException(f"{engine_doc} has no <!-- attributes:start --> block to replace")
    engine_doc.write_text(pattern.sub(lambda _: block, text))
