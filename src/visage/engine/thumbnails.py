"""Face thumbnails: the small aligned crop of a face that a reviewer looks at.

A thumbnail is the 112 px crop SFace embeds (:func:`~visage.engine.recognition.align_sface`,
eyes, nose and mouth brought onto one template), placed by the face's five landmarks,
as a JPEG of at most :data:`MAX_THUMBNAIL_BYTES`. The service keeps one per indexed face
only when told to (docs/console.md): by default Visage keeps no image.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from visage.engine.images import DecodedImage
from visage.engine.recognition import align_sface
from visage.faces import FaceDetail

#: Width and height of a thumbnail, in pixels.
THUMBNAIL_SIDE = 112
#: A thumbnail is at most this many bytes: its JPEG quality is lowered until it fits.
MAX_THUMBNAIL_BYTES = 8 * 1024

_FIVE_POINTS = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")  # align_sface's order
_QUALITIES = (85, 75, 65, 50, 35, 20)


def face_thumbnail(image: DecodedImage, face: FaceDetail) -> bytes:
    """The JPEG thumbnail of ``face``, a face found in ``image``."""
    where = {landmark.type: landmark for landmark in face.landmarks}
    points = np.array([[where[t].x * image.width, where[t].y * image.height] for t in _FIVE_POINTS])
    crop = Image.fromarray(align_sface(image.rgb, points))
    for quality in _QUALITIES:
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=quality, optimize=True)
        if buffer.tell() <= MAX_THUMBNAIL_BYTES:
            break
    return buffer.getvalue()
