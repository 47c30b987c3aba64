"""The face engine: image bytes to faces, embeddings and comparisons, in-process.

:class:`Engine` (in :mod:`visage.engine.engine`) is the way in; the modules
beside it are its parts, one step each:

- :mod:`~visage.engine.images`: bytes to an upright RGB image, or a named error;
- :mod:`~visage.engine.detection`: YuNet over an image pyramid;
- :mod:`~visage.engine.landmarks`: Rekognition's 30 landmarks and the head pose;
- :mod:`~visage.engine.quality`: Brightness, Sharpness and the QualityFilter bars;
- :mod:`~visage.engine.attributes`: AgeRange, Gender, EyesOpen, MouthOpen, Smile;
- :mod:`~visage.engine.eye_direction`: EyeDirection, from MediaPipe's iris model;
- :mod:`~visage.engine.recognition`: the face models, face to unit vector
  (:mod:`~visage.engine.sface_graph` rewrites SFace's graph at load);
- :mod:`~visage.engine.registry`: the face models by name, with their versions;
- :mod:`~visage.engine.similarity`: a model's cosine to Rekognition's Similarity;
- :mod:`~visage.engine.bundled`: the pinned model files, checked before loading;
- :mod:`~visage.engine.drawing`: pictures of what was found.
"""

from visage.engine.engine import Engine
from visage.engine.images import DecodedImage

__all__ = ["DecodedImage", "Engine"]
