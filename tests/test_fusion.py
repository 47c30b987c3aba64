"""The fusion face model: sface and dlib on the same face, one unit vector, one calibrated score."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from visage.engine import Engine
from visage.engine.recognition import FusionModel, FusionWeight, cosine
from visage.evaluation.lfw import embed_images
from visage.faces import Embedding, Face


def _embedding(face: Face | None) -> Embedding:
    assert face is not None and face.embedding is not None
    return face.embedding


def test_fusion_vector_is_both_models_weighted(engine: Engine, astronaut_jpeg: bytes) -> None:
    model = engine.face_model("fusion")
    assert isinstance(model, FusionModel) and model.name == "fusion" and model.dimension == 256
    (fused,) = (_embedding(f) for f in engine.embed(astronaut_jpeg, model="fusion"))
    (sface,) = (_embedding(f) for f in engine.embed(astronaut_jpeg, model="sface"))
    (dlib,) = (_embedding(f) for f in engine.embed(astronaut_jpeg, model="dlib"))
    vector = fused.vector
    assert fused.model == "fusion" and fused.version == model.version
    assert vector.shape == (256,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    w = model.weight.sface_weight
    np.testing.assert_allclose(vector[:128], math.sqrt(w) * sface.vector, atol=1e-6)
    np.testing.assert_allclose(vector[128:], math.sqrt(1 - w) * dlib.vector, atol=1e-6)


def test_fusion_cosine_is_the_weighted_mean_of_the_cosines(engine: Engine, portraits: Path) -> None:
    images = [(portraits / f"{name}.jpg").read_bytes() for name in ("person_a_1", "person_a_2", "impostor_1")]
    weight = FusionWeight.load()
    for a, b in ((0, 1), (0, 2)):
        by_model = {
            m: [_embedding(engine.embed(images[i], model=m)[0]) for i in (a, b)] for m in ("sface", "dlib", "fusion")
        }
        expected = weight.sface_weight * cosine(*by_model["sface"]) + (1 - weight.sface_weight) * cosine(
            *by_model["dlib"]
        )
        assert cosine(*by_model["fusion"]) == pytest.approx(expected, abs=1e-5)


def test_fusion_vectors_composed_from_the_cache_are_the_models_own(engine: Engine, lfw: Path) -> None:
    paths = [lfw / "lfw-deepfunneled" / "Aaron_Peirsol" / f"Aaron_Peirsol_000{i}.jpg" for i in (1, 2)]
    composed = embed_images(engine, paths, "fusion")  # from the sface and dlib cache entries
    for path in paths:
        (direct,) = (_embedding(f) for f in engine.embed(path.read_bytes(), model="fusion"))
        np.testing.assert_allclose(_embedding(composed[path]).vector, direct.vector, atol=1e-6)
        assert _embedding(composed[path]).version == direct.version


def test_weight_is_a_proper_mix() -> None:
    weight = FusionWeight.load()
    assert 0.0 < weight.sface_weight < 1.0 and weight.version.startswith("fusion-")
