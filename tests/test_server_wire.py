"""Raw HTTP against the real server: what boto3 would refuse to send, and auth failures.

Each request gets its error code and status, and the server keeps serving.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import RunningServer, encode

TARGET = "RekognitionService."
JSON = "application/x-amz-json-1.1"


def signed(
    server: RunningServer,
    operation: str | None,
    body: bytes | dict[str, Any],
    *,
    content_type: str = JSON,
    secret: str | None = None,
) -> httpx.Response:
    """Sign with botocore's real SigV4 signer, then send with httpx."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if operation is not None:
        headers["X-Amz-Target"] = TARGET + operation
    request = AWSRequest(method="POST", url=server.url + "/", data=data, headers=headers)
    credentials = Credentials(server.credentials.access_key_id, secret or server.credentials.secret_access_key)
    signer = SigV4Auth(credentials, "rekognition", "us-east-1")
    signer.add_auth(request)
    return httpx.post(server.url + "/", content=data, headers=dict(request.headers.items()), timeout=60)


def expect(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-RequestId"]
    body = response.json()
    assert body["__type"] == code, body
    assert body["message"]
    return body


@pytest.fixture(autouse=True)
def still_serving(server: RunningServer) -> Any:
    yield
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200


def test_no_target(server: RunningServer) -> None:
    expect(signed(server, None, {}), 400, "UnknownOperationException")


def test_unknown_target(server: RunningServer) -> None:
    body = expect(signed(server, "FlyToTheMoon", {}), 400, "UnknownOperationException")
    assert "FlyToTheMoon" in body["message"]


def test_wrong_content_type(server: RunningServer) -> None:
    expect(signed(server, "ListCollections", {}, content_type="application/json"), 400, "SerializationException")


def test_malformed_json(server: RunningServer) -> None:
    expect(signed(server, "ListCollections", b"{not json"), 400, "SerializationException")


def test_out_of_range_numbers(server: RunningServer) -> None:
    body = expect(
        signed(
            server,
            "SearchFaces",
            {
                "CollectionId": "c",
                "FaceId": "00000000-0000-0000-0000-000000000000",
                "MaxFaces": 5000,
            },
        ),
        400,
        "InvalidParameterException",
    )
    assert "MaxFaces" in body["message"]
    body = expect(
        signed(
            server,
            "CompareFaces",
            {
                "SourceImage": {"Bytes": "AA=="},
                "TargetImage": {"Bytes": "AA=="},
                "SimilarityThreshold": 101,
            },
        ),
        400,
        "InvalidParameterException",
    )
    assert "SimilarityThreshold" in body["message"]


def test_bad_patterns(server: RunningServer) -> None:
    body = expect(signed(server, "CreateCollection", {"CollectionId": "has spaces!"}), 400, "InvalidParameterException")
    assert "CollectionId" in body["message"]
    body = expect(
        signed(server, "SearchFaces", {"CollectionId": "c", "FaceId": "NOT-A-UUID"}), 400, "InvalidParameterException"
    )
    assert "FaceId" in body["message"]


def test_missing_required_member(server: RunningServer) -> None:
    body = expect(signed(server, "CreateCollection", {}), 400, "InvalidParameterException")
    assert "CollectionId" in body["message"]


def test_unsigned_request(server: RunningServer) -> None:
    response = httpx.post(
        server.url + "/", content=b"{}", headers={"Content-Type": JSON, "X-Amz-Target": TARGET + "ListCollections"}
    )
    expect(response, 403, "MissingAuthenticationTokenException")


def test_wrong_secret(server: RunningServer) -> None:
    expect(signed(server, "ListCollections", {}, secret="x" * 40), 400, "InvalidSignatureException")


def test_unknown_key(server: RunningServer) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "rekognition",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="VSAKUNKNOWNUNKNOWN00",
        aws_secret_access_key="y" * 40,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(client.exceptions.ClientError) as excinfo:
        client.list_collections()
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_stale_timestamp(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    # A client whose clock is 20 minutes slow (botocore signs with its own clock).
    stale = datetime.now(UTC) - timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stale.replace(tzinfo=None))
    body = expect(signed(server, "ListCollections", {}), 400, "InvalidSignatureException")
    assert "expired" in body["message"].lower()


def test_six_megabyte_image(server: RunningServer) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (1500, 1400, 3), dtype=np.uint8)
    image = encode(noise, "PNG")
    assert len(image) > 6_000_000
    body = {"Image": {"Bytes": base64.b64encode(image).decode()}}
    expect(signed(server, "DetectFaces", body), 400, "ImageTooLargeException")


def test_gif_and_truncated_jpeg(server: RunningServer, astronaut_rgb: np.ndarray, astronaut_jpeg: bytes) -> None:
    gif = {"Image": {"Bytes": base64.b64encode(encode(astronaut_rgb, "GIF")).decode()}}
    expect(signed(server, "DetectFaces", gif), 400, "InvalidImageFormatException")
    truncated = {"Image": {"Bytes": base64.b64encode(astronaut_jpeg[: len(astronaut_jpeg) // 2]).decode()}}
    expect(signed(server, "DetectFaces", truncated), 400, "InvalidImageFormatException")


def test_success_has_request_id_and_content_type(server: RunningServer) -> None:
    response = signed(server, "ListCollections", {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(JSON)
    assert response.headers["x-amzn-RequestId"]
