"""``visage eval``: measure the face models on labelled faces, refit the Similarity maps, write the docs.

Register with ``main.add_command(eval_group)``. Each subcommand lives with its subject
(``visage.evaluation.<subject>.command``, listed in :data:`SUBCOMMANDS`) and takes its
default docs folder from here (and its choice of face models from :mod:`visage.engine.registry`); it is imported only when
it runs or is listed, so importing this module loads no subcommand, no model and no data.

The published figures are regenerated in this order::

    visage eval fusion-weight              # w of the fusion model, on LFW pairsDevTrain
    visage eval calibrate                  # the Similarity maps of sface, dlib and fusion
    visage eval lfw --model sface --out docs/accuracy    # and dlib, fusion
    visage eval cfp --model sface --out docs/accuracy    # pose: CFP frontal-frontal and frontal-profile
    visage eval docs                       # docs/accuracy.md and its plots
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DOCS = Path("docs")


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
    """Measure error rates on labelled faces (data from VISAGE_EVAL_DATA)."""
