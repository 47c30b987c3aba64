"""Visage: self-hosted face detection and recognition that speaks Amazon Rekognition's face API.

The public Python API::

    from visage import Engine
    engine = Engine()
    engine.detect_faces(image_bytes, attributes=["ALL"])
    engine.compare_faces(source_bytes, target_bytes, threshold=99)
    engine.embed(image_bytes, model="sface")
"""

from visage.config import Settings

# The engine (and so onnxruntime) is imported before anything can import usearch
# (visage.store.index): usearch 2.26 loaded first makes onnxruntime 1.30's import
# crash the process (tests/test_imports.py).
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
