"""Visage: self-hosted face detection and recognition that speaks Amazon Rekognition's face API.

The public Python API::

    from visage import Engine
    engine = Engine()
    engine.detect_faces(image_bytes, attributes=["ALL"])
    engine.compare_faces(source_bytes, target_bytes, threshold=99)
    engine.embed(image_bytes, model="sface")
"""

from visage.config import Settings

# The engine (and so onnxruntime) is imported first: native libraries that bring their
# own OpenMP or SIMD runtimes have crashed onnxruntime's import when loaded before it
# (usearch 2.26 did; tests/test_imports.py guards the orders visage uses).
from visage.engine import Engine
from visage.errors import VisageError
from visage.faces import BoundingBox, Comparison, Embedding, Face, FaceDetail, FaceMatch

__all__ = [
    "BoundingBox",
    "Comparison",
    "Embedding",
    "Engine",
    "Face",
    "FaceDetail",
    "FaceMatch",
    "Settings",
    "VisageError",
]
__version__ = "0.1.0"
