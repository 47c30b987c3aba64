"""``visage eval calibrate`` and ``visage eval fusion-weight``: refit on LFW what the engine ships.

Importing this module loads no model and no data: each command imports what it needs when it runs.
"""

from __future__ import annotations

import time

import click

from visage.engine.registry import MODEL_NAMES, face_model_entry


@click.command("calibrate")
@click.option(
    "--models",
    type=click.Choice(MODEL_NAMES),
    multiple=True,
    default=MODEL_NAMES,
    show_default=True,
    help="Repeat to fit several.",
)
@click.option("--seed", type=int, default=2024, show_default=True, help="Seed of the split of people into halves.")
def calibrate_command(models: tuple[str, ...], seed: int) -> None:
    """Refit the Similarity maps on every pair of LFW images (visage/data/similarity/<model>.json)."""
    from visage.engine import Engine
    from visage.evaluation.allpairs import lfw_vectors
    from visage.evaluation.calibration.similarity_map import calibrate

    engine = Engine()
    for model in models:
        started = time.perf_counter()
        version = face_model_entry(model).version
        fitted = calibrate(lfw_vectors(engine, model), version, seed=seed)
        path = fitted.save()
        meta = fitted.metadata
        check = meta["heldout_check"]
        click.echo(
            f"{model}: {meta['genuine_pairs']:,} genuine and {meta['impostor_pairs']:,} impostor pairs, "
            f"{meta['images_without_face']} images without a face; held-out check "
            f"{'passed' if check['passed'] else 'FAILED'} -> {path} ({time.perf_counter() - started:.0f} s)"
        )
        for row in meta["table"]:
            click.echo(
                f"  Similarity {row['similarity']:>5g}: cosine {row['raw_threshold']:.4f}, "
                f"FMR {row['observed_fmr']:.2e} ({row['false_matches']}), FNMR {row['fnmr']:.4f}"
            )


@click.command("fusion-weight")
def fusion_weight_command() -> None:
    """Choose the fusion model's sface weight on LFW pairsDevTrain (visage/data/fusion.json)."""
    from visage.engine import Engine
    from visage.evaluation.calibration.fusion_weight import fit_fusion_weight

    data = fit_fusion_weight(Engine())
    accuracy = data["dev_train_accuracy"]
    click.echo(
        f"w = {data['sface_weight']} ({data['version']}): pairsDevTrain 10-fold accuracy fusion "
        f"{accuracy['fusion']:.4f}, sface {accuracy['sface']:.4f}, dlib {accuracy['dlib']:.4f}"
    )
