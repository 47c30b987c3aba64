"""Key policies enforced by the service, through real boto3 against a real server.

Every operation of Rekognition's service model is called with keys whose policies do
not allow it; the cases are generated from the model (a minimal valid request for each
operation), so an operation added to the model, or to Visage, cannot slip through.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from visage.config import Settings
from visage.contract import compile_pattern, definition
from visage.keys import Credentials
from visage.policy import Policy
from visage.service import ALL_COLLECTIONS_OPERATIONS, operation_resource, resource_member
from visage.store import open_store
from visage.store.base import AuditRecord

from .conftest import RunningServer

ARN = "arn:aws:rekognition:us-east-1:000000000000:collection/"
OPERATIONS = sorted(definition()["operations"])

#: The resource each operation Visage implements is checked on (docs/keys.md says the same).
#: In the generated requests below every CollectionId is "staff" and every ResourceArn is ARN + "staff".
EXPECTED_RESOURCES = {
    "AssociateFaces": ARN + "staff",
    "CompareFaces": "*",
    "CreateCollection": ARN + "staff",
    "CreateUser": ARN + "staff",
    "DeleteCollection": ARN + "staff",
    "DeleteFaces": ARN + "staff",
    "DeleteUser": ARN + "staff",
    "DescribeCollection": ARN + "staff",
    "DetectFaces": "*",
    "DisassociateFaces": ARN + "staff",
    "IndexFaces": ARN + "staff",
    "ListCollections": ARN + "*",
    "ListFaces": ARN + "staff",
    "ListTagsForResource": ARN + "staff",
    "ListUsers": ARN + "staff",
    "SearchFaces": ARN + "staff",
    "SearchFacesByImage": ARN + "staff",
    "SearchUsers": ARN + "staff",
    "SearchUsersByImage": ARN + "staff",
    "StartFaceSearch": ARN + "staff",
    "StartFaceDetection": "*",
    "GetFaceDetection": "*",
    "GetFaceSearch": "*",
    "TagResource": ARN + "staff",
    "UntagResource": ARN + "staff",
}


# A minimal valid request for any operation, from the model --------------------------------

_STRINGS = (
    "staff",
    ARN + "staff",
    "00000000-0000-4000-8000-000000000000",
    "1.0.0",
    "1",
    "{}",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/1",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/dataset/train/1",
    "arn:aws:rekognition:us-east-1:000000000000:streamprocessor/s",
    "arn:aws:iam::000000000000:role/r",
    "arn:aws:sns:us-east-1:000000000000:t",
    "arn:aws:kinesis:us-east-1:000000000000:s",
    "arn:aws:kinesisvideo:us-east-1:000000000000:s",
)


def minimal_request(operation: str) -> dict[str, Any]:
    """The required members of ``operation``'s input, each the simplest value its shape accepts."""
    spec = definition()["operations"][operation]
    return _value(spec["input"]["shape"], operation) if "input" in spec else {}


def _value(name: str, where: str) -> Any:
    shape = definition()["shapes"][name]
    kind = shape["type"]
    if kind == "structure":
        return {m: _value(shape["members"][m]["shape"], f"{where}.{m}") for m in shape.get("required", [])}
    if kind == "list":
        return [_value(shape["member"]["shape"], f"{where}[]") for _ in range(max(shape.get("min", 1), 1))]
    if kind == "map":
        return {_value(shape["key"]["shape"], f"{where} key"): _value(shape["value"]["shape"], f"{where}[]")}
    if kind == "string":
        if "enum" in shape:
            return shape["enum"][0]
        low, high = shape.get("min", 0), shape.get("max", 10**9)
        pattern = compile_pattern(shape["pattern"]) if "pattern" in shape else None
        for candidate in _STRINGS:
            if low <= len(candidate) <= high and (pattern is None or pattern.fullmatch(candidate)):
                return candidate
        raise AssertionError(f"no simple value fits {where} ({name}): add one to _STRINGS")
    if kind in ("integer", "long"):
        return max(int(shape.get("min", 1)), min(1, int(shape.get("max", 1))))
    if kind in ("float", "double"):
        return float(shape.get("min", 0))
    if kind == "boolean":
        return False
    if kind == "blob":
        return b"\xff\xd8\xff"
    if kind == "timestamp":
        return datetime(2026, 1, 1, tzinfo=UTC)
    raise AssertionError(f"{where}: shape type {kind}")


def call(client: Any, operation: str) -> str:
    """The error code of ``operation`` called with its minimal request ("" if it succeeded)."""
    try:
        getattr(client, xform_name(operation))(**minimal_request(operation))
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return ""


def refused_records(server: RunningServer, key: Credentials) -> list[AuditRecord]:
    store = open_store(server.settings)
    try:
        return store.audit_records(access_key_id=key.access_key_id, outcome="refused")
    finally:
        store.close()


# Fixtures --------------------------------------------------------------------------------


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy.parse({"Statement": list(statements)})


@pytest.fixture(scope="module")
def people(portraits: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in portraits.glob("*.jpg")}


@pytest.fixture(scope="module")
def only_audit_reader(server: RunningServer) -> Credentials:
    """A key whose policy allows no Rekognition operation at all."""
    return server.create_key(policy({"Effect": "Allow", "Action": "visage:ReadAuditLog", "Resource": "*"}))


@pytest.fixture(scope="module")
def implemented(server: RunningServer) -> frozenset[str]:
    import httpx

    return frozenset(httpx.get(server.url + "/health", timeout=10).json()["operations"])


# Every operation -------------------------------------------------------------------------


def test_the_resources_follow_iams_action_table(implemented: frozenset[str]) -> None:
    assert set(EXPECTED_RESOURCES) == implemented, "a new operation needs its row here and in docs/keys.md"
    for operation in OPERATIONS:
        resource = operation_resource(operation, minimal_request(operation), Settings())
        if operation in EXPECTED_RESOURCES:
            assert resource == EXPECTED_RESOURCES[operation], operation
        elif resource_member(operation) is None and operation not in ALL_COLLECTIONS_OPERATIONS:
            assert resource == "*", operation  # no resource of its own: only a policy allowing "*" lets it through


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_is_refused_without_an_allow(
    operation: str, server: RunningServer, only_audit_reader: Credentials, implemented: frozenset[str]
) -> None:
    code = call(server.client(credentials=only_audit_reader), operation)
    assert code == ("AccessDeniedException" if operation in implemented else "UnknownOperationException")


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_is_refused_by_an_explicit_deny(
    operation: str, server: RunningServer, implemented: frozenset[str]
) -> None:
    everything_but = server.create_key(
        policy(
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": f"rekognition:{operation}", "Resource": "*"},
        )
    )
    client = server.client(credentials=everything_but)
    if operation not in implemented:
        assert call(client, operation) == "UnknownOperationException"
        return
    with pytest.raises(ClientError) as refused:
        getattr(client, xform_name(operation))(**minimal_request(operation))
    error = refused.value.response["Error"]
    resource = EXPECTED_RESOURCES[operation]
    assert error["Code"] == "AccessDeniedException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Message"] == (
        f"User: {everything_but.access_key_id} is not authorized to perform: rekognition:{operation} "
        f"on resource: {resource} with an explicit deny in an identity-based policy"
    )
    (record,) = refused_records(server, everything_but)
    assert record.operation == operation and record.outcome == "refused"
    assert record.details == {"action": f"rekognition:{operation}", "resource": resource, "reason": "explicit deny"}


def test_the_refused_calls_changed_nothing(
    server: RunningServer, only_audit_reader: Credentials, implemented: frozenset[str]
) -> None:
    admin = server.client()
    before = admin.list_collections()["CollectionIds"]
    for operation in sorted(implemented):
        assert call(server.client(credentials=only_audit_reader), operation) == "AccessDeniedException"
    assert admin.list_collections()["CollectionIds"] == before  # CreateCollection "staff" did not run
    refused = refused_records(server, only_audit_reader)
    assert {r.operation for r in refused} == set(implemented)
    assert all(r.details["reason"] == "no allow" for r in refused)


def test_an_allowed_key_gets_past_the_check(server: RunningServer, implemented: frozenset[str]) -> None:
    """The generated requests are valid: with an admin key none of them is refused for want of permission."""
    admin = server.client()
    for operation in sorted(implemented - {"DeleteCollection", "CreateCollection"}):
        assert call(admin, operation) != "AccessDeniedException", operation


# The presets, as users meet them ---------------------------------------------------------


def test_presets(server: RunningServer, people: dict[str, bytes]) -> None:
    admin = server.client()
    for collection in ("preset-staff", "preset-guests"):
        admin.create_collection(CollectionId=collection)
        admin.index_faces(CollectionId=collection, Image={"Bytes": people["person_a_1"]}, MaxFaces=1)
    staff = server.client(credentials=server.create_key(Policy.for_collection(ARN + "preset-staff")))
    reader = server.client(credentials=server.create_key(Policy.read_only()))
    denied = staff.exceptions.AccessDeniedException

    probe = {"Bytes": people["person_a_2"]}
    assert staff.search_faces_by_image(CollectionId="preset-staff", Image=probe)["FaceMatches"]
    staff.index_faces(CollectionId="preset-staff", Image={"Bytes": people["person_b_1"]}, MaxFaces=1)
    assert staff.detect_faces(Image=probe)["FaceDetails"]
    with pytest.raises(denied, match="collection/preset-guests"):
        staff.search_faces_by_image(CollectionId="preset-guests", Image=probe)
    with pytest.raises(denied, match=r"collection/\*"):
        staff.list_collections()

    assert reader.search_faces_by_image(CollectionId="preset-guests", Image=probe)["FaceMatches"]
    assert "preset-staff" in reader.list_collections()["CollectionIds"]
    with pytest.raises(denied, match="rekognition:IndexFaces"):
        reader.index_faces(CollectionId="preset-staff", Image=probe)
    with pytest.raises(denied, match="rekognition:DeleteCollection"):
        reader.delete_collection(CollectionId="preset-guests")
    assert admin.describe_collection(CollectionId="preset-guests")["FaceCount"] == 1


def test_a_policy_file_through_the_cli(server: RunningServer, tmp_path: Path) -> None:
    """IAM's grammar as a user writes it: wildcards in actions and resources, a Deny that wins."""
    import subprocess
    import sys

    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["rekognition:List*", "rekognition:Describe*"], "Resource": ARN + "*"},
            {"Effect": "Deny", "Action": "rekognition:Describe*", "Resource": ARN + "secret-*"},
        ],
    }
    (tmp_path / "policy.json").write_text(json.dumps(document))
    policy_file, data_dir = str(tmp_path / "policy.json"), str(server.data_dir)
    made = subprocess.run(
        [sys.executable, "-m", "visage.cli", "keys", "create", "--policy", policy_file, "--data-dir", data_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    pair = dict(line.split("=", 1) for line in made.stdout.split())
    client = server.client(credentials=Credentials(pair["AWS_ACCESS_KEY_ID"], pair["AWS_SECRET_ACCESS_KEY"]))
    admin = server.client()
    for collection in ("open-1", "secret-1"):
        admin.create_collection(CollectionId=collection)
    assert {"open-1", "secret-1"} <= set(client.list_collections()["CollectionIds"])
    assert client.describe_collection(CollectionId="open-1")["FaceCount"] == 0
    with pytest.raises(client.exceptions.AccessDeniedException, match="explicit deny"):
        client.describe_collection(CollectionId="secret-1")
    with pytest.raises(client.exceptions.AccessDeniedException, match="no identity-based policy allows"):
        client.create_collection(CollectionId="open-2")


# The service's own methods, for the console -------------------------------------------------


def test_the_console_methods_check_their_visage_actions(engine: Any, tmp_path: Path) -> None:
    from visage.errors import AccessDeniedException, UnrecognizedClientException
    from visage.service import RekognitionService
    from visage.store.sqlite import SQLiteStore

    settings = Settings(data_dir=tmp_path)
    service = RekognitionService(engine, SQLiteStore(tmp_path / "visage.db"), settings)
    try:
        _, admin_pair = service.keys.create(Policy.admin(), "ops", by="test")
        _, reader_pair = service.keys.create(Policy.read_only(), "reader", by="test")
        admin = service.authenticate(admin_pair.access_key_id, admin_pair.secret_access_key)
        reader = service.authenticate(reader_pair.access_key_id, reader_pair.secret_access_key)
        assert (admin.name, reader.policy) == ("ops", Policy.read_only())
        with pytest.raises(UnrecognizedClientException):
            service.authenticate(admin_pair.access_key_id, reader_pair.secret_access_key)

        for refused in (
            lambda: service.create_key(reader, Policy.admin(), "escalate"),
            lambda: service.list_keys(reader),
            lambda: service.revoke_key(reader, admin.access_key_id),
            lambda: service.rotate_key(reader, admin.access_key_id),
        ):
            with pytest.raises(AccessDeniedException, match="visage:ManageKeys on resource: \\*"):
                refused()
        assert len(service.read_audit_log(reader, outcome="refused")) == 4
        staff = caller_for(service, Policy.for_collection(ARN + "staff"))
        with pytest.raises(AccessDeniedException, match="visage:ReadAuditLog"):
            service.read_audit_log(staff)
        with pytest.raises(AccessDeniedException, match="visage:ReadAuditLog"):
            service.verify_audit_log(staff)

        key, pair = service.create_key(admin, Policy.for_collection(ARN + "staff"), "door")
        assert [k.name for k in service.list_keys(admin)] == ["ops", "reader", "staff", "door"]
        rotated, new_pair = service.rotate_key(admin, key.access_key_id)
        assert service.caller(new_pair.access_key_id).policy == key.policy
        with pytest.raises(UnrecognizedClientException):
            service.caller(pair.access_key_id)
        service.revoke_key(admin, rotated.access_key_id)
        with pytest.raises(UnrecognizedClientException):
            service.caller(rotated.access_key_id)
        records = service.read_audit_log(admin, access_key_id=admin.access_key_id, newest_first=True, limit=3)
        assert [r.operation for r in records] == ["RevokeAccessKey", "RotateAccessKey", "CreateAccessKey"]
        report = service.verify_audit_log(admin)
        assert report.ok and report.records == len(service.read_audit_log(admin))
    finally:
        service.store.close()


def caller_for(service: Any, policy: Policy) -> Any:
    """The caller of a new key with this policy."""
    key, _ = service.keys.create(policy, "staff", by="test")
    return service.caller(key.access_key_id)
