"""Tests for the Rekognition JSON 1.1 codec against the real botocore service model.

Requests are built with botocore's own JSON serializer where possible, and
responses are read back with botocore's own JSON parser, so the codec is
checked against what boto3 actually sends and expects.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import botocore.loaders
import botocore.parsers
import botocore.serialize
import botocore.session
import numpy as np
import pytest

from visage.api import protocol
from visage.api.protocol import CONTENT_TYPE, encode_error, rekognition
from visage.contract import definition
from visage.errors import (
    ImageTooLargeException,
    InternalServerError,
    InvalidParameterException,
    ModelIntegrityError,
    ResourceNotFoundException,
    SerializationException,
    UnknownOperationException,
)

FACE_ID = "11111111-2222-3333-4444-555555555555"
MAX_IMAGE_BYTES = 5_242_880


@pytest.fixture(scope="module")
def model() -> protocol.ServiceModel:
    return rekognition()


@pytest.fixture(scope="module")
def botocore_model():
    return botocore.session.get_session().get_service_model("rekognition")


def body(params: dict) -> bytes:
    return json.dumps(params).encode()


def decode_error(model, operation: str, params: dict, error=InvalidParameterException) -> str:
    with pytest.raises(error) as caught:
        model.decode_request(operation, body(params))
    return caught.value.message


# -- model and target ------------------------------------------------------------------------


def test_constants_come_from_the_model_metadata():
    metadata = botocore.loaders.Loader().load_service_model("rekognition", "service-2")["metadata"]
    assert protocol.rekognition().target_prefix == metadata["targetPrefix"] == "RekognitionService"
    assert CONTENT_TYPE == f"application/x-amz-json-{metadata['jsonVersion']}"


def test_operation_names_are_the_models(model, botocore_model):
    names = model.operation_names()
    assert names == set(botocore_model.operation_names)
    assert {"DetectFaces", "IndexFaces", "SearchFacesByImage", "CreateUser"} <= names


def test_parse_target(model):
    assert model.parse_target("RekognitionService.DetectFaces") == "DetectFaces"
    assert model.parse_target("RekognitionService.ListCollections") == "ListCollections"


@pytest.mark.parametrize("header", [None, ""])
def test_parse_target_missing(model, header):
    with pytest.raises(UnknownOperationException, match="X-Amz-Target"):
        model.parse_target(header)


@pytest.mark.parametrize(
    "header",
    [
        "DynamoDB_20120810.DetectFaces",
        "RekognitionService.MakeCoffee",
        "RekognitionService.detectfaces",
        "DetectFaces",
        "RekognitionService.",
        "RekognitionService.DetectFaces.Extra",
    ],
)
def test_parse_target_unknown(model, header):
    with pytest.raises(UnknownOperationException) as caught:
        model.parse_target(header)
    assert repr(header) in caught.value.message


def test_a_codec_made_from_the_loaded_model_reads_its_metadata_operations_and_shapes():
    fresh = protocol.ServiceModel(definition())  # not rekognition()'s cached one
    assert fresh.target_prefix == "RekognitionService"
    assert fresh.parse_target("RekognitionService.CreateUser") == "CreateUser"
    assert fresh.decode_request("CreateCollection", b'{"CollectionId": "c"}') == {"CollectionId": "c"}
    assert fresh.encode_response("DescribeCollection", {"FaceCount": 2}) == b'{"FaceCount":2}'


#: A botocore model in the JSON protocol with what Rekognition's does not use today: a number
#: with only a maximum, fractional bounds, ``double``, an unbounded ``long``, a ``timestamp`` in a
#: request, a structure without ``members`` (botocore reads it as empty) and an operation without
#: input or output. A botocore update may bring them.
MEASURE_MODEL: dict[str, Any] = {
    "metadata": {"targetPrefix": "Measures", "jsonVersion": "1.1", "protocol": "json"},
    "operations": {
        "Measure": {"input": {"shape": "MeasureRequest"}, "output": {"shape": "MeasureResponse"}},
        "Ping": {},
    },
    "shapes": {
        "MeasureRequest": {
            "type": "structure",
            "members": {
                "Count": {"shape": "Count"},
                "Ratio": {"shape": "Ratio"},
                "Total": {"shape": "Total"},
                "Since": {"shape": "Since"},
                "Options": {"shape": "Options"},
            },
        },
        "MeasureResponse": {"type": "structure", "members": {"Ratio": {"shape": "Ratio"}}},
        "Count": {"type": "integer", "max": 10},
        "Ratio": {"type": "double", "min": 0.5, "max": 2.0},
        "Total": {"type": "long"},
        "Since": {"type": "timestamp"},
        "Options": {"type": "structure"},
    },
}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"Count": 11}, "Count must be at most 10"),
        ({"Ratio": 0.25}, "Ratio must be between 0.5 and 2"),
        ({"Ratio": 2.5}, "Ratio must be between 0.5 and 2"),
    ],
)
def test_number_bounds_of_any_model_are_checked_and_named(params, message):
    measures = protocol.ServiceModel(MEASURE_MODEL)
    assert measures.parse_target("Measures.Measure") == "Measure"
    assert measures.decode_request("Measure", b'{"Count": -7, "Ratio": 2}') == {"Count": -7, "Ratio": 2.0}
    with pytest.raises(InvalidParameterException) as caught:
        measures.decode_request("Measure", body(params))
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b'{"Count": -2147483648}', {"Count": -(2**31)}),  # an integer's own bounds are inclusive
        (b'{"Total": 9223372036854775807}', {"Total": 2**63 - 1}),
        (b'{"Total": -9223372036854775808}', {"Total": -(2**63)}),
        (b'{"Since": 0}', {"Since": datetime(1970, 1, 1, tzinfo=UTC)}),  # seconds since the epoch, aware UTC
        (b'{"Since": 1700000000.5}', {"Since": datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)}),
        (b'{"Options": {}}', {"Options": {}}),  # a structure without members takes none
    ],
)
def test_integers_timestamps_and_empty_structures_of_any_model_decode(raw, decoded):
    assert protocol.ServiceModel(MEASURE_MODEL).decode_request("Measure", raw) == decoded


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"Count": -2147483649}', "Count must be between -2147483648 and 2147483647"),
        (b'{"Total": 9223372036854775808}', "Total must be between -9223372036854775808 and 9223372036854775807"),
        (b'{"Ratio": 1' + b"0" * 400 + b"}", "Ratio must be a finite number"),  # too big for a float
        (b'{"Since": "2024-01-01"}', "Since must be a number of seconds since the Unix epoch"),
        (b'{"Since": true}', "Since must be a number of seconds since the Unix epoch"),
        (b'{"Since": 1e20}', "Since is not a representable timestamp"),
        (b'{"Options": []}', "Options must be an object"),
        (b'{"Options": {"Verbose": true}}', "Unknown parameter Options.Verbose; expected one of "),
    ],
)
def test_numbers_timestamps_and_structures_of_any_model_are_checked_and_named(raw, message):
    with pytest.raises(InvalidParameterException) as caught:
        protocol.ServiceModel(MEASURE_MODEL).decode_request("Measure", raw)
    assert caught.value.message == message


def test_an_operation_without_input_or_output_takes_and_gives_an_empty_object():
    measures = protocol.ServiceModel(MEASURE_MODEL)
    assert measures.decode_request("Ping", b"") == {}
    assert measures.check_request("Ping", {}) == {}
    assert measures.encode_response("Ping", {}) == b"{}"
    with pytest.raises(InvalidParameterException, match=r"^Unknown parameter Count; expected one of $"):
        measures.decode_request("Ping", b'{"Count": 1}')


def test_a_shape_type_the_codec_does_not_know_is_an_internal_error():
    odd = {**MEASURE_MODEL, "shapes": {**MEASURE_MODEL["shapes"], "Since": {"type": "duration"}}}
    with pytest.raises(InternalServerError) as caught:
        protocol.ServiceModel(odd).decode_request("Measure", b'{"Since": 5}')
    assert caught.value.message == "Since: shape type 'duration' is not supported"


def test_doubles_are_encoded_as_json_numbers():
    measures = protocol.ServiceModel(MEASURE_MODEL)
    assert measures.encode_response("Measure", {"Ratio": np.float64(1.25)}) == b'{"Ratio":1.25}'
    assert measures.encode_response("Measure", {"Ratio": np.int64(1)}) == b'{"Ratio":1.0}'


def test_decode_unknown_operation(model):
    with pytest.raises(UnknownOperationException, match="MakeCoffee"):
        model.decode_request("MakeCoffee", b"{}")
    with pytest.raises(UnknownOperationException, match="MakeCoffee"):
        model.check_request("MakeCoffee", {})


# -- request decoding: what boto3 sends --------------------------------------------------------


def serialize(botocore_model, operation: str, params: dict) -> bytes:
    serializer = botocore.serialize.create_serializer("json")
    request = serializer.serialize_to_request(params, botocore_model.operation_model(operation))
    return request["body"]


def test_detect_faces_bytes_round_trip_from_botocore(model, botocore_model):
    image = bytes(range(256)) * 40
    params = {"Image": {"Bytes": image}, "Attributes": ["ALL"]}
    wire = serialize(botocore_model, "DetectFaces", params)
    assert json.loads(wire)["Image"]["Bytes"] == base64.b64encode(image).decode()
    assert model.decode_request("DetectFaces", wire) == params


def test_botocore_requests_decode_unchanged(model, botocore_model):
    cases = {
        "CreateCollection": {"CollectionId": "my_faces-1.0", "Tags": {"Team": "Ops ü 1"}},
        "SearchFaces": {"CollectionId": "c", "FaceId": FACE_ID, "MaxFaces": 4096, "FaceMatchThreshold": 99.5},
        "IndexFaces": {
            "CollectionId": "c",
            "Image": {"S3Object": {"Bucket": "bucket", "Name": "a/b.jpg"}},
            "ExternalImageId": "person:1",
            "QualityFilter": "HIGH",
            "MaxFaces": 1,
        },
        "DeleteFaces": {"CollectionId": "c", "FaceIds": [FACE_ID] * 4096},
        "ListCollections": {},
    }
    for operation, params in cases.items():
        assert model.decode_request(operation, serialize(botocore_model, operation, params)) == params


def test_empty_body_is_an_empty_object(model):
    assert model.decode_request("ListCollections", b"") == {}
    assert model.decode_request("ListCollections", b"  \n") == {}


def test_null_counts_as_absent(model):
    assert model.decode_request("ListCollections", b'{"MaxResults": null}') == {}
    assert "Missing required parameter CollectionId" in decode_error(model, "CreateCollection", {"CollectionId": None})


def test_floats_accept_integers(model):
    params = {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": 80}
    decoded = model.decode_request("SearchFaces", body(params))
    assert decoded["FaceMatchThreshold"] == 80.0
    assert isinstance(decoded["FaceMatchThreshold"], float)


# -- request decoding: violations ------------------------------------------------------------


def test_missing_required_member(model):
    assert decode_error(model, "CreateCollection", {}) == "Missing required parameter CollectionId"


def test_missing_required_nested_member(model):
    params = {
        "Video": {"S3Object": {"Bucket": "bkt", "Name": "v.mp4"}},
        "NotificationChannel": {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:t"},
    }
    message = decode_error(model, "StartFaceDetection", params)
    assert message == "Missing required parameter NotificationChannel.RoleArn"


def test_a_lone_surrogate_is_refused_not_passed_on(model):
    """JSON can spell a UTF-16 surrogate on its own (``\\ud800``), which is no character: refused
    at the door, not left to fail (a 500) where the string is written or hashed."""
    raw = b'{"ResourceArn": "arn:aws:rekognition:x:y:collection/\\ud800", "Tags": {"a": "b"}}'
    with pytest.raises(InvalidParameterException, match="lone UTF-16 surrogate"):
        model.decode_request("TagResource", raw)
    raw = b'{"ResourceArn": "arn:aws:rekognition:x:y:collection/c", "Tags": {"\\udfff": "b"}}'
    with pytest.raises(InvalidParameterException, match="lone UTF-16 surrogate"):
        model.decode_request("TagResource", raw)
    assert model.decode_request("CreateCollection", body({"CollectionId": "a"}))  # (a pair is a character: fine)


def test_each_errors_status_is_the_models_client_or_server_fault():
    """An error the service model marks ``"fault": true`` is the server's (HTTP 500), any other the client's."""
    from visage import errors

    shapes = definition()["shapes"]
    checked = 0
    for name, shape in shapes.items():
        error = getattr(errors, name, None)
        if shape.get("exception") and error is not None:
            assert (error.status >= 500) == bool(shape.get("fault")), name
            checked += 1
    assert checked >= 15


def test_string_too_long(model):
    model.decode_request("CreateCollection", body({"CollectionId": "a" * 255}))
    message = decode_error(model, "CreateCollection", {"CollectionId": "a" * 256})
    assert message == "CollectionId must be at most 255 characters"


def test_string_too_short(model):
    message = decode_error(model, "CreateCollection", {"CollectionId": ""})
    assert message == "CollectionId must be at least 1 character"


def test_nested_path_is_named(model):
    params = {"Image": {"S3Object": {"Bucket": "ab", "Name": "x.jpg"}}}
    message = decode_error(model, "DetectFaces", params)
    assert message == "Image.S3Object.Bucket must be at least 3 characters"
    params = {"Image": {"S3Object": {"Bucket": "b" * 256}}}
    assert decode_error(model, "DetectFaces", params) == "Image.S3Object.Bucket must be at most 255 characters"


@pytest.mark.parametrize("collection_id", ["bad id!", "abc!", "!abc", "a\n"])
def test_pattern_must_match_the_whole_value(model, collection_id):
    message = decode_error(model, "CreateCollection", {"CollectionId": collection_id})
    assert message == r"CollectionId must match [a-zA-Z0-9_.\-]+"


def test_list_member_path_and_pattern(model):
    upper = "AAAAAAAA-2222-3333-4444-555555555555"
    params = {"CollectionId": "c", "FaceIds": [FACE_ID, upper]}
    message = decode_error(model, "DeleteFaces", params)
    assert message.startswith("FaceIds[1] must match [0-9a-f]{8}-")


def test_java_unicode_classes_in_tag_patterns(model):
    ok = {"CollectionId": "c", "Tags": {"Équipe": "日本 ٣"}}
    assert model.decode_request("CreateCollection", body(ok)) == ok
    message = decode_error(model, "CreateCollection", {"CollectionId": "c", "Tags": {"aws:x": "v"}})
    assert message.startswith("Tags key 'aws:x' must match")
    message = decode_error(model, "CreateCollection", {"CollectionId": "c", "Tags": {"k": "v!"}})
    assert message.startswith("Tags[k] must match")


def test_map_too_large(model):
    tags = {f"k{i}": "v" for i in range(201)}
    message = decode_error(model, "CreateCollection", {"CollectionId": "c", "Tags": tags})
    assert message == "Tags must have at most 200 entries"


def test_enum_violation(model):
    params = {"CollectionId": "c", "Image": {"S3Object": {"Bucket": "bkt"}}, "QualityFilter": "SUPER"}
    message = decode_error(model, "IndexFaces", params)
    assert message == "QualityFilter must be one of NONE, AUTO, LOW, MEDIUM, HIGH"


@pytest.mark.parametrize("max_faces", [5000, 0, -1, 2**40])
def test_integer_out_of_range(model, max_faces):
    params = {"CollectionId": "c", "FaceId": FACE_ID, "MaxFaces": max_faces}
    assert decode_error(model, "SearchFaces", params) == "MaxFaces must be between 1 and 4096"


def test_integer_with_only_a_minimum(model):
    params = {"CollectionId": "c", "Image": {"S3Object": {"Bucket": "bkt"}}, "MaxFaces": 0}
    assert decode_error(model, "IndexFaces", params) == "MaxFaces must be at least 1"


def test_integer_types_keep_their_jvm_width(model):
    params = {"JobId": "job-1", "MaxResults": 2**31}
    message = decode_error(model, "GetFaceDetection", params)
    assert message == "MaxResults must be between -2147483648 and 2147483647"


@pytest.mark.parametrize("threshold", [101, -1, 100.0001])
def test_float_out_of_range(model, threshold):
    params = {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": threshold}
    assert decode_error(model, "SearchFaces", params) == "FaceMatchThreshold must be between 0 and 100"


def test_float_bounds_are_inclusive(model):
    for threshold in (0, 100, 0.0, 100.0):
        params = {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": threshold}
        model.decode_request("SearchFaces", body(params))


@pytest.mark.parametrize("max_faces", [True, 1.5, 3.0, "5", [1], {"n": 1}])
def test_integer_must_be_a_json_integer(model, max_faces):
    params = {"CollectionId": "c", "FaceId": FACE_ID, "MaxFaces": max_faces}
    assert decode_error(model, "SearchFaces", params) == "MaxFaces must be an integer"


@pytest.mark.parametrize("threshold", [True, False, "80", [80]])
def test_float_must_be_a_json_number(model, threshold):
    params = {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": threshold}
    assert decode_error(model, "SearchFaces", params) == "FaceMatchThreshold must be a number"


def test_float_must_be_finite(model):
    raw = b'{"CollectionId": "c", "FaceId": "%s", "FaceMatchThreshold": 1e999}' % FACE_ID.encode()
    with pytest.raises(InvalidParameterException, match="FaceMatchThreshold must be a finite number"):
        model.decode_request("SearchFaces", raw)


@pytest.mark.parametrize("labeled", [1, 0, "true"])
def test_boolean_must_be_a_json_boolean(model, labeled):
    arn = "arn:aws:rekognition:us-east-1:123456789012:project/p/dataset/train/1"
    assert model.decode_request("ListDatasetEntries", body({"DatasetArn": arn, "Labeled": False})) == {
        "DatasetArn": arn,
        "Labeled": False,
    }
    message = decode_error(model, "ListDatasetEntries", {"DatasetArn": arn, "Labeled": labeled})
    assert message == "Labeled must be true or false"


def test_string_must_be_a_string(model):
    assert decode_error(model, "CreateCollection", {"CollectionId": 7}) == "CollectionId must be a string"


def test_structure_and_list_types(model):
    assert decode_error(model, "DetectFaces", {"Image": "abc"}) == "Image must be an object"
    assert (
        decode_error(
            model,
            "TagResource",
            {"ResourceArn": "arn:aws:rekognition:us-east-1:000000000000:collection/c", "Tags": ["k"]},
        )
        == "Tags must be an object"
    )
    params = {"Image": {"S3Object": {"Bucket": "bkt"}}, "Attributes": "ALL"}
    assert decode_error(model, "DetectFaces", params) == "Attributes must be a list"


def test_list_too_long_and_too_short(model):
    params = {"CollectionId": "c", "FaceIds": [FACE_ID] * 4097}
    assert decode_error(model, "DeleteFaces", params) == "FaceIds must have at most 4096 items"
    params = {"CollectionId": "c", "FaceIds": []}
    assert decode_error(model, "DeleteFaces", params) == "FaceIds must have at least 1 item"


def test_image_at_the_limit_is_accepted(model):
    image = b"\xff" * MAX_IMAGE_BYTES
    params = {"Image": {"Bytes": base64.b64encode(image).decode()}}
    assert model.decode_request("DetectFaces", body(params))["Image"]["Bytes"] == image


def test_image_over_the_limit_is_too_large(model):
    params = {"Image": {"Bytes": base64.b64encode(b"\xff" * (MAX_IMAGE_BYTES + 1)).decode()}}
    with pytest.raises(ImageTooLargeException) as caught:
        model.decode_request("DetectFaces", body(params))
    assert caught.value.message == (
        "Image.Bytes: The image is 5,242,881 bytes; the limit is 5,242,880 bytes. Resize or recompress it, "
        "or have the server read it as Image.S3Object, which takes larger images."
    )


def test_image_too_large_in_compare_faces_names_the_member(model):
    small = base64.b64encode(b"x").decode()
    big = base64.b64encode(b"\xff" * (MAX_IMAGE_BYTES + 1)).decode()
    params = {"SourceImage": {"Bytes": small}, "TargetImage": {"Bytes": big}}
    with pytest.raises(ImageTooLargeException, match=r"TargetImage\.Bytes"):
        model.decode_request("CompareFaces", body(params))


def test_empty_image_is_invalid(model):
    message = decode_error(model, "DetectFaces", {"Image": {"Bytes": ""}})
    assert message == "Image.Bytes must be at least 1 byte"


@pytest.mark.parametrize("data", ["not base64!!", "YWJ", "YW Jj", "YWJj\n", "é===", 12])
def test_invalid_base64(model, data):
    message = decode_error(model, "DetectFaces", {"Image": {"Bytes": data}})
    assert message.startswith("Image.Bytes must be")
    assert "base64" in message


def test_unknown_members(model):
    message = decode_error(model, "CreateCollection", {"CollectionId": "c", "Colour": "red"})
    assert message == "Unknown parameter Colour; expected one of CollectionId, Tags"
    message = decode_error(model, "DetectFaces", {"Image": {"Bytez": "YWJj"}})
    assert message == "Unknown parameter Image.Bytez; expected one of Bytes, S3Object"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"CollectionId": "c",}',
        b"[]",
        b'["CollectionId"]',
        b'"c"',
        b"42",
        b"null",
        b'{"MaxResults": NaN}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
    ],
)
def test_malformed_bodies_are_serialization_errors(model, raw):
    with pytest.raises(SerializationException):
        model.decode_request("ListCollections", raw)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_outside_the_standard_are_named(model, constant):
    with pytest.raises(SerializationException) as caught:
        model.decode_request("ListCollections", b'{"MaxResults": %s}' % constant.encode())
    assert caught.value.message == f"Request body is not valid JSON: {constant} is not valid JSON"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "array"), (b'"c"', "string"), (b"true", "boolean"), (b"null", "null"), (b"4.5", "float")],
)
def test_a_body_that_is_not_an_object_is_named_by_its_json_type(model, raw, kind):
    with pytest.raises(SerializationException) as caught:
        model.decode_request("ListCollections", raw)
    assert caught.value.message == f"Request body must be a JSON object, not a JSON {kind}"


def test_check_request_takes_image_bytes_as_they_are(model):
    image = b"\xff\xd8\xff\xe0"
    assert model.check_request("DetectFaces", {"Image": {"Bytes": image}}) == {"Image": {"Bytes": image}}
    with pytest.raises(InvalidParameterException, match=r"^Image\.Bytes must be at least 1 byte$"):
        model.check_request("DetectFaces", {"Image": {"Bytes": b""}})
    with pytest.raises(ImageTooLargeException, match=r"^Image\.Bytes: The image is 5,242,881 bytes"):
        model.check_request("DetectFaces", {"Image": {"Bytes": b"\xff" * (MAX_IMAGE_BYTES + 1)}})


# -- response encoding -----------------------------------------------------------------------


def parse_response(botocore_model, operation: str, payload: bytes, status: int = 200) -> dict:
    parser = botocore.parsers.create_parser("json")
    response = {"body": payload, "headers": {}, "status_code": status}
    return parser.parse(response, botocore_model.operation_model(operation).output_shape)


def test_describe_collection_round_trips_through_botocore(model, botocore_model):
    created = datetime(2024, 5, 17, 8, 30, 15, 123000, tzinfo=UTC)
    result = {
        "FaceCount": np.int64(12),
        "FaceModelVersion": "7.0",
        "CollectionARN": "arn:aws:rekognition:us-east-1:000000000000:collection/c",
        "CreationTimestamp": created,
        "UserCount": 0,
    }
    payload = model.encode_response("DescribeCollection", result)
    assert json.loads(payload)["CreationTimestamp"] == pytest.approx(created.timestamp())
    parsed = parse_response(botocore_model, "DescribeCollection", payload)
    assert parsed["FaceCount"] == 12
    assert parsed["UserCount"] == 0
    parsed_created = parsed["CreationTimestamp"]
    assert abs((parsed_created - created).total_seconds()) < 0.001
    assert parsed_created.replace(microsecond=parsed_created.microsecond // 1000 * 1000) == created


def test_detect_faces_response_with_numpy_values(model, botocore_model):
    face = {
        "BoundingBox": {"Width": np.float32(0.25), "Height": np.float64(0.5), "Left": 0, "Top": 0.1},
        "Confidence": np.float32(99.5),
        "AgeRange": {"Low": np.int32(20), "High": 30},
        "Smile": {"Value": np.bool_(True), "Confidence": 88.0},
        "Landmarks": [{"Type": "eyeLeft", "X": np.float32(0.3), "Y": 0.4}],
        "Emotions": (),
        "Gender": None,
    }
    payload = model.encode_response("DetectFaces", {"FaceDetails": [face], "OrientationCorrection": None})
    assert b"null" not in payload
    parsed = parse_response(botocore_model, "DetectFaces", payload)
    detail = parsed["FaceDetails"][0]
    assert detail["Confidence"] == 99.5
    assert detail["BoundingBox"]["Width"] == 0.25
    assert detail["BoundingBox"]["Left"] == 0.0
    assert detail["AgeRange"] == {"Low": 20, "High": 30}
    assert detail["Smile"]["Value"] is True
    assert detail["Landmarks"][0]["X"] == pytest.approx(0.3)
    assert "Gender" not in detail
    assert "OrientationCorrection" not in parsed


def test_unknown_output_member_is_an_internal_error(model):
    face = {"Confidance": 99.0}
    with pytest.raises(InternalServerError) as caught:
        model.encode_response("DetectFaces", {"FaceDetails": [face]})
    assert "FaceDetails[0].Confidance" in caught.value.message
    assert caught.value.message.startswith("DetectFaces response:")
    with pytest.raises(InternalServerError, match="FaceCounts"):
        model.encode_response("DescribeCollection", {"FaceCounts": 1})


def test_non_finite_output_float_is_an_internal_error(model):
    with pytest.raises(InternalServerError, match="Confidence"):
        model.encode_response("DetectFaces", {"FaceDetails": [{"Confidence": float("nan")}]})


MAY_17 = datetime(2024, 5, 17, 8, 30, 15, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("operation", "result", "wire"),
    [
        (  # compact; None dropped wherever it stands; a long as an integer; a timestamp as epoch seconds
            "DescribeCollection",
            {"FaceModelVersion": None, "FaceCount": np.int64(3), "CreationTimestamp": MAY_17, "UserCount": 0},
            b'{"FaceCount":3,"CreationTimestamp":1715934615.25,"UserCount":0}',
        ),
        (  # an aware datetime in another zone is the same instant
            "DescribeCollection",
            {"CreationTimestamp": MAY_17.astimezone(timezone(timedelta(hours=2)))},
            b'{"CreationTimestamp":1715934615.25}',
        ),
        (
            "DetectFaces",
            {"FaceDetails": [{"Confidence": np.float32(99.5), "AgeRange": {"Low": np.int32(20), "High": None}}]},
            b'{"FaceDetails":[{"Confidence":99.5,"AgeRange":{"Low":20}}]}',
        ),
        (  # blobs as base64
            "GetFaceLivenessSessionResults",
            {"ReferenceImage": {"Bytes": b"\xff\xd8\xff\xe0"}, "AuditImages": [{"Bytes": memoryview(b"ab")}]},
            b'{"ReferenceImage":{"Bytes":"/9j/4A=="},"AuditImages":[{"Bytes":"YWI="}]}',
        ),
        (  # a map (string to string), None values dropped
            "ListTagsForResource",
            {"Tags": {"team": "ops", "gone": None, "site": "b"}},
            b'{"Tags":{"team":"ops","site":"b"}}',
        ),
        ("ListCollections", {}, b"{}"),
    ],
)
def test_responses_on_the_wire(model, botocore_model, operation, result, wire):
    assert model.encode_response(operation, result) == wire
    parse_response(botocore_model, operation, wire)  # and botocore reads them


@pytest.fixture()
def server_five_hours_west_of_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "EST5")  # POSIX form: needs no time zone database
    time.tzset()
    assert time.timezone == 5 * 3600
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_datetimes_are_utc_whatever_the_servers_time_zone(model, botocore_model, server_five_hours_west_of_utc):
    naive = MAY_17.replace(tzinfo=None)
    payload = model.encode_response("DescribeCollection", {"CreationTimestamp": naive})
    assert payload == b'{"CreationTimestamp":1715934615.25}'
    assert parse_response(botocore_model, "DescribeCollection", payload)["CreationTimestamp"] == MAY_17


@pytest.mark.parametrize(
    ("operation", "result", "message"),
    [
        ("DescribeCollection", [("FaceCount", 1)], "result must be a mapping, got array"),
        ("DetectFaces", {"FaceDetails": [7]}, "FaceDetails[0] must be a mapping, got int"),
        ("DetectFaces", {"FaceDetails": [None]}, "FaceDetails[0] must be a mapping, got null"),
        ("DetectFaces", {"FaceDetails": {"Confidence": 1}}, "FaceDetails must be a list, got object"),
        (
            "DetectFaces",
            {"FaceDetails": [{"BoundingBox": {"Width": "wide"}}]},
            "FaceDetails[0].BoundingBox.Width is a float in the model, got string",
        ),
        (
            "DescribeCollection",
            {"FaceCounts": 1},
            "FaceCounts is not a member of the output shape; expected one of "
            "FaceCount, FaceModelVersion, CollectionARN, CreationTimestamp, UserCount",
        ),
        ("DescribeCollection", {"FaceCount": True}, "FaceCount is a long in the model, got boolean"),
        ("DescribeCollection", {"FaceCount": 1.5}, "FaceCount is a long in the model, got float"),
        ("DescribeCollection", {"FaceModelVersion": b"7.0"}, "FaceModelVersion is a string in the model, got bytes"),
        ("DescribeCollection", {"CreationTimestamp": 1}, "CreationTimestamp is a timestamp in the model, got int"),
        (
            "GetFaceLivenessSessionResults",
            {"ReferenceImage": {"Bytes": "/9j/4A=="}},
            "ReferenceImage.Bytes is a blob in the model, got string",
        ),
        ("ListTagsForResource", {"Tags": [("k", "v")]}, "Tags must be a mapping, got array"),
        ("ListTagsForResource", {"Tags": {1: "v"}}, "Tags key 1 is a string in the model, got int"),
        ("ListTagsForResource", {"Tags": {"k": 1}}, "Tags[k] is a string in the model, got int"),
    ],
)
def test_a_response_that_breaks_the_output_shape_names_where_and_how(model, operation, result, message):
    with pytest.raises(InternalServerError) as caught:
        model.encode_response(operation, result)
    assert caught.value.message == f"{operation} response: {message}"


def test_encoding_for_an_unknown_operation_is_an_internal_error(model):
    with pytest.raises(InternalServerError) as caught:
        model.encode_response("MakeCoffee", {})
    assert caught.value.message == "Unknown operation 'MakeCoffee'"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidParameterException("CollectionId must be at most 255 characters"), 400, "InvalidParameterException"),
        (ResourceNotFoundException("The collection id: c does not exist"), 400, "ResourceNotFoundException"),
        (InternalServerError("boom"), 500, "InternalServerError"),
        (ModelIntegrityError("sface.onnx: SHA-256 mismatch"), 500, "InternalServerError"),
    ],
)
def test_errors_parse_in_botocore(botocore_model, error, status, code):
    got_status, payload = encode_error(error)
    assert got_status == status
    assert json.loads(payload) == {"__type": code, "message": str(error)}
    parsed = parse_response(botocore_model, "DescribeCollection", payload, status)
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == str(error)


def test_error_bodies_on_the_wire():
    status, payload = encode_error(ResourceNotFoundException("The collection id: c does not exist"))
    assert (status, payload) == (
        400,
        b'{"__type":"ResourceNotFoundException","message":"The collection id: c does not exist"}',
    )
