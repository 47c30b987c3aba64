"""``visage eval``: measure the face models on labelled faces, refit the Similarity maps, write the docs.

Register with ``main.add_command(eval_group)``. Each subcommand lives with its subject
(``visage.evaluation.<subject>.command``, listed in :data:`SUBCOMMANDS`) and takes its
output folder from :func:`output_option` (and its choice of face models from
:mod:`visage.engine.registry`); it is imported only when it runs or is listed, so
importing this module loads no subcommand, no model and no data.

Results go to a folder the user names, by default a new one under the current
directory: nothing that ships (``docs/``, the Similarity maps, the fusion weight) is
written unless asked for by name. The published figures are regenerated, from the
repository's root, in this order (``make figures``)::

    visage eval fusion-weight --install     # w of the fusion model, on LFW pairsDevTrain
    visage eval calibrate --install         # the Similarity maps of every face model
    visage eval lfw --model sface --out docs/accuracy    # and dlib, fusion
    visage eval cfp --model sface --out docs/accuracy    # pose: CFP frontal-frontal and frontal-profile
    python benchmarks/engine_speed.py       # each model's embedding time and memory
    visage eval docs --out docs --pages README.md --pages docs/engine.md
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click


def similarity_map_option(use: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--similarity-map FILE``: a map from ``visage eval calibrate --data DIR``, ``use``d in place of the shipped one."""
    return click.option(
        "--similarity-map",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"{use} this Similarity map (from `visage eval calibrate --data DIR`) instead of its face model's shipped "
        "one (default: VISAGE_SIMILARITY_MAP).",
    )


#: Each subcommand of ``visage eval``, and the ``module:attribute`` that defines it.
SUBCOMMANDS = {
    "attributes": "visage.evaluation.attributes.command:attributes_command",
    "calibrate": "visage.evaluation.calibration.command:calibrate_command",
    "cfp": "visage.evaluation.accuracy.command:cfp_command",
    "docs": "visage.evaluation.accuracy.command:docs_command",
    "fusion-weight": "visage.evaluation.calibration.command:fusion_weight_command",
    "gallery": "visage.evaluation.gallery.command:gallery_command",
    "lfw": "visage.evaluation.accuracy.command:lfw_command",
}


class _Subcommands(click.Group):
    """A group that imports each subcommand when it is asked for (click's recipe for lazy subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attribute = SUBCOMMANDS[name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group("eval", cls=_Subcommands)
def eval_group() -> None:
    """Measure error rates on labelled faces (data from VISAGE_EVAL_DATA).

    Each command writes to --out, by default a new folder under the current directory;
    what ships (docs/, the Similarity maps, the fusion weight) changes only when named
    (--out docs/..., --install). What the engine found in each image is cached in
    ~/.cache/visage/eval (VISAGE_EVAL_CACHE): delete it at any time to start afresh.
    """


def new_output_folder(name: str) -> Path:
    """A folder that does not exist yet under the current directory: ``visage-<name>-<date>-<time>``."""
    stem = f"visage-{name}-{datetime.now():%Y%m%d-%H%M%S}"
    folder, n = Path(stem), 1
    while folder.exists():
        n += 1
        folder = Path(f"{stem}-{n}")
    return folder


def output_option(what: str, publish: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--out DIR``: where a command writes ``what``; by default a new folder under the current
    directory (``publish`` says which folder to name to update the published figures)."""
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Folder for {what} (default: a new folder visage-<name>-<time> here; {publish} to publish).",
    )
