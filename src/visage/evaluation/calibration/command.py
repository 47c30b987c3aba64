"""``visage eval calibrate`` and ``visage eval fusion-weight``: refit on LFW what the engine ships.

Importing this module loads no model and no data: each command imports what it needs when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from visage.engine.registry import MODEL_NAMES, face_model_entry
from visage.evaluation.cli import new_output_folder, output_option

if TYPE_CHECKING:
    from visage.engine.similarity import SimilarityMap

#: Images of each person a map is fitted and checked on. LFW's most photographed person has 530, and
#: every pair of them with a look-alike relative's photos is a false match (George W and Jeb Bush:
#: 1,437 of one split's 2,164 held-out false matches at Similarity 80), so a few people decide the
#: rates and the split that holds them fails (benchmarks/label_cleaning.py). A gallery holds a few
#: photos of each person; at most 20 keeps 11,439 of LFW's 13,233 images and every one of its people.
PHOTOS_PER_PERSON = 20


def _install_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--install",
        is_flag=True,
        help=f"Write {what} into the package, where the engine reads it (what ships); not with --out.",
    )


def _destination(out: Path | None, install: bool, name: str) -> Path | None:
    """The folder to write to: ``out``, a new folder, or None for the package's own (``--install``)."""
    if install and out is not None:
        raise click.UsageError("--install writes into the package: give either --install or --out, not both.")
    return None if install else (out or new_output_folder(name))


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
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Fit on your own population instead of LFW: one folder per person, DIR/<person>/<image>.",
)
@output_option("the maps, <model>.json", "--install instead")
@_install_option("the maps (visage/data/similarity/<model>.json); LFW fits only")
@click.option(
    "--refit-from-50",
    is_flag=True,
    help="Refit the band at and above Similarity 50 too (by default a refit on LFW keeps the shipped map's "
    "band, so the thresholds users have written keep their cosines).",
)
@click.option(
    "--raw-labels",
    is_flag=True,
    help="Take each image's central face, and each folder as its own person. By default an image with several "
    "faces gives the one that agrees with the person's other photos, and on LFW the people filed under two "
    "names count once and its photos filed under a wrong name are left out (visage/data/lfw_labels.json).",
)
@click.option(
    "--photos-per-person",
    type=click.IntRange(min=0),
    default=PHOTOS_PER_PERSON,
    show_default=True,
    help="Fit and check on at most this many images of each person (the first, by file name); 0: all.",
)
def calibrate_command(
    models: tuple[str, ...],
    seed: int,
    data: Path | None,
    out: Path | None,
    install: bool,
    refit_from_50: bool,
    raw_labels: bool,
    photos_per_person: int,
) -> None:
    """Refit the Similarity maps on every pair of LFW images, as <model>.json files (--install: the
    shipped ones), or, with --data, fit maps for your own population to serve with
    `visage serve --similarity-map`."""
    from visage.engine import Engine
    from visage.evaluation.allpairs import folder_vectors, lfw_vectors, person_images
    from visage.evaluation.calibration.similarity_map import LFW, TooFewPeople, calibrate, require_people
    from visage.evaluation.data import require_eval_data

    if data is not None and install:
        raise click.UsageError("--install ships maps fitted on LFW; a map fitted on --data goes to --out.")
    destination = _destination(out, install, "calibrate")  # a wrong pair of options before anything else
    if data is None:
        require_eval_data("lfw")
    engine = Engine()
    if data is not None:
        try:  # before any image is embedded: a folder with too few people is refused at once
            require_people(len({p.parent.name for p in person_images(data)}), str(data))
        except TooFewPeople as error:
            raise click.ClickException(str(error)) from None
    for model in models:
        started = time.perf_counter()
        version = face_model_entry(model).version
        if data is None:
            labelled, fitted_on = lfw_vectors(engine, model, clean_labels=not raw_labels), LFW
        else:
            labelled = folder_vectors(engine, model, data, skip_unreadable=True, clean_labels=not raw_labels)
            fitted_on = f"{data.resolve()}, every pair of images: genuine = same person, impostor = different people"
        labelled = labelled.at_most(photos_per_person)
        try:
            shipped: SimilarityMap | None = face_model_entry(model).similarity_map()
        except FileNotFoundError:  # a new face model: this is its first map
            shipped = None
        keep = (
            data is None
            and not refit_from_50
            and shipped is not None
            and shipped.metadata.get("face_model_version") == version
        )
        try:
            fitted = calibrate(
                labelled, version, seed=seed, fitted_on=fitted_on, keep_from_50=shipped if keep else None
            )
        except TooFewPeople as error:
            raise click.ClickException(str(error)) from None
        path = fitted.save(destination)
        _report(model, fitted.metadata, path, time.perf_counter() - started)


def _report(model: str, meta: dict[str, Any], path: Path, seconds: float) -> None:
    """What the fit had, how far it can speak, and its held-out check."""
    from visage.evaluation.calibration.similarity_map import is_checked

    reach, check = meta["measured_down_to"], meta["heldout_check"]
    unreadable = len(meta.get("images_unreadable_list", []))
    click.echo(
        f"{model}: {meta['people_with_a_face']:,} people with a face ({meta['people']:,} folders), "
        f"{meta['images']:,} images ({meta['images_without_face']} without a face"
        + (f", {unreadable} unreadable" if unreadable else "")
        + f"); {meta['genuine_pairs']:,} genuine and {meta['impostor_pairs']:,} impostor pairs"
    )
    labels = meta["labels"]
    click.echo(
        f"  labels: {labels['face']}; {len(labels['same_people'])} folders counted under another name, "
        f"{len(labels['left_out'])} photos filed under a wrong name left out; photos per person: "
        f"{labels['photos_per_person']}"
    )
    click.echo(
        f"  the data measure false-match rates down to {reach['fmr']:.1e} (Similarity {reach['similarity']:g}, "
        f"cosine {reach['cosine']:g}, {reach['impostors_at_or_above']} impostor pairs above it); above that the map "
        "is a conservative extrapolation"
    )
    fit, held = check["fit_half"], check["check_half"]
    click.echo(
        f"  held-out check ({check['rule']}): {'passed' if check['passed'] else 'FAILED'}; fitted on "
        f"{fit['people_with_a_face']} people, checked on {held['people_with_a_face']} others "
        f"({held['impostor_pairs']:,} impostor pairs)"
    )
    checked = [row for row in check["rows"] if is_checked(row["predicted_fmr"], row["impostor_pairs"])]
    for row in checked:
        click.echo(
            f"    Similarity {row['similarity']:>5g}: predicted FMR {row['predicted_fmr']:.1e}, observed "
            f"{row['observed_fmr']:.1e} ({row['false_matches']} false matches), {row['ratio']:.2f}x"
        )
    if len(checked) < len(check["rows"]):
        beyond = f"above Similarity {checked[-1]['similarity']:g}" if checked else "at every threshold"
        click.echo(f"    ({beyond} the held-out pairs are too few to check)")
    for row in meta["table"]:
        click.echo(
            f"  Similarity {row['similarity']:>5g}: cosine {row['raw_threshold']:.4f}, "
            f"FMR {row['observed_fmr']:.2e} ({row['false_matches']}), FNMR {row['fnmr']:.4f}"
        )
    click.echo(f"  wrote {path} ({seconds:.0f} s)")


@click.command("fusion-weight")
@output_option("fusion.json", "--install instead")
@_install_option("the weight (visage/data/fusion.json)")
def fusion_weight_command(out: Path | None, install: bool) -> None:
    """Choose the fusion model's sface weight on LFW pairsDevTrain, as fusion.json."""
    from visage.engine import Engine
    from visage.engine.recognition import FUSION_FILE
    from visage.evaluation.calibration.fusion_weight import fit_fusion_weight
    from visage.evaluation.data import require_eval_data

    require_eval_data("lfw")
    destination = _destination(out, install, "fusion-weight")
    if destination is not None:
        destination.mkdir(parents=True, exist_ok=True)
    path = FUSION_FILE if destination is None else destination / FUSION_FILE.name
    data = fit_fusion_weight(Engine(), path=path)
    accuracy = data["dev_train_accuracy"]
    click.echo(
        f"w = {data['sface_weight']} ({data['version']}): pairsDevTrain 10-fold accuracy fusion "
        f"{accuracy['fusion']:.4f}, sface {accuracy['sface']:.4f}, dlib {accuracy['dlib']:.4f} -> {path}"
    )
