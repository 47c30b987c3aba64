"""The service model as data: loading it, its patterns (Java to Python) and its limits."""

from __future__ import annotations

import botocore.loaders
import pytest

from visage.contract import compile_pattern, shape_max, shape_pattern


def test_every_model_pattern_compiles():
    shapes = botocore.loaders.Loader().load_service_model("rekognition", "service-2")["shapes"]
    patterns = {shape["pattern"] for shape in shapes.values() if "pattern" in shape}
    assert patterns
    for pattern in patterns:
        compile_pattern(pattern)


def test_shape_pattern_is_the_models():
    assert shape_pattern("CollectionId").fullmatch("my-faces_1.0")
    assert not shape_pattern("CollectionId").fullmatch("my faces")
    assert shape_pattern("UserId").fullmatch("user:42")
    assert not shape_pattern("CollectionId").fullmatch("user:42")
    assert shape_pattern("FaceId").fullmatch("0b6d2f51-1a2b-4c3d-8e9f-0123456789ab")
    assert not shape_pattern("FaceId").fullmatch("0B6D2F51-1A2B-4C3D-8E9F-0123456789AB")


def test_java_unicode_categories():
    tag_key = shape_pattern("TagKey")  # ^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*$
    assert tag_key.fullmatch("Größe 2")
    assert not tag_key.fullmatch("aws:owner")
    assert not tag_key.fullmatch("a*b")


def test_shape_max():
    assert shape_max("TagMap") == 200
    assert shape_max("ExternalImageId") == 255
    assert shape_max("ImageBlob") == 5 * 1024 * 1024
    with pytest.raises(KeyError):
        shape_max("FaceId")  # a shape without a max
