"""The engine on real images: detection, landmarks, pose, attributes, face models."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest

from visage.config import Settings
from visage.engine import Engine
from visage.engine.quality import quality_filter_reasons
from visage.engine.recognition import cosine
from visage.engine.registry import face_model_entry
from visage.errors import InvalidParameterException
from visage.faces import FaceDetail

LANDMARK_TYPES = {
    "eyeLeft",
    "eyeRight",
    "nose",
    "mouthLeft",
    "mouthRight",
    "leftEyeBrowLeft",
    "leftEyeBrowRight",
    "leftEyeBrowUp",
    "rightEyeBrowLeft",
    "rightEyeBrowRight",
    "rightEyeBrowUp",
    "leftEyeLeft",
    "leftEyeRight",
    "leftEyeUp",
    "leftEyeDown",
    "rightEyeLeft",
    "rightEyeRight",
    "rightEyeUp",
    "rightEyeDown",
    "noseLeft",
    "noseRight",
    "mouthUp",
    "mouthDown",
    "leftPupil",
    "rightPupil",
    "upperJawlineLeft",
    "midJawlineLeft",
    "chinBottom",
    "midJawlineRight",
    "upperJawlineRight",
}


def _inside(face: FaceDetail, margin: float = 0.15) -> bool:
    box = face.bounding_box
    mx, my = box.width * margin, box.height * margin
    return all(
        box.left - mx <= lm.x <= box.left + box.width + mx and box.top - my <= lm.y <= box.top + box.height + my
        for lm in face.landmarks
    )


@pytest.fixture(scope="module")
def face(engine: Engine, astronaut_jpeg: bytes) -> FaceDetail:
    faces = engine.detect_faces(astronaut_jpeg, attributes=["ALL"])
    assert len(faces) == 1
    return faces[0]


class TestAstronaut:
    """skimage's astronaut (Eileen Collins, NASA portrait): one frontal face."""

    def test_box_is_where_the_face_is(self, face: FaceDetail) -> None:
        box = face.bounding_box
        # The face sits in the upper middle of the 512x512 image.
        assert 0.30 < box.left < 0.40 and 0.08 < box.top < 0.18
        assert 0.12 < box.width < 0.25 and 0.15 < box.height < 0.30
        assert 80 < face.confidence <= 100

    def test_thirty_landmarks_inside_the_box(self, face: FaceDetail) -> None:
        assert {lm.type for lm in face.landmarks} == LANDMARK_TYPES
        assert _inside(face)
        by_type = {lm.type: lm for lm in face.landmarks}
        # Image-left before image-right; eyes above nose above mouth above chin.
        assert by_type["eyeLeft"].x < by_type["eyeRight"].x
        assert by_type["mouthLeft"].x < by_type["mouthRight"].x
        assert by_type["eyeLeft"].y < by_type["nose"].y < by_type["mouthUp"].y < by_type["chinBottom"].y
        # Each pupil lies within its eye's corners.
        assert by_type["leftEyeLeft"].x < by_type["leftPupil"].x < by_type["leftEyeRight"].x
        assert by_type["rightEyeLeft"].x < by_type["rightPupil"].x < by_type["rightEyeRight"].x

    def test_pose_is_near_frontal(self, face: FaceDetail) -> None:
        assert abs(face.pose.roll) < 10
        assert abs(face.pose.yaw) < 20
        assert abs(face.pose.pitch) < 25

    def test_quality_in_range(self, face: FaceDetail) -> None:
        assert 30 < face.quality.brightness < 90
        assert 20 < face.quality.sharpness <= 100

    def test_attributes_are_plausible(self, face: FaceDetail) -> None:
        assert face.gender is not None and face.gender.value == "Female"
        # Collins was in her late thirties in this portrait.
        assert face.age_range is not None and face.age_range.low <= 40 <= face.age_range.high
        assert face.eyes_open is not None and face.eyes_open.value is True
        assert face.smile is not None and face.smile.value is True
        for estimate in (face.gender, face.eyes_open, face.smile, face.mouth_open):
            assert 50 <= estimate.confidence <= 100

    def test_unsupported_attributes_are_left_out(self, face: FaceDetail) -> None:
        shape = face.to_rekognition()
        for absent in ("Emotions", "Eyeglasses", "Sunglasses", "Beard", "Mustache", "FaceOccluded"):
            assert absent not in shape
        assert {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "AgeRange", "Gender"} <= shape.keys()


def test_default_attributes_only(engine: Engine, astronaut_jpeg: bytes) -> None:
    shape = engine.detect_faces(astronaut_jpeg)[0].to_rekognition()
    assert set(shape) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
    one = engine.detect_faces(astronaut_jpeg, attributes=["SMILE", "BEARD"])[0].to_rekognition()
    assert set(one) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "Smile"}


def test_yunet_five_point_fallback(astronaut_jpeg: bytes) -> None:
    engine = Engine(Settings(landmarks="yunet5"))
    face = engine.detect_faces(astronaut_jpeg, attributes=["ALL"])[0]
    assert {lm.type for lm in face.landmarks} == {"eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"}
    assert _inside(face)
    assert abs(face.pose.yaw) < 20 and abs(face.pose.roll) < 10
    # Geometry attributes need the 68 points; age and gender do not.
    assert face.smile is None and face.eyes_open is None and face.mouth_open is None
    assert face.gender is not None and face.gender.value == "Female"


def test_flipped_face_mirrors_yaw_and_roll(engine: Engine, astronaut_rgb: np.ndarray) -> None:
    from .conftest import encode

    turned = engine.detect_faces(encode(np.ascontiguousarray(astronaut_rgb[:, ::-1]), "PNG"))[0]
    original = engine.detect_faces(encode(astronaut_rgb, "PNG"))[0]
    assert turned.pose.yaw == pytest.approx(-original.pose.yaw, abs=4)
    assert turned.pose.roll == pytest.approx(-original.pose.roll, abs=3)
    assert turned.pose.pitch == pytest.approx(original.pose.pitch, abs=4)


def test_image_without_a_face(engine: Engine) -> None:
    from skimage import data

    from .conftest import encode

    assert engine.detect_faces(encode(data.coffee(), "JPEG")) == []
    with pytest.raises(InvalidParameterException, match="source image"):
        engine.compare_faces(encode(data.coffee(), "JPEG"), encode(data.astronaut(), "JPEG"))


@pytest.mark.parametrize("model", ["sface", "dlib", "sface-crops"])
def test_embeddings_are_unit_vectors_tagged_with_their_model(engine: Engine, astronaut_jpeg: bytes, model: str) -> None:
    (face,) = engine.embed(astronaut_jpeg, model=model)
    assert face.embedding.model == model and face.embedding.vector.shape == (128,)
    assert np.linalg.norm(face.embedding.vector) == pytest.approx(1.0, abs=1e-5)


def test_vectors_of_different_models_are_never_compared(engine: Engine, astronaut_jpeg: bytes) -> None:
    (a,) = engine.embed(astronaut_jpeg, model="sface")
    (b,) = engine.embed(astronaut_jpeg, model="dlib")
    with pytest.raises(InvalidParameterException, match="different face models"):
        cosine(a.embedding, b.embedding)


def test_a_models_similarity_map_and_version_need_no_network() -> None:
    engine = Engine()
    mapping = engine.similarity_map("dlib")
    assert mapping.model == "dlib" and mapping.metadata["face_model_version"] == face_model_entry("dlib").version
    assert engine.similarity_map("dlib") is mapping  # read once per engine
    assert "dlib" not in engine._loaded  # the network was not loaded to get them
    with pytest.raises(
        InvalidParameterException, match="Unknown face model 'nope'; choose one of sface, dlib, sface-crops, fusion"
    ):
        engine.similarity_map("nope")
    with pytest.raises(InvalidParameterException, match="Unknown face model 'nope'"):
        engine.face_model("nope")


# With the evaluation data -------------------------------------------------------------


SAME = [("person_a_1", "person_a_2"), ("person_b_1", "person_b_2")]
#: The same-person pairs each model must match at the default threshold, 80 (false-match
#: rate 2e-5). dlib is weaker: at 80 it rejects 44 % of LFW's same-person pairs
#: (docs/accuracy.md), and Macron 2014 / 2025 (11 years apart, a 204 x 244 px photo) is
#: one of them; it must still rank above every different-person pair.
MATCHED_AT_80 = {"sface": SAME, "dlib": SAME[1:], "sface-crops": SAME}


@pytest.mark.parametrize("model", sorted(MATCHED_AT_80))
def test_portraits_match_their_person_and_no_one_else(engine: Engine, portraits: Path, model: str) -> None:
    def face(name: str):
        (found,) = engine.embed((portraits / f"{name}.jpg").read_bytes(), model=model)
        return found.embedding

    people = {n: face(n) for n in ("person_a_1", "person_a_2", "person_b_1", "person_b_2", "impostor_1", "impostor_2")}
    different = [(a, b) for a in people for b in people if a < b and (a, b) not in SAME]
    for a, b in MATCHED_AT_80[model]:
        assert engine.similarity(people[a], people[b]) >= 80, (a, b)
    for a, b in different:
        assert engine.similarity(people[a], people[b]) < 80, (a, b)
    # Every same-person pair scores above every different-person pair.
    assert min(cosine(people[a], people[b]) for a, b in SAME) > max(cosine(people[a], people[b]) for a, b in different)


def test_a_zoomed_crop_is_the_crop_scaled_about_its_centre(engine: Engine, astronaut_jpeg: bytes) -> None:
    """sface-crops' zoomed crops: the five points land where the plain crop puts them, moved
    towards (zoom under 1) or away from (over 1) the crop's centre by the zoom."""
    from visage.engine.recognition import sface_alignment

    image = engine.decode(astronaut_jpeg)
    (detection,) = engine.detector.detect(image)
    points = np.hstack([detection.points, np.ones((5, 1))])
    plain = points @ sface_alignment(detection.points).T
    for zoom in (0.9, 1.1):
        zoomed = points @ sface_alignment(detection.points, zoom).T
        np.testing.assert_allclose(zoomed - 56.0, zoom * (plain - 56.0), atol=1e-9)


def test_sface_crops_barely_moves_when_the_photo_is_mirrored(engine: Engine, portraits: Path) -> None:
    """Each of sface-crops' zooms is embedded as it is and mirrored, so a mirrored photo gives
    nearly the same vector; sface's single crop moves further (measured 0.93-0.97 here, against
    0.97-0.996 for sface-crops)."""
    from PIL import Image, ImageOps

    for name in ("person_a_1", "person_b_2", "impostor_1", "impostor_2"):
        data = (portraits / f"{name}.jpg").read_bytes()
        mirrored = io.BytesIO()
        ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB")).save(mirrored, "PNG")
        cosines = {}
        for model in ("sface", "sface-crops"):
            (a,) = engine.embed(data, model=model)
            (b,) = engine.embed(mirrored.getvalue(), model=model)
            cosines[model] = cosine(a.embedding, b.embedding)
        assert cosines["sface-crops"] > 0.96 and cosines["sface-crops"] > cosines["sface"] + 0.01, (name, cosines)


def test_compare_faces_on_portraits(engine: Engine, portraits: Path) -> None:
    a1, a2 = (portraits / "person_a_1.jpg").read_bytes(), (portraits / "person_a_2.jpg").read_bytes()
    result = engine.compare_faces(a1, a2, threshold=80)
    assert len(result.matches) == 1 and not result.unmatched
    impostor = engine.compare_faces(a1, (portraits / "impostor_1.jpg").read_bytes(), threshold=80)
    assert not impostor.matches and len(impostor.unmatched) == 1
    shape = result.to_rekognition()
    assert set(shape) == {"SourceImageFace", "FaceMatches", "UnmatchedFaces"}
    assert set(shape["FaceMatches"][0]["Face"]) <= {
        "BoundingBox",
        "Confidence",
        "Landmarks",
        "Pose",
        "Quality",
        "Smile",
    }


def test_solvay_conference_all_29_faces(engine: Engine, portraits: Path) -> None:
    faces = engine.detect_faces((portraits / "solvay_conference_1927.jpg").read_bytes())
    assert len(faces) == 29
    # Distinct people: no two boxes overlap much.
    centres = np.array(
        [
            (f.bounding_box.left + f.bounding_box.width / 2, f.bounding_box.top + f.bounding_box.height / 2)
            for f in faces
        ]
    )
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(29)
    assert distances.min() > min(f.bounding_box.width for f in faces) * 0.8


def test_two_people(engine: Engine, eval_data: Path) -> None:
    image = eval_data / "face_recognition_examples" / "examples" / "two_people.jpg"
    assert len(engine.detect_faces(image.read_bytes())) == 2


@pytest.mark.parametrize("photo", ["010/frontal/05.jpg", "181/profile/01.jpg"])
def test_a_face_that_fills_the_frame_is_found(engine: Engine, eval_data: Path, photo: str) -> None:
    """CFP close-ups that YuNet's pyramid alone misses (checked with the close-up pass
    taken out): the bordered pass finds the one face, and it fills most of the image."""
    image = (eval_data / "cfp_half" / "Data" / "Images" / photo).read_bytes()
    faces = engine.detect_faces(image)
    assert len(faces) == 1
    box = faces[0].bounding_box
    assert box.width * box.height > 0.6
    assert all(-0.05 < m.x < 1.05 and -0.05 < m.y < 1.05 for m in faces[0].landmarks)
    # The box lands where the pyramid puts it once the photo has a grey margin of its own
    # (IoU 0.79 and 0.84; without the border taken off again, the test fails).
    from .conftest import encode

    rgb = engine.decode(image).rgb
    margin = max(rgb.shape[:2]) // 2
    framed = np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), constant_values=128)
    seen = engine.detect_faces(encode(framed))
    assert len(seen) == 1
    height, width = rgb.shape[:2]
    b = seen[0].bounding_box
    x0, y0 = (b.left * framed.shape[1] - margin) / width, (b.top * framed.shape[0] - margin) / height
    x1, y1 = x0 + b.width * framed.shape[1] / width, y0 + b.height * framed.shape[0] / height
    overlap = max(0.0, min(x1, box.left + box.width) - max(x0, box.left)) * max(
        0.0, min(y1, box.top + box.height) - max(y0, box.top)
    )
    assert overlap / ((x1 - x0) * (y1 - y0) + box.width * box.height - overlap) > 0.7


def test_compare_faces_quality_filter_drops_faces_in_both_images(engine: Engine, portraits: Path) -> None:
    group = (portraits / "solvay_conference_1927.jpg").read_bytes()
    everyone = engine.compare_faces(group, group, threshold=0)
    strict = engine.compare_faces(group, group, threshold=0, quality_filter="HIGH")
    assert len(everyone.matches) == 29
    assert 0 < len(strict.matches) < 29  # HIGH refuses the small, soft faces of the 1927 photo

    decoded = engine.decode(group)
    assert not quality_filter_reasons(strict.source.detail, "HIGH", decoded.width, decoded.height)


#: Colour photos (a channel swap changes what SFace sees): the six portraits, two people in
#: one photo, and the astronaut. The 1927 Solvay photo is greyscale, blind to a swap.
COLOUR = [
    *(f"portraits/{p}_{i}.jpg" for p in ("person_a", "person_b", "impostor") for i in (1, 2)),
    "face_recognition_examples/examples/two_people.jpg",
    "face_recognition_examples/examples/biden.jpg",
]


def test_sface_vectors_are_opencvs(engine: Engine, eval_data: Path, astronaut_jpeg: bytes) -> None:
    """Visage runs SFace on onnxruntime with its weights dequantised once, and aligns the
    crop itself; the vectors must stay those of OpenCV's own FaceRecognizerSF on the same
    file (the calibration was fitted on them), face by face, on colour photos."""
    import cv2

    from visage.engine.bundled import SFACE, verified_path
    from visage.engine.recognition import align_sface

    opencv = cv2.FaceRecognizerSF.create(str(verified_path(SFACE)), "")
    cosines, swapped = [], []
    for data in [astronaut_jpeg] + [(eval_data / name).read_bytes() for name in COLOUR]:
        image = engine.decode(data)
        assert np.abs(image.rgb[..., 0].astype(int) - image.rgb[..., 2]).mean() > 10  # colour indeed
        detections = engine.detector.detect(image)
        ours = engine.face_model("sface").embed(image, detections)
        bgr = np.ascontiguousarray(image.rgb[:, :, ::-1])
        for detection, embedding in zip(detections, ours, strict=True):
            row = np.concatenate([detection.box, detection.points.reshape(-1), [detection.score]]).astype(np.float32)
            crop = opencv.alignCrop(bgr, row)  # OpenCV wants a BGR image and YuNet's 15-value row
            assert np.abs(crop.astype(int) - align_sface(image.rgb, detection.points)[:, :, ::-1]).max() <= 8
            for crops, out in ((crop, cosines), (np.ascontiguousarray(crop[:, :, ::-1]), swapped)):
                theirs = opencv.feature(crops).reshape(-1)
                out.append(float(embedding.vector @ theirs / np.linalg.norm(theirs)))
    assert len(cosines) == 10 and min(cosines) > 0.9999, sorted(cosines)[:3]
    # The check can see a channel swap: OpenCV's vectors of the swapped crops are not ours.
    assert max(swapped) < 0.999, sorted(swapped)[-3:]


def test_index_faces_embeds_only_the_faces_it_keeps(engine: Engine, portraits: Path) -> None:
    group = engine.decode((portraits / "solvay_conference_1927.jpg").read_bytes())
    faces = engine.analyze(group, embed=True, quality_filter="HIGH", max_embedded=3)
    for face in faces:  # each face carries the reasons it fails the filter
        assert list(face.filter_reasons) == quality_filter_reasons(face.detail, "HIGH", group.width, group.height)
    passing = [i for i, f in enumerate(faces) if not f.filter_reasons]
    assert len(faces) == 29 and 3 < len(passing) < 29
    assert [i for i, f in enumerate(faces) if f.embedding is not None] == passing[:3]


def test_sface_graph_is_rewritten_where_it_should_be() -> None:
    """The rewrite (visage.engine.sface_graph) leaves no per-call dequantisation and no PRelu,
    and SFace does have channels whose slope is above 1, so the sign-flip path is taken
    (test_sface_vectors_are_opencvs checks the result)."""
    import onnx
    from onnx import numpy_helper

    from visage.engine.bundled import SFACE, verified_path
    from visage.engine.sface_graph import sface_graph

    original = onnx.load(str(verified_path(SFACE)))
    slopes = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer if t.name.endswith("relu_gamma")}
    assert sum(int((s > 1).sum()) for s in slopes.values()) > 0
    rewritten = onnx.load_from_string(sface_graph(verified_path(SFACE)))
    ops = {node.op_type for node in rewritten.graph.node}
    assert not ops & {"PRelu", "DequantizeLinear", "Reshape"}
    assert [i.name for i in rewritten.graph.input] == ["data"]


def test_faces_found_first_and_embedded_later_get_the_vectors_of_one_call(engine: Engine, portraits: Path) -> None:
    """Engine.embed_faces (a video search embeds only the faces that need a new vector) gives the
    faces analyze found the very vectors analyze(embed=True) gives; a face without its detection
    cannot be embedded."""
    image = engine.decode((portraits / "solvay_conference_1927.jpg").read_bytes())
    at_once = engine.analyze(image, embed=True)
    found = engine.analyze(image)
    assert all(face.embedding is None for face in found)
    later = engine.embed_faces(image, [found[5], found[0]])
    assert [face.detail for face in later] == [found[5].detail, found[0].detail]
    np.testing.assert_array_equal(later[0].embedded.vector, at_once[5].embedded.vector)
    np.testing.assert_array_equal(later[1].embedded.vector, at_once[0].embedded.vector)
    assert cosine(later[0].embedded, later[1].embedded) < 0.5  # two people, not one vector twice
    with pytest.raises(ValueError, match="without its detection"):
        engine.embed_faces(image, [dataclasses.replace(found[0], detection=None)])
