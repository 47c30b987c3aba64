"""Pictures of what the engine found: boxes, landmarks and labels drawn on the image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from visage.engine.images import DecodedImage
from visage.faces import FaceDetail


def draw_faces(image: DecodedImage, faces: list[FaceDetail], out: Path) -> Path:
    """Write the image with each face's box (numbered, largest first) and landmarks."""
    canvas = Image.fromarray(image.rgb)
    draw = ImageDraw.Draw(canvas)
    w, h = image.width, image.height
    thickness = max(1, round(max(w, h) / 500))
    for number, face in enumerate(faces, start=1):
        x, y, bw, bh = face.bounding_box.to_pixels(w, h)
        draw.rectangle([x, y, x + bw, y + bh], outline=(0, 255, 0), width=thickness)
        draw.text((x + 2, max(0, y - 12)), str(number), fill=(0, 255, 0))
        r = max(1, thickness)
        for landmark in face.landmarks:
            px, py = landmark.x * w, landmark.y * h
            colour = (255, 64, 64) if "Pupil" in landmark.type else (255, 255, 0)
            draw.ellipse([px - r, py - r, px + r, py + r], fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
