"""Settings: every tunable of the engine and server, in one validated value.

A :class:`Settings` is an immutable value passed to whatever needs it; there is
no global settings object. It is validated when it is built, so a bad value stops
Visage at start-up with a :class:`SettingsError` that names the setting, its
``VISAGE_*`` variable and what it may be.

``Settings.from_env()`` reads ``VISAGE_<FIELD>`` for each field
(``VISAGE_MAX_IMAGE_BYTES=10485760``), and keyword overrides (the command line's
flags) win over the environment. :meth:`Settings.to_json` and
:meth:`Settings.from_json` carry a built value to the server's worker processes.

Limits that Rekognition's service model defines are read from it
(:mod:`visage.contract`), not copied. :data:`DEFAULT_THRESHOLD` is here because
the engine, the service and the command line all default to it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from visage.contract import shape_max

#: Least Similarity of a match when a request gives none (Rekognition's 80).
DEFAULT_THRESHOLD = 80.0

LandmarkSource = Literal["dlib68", "yunet5"]
Allocator = Literal["jemalloc", "system"]


class SettingsError(ValueError):
    """A setting has a value it may not take; the message names it and says what it may be."""


@dataclass(frozen=True)
class Settings:
    # Images ---------------------------------------------------------------------------
    #: Largest accepted image, in bytes (the service model's ImageBlob maximum, 5 MiB).
    max_image_bytes: int = field(default_factory=lambda: shape_max("ImageBlob"))
    #: Largest accepted image read through Image.S3Object, in bytes (Rekognition: 15 MB).
    max_s3_image_bytes: int = 15 * 1024 * 1024
    #: Largest accepted image, in decoded pixels; checked from the header, before decoding.
    max_image_pixels: int = 40_000_000
    #: Smallest accepted width and height, in pixels (Rekognition: 80).
    min_image_side: int = 80

    # Detection ------------------------------------------------------------------------
    #: YuNet score (0-1) below which a candidate box is dropped.
    detection_threshold: float = 0.75
    #: Long side of the first (coarse) detection pass; larger images are downscaled to it.
    detection_base_side: int = 640
    #: Long side of the finest detection pass; images bigger than the base side are also
    #: searched at min(their long side, this) so that small faces are found.
    detection_max_side: int = 1280
    #: At most this many faces are reported per image, the largest first (Rekognition: 100).
    max_faces: int = 100
    #: Where the 30 landmarks come from: dlib's 68-point model (its training data, iBUG
    #: 300-W, excludes commercial use) or YuNet's own 5 points (no such restriction).
    landmarks: LandmarkSource = "dlib68"

    # Recognition ----------------------------------------------------------------------
    #: Face model used for new collections and for CompareFaces.
    face_model: str = "sface"
    #: A Similarity map fitted on your own population (``visage eval calibrate --data DIR``):
    #: its face model's Similarity comes from this file instead of the shipped map.
    similarity_map: Path | None = None

    # Server ---------------------------------------------------------------------------
    #: Where the embedded store (visage.db) and the key file of the access keys' secrets are kept.
    data_dir: Path = field(default_factory=lambda: Path("visage-data"))
    #: Where collections and faces are kept: None or "sqlite" for SQLite in data_dir, or a
    #: postgresql:// URL for PostgreSQL with pgvector, which several servers can share
    #: (docs/postgres.md).
    store: str | None = None
    #: PostgreSQL store: how long a call waits for a connection to the database before it fails with
    #: ThrottlingException (the database is down or restarting); new connections get as long to open.
    store_connect_seconds: int = 5
    #: Whether the server checks SigV4 signatures (``visage serve --no-auth`` turns it off,
    #: on a loopback address only).
    auth: bool = True
    #: Whether the server writes one line per request to stderr (operation, status,
    #: milliseconds, access key id; never image data). ``visage serve --no-request-log`` turns it off.
    request_log: bool = True
    #: The Fernet key file that encrypts the access keys' secrets in the store (made, mode
    #: 0600, when the first key is). None: ``<data_dir>/secret.key``. Servers that share a
    #: PostgreSQL store must all have the same file (docs/keys.md).
    secret_key_file: Path | None = None
    #: ``visage serve --tls-cert/--tls-key``: serve HTTPS with this certificate chain and
    #: private key (PEM files); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: On SIGTERM (or Ctrl-C) the server stops accepting connections, lets the requests in
    #: flight finish for at most this many seconds, then exits (docs/operations.md).
    shutdown_seconds: int = 25
    #: A client must send a request's headers within this many seconds of the connection
    #: waiting for them, and its body within ``request_body_seconds`` of its headers; one that
    #: does not is answered 408 and cut off (docs/operations.md).
    request_header_seconds: int = 10
    request_body_seconds: int = 60
    #: The server's memory allocator: "jemalloc" where it is installed (Debian's libjemalloc2,
    #: which ``make install`` adds; glibc's malloc where it is not), or "system" for glibc's
    #: malloc. Under sustained load the SQLite server's memory creeps up, more slowly on jemalloc
    #: (docs/performance.md).
    allocator: Allocator = "jemalloc"
    #: Region and account that appear in collection ARNs.
    region: str = "us-east-1"
    account_id: str = "000000000000"
    #: Image.S3Object on the embedded default: Bucket is a sub-folder of this folder.
    s3_root: Path | None = None
    #: Image.S3Object through any S3-compatible endpoint (credentials from the usual AWS
    #: variables); used when s3_root is not set.
    s3_endpoint_url: str | None = None
    #: Threads that run engine work in the server (each holds its own OpenCV networks).
    threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    #: Cores one face-model call may use (onnxruntime's intra-op threads). One: the server's
    #: ``threads`` (one per core) and a video job's frames already keep the cores busy, and a
    #: call on two cores beside another only waits (a video face search ran 1.2x faster on
    #: one; a lone SFace embedding takes 18 ms on one core, 14 ms on two).
    model_threads: int = 1
    #: Embedded store: collections up to this many faces are searched exactly, bigger
    #: ones through a product-quantised index (docs/scale.md).
    exact_search_limit: int = 50_000
    #: Faces one collection may hold (Rekognition's maximum is 20 million).
    max_faces_per_collection: int = 20_000_000

    # Console (docs/console.md) ------------------------------------------------------
    #: Whether IndexFaces keeps a small aligned crop of each face (a 112 px JPEG of at most
    #: 8 KB) for reviewers to look at; a collection's own setting wins over this one.
    keep_face_thumbnails: bool = False
    #: A console session ends after this many minutes without a request.
    console_idle_minutes: int = 30
    #: The folder that holds accuracy.md and bias-audit.md, as the evaluations wrote them, for
    #: the console's Accuracy page and its words on a Similarity; None: the ``docs`` folder of
    #: the source tree Visage runs from, else ``./docs``.
    docs_dir: Path | None = None
    # Stored video (docs/video.md) ----------------------------------------------------
    #: Frames analysed per second of video: one every 1/rate seconds of the container's
    #: timestamps, counted from the first frame.
    video_sample_rate: float = 5.0
    #: Long side, in pixels, past which frames are scaled down (by FFmpeg, as they are converted)
    #: before faces are looked for: 960 keeps the smallest face Rekognition Video detects, 40 px
    #: in a 1920x1080 frame, at 20 px, where the detector finds faces reliably.
    video_frame_side: int = 960
    #: StartFaceSearch: a face that has not moved or changed since its person's face vector was
    #: made, at most this many milliseconds before, keeps that vector (and its FaceMatches)
    #: instead of a new one (:mod:`visage.jobs.still_faces`); 0: a new one for every face.
    video_vector_reuse_ms: int = 600
    #: Threads per server process that run video jobs, one job each.
    video_workers: int = 1
    #: Jobs queued or running at once; one more Start is LimitExceededException (Rekognition: 20).
    max_video_jobs: int = 20
    #: Largest video, in bytes and in seconds (Rekognition: 10 GB, 6 hours); checked before decoding.
    max_video_bytes: int = 10 * 1024**3
    max_video_seconds: int = 6 * 3600
    #: How long a finished job's results and its ClientRequestToken are kept, in seconds (7 days).
    video_retention_seconds: int = 7 * 24 * 3600
    #: A running job is leased to its worker for this many seconds and the lease is renewed as
    #: it goes; a job whose lease runs out (its server died) is started again, or failed.
    video_job_lease_seconds: int = 30
    #: The SNS endpoint to which a finished job publishes Rekognition's completion message, for
    #: jobs started with a NotificationChannel; None: no notification is sent.
    sns_endpoint_url: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            rule = _rule(f.name)
            if rule is not None and not rule[1](getattr(self, f.name)):
                raise _refused(f.name, getattr(self, f.name))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(
                f"{_variable('tls_cert')} and {_variable('tls_key')} (--tls-cert, --tls-key) go together: "
                "give both, or neither."
            )

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of setting ``name``, without building a Settings (for ``--help``)."""
        f = cls.__dataclass_fields__[name]
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

    @property
    def keys_path(self) -> Path:
        """Where Visage kept access keys before they moved into the store; imported once
        (:meth:`visage.keys.KeyRing.import_legacy`)."""
        return self.data_dir / "keys.json"

    @property
    def secret_key_path(self) -> Path:
        """The key file of the access keys' secrets (:attr:`secret_key_file`, or its default)."""
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.tls_cert is not None

    @property
    def sqlite_path(self) -> Path:
        """The embedded store's database, used when :attr:`store` names no other."""
        return self.data_dir / "visage.db"

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL URL :attr:`store` names, or None for the embedded SQLite store."""
        return None if self.store in _SQLITE else self.store

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by ``VISAGE_<FIELD>`` variables, overridden by ``overrides``
        (a ``None`` override is no override)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, kind in _field_types().items():
            raw = env.get(_variable(name))
            if raw is not None:
                values[name] = _parse(name, kind, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_json(self) -> str:
        """These settings as one line of JSON, for :meth:`from_json` in another process."""
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings :meth:`to_json` wrote."""
        paths = {name for name, kind in _field_types().items() if Path in _alternatives(kind)}
        values: dict[str, Any] = {
            k: Path(v) if k in paths and v is not None else v for k, v in json.loads(text).items()
        }
        return cls(**values)


# Validation --------------------------------------------------------------------------------

#: What a setting may be, in words, and the check.
Rule = tuple[str, Callable[[Any], bool]]


def _whole(least: int) -> Rule:
    return (
        f"a whole number of at least {least}",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least,
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fraction(value: Any) -> bool:
    return _number(value) and 0 < value < 1


_SQLITE = (None, "", "sqlite")


def _store(value: Any) -> bool:
    return value in _SQLITE or (isinstance(value, str) and value.startswith(("postgresql://", "postgres://")))


_RULES: dict[str, Rule] = {
    **dict.fromkeys(
        (
            "max_image_bytes",
            "max_s3_image_bytes",
            "max_image_pixels",
            "min_image_side",
            "detection_base_side",
            "detection_max_side",
            "max_faces",
            "threads",
            "model_threads",
            "max_faces_per_collection",
            "console_idle_minutes",
            "video_workers",
            "video_frame_side",
            "max_video_jobs",
            "max_video_bytes",
            "max_video_seconds",
            "video_retention_seconds",
            "video_job_lease_seconds",
            "shutdown_seconds",
            "request_header_seconds",
            "request_body_seconds",
            "store_connect_seconds",
        ),
        _whole(1),
    ),
    "video_sample_rate": (
        "a number of frames per second, above 0 and at most 60",
        lambda v: _number(v) and 0 < v <= 60,
    ),
    **dict.fromkeys(("exact_search_limit", "video_vector_reuse_ms"), _whole(0)),
    "detection_threshold": ("a number between 0 and 1 (both excluded)", _fraction),
    **dict.fromkeys(
        ("auth", "keep_face_thumbnails", "request_log"), ("true or false (1/0, yes/no)", lambda v: isinstance(v, bool))
    ),
    "store": ("'sqlite' or a postgresql:// URL", _store),
    "similarity_map": (
        "a Similarity map file written by `visage eval calibrate --data DIR` for the face model version in use",
        lambda v: v is None or _similarity_map_file(v),
    ),
}


def _similarity_map_file(path: Any) -> bool:
    """Whether ``path`` holds a Similarity map of a face model this server has, fitted for its version."""
    from visage.engine.registry import FACE_MODELS
    from visage.engine.similarity import SimilarityMap

    try:
        mapping = SimilarityMap.read(Path(path))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    entry = FACE_MODELS.get(mapping.model)
    return entry is not None and mapping.metadata.get("face_model_version") == entry.version


def _rule(name: str) -> Rule | None:
    """The rule of setting ``name``: from the table, or one of the values of a ``Literal`` type."""
    if name in _RULES:
        return _RULES[name]
    if name == "face_model":  # the registry's names; imported here, as the engine imports this module
        from visage.engine.registry import MODEL_NAMES

        return "one of " + ", ".join(MODEL_NAMES), lambda value: value in MODEL_NAMES
    kind = _field_types()[name]
    if typing.get_origin(kind) is not Literal:
        return None
    choices = typing.get_args(kind)
    return "one of " + ", ".join(choices), lambda value: value in choices


def _refused(name: str, value: Any) -> SettingsError:
    """The error for a value of setting ``name`` that breaks its rule (or is not even of its type)."""
    rule = _rule(name)
    assert rule is not None, name
    # The store's value is not echoed: a URL may hold a password.
    shown = " (the value given is not shown)" if name == "store" else f", not {value!r}"
    return SettingsError(f"{_variable(name)} ({name}) must be {rule[0]}{shown}.")


def _variable(name: str) -> str:
    return f"VISAGE_{name.upper()}"


# Reading the environment -----------------------------------------------------------------

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _alternatives(kind: Any) -> tuple[Any, ...]:
    """The types a field may hold: ``(Path, NoneType)`` for ``Path | None``."""
    return typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)


def _parse(name: str, kind: Any, raw: str) -> Any:
    """The value of ``VISAGE_<NAME>=raw`` for a field of type ``kind``."""
    base = _alternatives(kind)[0]
    if base is bool:
        word = raw.strip().lower()
        if word not in _TRUE + _FALSE:
            raise _refused(name, raw)
        return word in _TRUE
    if base in (int, float):
        try:
            return base(raw)
        except ValueError:
            raise _refused(name, raw) from None
    if base is Path:
        return Path(raw)
    return raw
