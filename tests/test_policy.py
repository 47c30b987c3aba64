"""Key policies: IAM's evaluation rules on the part of its grammar Visage reads."""

from __future__ import annotations

import pytest

from visage.errors import InvalidParameterException
from visage.policy import Policy, PolicyError

STAFF = "arn:aws:rekognition:us-east-1:000000000000:collection/staff"
GUESTS = "arn:aws:rekognition:us-east-1:000000000000:collection/guests"


def policy(*statements: dict) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def test_anything_not_allowed_is_denied() -> None:
    p = policy({"Effect": "Allow", "Action": "rekognition:SearchFacesByImage", "Resource": STAFF})
    assert p.decide("rekognition:SearchFacesByImage", STAFF).allowed
    assert p.decide("rekognition:SearchFacesByImage", GUESTS).reason == "no allow"
    assert p.decide("rekognition:IndexFaces", STAFF).reason == "no allow"


def test_explicit_deny_wins_whatever_the_order() -> None:
    allow = {"Effect": "Allow", "Action": "rekognition:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "rekognition:Delete*", "Resource": STAFF}
    for p in (policy(allow, deny), policy(deny, allow)):
        assert p.decide("rekognition:DeleteFaces", STAFF).reason == "explicit deny"
        assert p.allows("rekognition:DeleteFaces", GUESTS)
        assert p.allows("rekognition:IndexFaces", STAFF)


def test_action_wildcards_ignore_case_and_resources_do_not() -> None:
    p = policy(
        {
            "Effect": "Allow",
            "Action": ["rekognition:search*", "rekognition:?etectFaces"],
            "Resource": "arn:aws:rekognition:*:*:collection/st*",
        }
    )
    assert p.allows("rekognition:SearchFacesByImage", STAFF)
    assert p.allows("rekognition:SearchUsers", STAFF)
    assert p.allows("rekognition:DetectFaces", STAFF)
    assert not p.allows("rekognition:IndexFaces", STAFF)
    assert not p.allows("rekognition:SearchFaces", STAFF.replace("staff", "Staff"))
    assert not p.allows("visage:SearchFaces", STAFF)  # the prefix is part of the action


def test_presets() -> None:
    admin, reader, staff = Policy.admin(), Policy.read_only(), Policy.for_collection(STAFF)
    assert admin.is_admin and admin.allows("visage:ManageKeys", "*")
    assert not reader.is_admin and not staff.is_admin
    assert reader.allows("rekognition:SearchFacesByImage", STAFF) and reader.allows("rekognition:ListFaces", GUESTS)
    assert not reader.allows("rekognition:IndexFaces", STAFF) and not reader.allows("visage:ManageKeys", "*")
    assert staff.allows("rekognition:IndexFaces", STAFF) and staff.allows("rekognition:DetectFaces", "*")
    assert not staff.allows("rekognition:IndexFaces", GUESTS) and not staff.allows("visage:ManageKeys", "*")


@pytest.mark.parametrize("collection_id", ["*", "team-*", "st?ff", ""])
def test_a_key_for_one_collection_names_it_without_wildcards(collection_id: str) -> None:
    with pytest.raises(PolicyError, match="is not a CollectionId"):
        Policy.for_collection(STAFF.replace("staff", collection_id))


def test_round_trip_and_summary() -> None:
    p = Policy.for_collection(STAFF)
    assert Policy.parse(p.dumps()) == p
    assert Policy.admin().summary() == "admin"
    assert "staff" in p.summary() and "Allow" in p.summary()


@pytest.mark.parametrize(
    "document, words",
    [
        ("{not json", "not valid JSON"),
        ('{"Statement": []}', "non-empty Statement"),
        ('{"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}', "Allow or Deny"),
        ('{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}', "rekognition:<Operation>"),
        (
            '{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}]}',
            "Condition is not supported",
        ),
        ('{"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}', "Action must be"),
        ('{"Statement": [{"Effect": "Allow", "Action": "*"}]}', "Resource must be"),
    ],
)
def test_bad_documents_are_refused_with_a_reason(document: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words) as raised:
        Policy.parse(document)
    assert isinstance(raised.value, InvalidParameterException)


def test_a_misspelt_action_is_refused_when_the_actions_are_known() -> None:
    known = ["rekognition:SearchFacesByImage", "visage:ManageKeys"]
    Policy.parse('{"Statement": {"Effect": "Allow", "Action": "rekognition:Search*", "Resource": "*"}}', known)
    with pytest.raises(PolicyError, match="names no action"):
        Policy.parse(
            '{"Statement": {"Effect": "Allow", "Action": "rekognition:SearchFaceByImage", "Resource": "*"}}', known
        )
