"""The Engine: image bytes to faces, embeddings and comparisons, in-process.

This is Visage's Python API. Load an :class:`Engine` once; it decodes every
image it is given, loads each model the first time a call needs it (face
models through :mod:`visage.engine.registry`) and shares them between threads::

    from visage import Engine

    engine = Engine()
    faces = engine.detect_faces(open("group.jpg", "rb").read(), attributes=["ALL"])
    result = engine.compare_faces(source_bytes, target_bytes, threshold=99)

Every result is a dataclass with ``to_rekognition()``, so the HTTP server only
translates. Failures raise the named exceptions of :mod:`visage.errors`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import cv2

from visage.config import DEFAULT_THRESHOLD, Settings
from visage.engine.attributes import (
    EYES_OPEN,
    MOUTH_OPEN,
    SMILE,
    AgeGenderModel,
    eye_openness,
    mouth_openness,
    smile_score,
)
from visage.engine.detection import Detection, FaceDetector
from visage.engine.eye_direction import GAZE, IrisModel, eye_corners, gaze_applies
from visage.engine.images import DecodedImage, decode_image
from visage.engine.landmarks import ShapePredictor, landmarks_from_68, landmarks_from_yunet, shape_points, solve_pose
from visage.engine.quality import measure_quality, quality_filter_reasons
from visage.engine.recognition import FaceModel, cosine
from visage.engine.registry import FIVE_POINTS, face_model_entry
from visage.engine.similarity import SimilarityMap
from visage.errors import NO_FACES, InvalidParameterException, rekognition_message
from visage.faces import (
    AgeRange,
    BoundingBox,
    Comparison,
    Embedding,
    Estimate,
    EyeDirection,
    Face,
    FaceDetail,
    FaceMatch,
    wanted_attributes,
)

T = TypeVar("T")
ImageInput = bytes | DecodedImage


class Engine:
    """Detection, landmarks, attributes and face models, loaded once and shared."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._lock = threading.RLock()  # a model's factory may load another model
        self._loaded: dict[str, object] = {}

    # Models, each loaded on first use ------------------------------------------------

    def _load(self, key: str, factory: Callable[[], T]) -> T:
        model = self._loaded.get(key)
        if model is None:
            with self._lock:
                model = self._loaded.get(key)
                if model is None:
                    model = factory()
                    self._loaded[key] = model
        return model  # type: ignore[return-value]

    @property
    def detector(self) -> FaceDetector:
        return self._load("detector", lambda: FaceDetector(self.settings))

    def _shape_predictor(self, points: int) -> ShapePredictor:
        return self._load(f"shape{points}", lambda: ShapePredictor(points))

    def face_model(self, name: str | None = None) -> FaceModel:
        """The face model called ``name`` (default: the configured one)."""
        entry = face_model_entry(name or self.settings.face_model)
        return self._load(entry.name, lambda: entry.factory(self.settings, *map(self._face_model_part, entry.needs)))

    def _face_model_part(self, name: str) -> object:
        """A part a face model's entry needs: another face model, or the 5-point shape predictor."""
        return self._shape_predictor(5) if name == FIVE_POINTS else self.face_model(name)

    def similarity_map(self, name: str | None = None) -> SimilarityMap:
        """Face model ``name``'s map from cosine to Similarity, read without loading the model: the
        settings' ``similarity_map`` file if it is that model's, else the shipped map."""
        entry = face_model_entry(name or self.settings.face_model)
        return self._load(f"{entry.name} similarity", lambda: self._similarity_map_in_force(entry.name))

    def _similarity_map_in_force(self, name: str) -> SimilarityMap:
        path = self.settings.similarity_map
        own = SimilarityMap.read(path) if path is not None else None
        return own if own is not None and own.model == name else face_model_entry(name).similarity_map()

    def warm_up(self, models: Iterable[str] | None = None, attributes: bool = True) -> None:
        """Load everything a server will need (default: the configured face model), so the first request is not slow."""
        _ = self.detector
        if self.settings.landmarks == "dlib68":
            self._shape_predictor(68)
        for name in models or (self.settings.face_model,):
            self.face_model(name)
        if attributes:
            self._shape_predictor(5)
            self._load("age_gender", AgeGenderModel)
            self._load("iris", IrisModel)

    # The API -------------------------------------------------------------------------

    def decode(self, image: ImageInput, max_bytes: int | None = None) -> DecodedImage:
        """The upright RGB image of PNG or JPEG bytes, or a named error (:mod:`visage.engine.images`).

        ``max_bytes`` overrides the settings' byte limit (images read from S3 may be larger).
        """
        return image if isinstance(image, DecodedImage) else decode_image(image, self.settings, max_bytes=max_bytes)

    def analyze(
        self,
        image: ImageInput,
        attributes: Iterable[str] | None = None,
        model: str | None = None,
        embed: bool = False,
        quality_filter: str = "NONE",
        max_embedded: int | None = None,
        largest_only: bool = False,
    ) -> list[Face]:
        """Faces in the image (largest first), with the requested attributes, the
        reasons each fails ``quality_filter`` (none for a face that passes) and, if
        ``embed``, vectors from face model ``model`` for the faces that pass (the
        first ``max_embedded`` of them, if given; with ``largest_only``, those of the
        ``max_embedded`` largest faces that pass, so a smaller face never takes the
        place of a larger one that fails); the others are returned without one, and
        cost no embedding."""
        decoded = self.decode(image)
        detections = self.detector.detect(decoded)
        if not detections:
            return []
        details = self._describe(decoded, detections, wanted_attributes(attributes))
        reasons = [tuple(quality_filter_reasons(d, quality_filter, decoded.width, decoded.height)) for d in details]
        faces = [Face(detail=d, filter_reasons=r, detection=x) for d, r, x in zip(details, reasons, detections)]
        if embed:
            candidates = range(len(details))[:max_embedded] if largest_only else range(len(details))
            passing = [i for i in candidates if not reasons[i]][:max_embedded]
            for i, face in zip(passing, self.embed_faces(decoded, [faces[i] for i in passing], model)):
                faces[i] = face
        return faces

    def embed_faces(self, image: DecodedImage, faces: Sequence[Face], model: str | None = None) -> list[Face]:
        """``faces`` of ``image``, as :meth:`analyze` found them, with vectors from face model ``model``."""
        detections = [face.detection for face in faces]
        if None in detections:
            raise ValueError("a face without its detection cannot be embedded")
        vectors = self.face_model(model).embed(image, detections)  # type: ignore[arg-type]
        return [dataclasses.replace(face, embedding=vector) for face, vector in zip(faces, vectors)]

    def detect_faces(self, image: ImageInput, attributes: Iterable[str] | None = None) -> list[FaceDetail]:
        """Rekognition's DetectFaces: up to 100 faces, largest first."""
        return [face.detail for face in self.analyze(image, attributes)]

    def embed(self, image: ImageInput, model: str | None = None) -> list[Face]:
        """Faces with their embeddings (default attributes only)."""
        return self.analyze(image, model=model, embed=True)

    def similarity(self, a: Embedding, b: Embedding) -> float:
        """Calibrated Similarity (0-100) of two embeddings of the same model."""
        return float(self.similarity_map(a.model)(cosine(a, b)))

    def compare_faces(
        self,
        source: ImageInput,
        target: ImageInput,
        threshold: float = DEFAULT_THRESHOLD,
        model: str | None = None,
        quality_filter: str = "NONE",
    ) -> Comparison:
        """Rekognition's CompareFaces: the largest source face against every target face.

        Faces below ``quality_filter``'s bar take no part, in either image.
        """
        sources = self._usable_faces(source, model, quality_filter)
        if not sources:
            raise no_faces(f"No face was found in the source image{passing(quality_filter)}.")
        targets = self._usable_faces(target, model, quality_filter)
        if not targets:
            raise no_faces(f"No face was found in the target image{passing(quality_filter)}.")
        source_face = sources[0]
        mapping = self.similarity_map(source_face.embedded.model)
        raw = [cosine(source_face.embedded, t.embedded) for t in targets]
        scored = [FaceMatch(face=t, similarity=float(mapping(r))) for t, r in zip(targets, raw)]
        # best first by the raw score (Similarity can tie where the map is flat; sorted() keeps such ties in order)
        ranked = [scored[i] for i in sorted(range(len(scored)), key=lambda i: -raw[i])]
        matches = [m for m in ranked if m.similarity >= threshold]
        unmatched = [m for m in scored if m.similarity < threshold]
        return Comparison(source=source_face, matches=matches, unmatched=unmatched)

    # Internals ---------------------------------------------------------------------

    def _usable_faces(self, image: ImageInput, model: str | None, quality_filter: str) -> list[Face]:
        faces = self.analyze(image, model=model, embed=True, quality_filter=quality_filter)
        return [f for f in faces if f.embedding is not None]

    def _describe(self, image: DecodedImage, detections: list[Detection], wanted: frozenset[str]) -> list[FaceDetail]:
        width, height = image.width, image.height
        gray = cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY)
        use_68 = self.settings.landmarks == "dlib68"
        points68 = [shape_points(self._shape_predictor(68).shape(image.rgb, d)) for d in detections] if use_68 else None
        age_gender: list[tuple[AgeRange, Estimate] | None] = [None] * len(detections)
        if wanted & {"AGE_RANGE", "GENDER"}:
            five = self._shape_predictor(5)
            shapes = [five.shape(image.rgb, d) for d in detections]
            age_gender = list(self._load("age_gender", AgeGenderModel).estimate(image.rgb, shapes))
        poses = [
            solve_pose(points68[i] if points68 is not None else d.points, width, height)
            for i, d in enumerate(detections)
        ]
        gaze: list[EyeDirection | None] = [None] * len(detections)
        if "EYE_DIRECTION" in wanted and points68 is not None:
            gated = [i for i, d in enumerate(detections) if gaze_applies(d.box[2], d.box[3], poses[i])]
            corners = [eye_corners(points68[i]) for i in gated]
            offsets = self._load("iris", IrisModel).offsets(image.rgb, corners)
            for i, offset in zip(gated, offsets):
                gaze[i] = GAZE.direction(offset)
        details = []
        for i, detection in enumerate(detections):
            points = points68[i] if points68 is not None else None
            landmarks = (
                landmarks_from_68(points, gray, width, height)
                if points is not None
                else landmarks_from_yunet(detection, width, height)
            )
            extra: dict[str, object] = {}
            estimated = age_gender[i]
            if estimated is not None:
                age, gender = estimated
                if "AGE_RANGE" in wanted:
                    extra["age_range"] = age
                if "GENDER" in wanted:
                    extra["gender"] = gender
            if points is not None:
                if "EYES_OPEN" in wanted:
                    extra["eyes_open"] = EYES_OPEN.estimate(eye_openness(points))
                if "MOUTH_OPEN" in wanted:
                    extra["mouth_open"] = MOUTH_OPEN.estimate(mouth_openness(points))
                if "SMILE" in wanted:
                    extra["smile"] = SMILE.estimate(smile_score(points))
            if gaze[i] is not None:
                extra["eye_direction"] = gaze[i]
            details.append(
                FaceDetail(
                    bounding_box=BoundingBox.from_pixels(*detection.pixel_box, width, height),
                    confidence=round(detection.score * 100.0, 4),
                    landmarks=landmarks,
                    pose=poses[i],
                    quality=measure_quality(gray, detection.box),
                    **extra,  # type: ignore[arg-type]
                )
            )
        return details


def passing(quality_filter: str) -> str:
    """How a no-face message names the faces that count: all of them, or those that pass the filter."""
    return "" if quality_filter == "NONE" else f" that passes QualityFilter {quality_filter}"


def no_faces(detail: str) -> InvalidParameterException:
    """Rekognition's no-face error (clients match on its text: double-take reads "no faces" as no match)."""
    return InvalidParameterException(rekognition_message(NO_FACES, detail))
