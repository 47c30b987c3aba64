"""``visage eval attributes``: EyesOpen, MouthOpen and Smile thresholds, and EyeDirection's map,
fitted on half the hand labels and checked on the rest.

Writes ``<out>/attributes/attributes.json`` and ``<out>/attributes/eye_direction.json`` and, where
``<out>/engine.md`` exists (``--out docs`` publishes), replaces its blocks between
``<!-- attributes:start -->`` and ``<!-- attributes:end -->``, and between
``<!-- eye-direction:start -->`` and ``<!-- eye-direction:end -->``.
Importing this module loads no model and no data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from visage.evaluation.cli import new_output_folder, output_option


@click.command("attributes")
@output_option("attributes/*.json and, if it holds one, engine.md's tables", "--out docs")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Evaluation data folder (default: VISAGE_EVAL_DATA or ../shared/eval).",
)
def attributes_command(out: Path | None, data: Path | None) -> None:
    """Fit the landmark-ratio thresholds and EyeDirection's map on half the hand labels and check them on the other half."""
    from visage.engine import Engine
    from visage.evaluation.attributes.fit import attribute_markdown, attribute_report
    from visage.evaluation.attributes.gaze import gaze_markdown, gaze_report
    from visage.evaluation.data import eval_data_dir

    folder = out or new_output_folder("attributes")
    engine, source = Engine(), data or eval_data_dir()
    for name, marker, report, markdown in (
        ("attributes", "attributes", attribute_report(engine, source), attribute_markdown),
        ("eye_direction", "eye-direction", gaze_report(engine, source), gaze_markdown),
    ):
        written = folder / "attributes" / f"{name}.json"
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(json.dumps(report, indent=1) + "\n")
        click.echo(str(written))
        table = markdown(report)
        click.echo(table)
        _replace_block(folder / "engine.md", marker, table)


def _replace_block(engine_doc: Path, marker: str, table: str) -> None:
    """Put ``table`` between the doc's ``<!-- marker:start -->`` and ``<!-- marker:end -->``, if the doc exists."""
    if not engine_doc.exists():
        return
    block = f"<!-- {marker}:start -->\n{table}\n<!-- {marker}:end -->"
    pattern = re.compile(rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->", re.S)
    text = engine_doc.read_text()
    if not pattern.search(text):
        raise click.ClickException(f"{engine_doc} has no <!-- {marker}:start --> block to replace")
    engine_doc.write_text(pattern.sub(lambda _: block, text))
