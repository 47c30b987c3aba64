"""The ``visage`` command line.

Every command calls the engine or the service directly, never the HTTP layer.
A missing file or a bad image prints one line and exits 1, without a traceback;
a closed pipe (``| head``) ends a command quietly. Output fits an 80-column
terminal: tables are narrow enough, and file names are never wrapped by us.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table

from visage.config import DEFAULT_THRESHOLD, Settings, SettingsError
from visage.contract import shape
from visage.engine.registry import MODEL_NAMES, MODELS_HELP
from visage.errors import VisageError
from visage.evaluation.data import EvaluationDataMissing

err = Console(stderr=True)
out = Console()


def fail(message: str, status: int = 1) -> NoReturn:
    """Print one error line on stderr and exit with ``status``."""
    say_error(message)
    sys.exit(status)


def say_error(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """One line on stdout, never wrapped by us (file names stay whole)."""
    out.print(message, highlight=False, soft_wrap=True)


def fails_cleanly(command: Callable[..., Any] | None = None, *, status: int = 1) -> Any:
    """Turn Visage, settings and file errors into one line on stderr and exit ``status``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except BrokenPipeError:
                raise
            except (VisageError, SettingsError, OSError) as error:
                fail(error_text(error), status)

        return wrapper

    return decorate(command) if command is not None else decorate


def error_text(error: Exception) -> str:
    """One line for a Visage, settings or file error."""
    if isinstance(error, VisageError):
        return f"{error.code}: {error.message}"
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    return str(error)


def read_image(path: str) -> bytes:
    return Path(path).read_bytes()


class _Commands(click.Group):
    """Every command, the evaluation ones too: a bad ``VISAGE_*`` value or missing evaluation
    data is one line, not a traceback, and a reader that stops reading (``| head``) ends the
    command quietly."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SettingsError, EvaluationDataMissing) as error:
            fail(str(error))
        except BrokenPipeError:
            # Python would also fail flushing stdout at exit: point it at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)


@click.group(
    cls=_Commands,
    help="Visage: face detection and recognition that speaks Amazon Rekognition's API.\n\n"
    f"Face models (serve --face-model, index --model, compare --model): {MODELS_HELP}.",
)
@click.version_option(package_name="visage")
def main() -> None:
    pass


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    show_default=f"VISAGE_DATA_DIR or {Settings.default('data_dir')}",
    help="Folder of the access keys and the SQLite store.",
)


def model_option(*names: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A choice of face model whose help lists the models."""
    return click.option(*names, type=click.Choice(MODEL_NAMES), default=None, help=f"{help}: {MODELS_HELP}.")


#: The attributes DetectFaces takes (the service model's enum); DEFAULT is always on.
ATTRIBUTES: tuple[str, ...] = tuple(shape("Attribute")["enum"])
#: The optional attributes Visage estimates, with their column in ``visage detect``'s table.
ATTRIBUTE_COLUMNS = {
    "AGE_RANGE": "age",
    "GENDER": "gender",
    "SMILE": "smile",
    "EYES_OPEN": "eyes open",
    "MOUTH_OPEN": "mouth open",
}


def _attributes(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [a.strip().upper() for a in value.split(",") if a.strip()]
    for name in names:
        if name not in ATTRIBUTES:
            raise click.BadParameter(f"{name} must be one of {', '.join(ATTRIBUTES)}")
    return names


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--attributes",
    default="DEFAULT",
    show_default=True,
    callback=_attributes,
    help=f"DEFAULT, ALL, or a comma list of {', '.join(ATTRIBUTE_COLUMNS)}.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='A JSON list, one entry per image: {"Image": path, "FaceDetails": [...]} as in Rekognition\'s '
    'DetectFaces, or {"Image": path, "Error": {"Code": ..., "Message": ...}}.',
)
@click.option(
    "--draw",
    type=click.Path(path_type=Path),
    help="Write the image with boxes and landmarks here, as .jpg or .png; with several images, a folder "
    "(one picture each, JPEG for a JPEG image, else PNG).",
)
@fails_cleanly
def detect(images: tuple[str, ...], attributes: list[str], as_json: bool, draw: Path | None) -> None:
    """Detect faces in IMAGES and describe them.

    An image that cannot be read is named in an error line and the others go on;
    the exit status is 1 if any image failed.
    """
    from visage.engine import Engine
    from visage.engine.drawing import draw_faces, picture_format

    if draw is not None and len(images) == 1:
        try:
            picture_format(draw)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--draw") from None
    engine = Engine(Settings.from_env())
    entries: list[dict[str, Any]] = []
    for path in images:
        try:
            decoded = engine.decode(read_image(path))
            faces = engine.detect_faces(decoded, attributes=attributes)
            if draw is not None:
                suffix = ".jpg" if decoded.format == "JPEG" else ".png"
                target = draw / f"{Path(path).stem}{suffix}" if len(images) > 1 else draw
                draw_faces(decoded, faces, target)
                if not as_json:
                    err.print(f"wrote {target}", highlight=False, soft_wrap=True)
        except (VisageError, OSError) as error:
            code = error.code if isinstance(error, VisageError) else type(error).__name__
            message = error.message if isinstance(error, VisageError) else (error.strerror or str(error))
            entries.append({"Image": path, "Error": {"Code": code, "Message": message}})
            say_error(f"{path}: {code}: {message}")
            continue
        entries.append({"Image": path, "FaceDetails": [f.to_rekognition() for f in faces]})
        if not as_json:
            _print_faces(path, faces, attributes, engine.settings.landmarks == "dlib68")
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    if any("Error" in entry for entry in entries):
        sys.exit(1)


def _print_faces(path: str, faces: list[Any], attributes: list[str], has_68_points: bool) -> None:
    say(f"{path}: {len(faces)} face{'' if len(faces) == 1 else 's'}")
    if not faces:
        return
    table = _table("#", "box (left,top,width,height)", "confidence", "roll/yaw/pitch", "bright/sharp")
    for i, face in enumerate(faces, start=1):
        b, p, q = face.bounding_box, face.pose, face.quality
        table.add_row(
            str(i),
            f"{b.left:.3f},{b.top:.3f},{b.width:.3f},{b.height:.3f}",
            f"{face.confidence:.1f}",
            f"{p.roll:.0f}/{p.yaw:.0f}/{p.pitch:.0f}",
            f"{q.brightness:.0f}/{q.sharpness:.0f}",
        )
    out.print(table)
    asked = set(ATTRIBUTE_COLUMNS) if "ALL" in attributes else set(attributes) & set(ATTRIBUTE_COLUMNS)
    # EyesOpen, MouthOpen and Smile are read from dlib's 68 points, which VISAGE_LANDMARKS=yunet5 turns off.
    unavailable = set() if has_68_points else asked & {"SMILE", "EYES_OPEN", "MOUTH_OPEN"}
    shown = [name for name in ATTRIBUTE_COLUMNS if name in asked - unavailable]
    if shown:
        table = _table("#", *(ATTRIBUTE_COLUMNS[name] for name in shown))
        for i, face in enumerate(faces, start=1):
            values = {
                "AGE_RANGE": f"{face.age_range.low}-{face.age_range.high}" if face.age_range else "",
                "GENDER": f"{face.gender.value} {face.gender.confidence:.0f}" if face.gender else "",
                "SMILE": _flag(face.smile),
                "EYES_OPEN": _flag(face.eyes_open),
                "MOUTH_OPEN": _flag(face.mouth_open),
            }
            table.add_row(str(i), *(values[name] for name in shown))
        out.print(table)
    not_asked = [column for name, column in ATTRIBUTE_COLUMNS.items() if name not in asked]
    if not_asked:
        say(f"{', '.join(not_asked)}: add --attributes ALL to get them")
    if unavailable:
        names = ", ".join(column for name, column in ATTRIBUTE_COLUMNS.items() if name in unavailable)
        say(f"{names}: not estimated with VISAGE_LANDMARKS=yunet5")
    skipped = [a for a in attributes if a not in ATTRIBUTE_COLUMNS and a not in ("DEFAULT", "ALL")]
    if skipped:
        say(f"{', '.join(skipped)}: no shipped model estimates {'it' if len(skipped) == 1 else 'them'}; left out")


def _table(*columns: str) -> Table:
    """A table that fits 80 columns: a header rule, no vertical lines."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def _flag(estimate: Any) -> str:
    return "" if estimate is None else f"{'yes' if estimate.value else 'no'} {estimate.confidence:.0f}"


def _threshold_help() -> str:
    from visage.evaluation.costs import threshold_cost

    return f"Least Similarity to call a match. {threshold_cost().sentence()}"


@main.command(
    epilog="Exit status: 0 when a target face matches the source face, 1 when none does, 2 on an error "
    "(an unreadable image, no face in either image...).",
)
@click.argument("source")
@click.argument("target")
@click.option(
    "--threshold",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    type=click.FloatRange(0, 100),
    help=_threshold_help(),
)
@model_option("--model", help="Face model (default: VISAGE_FACE_MODEL, or sface)")
@click.option("--json", "as_json", is_flag=True, help="Print Rekognition's CompareFaces JSON.")
@fails_cleanly(status=2)
def compare(source: str, target: str, threshold: float, model: str | None, as_json: bool) -> None:
    """Compare the largest face in SOURCE with every face in TARGET."""
    from visage.engine import Engine

    engine = Engine(Settings.from_env())
    result = engine.compare_faces(read_image(source), read_image(target), threshold=threshold, model=model)
    if as_json:
        click.echo(json.dumps(result.to_rekognition(), indent=2))
    else:
        say(f"source: {source}")
        say(f"target: {target}")
        say(f"threshold {threshold:g}: {'a match' if result.matches else 'no match'}")
        scored = sorted(result.matches + result.unmatched, key=lambda m: -m.similarity)
        table = _table("target face (left,top,width,height)", "similarity", "match")
        for match in scored:
            b = match.face.detail.bounding_box
            table.add_row(
                f"{b.left:.3f},{b.top:.3f},{b.width:.3f},{b.height:.3f}",
                f"{match.similarity:.2f}",
                "yes" if match.similarity >= threshold else "no",
            )
        out.print(table)
    sys.exit(0 if result.matches else 1)


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
@model_option(
    "--face-model", help="Face model of the collections created from now on (default: VISAGE_FACE_MODEL, or sface)"
)
@click.option(
    "--request-log/--no-request-log",
    default=None,
    help="One line per request on stderr: operation, status, milliseconds, access key id (default: on).",
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
    face_model: str | None,
    request_log: bool | None,
) -> None:
    """Run the Rekognition-compatible server."""
    from visage.api.server import CannotListen, banner, bind, url
    from visage.api.server import serve as run_server
    from visage.keys import KeyStore, create_key_command

    settings = Settings.from_env(
        data_dir=data_dir,
        s3_root=s3_root,
        s3_endpoint_url=s3_endpoint_url or None,
        store=store,
        auth=False if no_auth else None,
        face_model=face_model,
        request_log=request_log,
    )
    if not settings.auth and host not in LOOPBACK:
        raise click.UsageError(f"--no-auth is only allowed on a loopback address, not {host}.")
    try:
        sock = bind(host, port)  # first: a taken port is one line, before anything is created
    except CannotListen as error:
        fail(str(error))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(settings.keys_path)
    endpoint = url(host, port)
    add_key = create_key_command(settings.data_dir)
    if not keys.access_key_ids():
        credentials = keys.create()
        say(f"Created an access key in {keys.path}. Point any AWS client at this server:\n")
        say(f"  export AWS_ACCESS_KEY_ID={credentials.access_key_id}")
        say(f"  export AWS_SECRET_ACCESS_KEY={credentials.secret_access_key}")
        say(f"  export AWS_DEFAULT_REGION={settings.region}")
        say(f"  aws rekognition list-collections --endpoint-url {endpoint}")
        say(f"  # boto3: boto3.client('rekognition', endpoint_url='{endpoint}')")
        say(f"  # another key: {add_key}\n")
    else:
        say(f"Access keys: {keys.path} ({len(keys.access_key_ids())}); `{add_key}` adds one.")
    if not settings.auth:
        err.print(
            "[bold red]WARNING: --no-auth: this server accepts UNSIGNED requests from anyone who can reach "
            f"{host}:{port}.[/bold red]"
        )
    from importlib.metadata import version

    say(f"Visage {version('visage')}")
    for line in banner(settings):
        say(line)
    run_server(settings, sock, workers, say)


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
    from visage.keys import KeyStore, create_key_command

    settings = Settings.from_env(data_dir=data_dir)
    key_ids = KeyStore(settings.keys_path).access_key_ids()
    if not key_ids:
        where = "does not exist" if not settings.data_dir.exists() else f"has no keys ({settings.keys_path.name})"
        err.print(
            f"No access keys: the data dir {settings.data_dir} {where}. `{create_key_command(settings.data_dir)}` "
            "makes one, or name the server's data dir with --data-dir.",
            highlight=False,
            soft_wrap=True,
        )
    for key_id in key_ids:
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
    if not records:
        where = settings.sqlite_path if settings.postgres_url is None else "the PostgreSQL store"
        err.print(
            f"The audit log in {where} has no records{f' since {since:%Y-%m-%d %H:%M:%S} UTC' if since else ''}: "
            "no comparison or search was made.",
            highlight=False,
            soft_wrap=True,
        )
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


#: How many paths each list of ``visage index``'s summary shows.
LISTED = 20


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
@click.option(
    "--max-faces",
    type=click.IntRange(1, Settings.default("max_faces")),
    default=None,
    help="Faces indexed per image, the largest first. Default: 1 when the ExternalImageId comes from the "
    "file (the file names one person: a bystander must not get that name), else every face (up to 100).",
)
@click.option(
    "--quality-filter",
    type=click.Choice(shape("QualityFilter")["enum"]),
    default=None,
    help="IndexFaces' QualityFilter: faces below the bar are not indexed (default AUTO; docs/engine.md).",
)
@model_option(
    "--model",
    help="Face model of a new collection (an existing one keeps its own; default: VISAGE_FACE_MODEL, or sface)",
)
@fails_cleanly
def index(
    folder: Path,
    collection: str,
    data_dir: Path | None,
    workers: int,
    external_id_from: str,
    max_faces: int | None,
    quality_filter: str | None,
    model: str | None,
) -> None:
    """Index every PNG and JPEG under FOLDER; rerun to resume (indexed images are skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from visage.bulk import index_folder, scan_folder

    settings = Settings.from_env(data_dir=data_dir)
    contents = scan_folder(folder)
    if not contents.images:
        found = f"; it holds {_kinds(contents.not_images)}" if contents.not_images else ""
        fail(f"no JPEG or PNG images (.jpg, .jpeg, .png) under {folder}{found}")
    counts = {"faces": 0, "errors": 0}
    columns = (
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} images/s  {task.fields[faces]} faces  {task.fields[errors]} errors"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("index", total=len(contents.images), rate=0.0, faces=0, errors=0)

        def advance(result: Any) -> None:
            counts["faces"] += result.faces
            counts["errors"] += result.status == "error"
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, advance=1, rate=(progress.tasks[task].completed + 1) / elapsed, **counts)  # type: ignore[arg-type]

        summary = index_folder(
            folder,
            collection,
            settings,
            workers,
            external_id_from,
            progress=advance,
            max_faces=max_faces,
            quality_filter=quality_filter,
            model=model,
        )
    say(
        f"{summary.images} images: {summary.indexed} indexed ({summary.faces} faces), "
        f"{summary.skipped} already indexed, {len(summary.no_face)} without a face, "
        f"{len(summary.refused)} with every face refused, {len(summary.errors)} errors."
    )
    for reason, n in summary.unindexed_reasons.most_common():
        say(f"  faces not indexed, {reason}: {n}")
    if summary.several_faces:
        only_largest = max_faces is None and external_id_from != "none"
        say(
            f"{len(summary.several_faces)} images with several faces (face 1 is the largest)"
            + (
                ": only the largest is indexed, as the file names one person; --max-faces N keeps more."
                if only_largest
                else ":"
            )
        )
        _listed([f"{path}: {found} faces, {_kept(kept)}" for path, (found, kept) in summary.several_faces.items()])
    _listed([f"no face: {path}" for path in summary.no_face])
    _listed([f"refused ({', '.join(sorted(set(reasons)))}): {path}" for path, reasons in summary.refused.items()])
    _listed([f"error: {path}: {error}" for path, error in summary.errors.items()])
    if summary.not_images:
        say(
            f"{len(summary.not_images)} files not indexed, as they are not PNG or JPEG "
            f"({_kinds([Path(p) for p in summary.not_images])}); convert images to JPEG to index them:"
        )
        _listed(summary.not_images)
    if summary.errors:
        sys.exit(1)


def _listed(lines: list[str]) -> None:
    for line in lines[:LISTED]:
        say(f"  {line}")
    if len(lines) > LISTED:
        say(f"  ... and {len(lines) - LISTED} more")


def _kept(ranks: tuple[int, ...]) -> str:
    if not ranks:
        return "none indexed"
    return f"kept face{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def _kinds(paths: list[Path]) -> str:
    """``2 .heic, 1 .gif``: how many files of each suffix."""
    from collections import Counter

    kinds = Counter(p.suffix.lower() or "without a suffix" for p in paths)
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def _register_evaluation_commands() -> None:
    from visage.evaluation.audit.command import audit_command
    from visage.evaluation.cli import eval_group

    main.add_command(eval_group)
    main.add_command(audit_command)


_register_evaluation_commands()

if __name__ == "__main__":
    main()
