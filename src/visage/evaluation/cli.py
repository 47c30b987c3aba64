"""``visage eval``: measure the face models on labelled faces, refit the Similarity maps, write the docs.

Register with ``main.add_command(eval_group)``. Importing this module loads no
model and no data: every command imports what it needs when it runs.

The published figures are regenerated in this order::

    visage eval fusion-weight              # w of the fusion model, on LFW pairsDevTrain
    visage eval calibrate                  # the Similarity maps of sface, dlib and fusion
    visage eval lfw --model sface --out docs/accuracy    # and dlib, fusion
    visage eval docs                       # docs/accuracy.md and its plots
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from visage.engine.registry import MODEL_NAMES, face_model_entry

DOCS = Path("docs")


@click.group("eval")
def eval_group() -> None:
    """Measure error rates on labelled faces (data from VISAGE_EVAL_DATA)."""


@eval_group.command("lfw")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="sface", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DOCS / "accuracy", show_default=True,
              help="Folder for lfw-<model>.json and its ROC and DET plots.")
@click.option("--limit", type=click.IntRange(1, 300), default=None,
              help="Reduced run: the first N same and N different pairs of each fold (and no all-pairs part).")
@click.option("--all-pairs/--no-all-pairs", default=None,
              help="Also measure on every pair of LFW images (default: yes, unless --limit).")
@click.option("--timing/--no-timing", default=True, show_default=True, help="Time the embedding of a face.")
def lfw_command(model: str, out: Path, limit: int | None, all_pairs: bool | None, timing: bool) -> None:
    """LFW pairs.txt 10-fold accuracy, TAR at FAR 1e-3 and 1e-4, ROC and DET curves."""
    from visage.engine import Engine
    from visage.evaluation.lfw_report import run_lfw

    started = time.perf_counter()
    result = run_lfw(Engine(), model, out, limit=limit, all_pairs=limit is None if all_pairs is None else all_pairs,
                     timing=timing)
    accuracy = result["accuracy"]
    click.echo(f"{model}: LFW 10-fold accuracy {100 * accuracy['mean']:.2f} % +/- {100 * accuracy['std']:.2f} "
               f"on {result['pairs']} pairs ({result['pairs_without_face']} without a face)")
    for protocol, rows in result["tar_at_far"].items():
        for row in rows:
            click.echo(f"  TAR at FAR {row['far']:g} ({protocol}): {100 * row['tar']:.2f} %"
                       + ("" if row["resolvable"] else " (not resolvable)"))
    if "cost" in result:
        click.echo(f"  embedding: {result['cost']['embed_ms_per_face']} ms per face")
    click.echo(f"wrote {out / f'lfw-{model}.json'} and plots in {time.perf_counter() - started:.0f} s")


@eval_group.command("calibrate")
@click.option("--models", type=click.Choice(MODEL_NAMES), multiple=True, default=MODEL_NAMES, show_default=True,
              help="Repeat to fit several.")
@click.option("--seed", type=int, default=2024, show_default=True, help="Seed of the split of people into halves.")
def calibrate_command(models: tuple[str, ...], seed: int) -> None:
    """Refit the Similarity maps on every pair of LFW images (visage/data/similarity/<model>.json)."""
    from visage.engine import Engine
    from visage.evaluation.allpairs import lfw_vectors
    from visage.evaluation.calibration import calibrate

    engine = Engine()
    for model in models:
        started = time.perf_counter()
        version = face_model_entry(model).version
        fitted = calibrate(lfw_vectors(engine, model), version, seed=seed)
        path = fitted.save()
        meta = fitted.metadata
        check = meta["heldout_check"]
        click.echo(f"{model}: {meta['genuine_pairs']:,} genuine and {meta['impostor_pairs']:,} impostor pairs, "
                   f"{meta['images_without_face']} images without a face; held-out check "
                   f"{'passed' if check['passed'] else 'FAILED'} -> {path} ({time.perf_counter() - started:.0f} s)")
        for row in meta["table"]:
            click.echo(f"  Similarity {row['similarity']:>5g}: cosine {row['raw_threshold']:.4f}, "
                       f"FMR {row['observed_fmr']:.2e} ({row['false_matches']}), FNMR {row['fnmr']:.4f}")


@eval_group.command("fusion-weight")
def fusion_weight_command() -> None:
    """Choose the fusion model's sface weight on LFW pairsDevTrain (visage/data/fusion.json)."""
    from visage.engine import Engine
    from visage.evaluation.fusion_weight import fit_fusion_weight

    data = fit_fusion_weight(Engine())
    accuracy = data["dev_train_accuracy"]
    click.echo(f"w = {data['sface_weight']} ({data['version']}): pairsDevTrain 10-fold accuracy fusion "
               f"{accuracy['fusion']:.4f}, sface {accuracy['sface']:.4f}, dlib {accuracy['dlib']:.4f}")


@eval_group.command("docs")
@click.option("--docs", "docs", type=click.Path(file_okay=False, path_type=Path), default=DOCS, show_default=True)
def docs_command(docs: Path) -> None:
    """Write docs/accuracy.md and its plots from the results of `lfw` and `calibrate`."""
    from visage.evaluation.accuracy_doc import write_accuracy_doc

    click.echo(f"wrote {write_accuracy_doc(docs)}")
