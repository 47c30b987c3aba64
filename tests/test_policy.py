"""Key policies: IAM's evaluation rules on the part of its grammar Visage reads."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visage.errors import InvalidParameterException
from visage.policy import Policy, PolicyError, _contains, _glob, _meet

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


def test_a_policy_covers_what_it_allows_and_no_more() -> None:
    admin, reader, staff = Policy.admin(), Policy.read_only(), Policy.for_collection(STAFF)
    manager = policy(
        {"Effect": "Allow", "Action": ["visage:ManageKeys", "rekognition:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "rekognition:Delete*", "Resource": STAFF},
    )
    assert admin.covers(admin) and admin.covers(manager) and not manager.covers(admin)
    on_staff = policy({"Effect": "Allow", "Action": "rekognition:*", "Resource": STAFF})
    assert not manager.covers(on_staff)  # it may delete faces in staff; the manager may not
    assert manager.covers(Policy(on_staff.statements + manager.statements[1:]))  # with the manager's Deny, it may
    assert not manager.covers(staff)  # staff may also record decisions (visage:ReviewMatch)
    assert not manager.covers(reader)  # the reader may read the audit log
    lister = policy({"Effect": "Allow", "Action": ["rekognition:Search*", "rekognition:List*"], "Resource": "*"})
    assert manager.covers(lister)  # no request it may make is denied to the manager
    searcher = policy({"Effect": "Allow", "Action": "rekognition:Search*", "Resource": STAFF})
    assert staff.covers(searcher) and reader.covers(searcher) and not searcher.covers(staff)
    team = policy({"Effect": "Allow", "Action": "rekognition:*", "Resource": STAFF.replace("staff", "team-*")})
    one = policy({"Effect": "Allow", "Action": "rekognition:IndexFaces", "Resource": STAFF.replace("staff", "team-a")})
    assert team.covers(one) and not one.covers(team) and not staff.covers(team)


@pytest.mark.parametrize(
    ("outer", "inner", "contains"),
    [
        ("*", "anything*", True),
        ("team-*", "team-a?c*", True),
        ("team-?", "team-*", False),  # team-* holds team-ab
        ("a?c", "a*c", False),
        ("a*c", "a?c", True),
        ("*x", "*", False),
        ("rekognition:search*", "rekognition:SearchFaces", False),  # case matters unless folded
    ],
)
def test_pattern_containment(outer: str, inner: str, contains: bool) -> None:
    assert _contains(outer, inner, fold=False) == contains


@given(
    outer=st.text(alphabet="ab*?", max_size=6),
    inner=st.text(alphabet="ab*?", max_size=6),
    word=st.text(alphabet="ab", max_size=8),
)
def test_containment_is_sound(outer: str, inner: str, word: str) -> None:
    """When it says ``outer`` contains ``inner``, every word ``inner`` matches, ``outer`` matches."""
    if _contains(outer, inner, fold=False) and re.fullmatch(_glob(inner), word):
        assert re.fullmatch(_glob(outer), word), (outer, inner, word)


@given(
    one=st.text(alphabet="ab*?", max_size=6),
    other=st.text(alphabet="ab*?", max_size=6),
    word=st.text(alphabet="ab", max_size=8),
)
def test_meeting_is_never_missed(one: str, other: str, word: str) -> None:
    """When a word matches both patterns, they are said to meet."""
    if re.fullmatch(_glob(one), word) and re.fullmatch(_glob(other), word):
        assert _meet(one, other, fold=False), (one, other, word)
