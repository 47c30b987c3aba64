"""Settings: every tunable of the engine and server, from defaults, ``VISAGE_*`` variables or flags.

A :class:`Settings` is an immutable value passed to whatever needs it; there is
no global settings object. ``Settings.from_env()`` reads ``VISAGE_<FIELD>`` for
each field (``VISAGE_MAX_IMAGE_BYTES=10485760``), and keyword overrides win
over the environment.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

LandmarkSource = Literal["dlib68", "yunet5"]


@dataclass(frozen=True)
class Settings:
    # Images ---------------------------------------------------------------------------
    #: Largest accepted image, in bytes (Rekognition: 5 MiB for Image.Bytes).
    max_image_bytes: int = 5_242_880
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

    # Server ---------------------------------------------------------------------------
    data_dir: Path = field(default_factory=lambda: Path("visage-data"))
    #: Where collections and faces are kept: None or "sqlite" for SQLite in data_dir, or a
    #: postgresql:// URL for PostgreSQL with pgvector, which several servers can share
    #: (docs/postgres.md).
    store: str | None = None
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
    #: Cores one face-model call may use (onnxruntime's intra-op threads). ``visage
    #: index`` runs a process per core and sets it to 1.
    model_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    #: Embedded store: collections up to this many faces are searched exactly, bigger
    #: ones through a product-quantised index (docs/scale.md).
    exact_search_limit: int = 50_000
    #: Faces one collection may hold (Rekognition's maximum is 20 million).
    max_faces_per_collection: int = 20_000_000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by ``VISAGE_<FIELD>`` variables, overridden by ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"VISAGE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.landmarks not in ("dlib68", "yunet5"):
            raise ValueError(f"landmarks must be 'dlib68' or 'yunet5', not {self.landmarks!r}")
        if not 0 < self.detection_threshold < 1:
            raise ValueError("detection_threshold must be between 0 and 1")
        if self.max_image_bytes < 1 or self.max_image_pixels < 1:
            raise ValueError("image limits must be positive")


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind in ("Path", "Path | None"):
        return Path(raw)
    return raw
