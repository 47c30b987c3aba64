"""The ``visage`` command line.

Every command calls the engine or the service directly, never the HTTP layer.
A missing file or a bad image prints one line and exits 1, without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from visage.config import DEFAULT_THRESHOLD, Settings, SettingsError
from visage.engine.registry import MODEL_NAMES
from visage.errors import VisageError

err = Console(stderr=True)
out = Console()


def fail(message: str) -> NoReturn:
    """Print one error line on stderr and exit with status 1."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)


def fails_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Visage and file errors into one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except VisageError as error:
            fail(f"{error.code}: {error.message}")
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}")

    return wrapper


def read_image(path: str) -> bytes:
    return Path(path).read_bytes()


class _Commands(click.Group):
    """Every command, the evaluation ones too: a bad ``VISAGE_*`` value is one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as error:
            fail(str(error))


@click.group(cls=_Commands)
@click.version_option(package_name="visage")
def main() -> None:
    """Visage: face detection and recognition that speaks Amazon Rekognition's API."""


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    show_default=f"VISAGE_DATA_DIR or {Settings.default('data_dir')}",
    help="Folder of the access keys and the SQLite store.",
)


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--attributes", default="DEFAULT", show_default=True, help="DEFAULT, ALL, or a comma list (AGE_RANGE,GENDER,...)."
)
@click.option("--json", "as_json", is_flag=True, help="Print Rekognition's DetectFaces JSON.")
@click.option(
    "--draw",
    type=click.Path(path_type=Path),
    help="Write the image with boxes and landmarks here (a folder if several images).",
)
@fails_cleanly
def detect(images: tuple[str, ...], attributes: str, as_json: bool, draw: Path | None) -> None:
    """Detect faces in IMAGES and describe them."""
    from visage.engine import Engine
    from visage.engine.drawing import draw_faces

    engine = Engine(Settings.from_env(max_image_bytes=_local_file_limit()))
    wanted = [a.strip().upper() for a in attributes.split(",") if a.strip()]
    results = {}
    for path in images:
        decoded = engine.decode(read_image(path))
        faces = engine.detect_faces(decoded, attributes=wanted)
        results[path] = {"FaceDetails": [f.to_rekognition() for f in faces]}
        if draw is not None:
            target = draw / f"{Path(path).stem}.png" if len(images) > 1 else draw
            draw_faces(decoded, faces, target)
            if not as_json:
                err.print(f"wrote {target}")
        if not as_json:
            out.print(_faces_table(path, faces))
    if as_json:
        click.echo(json.dumps(results[images[0]] if len(images) == 1 else results, indent=2))


def _faces_table(path: str, faces: list[Any]) -> Table:
    table = Table(title=f"{path}: {len(faces)} face(s)")
    for column in (
        "#",
        "box (L,T,W,H)",
        "conf",
        "roll/yaw/pitch",
        "bright/sharp",
        "age",
        "gender",
        "smile",
        "eyes open",
    ):
        table.add_column(column)
    for i, face in enumerate(faces, start=1):
        b, p, q = face.bounding_box, face.pose, face.quality
        table.add_row(
            str(i),
            f"{b.left:.3f},{b.top:.3f},{b.width:.3f},{b.height:.3f}",
            f"{face.confidence:.1f}",
            f"{p.roll:.0f}/{p.yaw:.0f}/{p.pitch:.0f}",
            f"{q.brightness:.0f}/{q.sharpness:.0f}",
            f"{face.age_range.low}-{face.age_range.high}" if face.age_range else "",
            f"{face.gender.value} {face.gender.confidence:.0f}" if face.gender else "",
            _flag(face.smile),
            _flag(face.eyes_open),
        )
    return table


def _flag(estimate: Any) -> str:
    return "" if estimate is None else f"{'yes' if estimate.value else 'no'} {estimate.confidence:.0f}"


@main.command()
@click.argument("source")
@click.argument("target")
@click.option(
    "--threshold",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    type=click.FloatRange(0, 100),
    help="Least Similarity to call a match.",
)
@click.option(
    "--model", default=None, help=f"Face model: {', '.join(MODEL_NAMES)} (default: VISAGE_FACE_MODEL, or sface)."
)
@click.option("--json", "as_json", is_flag=True, help="Print Rekognition's CompareFaces JSON.")
@fails_cleanly
def compare(source: str, target: str, threshold: float, model: str | None, as_json: bool) -> None:
    """Compare the largest face in SOURCE with every face in TARGET."""
    from visage.engine import Engine

    engine = Engine(Settings.from_env(max_image_bytes=_local_file_limit()))
    result = engine.compare_faces(read_image(source), read_image(target), threshold=threshold, model=model)
    if as_json:
        click.echo(json.dumps(result.to_rekognition(), indent=2))
        return
    scored = sorted(result.matches + result.unmatched, key=lambda m: -m.similarity)
    table = Table(title=f"{source} vs {target} (threshold {threshold:g})")
    for column in ("target face", "similarity", "match"):
        table.add_column(column)
    for match in scored:
        b = match.face.detail.bounding_box
        table.add_row(
            f"{b.left:.3f},{b.top:.3f}", f"{match.similarity:.2f}", "yes" if match.similarity >= threshold else "no"
        )
    out.print(table)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@data_dir_option
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes sharing the data dir.")
@click.option(
    "--s3-root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Serve Image.S3Object from this folder (Bucket = sub-folder).",
)
@click.option("--s3-endpoint-url", help="Read Image.S3Object from this S3-compatible endpoint instead.")
@click.option("--no-auth", is_flag=True, help="Accept unsigned requests (loopback only; for local experiments).")
@click.option(
    "--store",
    help="postgresql://user:password@host/db to keep collections in PostgreSQL with pgvector, shareable by several servers (default: SQLite in the data dir).",
)
@click.option(
    "--similarity-map",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A Similarity map fitted on your own population (`visage eval calibrate --data DIR`); "
    "its face model's Similarity comes from it instead of the shipped map.",
)
@fails_cleanly
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    workers: int,
    s3_root: Path | None,
    s3_endpoint_url: str | None,
    no_auth: bool,
    store: str | None,
    similarity_map: Path | None,
) -> None:
    """Run the Rekognition-compatible server."""
    import os

    import uvicorn

    from visage.api.app import SETTINGS_VARIABLE, create_app
    from visage.keys import KeyStore

    settings = Settings.from_env(
        data_dir=data_dir,
        s3_root=s3_root,
        s3_endpoint_url=s3_endpoint_url or None,
        store=store,
        auth=False if no_auth else None,
        similarity_map=similarity_map,
    )
    if not settings.auth and host not in LOOPBACK:
        raise click.UsageError(f"--no-auth is only allowed on a loopback address, not {host}.")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(settings.keys_path)
    endpoint = f"http://{host}:{port}"
    if not keys.access_key_ids():
        credentials = keys.create()
        out.print(f"Created an access key in {keys.path}. Point any AWS client at this server:\n")
        out.print(f"  export AWS_ACCESS_KEY_ID={credentials.access_key_id}", highlight=False)
        out.print(f"  export AWS_SECRET_ACCESS_KEY={credentials.secret_access_key}", highlight=False)
        out.print("  export AWS_DEFAULT_REGION=us-east-1", highlight=False)
        out.print(f"  aws rekognition list-collections --endpoint-url {endpoint}", highlight=False)
        out.print(f"  # boto3: boto3.client('rekognition', endpoint_url='{endpoint}')\n", highlight=False)
    else:
        out.print(f"Access keys: {keys.path} ({len(keys.access_key_ids())}); `visage keys create` adds one.")
    if not settings.auth:
        err.print(
            "[bold red]WARNING: --no-auth: this server accepts UNSIGNED requests from anyone who can reach "
            f"{host}:{port}.[/bold red]"
        )
    if settings.similarity_map is not None:
        from visage.engine.similarity import SimilarityMap

        own = SimilarityMap.read(settings.similarity_map)
        out.print(f"Similarity of {own.model} from {settings.similarity_map}, fitted on {own.fitted_on}")
    out.print(f"Visage listening on {endpoint} (data in {settings.data_dir})")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    else:  # each worker process imports the app, so it gets the settings through its environment
        os.environ[SETTINGS_VARIABLE] = settings.to_json()
        uvicorn.run(
            "visage.api.app:create_worker_app", factory=True, host=host, port=port, workers=workers, log_level="warning"
        )


@main.group()
def keys() -> None:
    """Manage the access keys this server accepts."""


@keys.command("create")
@data_dir_option
@fails_cleanly
def keys_create(data_dir: Path | None) -> None:
    """Make a new access key pair (the secret is shown once)."""
    from visage.keys import KeyStore

    credentials = KeyStore(Settings.from_env(data_dir=data_dir).keys_path).create()
    click.echo(f"AWS_ACCESS_KEY_ID={credentials.access_key_id}")
    click.echo(f"AWS_SECRET_ACCESS_KEY={credentials.secret_access_key}")


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """Access key ids (never the secrets)."""
    from visage.keys import KeyStore

    for key_id in KeyStore(Settings.from_env(data_dir=data_dir).keys_path).access_key_ids():
        click.echo(key_id)


@main.command("audit-log")
@data_dir_option
@click.option(
    "--store", "store_url", help="The server's --store (a postgresql:// URL), if it is not SQLite in the data dir."
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only records at or after this UTC time.",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@fails_cleanly
def audit_log(data_dir: Path | None, store_url: str | None, since: Any, fmt: str) -> None:
    """Export the audit log of comparisons and searches."""
    import csv

    from visage.store import open_store

    settings = Settings.from_env(data_dir=data_dir, store=store_url)
    if settings.postgres_url is None and not settings.sqlite_path.exists():
        raise click.UsageError(f"No Visage database in {settings.data_dir}.")
    store = open_store(settings)
    records = store.audit_records(since.replace(tzinfo=UTC) if since else None)
    fields = [
        "time",
        "access_key_id",
        "operation",
        "collection_id",
        "threshold",
        "match_count",
        "best_similarity",
        "face_ids",
        "user_ids",
    ]
    if fmt == "jsonl":
        for r in records:
            click.echo(json.dumps({f: (getattr(r, f).isoformat() if f == "time" else getattr(r, f)) for f in fields}))
        return
    writer = csv.writer(sys.stdout)
    writer.writerow(fields)
    for r in records:
        writer.writerow(
            [
                r.time.isoformat(),
                r.access_key_id,
                r.operation,
                r.collection_id or "",
                r.threshold,
                r.match_count,
                "" if r.best_similarity is None else r.best_similarity,
                " ".join(r.face_ids),
                " ".join(r.user_ids),
            ]
        )


@main.command("index")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--collection", required=True, help="Collection to index into (created if missing).")
@data_dir_option
@click.option("--workers", default=2, show_default=True, type=int, help="Worker processes.")
@click.option(
    "--external-id-from",
    type=click.Choice(["filename", "path", "none"]),
    default="filename",
    show_default=True,
    help="ExternalImageId from the file name, the relative path (':' for '/'), or none.",
)
@fails_cleanly
def index(folder: Path, collection: str, data_dir: Path | None, workers: int, external_id_from: str) -> None:
    """Index every PNG and JPEG under FOLDER; rerun to resume (indexed images are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from visage.bulk import find_images, index_folder

    settings = Settings.from_env(data_dir=data_dir, max_image_bytes=_local_file_limit())
    total = len(find_images(folder))
    if total == 0:
        fail(f"no JPEG or PNG images (.jpg, .jpeg, .png) under {folder}")
    counts = {"faces": 0, "errors": 0}
    columns = (
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} images/s  {task.fields[faces]} faces  {task.fields[errors]} errors"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("index", total=total, rate=0.0, faces=0, errors=0)

        def advance(result: Any) -> None:
            counts["faces"] += result.faces
            counts["errors"] += result.status == "error"
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, advance=1, rate=(progress.tasks[task].completed + 1) / elapsed, **counts)  # type: ignore[arg-type]

        summary = index_folder(folder, collection, settings, workers, external_id_from, progress=advance)
    out.print(
        f"{summary.images} images: {summary.indexed} indexed ({summary.faces} faces), "
        f"{summary.skipped} already indexed, {len(summary.no_face)} without a face, "
        f"{len(summary.refused)} with every face refused, {len(summary.errors)} errors."
    )
    for reason, n in summary.unindexed_reasons.most_common():
        out.print(f"  faces not indexed, {reason}: {n}")
    for path in summary.no_face[:20]:
        out.print(f"  no face: {path}")
    for path, reasons in list(summary.refused.items())[:20]:
        out.print(f"  refused ({', '.join(sorted(set(reasons)))}): {path}")
    for path, error in list(summary.errors.items())[:20]:
        out.print(f"  error: {path}: {error}")
    if summary.errors:
        sys.exit(1)


def _local_file_limit() -> int | None:
    """Local files on the command line may be larger than Rekognition's 5 MB request limit,
    unless VISAGE_MAX_IMAGE_BYTES says otherwise."""
    import os

    return None if "VISAGE_MAX_IMAGE_BYTES" in os.environ else 50 * 1024 * 1024


def _register_evaluation_commands() -> None:
    from visage.evaluation.audit.command import audit_command
    from visage.evaluation.cli import eval_group

    main.add_command(eval_group)
    main.add_command(audit_command)


_register_evaluation_commands()

if __name__ == "__main__":
    main()
