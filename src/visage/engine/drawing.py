"""Pictures of what the engine found: boxes, landmarks and labels drawn on the image.

Marks are sized by each face, not by the image: on a group photo with many small
faces the dots stay small enough to leave the face visible. The picture is written
as JPEG or PNG, chosen by the file name's suffix.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from visage.engine.images import DecodedImage
from visage.faces import FaceDetail

#: The formats a picture may be written in, by file name suffix.
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


def picture_format(path: Path) -> str:
    """JPEG or PNG, from ``path``'s suffix; ValueError for any other suffix."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: a picture is written as .jpg, .jpeg or .png, not {path.suffix or 'no suffix'}")
    return kind


def draw_faces(image: DecodedImage, faces: list[FaceDetail], out: Path) -> Path:
    """Write the image with each face's box (numbered, largest first) and landmarks, as JPEG or PNG
    (by ``out``'s suffix)."""
    kind = picture_format(out)
    canvas = Image.fromarray(image.rgb)
    draw = ImageDraw.Draw(canvas)
    w, h = image.width, image.height
    for number, face in enumerate(faces, start=1):
        x, y, bw, bh = face.bounding_box.to_pixels(w, h)
        side = min(bw, bh)
        line = max(1, round(side / 50))
        dot = max(1.0, side / 100)
        draw.rectangle([x, y, x + bw, y + bh], outline=(0, 255, 0), width=line)
        font = ImageFont.load_default(size=max(10, round(side / 5)))
        _, top, _, bottom = draw.textbbox((0, 0), str(number), font=font)
        above = y - (bottom - top) - 2 * line  # the number goes above the box, or below it at the top edge
        draw.text((x, (above if above >= 0 else y + bh + line) - top), str(number), fill=(0, 255, 0), font=font)
        for landmark in face.landmarks:
            px, py = landmark.x * w, landmark.y * h
            colour = (255, 64, 64) if "Pupil" in landmark.type else (255, 255, 0)
            draw.ellipse([px - dot, py - dot, px + dot, py + dot], fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "JPEG":
        canvas.save(out, kind, quality=90)
    else:
        canvas.save(out, kind, optimize=True)
    return out
