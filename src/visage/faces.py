"""What the engine says about a face, as dataclasses that render Rekognition's JSON shapes.

Geometry is stored as Rekognition reports it: ratios of the image width and
height, origin top-left. ``to_rekognition()`` on each class returns the dict
the Rekognition wire format carries, so the server only serialises.
Attributes no shipped model can estimate (Emotions, Eyeglasses, Sunglasses,
Beard, Mustache, FaceOccluded) have no field here: Visage leaves them out rather
than invent values. EyeDirection is an image-only attribute, as in Rekognition:
video leaves it out (:func:`video_attributes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from visage.engine.detection import Detection

#: Rekognition's ``Attribute`` values that Visage can answer. DEFAULT is always on.
SUPPORTED_ATTRIBUTES = frozenset(
    {"DEFAULT", "ALL", "AGE_RANGE", "GENDER", "EYES_OPEN", "MOUTH_OPEN", "SMILE", "EYE_DIRECTION"}
)
#: Attributes of Rekognition's enum that no installable model covers; asked for, they are omitted.
UNSUPPORTED_ATTRIBUTES = frozenset({"BEARD", "EMOTIONS", "EYEGLASSES", "MUSTACHE", "FACE_OCCLUDED", "SUNGLASSES"})
_OPTIONAL = ("AGE_RANGE", "GENDER", "EYES_OPEN", "MOUTH_OPEN", "SMILE", "EYE_DIRECTION")
#: Attributes Rekognition returns for images only (GetFaceDetection leaves them out).
IMAGE_ONLY_ATTRIBUTES = frozenset({"EYE_DIRECTION"})


def wanted_attributes(requested: Iterable[str] | None) -> frozenset[str]:
    """The optional attributes to compute for a Rekognition ``Attributes`` list.

    ``None`` or ``["DEFAULT"]`` means none beyond the defaults; ``"ALL"`` means every
    supported one; unsupported names are accepted and ignored.
    """
    names = set(requested or ())
    if "ALL" in names:
        return frozenset(_OPTIONAL)
    return frozenset(n for n in names if n in _OPTIONAL)


def video_attributes(requested: Iterable[str] | None) -> frozenset[str]:
    """The optional attributes to compute for a video frame: as for an image, less the image-only ones."""
    return wanted_attributes(requested) - IMAGE_ONLY_ATTRIBUTES


@dataclass(frozen=True)
class BoundingBox:
    """A box as ratios of the image size; may pass 0 or 1 where a face is cut by the edge."""

    left: float
    top: float
    width: float
    height: float

    @classmethod
    def from_pixels(cls, x: float, y: float, w: float, h: float, image_width: int, image_height: int) -> BoundingBox:
        return cls(left=x / image_width, top=y / image_height, width=w / image_width, height=h / image_height)

    def to_pixels(self, image_width: int, image_height: int) -> tuple[float, float, float, float]:
        return (self.left * image_width, self.top * image_height, self.width * image_width, self.height * image_height)

    @property
    def area(self) -> float:
        return self.width * self.height

    def overlap(self, other: BoundingBox) -> float:
        """Intersection over union with ``other``: 0 apart, 1 the same box."""
        width = min(self.left + self.width, other.left + other.width) - max(self.left, other.left)
        height = min(self.top + self.height, other.top + other.height) - max(self.top, other.top)
        inter = max(0.0, width) * max(0.0, height)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_rekognition(self) -> dict[str, float]:
        return {"Width": self.width, "Height": self.height, "Left": self.left, "Top": self.top}

    @classmethod
    def from_rekognition(cls, data: dict[str, float]) -> BoundingBox:
        return cls(left=data["Left"], top=data["Top"], width=data["Width"], height=data["Height"])


@dataclass(frozen=True)
class Landmark:
    type: str  # one of Rekognition's 30 LandmarkType values
    x: float  # ratio of image width
    y: float  # ratio of image height

    def to_rekognition(self) -> dict[str, Any]:
        return {"Type": self.type, "X": self.x, "Y": self.y}


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees: Roll (in-plane tilt), Yaw (turn left/right), Pitch (nod up/down)."""

    roll: float
    yaw: float
    pitch: float

    def to_rekognition(self) -> dict[str, float]:
        return {"Roll": self.roll, "Yaw": self.yaw, "Pitch": self.pitch}


@dataclass(frozen=True)
class Quality:
    """Brightness and Sharpness of the face region, each 0-100 (formulas in docs/engine.md)."""

    brightness: float
    sharpness: float

    def to_rekognition(self) -> dict[str, float]:
        return {"Brightness": self.brightness, "Sharpness": self.sharpness}


@dataclass(frozen=True)
class AgeRange:
    low: int
    high: int

    def to_rekognition(self) -> dict[str, int]:
        return {"Low": self.low, "High": self.high}


@dataclass(frozen=True)
class Estimate:
    """A categorical or yes/no estimate with its confidence (0-100)."""

    value: Any  # bool for EyesOpen/MouthOpen/Smile, "Male"/"Female" for Gender
    confidence: float

    def to_rekognition(self) -> dict[str, Any]:
        return {"Value": self.value, "Confidence": self.confidence}


@dataclass(frozen=True)
class EyeDirection:
    """Where the eyes look relative to the head, in degrees: Yaw > 0 towards the image's right,
    Pitch > 0 up (the signs of :class:`Pose`); Confidence 0-100."""

    yaw: float
    pitch: float
    confidence: float

    def to_rekognition(self) -> dict[str, float]:
        return {"Yaw": self.yaw, "Pitch": self.pitch, "Confidence": self.confidence}


@dataclass(frozen=True)
class FaceDetail:
    """One detected face, in Rekognition's FaceDetail terms."""

    bounding_box: BoundingBox
    confidence: float  # 0-100: confidence that the box holds a face
    landmarks: tuple[Landmark, ...]
    pose: Pose
    quality: Quality
    age_range: AgeRange | None = None
    gender: Estimate | None = None
    eyes_open: Estimate | None = None
    mouth_open: Estimate | None = None
    smile: Estimate | None = None
    eye_direction: EyeDirection | None = None

    def to_rekognition(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "BoundingBox": self.bounding_box.to_rekognition(),
            "Confidence": self.confidence,
            "Landmarks": [lm.to_rekognition() for lm in self.landmarks],
            "Pose": self.pose.to_rekognition(),
            "Quality": self.quality.to_rekognition(),
        }
        for key, value in (
            ("AgeRange", self.age_range),
            ("Gender", self.gender),
            ("EyesOpen", self.eyes_open),
            ("MouthOpen", self.mouth_open),
            ("Smile", self.smile),
            ("EyeDirection", self.eye_direction),
        ):
            if value is not None:
                out[key] = value.to_rekognition()
        return out

    def to_compared_face(self) -> dict[str, Any]:
        """Rekognition's ComparedFace: the subset CompareFaces returns for target faces."""
        out = {k: v for k, v in self.to_rekognition().items() if k in _COMPARED_FACE_KEYS}
        return out

    def to_compared_source_face(self) -> dict[str, Any]:
        return {"BoundingBox": self.bounding_box.to_rekognition(), "Confidence": self.confidence}


_COMPARED_FACE_KEYS = frozenset({"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "Smile", "Emotions"})


@dataclass(frozen=True)
class Embedding:
    """A face vector, unit length, tagged with the face model that made it.

    Vectors of different models live in different spaces and are never compared.
    """

    model: str  # face model name, e.g. "sface"
    version: str  # face model version, e.g. "sface-1"
    vector: np.ndarray = field(repr=False)  # float32, shape (dim,), L2 norm 1


@dataclass(frozen=True)
class Face:
    """A detected face with its embedding (when one was asked for), and Rekognition's
    reasons why it fails the QualityFilter it was held to (empty when it passes)."""

    detail: FaceDetail
    embedding: Embedding | None = None
    filter_reasons: tuple[str, ...] = ()  # e.g. ("SMALL_BOUNDING_BOX", "LOW_SHARPNESS")
    #: The detector's box and points the face was found with (for :meth:`Engine.embed_faces`).
    detection: Detection | None = field(default=None, repr=False, compare=False)

    @property
    def embedded(self) -> Embedding:
        """The embedding of a face that has one (ValueError for a face that was not embedded)."""
        if self.embedding is None:
            raise ValueError("this face was not embedded")
        return self.embedding


@dataclass(frozen=True)
class FaceMatch:
    """A target face of a comparison, with its similarity to the source face."""

    face: Face
    similarity: float  # 0-100, calibrated (see visage.engine.similarity)


@dataclass(frozen=True)
class Comparison:
    """The result of comparing the largest source face with every target face."""

    source: Face
    matches: list[FaceMatch]  # similarity >= threshold, best first
    unmatched: list[FaceMatch]  # below the threshold, in detection order

    def to_rekognition(self) -> dict[str, Any]:
        return {
            "SourceImageFace": self.source.detail.to_compared_source_face(),
            "FaceMatches": [
                {"Similarity": m.similarity, "Face": m.face.detail.to_compared_face()} for m in self.matches
            ],
            "UnmatchedFaces": [m.face.detail.to_compared_face() for m in self.unmatched],
        }
