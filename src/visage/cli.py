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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table

from visage.config import DEFAULT_THRESHOLD, Settings, SettingsError
from visage.contract import shape
from visage.engine.registry import MODEL_NAMES, MODELS_HELP
from visage.errors import VisageError
from visage.evaluation.data import EvaluationDataMissing
from visage.policy import Policy

if TYPE_CHECKING:
    from visage.keys import Credentials, KeyRing
    from visage.store.base import Store

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
    help="Folder of the SQLite store and the key file of the access keys' secrets.",
)
store_option = click.option(
    "--store",
    help="postgresql://user:password@host/db to keep collections and keys in PostgreSQL with pgvector, shareable by several servers (default: VISAGE_STORE, or SQLite in the data dir).",
)
secret_key_option = click.option(
    "--secret-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The key file that encrypts the access keys' secrets (default: VISAGE_SECRET_KEY_FILE, or <data-dir>/secret.key); the same for every server of a store.",
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
    "EYE_DIRECTION": "gaze",
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
    # EyesOpen, MouthOpen, Smile and EyeDirection need dlib's 68 points, which VISAGE_LANDMARKS=yunet5 turns off.
    unavailable = set() if has_68_points else asked & {"SMILE", "EYES_OPEN", "MOUTH_OPEN", "EYE_DIRECTION"}
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
                # Left out (blank) for faces under 80 px or turned away: docs/engine.md.
                "EYE_DIRECTION": (
                    f"{face.eye_direction.yaw:.0f}/{face.eye_direction.pitch:.0f}" if face.eye_direction else ""
                ),
            }
            table.add_row(str(i), *(values[name] for name in shown))
        out.print(table)
    not_asked = [column for name, column in ATTRIBUTE_COLUMNS.items() if name not in asked]
    if not_asked:
        say(f"{', '.join(not_asked)}: add --attributes ALL")
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
@click.option("--sns-endpoint-url", help="Publish finished video jobs' completion messages through this SNS endpoint.")
@click.option("--no-auth", is_flag=True, help="Accept unsigned requests (loopback only; for local experiments).")
@store_option
@secret_key_option
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM, the chain after the server's own); needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The certificate's private key (PEM).",
)
@click.option(
    "--keep-face-thumbnails",
    is_flag=True,
    default=None,
    help="Keep a small thumbnail of each indexed face for the console's reviewers (a collection's own setting wins).",
)
@model_option(
    "--face-model", help="Face model of the collections created from now on (default: VISAGE_FACE_MODEL, or sface)"
)
@click.option(
    "--request-log/--no-request-log",
    default=None,
    help="One line per request on stderr: operation, status, milliseconds, access key id (default: on).",
)
@click.option(
    "--similarity-map",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A Similarity map fitted on your own population (`visage eval calibrate --data DIR`); "
    "its face model's Similarity comes from it instead of the shipped map.",
)
@click.option(
    "--shutdown-seconds",
    type=click.IntRange(min=1),
    help="On SIGTERM, how long the requests in flight may take to finish before the server exits "
    f"(default: VISAGE_SHUTDOWN_SECONDS, or {Settings.default('shutdown_seconds')}).",
)
@click.option(
    "--allocator",
    type=click.Choice(["jemalloc", "system"]),
    help="The server's memory allocator (default: VISAGE_ALLOCATOR, or jemalloc where it is installed, "
    "else glibc's malloc; docs/operations.md).",
)
@fails_cleanly
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    workers: int,
    s3_root: Path | None,
    s3_endpoint_url: str | None,
    sns_endpoint_url: str | None,
    no_auth: bool,
    store: str | None,
    keep_face_thumbnails: bool | None,
    face_model: str | None,
    request_log: bool | None,
    secret_key_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    similarity_map: Path | None,
    shutdown_seconds: int | None,
    allocator: str | None,
) -> None:
    """Run the Rekognition-compatible server."""
    from importlib.metadata import version

    from visage.api.allocator import preload
    from visage.api.server import CannotListen, banner, bind, url
    from visage.api.server import serve as run_server
    from visage.keys import create_key_command

    settings = Settings.from_env(
        data_dir=data_dir,
        s3_root=s3_root,
        s3_endpoint_url=s3_endpoint_url or None,
        sns_endpoint_url=sns_endpoint_url or None,
        store=store,
        auth=False if no_auth else None,
        keep_face_thumbnails=keep_face_thumbnails,
        face_model=face_model,
        request_log=request_log,
        secret_key_file=secret_key_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        similarity_map=similarity_map,
        shutdown_seconds=shutdown_seconds,
        allocator=allocator,
    )
    if not settings.auth and host not in LOOPBACK:
        raise click.UsageError(f"--no-auth is only allowed on a loopback address, not {host}.")
    preload(settings)  # re-executes this command on jemalloc where it is installed
    try:
        sock = bind(host, port)  # first: a taken port is one line, before anything is created
    except CannotListen as error:
        fail(str(error))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    endpoint = url(host, port, settings.tls)
    add_key = create_key_command(settings)
    with _key_ring(settings) as ring:
        ring.check()  # the key file decrypts the stored secrets, or the server does not start
        known = ring.keys()
        if not known:
            _, credentials = ring.create(Policy.admin(), "first admin key", by=_operator())
            say(f"Created an admin access key in the store ({_where(settings)}). Point any AWS client at it:\n")
            say(f"  export AWS_ACCESS_KEY_ID={credentials.access_key_id}")
            say(f"  export AWS_SECRET_ACCESS_KEY={credentials.secret_access_key}")
            say(f"  export AWS_DEFAULT_REGION={settings.region}")
            say(f"  aws rekognition list-collections --endpoint-url {endpoint}")
            say(f"  # boto3: boto3.client('rekognition', endpoint_url='{endpoint}')")
            say(f"  # another key (read-only unless --admin, --collection or --policy): {add_key}\n")
        else:
            active = sum(key.active for key in known)
            say(f"Access keys: {active} active in the store; `{add_key}` adds one, `visage keys list` lists them.")
            if not active:
                err.print(f"[bold red]Every access key is revoked:[/bold red] `{add_key} --admin` makes one.")
    if not settings.auth:
        err.print(
            "[bold red]WARNING: --no-auth: this server accepts UNSIGNED requests from anyone who can reach "
            f"{host}:{port}.[/bold red]"
        )
    say(f"Visage {version('visage')}")
    for line in banner(settings):
        say(line)
    say(f"Console: {endpoint}/console/")
    run_server(settings, sock, workers, say)


# Access keys ------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage the access keys the server accepts, and their policies (docs/keys.md)."""


@keys.command("create")
@data_dir_option
@store_option
@secret_key_option
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A policy document (IAM's JSON grammar, docs/keys.md).",
)
@click.option("--admin", is_flag=True, help="Every action on every resource.")
@click.option(
    "--read-only", is_flag=True, help="Detect, compare, describe, list, search, read the audit log (the default)."
)
@click.option("--collection", help="Everything on this one collection, plus DetectFaces and CompareFaces.")
@click.option("--name", help="What the key is for (default: its policy's preset, or the policy file's name).")
@fails_cleanly
def keys_create(
    data_dir: Path | None,
    store: str | None,
    secret_key_file: Path | None,
    policy_file: Path | None,
    admin: bool,
    read_only: bool,
    collection: str | None,
    name: str | None,
) -> None:
    """Make a new access key with a policy (the secret is shown this once).

    Without --policy, --admin or --collection the key is read-only: least privilege first."""
    from visage.policy import known_actions
    from visage.service import collection_arn

    settings = Settings.from_env(data_dir=data_dir, store=store, secret_key_file=secret_key_file)
    chosen = [
        flag
        for flag, given in (
            ("--policy", policy_file),
            ("--admin", admin),
            ("--read-only", read_only),
            ("--collection", collection),
        )
        if given
    ]
    if len(chosen) > 1:
        raise click.UsageError(
            f"Give one of --policy, --admin, --read-only and --collection, not {' and '.join(chosen)}."
        )
    if policy_file is not None:
        policy, label = Policy.parse(policy_file.read_text(), known_actions()), policy_file.stem
    elif admin:
        policy, label = Policy.admin(), "admin"
    elif collection is not None:
        policy, label = Policy.for_collection(collection_arn(settings, collection)), f"collection {collection}"
    else:
        policy, label = Policy.read_only(), "read-only"
    with _key_ring(settings) as ring:
        key, credentials = ring.create(policy, name or label, by=_operator())
    _show_new_key(credentials, f"Created {key.access_key_id} ({key.name}): {policy.summary()}.")


@keys.command("list")
@data_dir_option
@store_option
@secret_key_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key, the whole policy included.")
@fails_cleanly
def keys_list(data_dir: Path | None, store: str | None, secret_key_file: Path | None, as_json: bool) -> None:
    """Every key: id, name, created, last used, revoked, and a summary of its policy (never the secrets)."""
    settings = Settings.from_env(data_dir=data_dir, store=store, secret_key_file=secret_key_file)
    if settings.postgres_url is None and not (settings.sqlite_path.exists() or settings.keys_path.exists()):
        fail(
            f"No Visage data in {settings.data_dir} (no visage.db), so no keys; "
            "`visage serve` or `visage keys create` makes the first."
        )
    with _key_ring(settings) as ring:
        known = ring.keys()
    if as_json:
        for key in known:
            click.echo(
                json.dumps(
                    {
                        "access_key_id": key.access_key_id,
                        "name": key.name,
                        "created_at": key.created_at.isoformat(),
                        "last_used_at": key.last_used_at and key.last_used_at.isoformat(),
                        "revoked_at": key.revoked_at and key.revoked_at.isoformat(),
                        "policy": key.policy.to_json(),
                        "summary": key.policy.summary(),
                    }
                )
            )
        return
    if not known:
        out.print(f"No access keys in {_where(settings)}; `visage keys create --admin` makes one.")
        return
    table = Table(title=f"Access keys in {_where(settings)}")
    for column in ("access key id", "name", "created", "last used", "revoked"):
        table.add_column(column, no_wrap=column != "name")
    table.add_column("policy", overflow="fold")
    for key in known:
        table.add_row(
            key.access_key_id,
            key.name,
            _when(key.created_at),
            _when(key.last_used_at) or "never",
            _when(key.revoked_at),
            key.policy.summary(),
            style="dim" if not key.active else None,
        )
    out.print(table)


@keys.command("revoke")
@click.argument("access_key_id")
@data_dir_option
@store_option
@secret_key_option
@fails_cleanly
def keys_revoke(access_key_id: str, data_dir: Path | None, store: str | None, secret_key_file: Path | None) -> None:
    """Revoke a key: every server sharing the store refuses it from its next request on."""
    settings = Settings.from_env(data_dir=data_dir, store=store, secret_key_file=secret_key_file)
    with _key_ring(settings) as ring:
        was = ring.get(access_key_id)
        key = ring.revoke(access_key_id, by=_operator())
    if was.active:
        out.print(f"Revoked {key.access_key_id} ({key.name}); requests signed with it are refused from now on.")
    else:
        out.print(f"{key.access_key_id} ({key.name}) was already revoked, at {_when(key.revoked_at)}.")


@keys.command("rotate")
@click.argument("access_key_id")
@data_dir_option
@store_option
@secret_key_option
@fails_cleanly
def keys_rotate(access_key_id: str, data_dir: Path | None, store: str | None, secret_key_file: Path | None) -> None:
    """Replace a key by a new pair with the same name and policy; the old key is revoked at once."""
    settings = Settings.from_env(data_dir=data_dir, store=store, secret_key_file=secret_key_file)
    with _key_ring(settings) as ring:
        key, credentials = ring.rotate(access_key_id, by=_operator())
    _show_new_key(credentials, f"{key.access_key_id} ({key.name}) replaces {access_key_id}, which is revoked.")


def _show_new_key(credentials: Credentials, what: str) -> None:
    """The pair on standard output, for scripts (the only time the secret is shown); what was done on standard error."""
    click.echo(f"AWS_ACCESS_KEY_ID={credentials.access_key_id}")
    click.echo(f"AWS_SECRET_ACCESS_KEY={credentials.secret_access_key}")
    err.print(f"{what} The secret is not shown again.", highlight=False, soft_wrap=True)


@contextmanager
def _key_ring(settings: Settings) -> Iterator[KeyRing]:
    """The key ring of the store ``settings`` name, a keys.json left in the data dir imported first."""
    from visage.keys import KeyRing, SecretBox
    from visage.store import open_store

    store = open_store(settings)
    try:
        ring = KeyRing(store, SecretBox(settings.secret_key_path))
        imported = ring.import_legacy(settings.keys_path)
        if imported:
            err.print(
                f"Imported {len(imported)} access key(s) from {settings.keys_path} into the store, as admin keys; "
                f"the file is now {settings.keys_path.name}.imported and holds their secrets in clear: delete it.",
                highlight=False,
            )
        yield ring
    finally:
        store.close()


def _operator() -> str:
    """Who changed keys from the command line, for the audit log: ``visage-cli:<user>``."""
    import getpass

    try:
        return f"visage-cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment
        return "visage-cli"


def _where(settings: Settings) -> str:
    """Where the store is, without a password."""
    if settings.postgres_url is None:
        return settings.data_dir.as_posix()
    from visage.store.postgres import describe_dsn

    return f"PostgreSQL {describe_dsn(settings.postgres_url)}"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# The audit log ----------------------------------------------------------------------------


@main.group("audit-log", invoke_without_command=True)
@data_dir_option
@store_option
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only records at or after this UTC time.",
)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.pass_context
@fails_cleanly
def audit_log(ctx: click.Context, data_dir: Path | None, store: str | None, since: Any, fmt: str) -> None:
    """Export the audit log: comparisons, searches, refused calls and changes of keys.

    `visage audit-log verify` checks its hash chain."""
    from visage.audit_export import csv_lines, jsonl_lines
    from visage.reviews import review_statuses

    if ctx.invoked_subcommand is not None:
        return
    audit_store = _audit_store(data_dir, store)
    records = audit_store.audit_records(since.replace(tzinfo=UTC) if since else None)
    if not records:
        where = _where(Settings.from_env(data_dir=data_dir, store=store))
        since_text = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""
        err.print(f"The audit log in {where} has no records{since_text}.", highlight=False, soft_wrap=True)
    lines = (jsonl_lines if fmt == "jsonl" else csv_lines)(records, review_statuses(audit_store, records))
    for line in lines:
        sys.stdout.write(line)


@audit_log.command("verify")
@data_dir_option
@store_option
@click.option(
    "--anchor",
    help="A head hash printed earlier and kept outside the server: it must still be in the chain.",
)
@click.pass_context
@fails_cleanly
def audit_log_verify(ctx: click.Context, data_dir: Path | None, store: str | None, anchor: str | None) -> None:
    """Walk the audit log's hash chain; name the first record changed, removed or inserted (exit 1).

    On success it prints the head: keep it outside the server (docs/keys.md)."""
    from visage.store.audit_chain import read_chain, verify

    parent = ctx.parent.params if ctx.parent is not None else {}
    audit_store = _audit_store(data_dir or parent.get("data_dir"), store or parent.get("store"))
    report = verify(read_chain(audit_store), anchor)
    if report.broken is not None:
        fail(f"the audit log was tampered with: {report.broken.message} ({report.records} records read)")
    if report.head_seq is None:
        out.print("The audit log is empty.")
        return
    out.print(f"The audit log's chain is intact: {report.records} records.", highlight=False)
    click.echo(f"head: seq {report.head_seq} sha256 {report.head_hash}")


def _audit_store(data_dir: Path | None, store: str | None) -> Store:
    from visage.store import open_store

    settings = Settings.from_env(data_dir=data_dir, store=store)
    if settings.postgres_url is None and not settings.sqlite_path.exists():
        raise click.UsageError(f"No Visage database in {settings.data_dir}.")
    return open_store(settings)


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


@main.group()
def video() -> None:
    """Analyse a video file on this machine, without a server (H.264 in MP4 or MOV)."""


@video.command("faces")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--attributes", type=click.Choice(["DEFAULT", "ALL"], case_sensitive=False), default="DEFAULT")
@click.option("--json", "as_json", is_flag=True, help="Print GetFaceDetection's JSON (all pages in one).")
@fails_cleanly
def video_faces(path: Path, attributes: str, as_json: bool) -> None:
    """The faces of PATH, sampled at VISAGE_VIDEO_SAMPLE_RATE frames a second."""
    from visage.engine import Engine
    from visage.jobs.analysis import detect_faces

    settings = Settings.from_env()
    engine = Engine(settings)
    with _open_video(path, settings) as video:
        rate, threads = settings.video_sample_rate, settings.threads
        faces = _analysed(video, detect_faces(video, engine, [attributes.upper()], rate, threads))
    if as_json:
        click.echo(json.dumps({"VideoMetadata": video.metadata.to_rekognition(), "Faces": faces}, indent=2))
        return
    table = Table(title=f"{path}: {len(faces)} faces in {len({f['Timestamp'] for f in faces})} sampled frames")
    for column in ("time (s)", "box (L,T,W,H)", "conf", "roll/yaw/pitch", "age", "gender"):
        table.add_column(column)
    for item in faces:
        face = item["Face"]
        b, p = face["BoundingBox"], face["Pose"]
        age, gender = face.get("AgeRange"), face.get("Gender")
        table.add_row(
            f"{item['Timestamp'] / 1000:.2f}",
            f"{b['Left']:.3f},{b['Top']:.3f},{b['Width']:.3f},{b['Height']:.3f}",
            f"{face['Confidence']:.1f}",
            f"{p['Roll']:.0f}/{p['Yaw']:.0f}/{p['Pitch']:.0f}",
            f"{age['Low']}-{age['High']}" if age else "",
            f"{gender['Value']} {gender['Confidence']:.0f}" if gender else "",
        )
    out.print(table)


@video.command("search")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--collection", required=True, help="The collection to search.")
@click.option(
    "--threshold", default=DEFAULT_THRESHOLD, show_default=True, type=click.FloatRange(0, 100), help="Least Similarity."
)
@data_dir_option
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print GetFaceSearch's JSON (all pages in one).")
@fails_cleanly
def video_search(
    path: Path, collection: str, threshold: float, data_dir: Path | None, store: str | None, as_json: bool
) -> None:
    """The people of PATH, each with one Index, and the faces of a collection they match."""
    from visage.jobs.analysis import matched_faces, search_audit_record, search_faces
    from visage.jobs.tracker import FaceTracker
    from visage.service import open_service

    settings = Settings.from_env(data_dir=data_dir, store=store)
    service = open_service(settings)
    searched = service.store.get_collection(collection)
    tracker = FaceTracker(service.engine.similarity_map(searched.face_model))
    with _open_video(path, settings) as video:
        frames = search_faces(video, service, searched, threshold, tracker)
        results = [r for _, batch in _progress(video, frames) for r in batch]
    renumber = tracker.merged()
    persons = [
        replace(r, person_index=renumber.get(r.person_index or 0, r.person_index)).to_rekognition() for r in results
    ]
    service.store.append_audit(search_audit_record("local", collection, threshold, matched_faces(results)))
    if as_json:
        click.echo(json.dumps({"VideoMetadata": video.metadata.to_rekognition(), "Persons": persons}, indent=2))
        return
    people: dict[int, list[dict[str, Any]]] = {}
    for item in persons:
        people.setdefault(item["Person"]["Index"], []).append(item)
    table = Table(title=f"{path}: {len(people)} people (threshold {threshold:g})")
    for column in ("index", "seen (s)", "frames", "best match", "similarity"):
        table.add_column(column)
    for index, seen in sorted(people.items()):
        matches = [m for item in seen for m in item["FaceMatches"]]
        best = max(matches, key=lambda m: m["Similarity"]) if matches else None
        table.add_row(
            str(index),
            f"{seen[0]['Timestamp'] / 1000:.1f}-{seen[-1]['Timestamp'] / 1000:.1f}",
            str(len(seen)),
            (best["Face"].get("ExternalImageId") or best["Face"]["FaceId"]) if best else "",
            f"{best['Similarity']:.1f}" if best else "",
        )
    out.print(table)


def _open_video(path: Path, settings: Settings) -> Any:
    from visage.jobs.video import BrokenVideo, Video

    try:
        return Video(path.open("rb"), path.stat().st_size, str(path), settings)
    except BrokenVideo as error:
        fail(str(error))


def _analysed(video: Any, frames: Any) -> list[dict[str, Any]]:
    """Every result of the analysis, with a progress bar."""
    return [r.to_rekognition() for _, batch in _progress(video, frames) for r in batch]


def _progress(video: Any, frames: Any) -> Any:
    """The analysis' frames, while a progress bar shows how much of the video is done."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from visage.jobs.video import BrokenVideo

    total = max(video.metadata.duration_ms, 1)
    columns = (
        TextColumn("[bold]analysing"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s of video"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("video", total=total / 1000)
        try:
            for timestamp, batch in frames:
                progress.update(task, completed=timestamp / 1000)
                yield timestamp, batch
        except BrokenVideo as error:
            progress.stop()
            fail(str(error))
        progress.update(task, completed=total / 1000)


@main.group()
def jobs() -> None:
    """The video jobs of a server's store."""


@jobs.command("list")
@data_dir_option
@store_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="The most recent jobs shown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@fails_cleanly
def jobs_list(data_dir: Path | None, store: str | None, limit: int, as_json: bool) -> None:
    """Video jobs, newest first: their state, progress and video."""
    from visage.store import open_store

    settings = Settings.from_env(data_dir=data_dir, store=store)
    if settings.postgres_url is None and not settings.sqlite_path.exists():
        raise click.UsageError(f"No Visage database in {settings.data_dir}.")
    rows: list[dict[str, Any]] = [
        {
            "JobId": job.job_id,
            "API": job.operation,
            "State": job.status,
            "Progress": round(job.progress, 3),
            "Created": job.created_at.isoformat(timespec="seconds"),
            "Video": "s3://{Bucket}/{Name}".format(**job.request["Video"]["S3Object"]),
            "StatusMessage": job.status_message,
        }
        for job in open_store(settings).list_jobs(limit)
    ]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} video jobs, newest first")
    for column in ("JobId", "API", "state", "done", "created (UTC)", "video", "message"):
        table.add_column(column, overflow="fold")
    for row in rows:
        row["Progress"] = f"{row['Progress']:.0%}"
        table.add_row(*(str(value or "") for value in row.values()))
    out.print(table)


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
