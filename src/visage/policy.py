"""Key policies: which actions an access key may take on which resources.

A policy is written in the part of IAM's JSON grammar that matters here::

    {"Version": "2012-10-17",
     "Statement": [
        {"Effect": "Allow", "Action": "rekognition:Search*",
         "Resource": "arn:aws:rekognition:us-east-1:000000000000:collection/staff"},
        {"Effect": "Deny", "Action": "rekognition:DeleteCollection", "Resource": "*"}]}

and is evaluated as IAM evaluates one identity-based policy:

- an explicit ``Deny`` that matches wins;
- otherwise an ``Allow`` that matches allows;
- anything not allowed is denied.

``Action`` and ``Resource`` are a string or a list of strings. ``*`` matches any
run of characters and ``?`` one character; actions match without regard to case,
resources with it. ``Sid`` is kept; ``Condition``, ``NotAction``, ``NotResource``
and ``Principal`` are refused, so a policy never means less than it says.

Actions are ``rekognition:<Operation>`` for the Rekognition operations, and
``visage:<Action>`` for what only Visage does (:data:`VISAGE_ACTIONS`). Which
resource each operation is checked against is the service's decision (docs/keys.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from visage.errors import InvalidParameterException

Effect = Literal["Allow", "Deny"]

#: Actions only Visage has, with what each allows.
VISAGE_ACTIONS: Mapping[str, str] = {
    "visage:ManageKeys": "create, list, rotate and revoke access keys (those allowed no more than the caller's)",
    "visage:ReadAuditLog": "read and export the audit log",
    "visage:ReviewMatch": "record a reviewer's decision on a search candidate (checked on the collection)",
    "visage:ConfigureCollection": "turn a collection's face thumbnails on or off (checked on the collection)",
}

_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource"}
_UNSUPPORTED_KEYS = {"Condition", "NotAction", "NotResource", "Principal", "NotPrincipal"}


class PolicyError(InvalidParameterException):
    """A policy document that is not valid JSON or not in the supported grammar."""


@dataclass(frozen=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str | None = None

    def matches(self, action: str, resource: str) -> bool:
        return any(_action_pattern(a).fullmatch(action) for a in self.actions) and any(
            _resource_pattern(r).fullmatch(resource) for r in self.resources
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Effect": self.effect, "Action": list(self.actions), "Resource": list(self.resources)}
        if self.sid is not None:
            out = {"Sid": self.sid, **out}
        return out


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: "allowed", "explicit deny" or "no allow"
    reason: str


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    def decide(self, action: str, resource: str) -> Decision:
        """Whether ``action`` on ``resource`` is allowed, and why."""
        allowed = False
        for statement in self.statements:
            if statement.matches(action, resource):
                if statement.effect == "Deny":
                    return Decision(False, "explicit deny")
                allowed = True
        return Decision(True, "allowed") if allowed else Decision(False, "no allow")

    def allows(self, action: str, resource: str) -> bool:
        return self.decide(action, resource).allowed

    def covers(self, other: Policy) -> bool:
        """Whether this policy allows every request ``other`` allows: a key of this policy may
        make, rotate or revoke a key of ``other`` without gaining a permission.

        Decided on the documents, soundly: each (action, resource) pattern pair an Allow of
        ``other`` names must be contained in the patterns of one Allow here (a pattern
        contains another when it matches every string that one matches), and no Deny here
        may match any request of that pair, unless ``other`` holds that Deny too. It may say
        no where the answer is yes (patterns whose containment this test cannot see), never
        yes where it is no."""
        if self.is_admin:
            return True
        allows = [s for s in self.statements if s.effect == "Allow"]
        denies = [s for s in self.statements if s.effect == "Deny" and s not in other.statements]

        def covered(action: str, resource: str) -> bool:
            return any(
                any(_contains(mine, action, fold=True) for mine in s.actions)
                and any(_contains(mine, resource, fold=False) for mine in s.resources)
                for s in allows
            ) and not any(
                any(_meet(mine, action, fold=True) for mine in s.actions)
                and any(_meet(mine, resource, fold=False) for mine in s.resources)
                for s in denies
            )

        return all(
            covered(action, resource)
            for statement in other.statements
            if statement.effect == "Allow"
            for action in statement.actions
            for resource in statement.resources
        )

    @property
    def is_admin(self) -> bool:
        """Allows every action on every resource, and denies nothing."""
        return all(s.effect == "Allow" for s in self.statements) and any(
            "*" in s.actions and "*" in s.resources for s in self.statements
        )

    def to_json(self) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [s.to_json() for s in self.statements]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=False, separators=(",", ":"))

    @staticmethod
    def loads(text: str) -> Policy:
        """A policy :meth:`dumps` wrote (a stored key's), parsed once per distinct text: a
        request's check then costs no parsing."""
        return _loaded(text)

    def summary(self) -> str:
        """One line for `visage keys list`: ``admin``, or each statement shortened."""
        if self.is_admin:
            return "admin"
        parts = []
        for s in self.statements:
            actions = ",".join(_short_action(a) for a in s.actions)
            resources = ",".join(_short_resource(r) for r in s.resources)
            parts.append(f"{s.effect} {actions} on {resources}")
        return "; ".join(parts)

    @classmethod
    def parse(cls, document: str | Mapping[str, Any], known_actions: Iterable[str] | None = None) -> Policy:
        """Read a policy document (JSON text or an already parsed mapping).

        ``known_actions``, if given, are the full action names (``rekognition:DetectFaces``)
        that exist: an action without a wildcard must be one of them, so a typo is an
        error instead of a permission that silently never applies.
        """
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError as error:
                raise PolicyError(f"The policy is not valid JSON: {error}.") from None
        if not isinstance(document, Mapping):
            raise PolicyError("A policy must be a JSON object with a Statement list.")
        unknown = set(document) - {"Version", "Statement", "Id"}
        if unknown:
            raise PolicyError(f"A policy has Version and Statement; {', '.join(sorted(unknown))} is not supported.")
        raw = document.get("Statement")
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise PolicyError("A policy needs a non-empty Statement list.")
        known = {a.lower() for a in known_actions} if known_actions is not None else None
        return cls(tuple(_statement(s, i, known) for i, s in enumerate(raw)))

    # The presets of `visage keys create` -------------------------------------------

    @classmethod
    def admin(cls) -> Policy:
        return cls((Statement("Allow", ("*",), ("*",)),))

    @classmethod
    def read_only(cls) -> Policy:
        """Look, never change: detect, compare, describe, list, search and read the audit log."""
        actions = (
            *tuple(f"rekognition:{verb}*" for verb in ("Detect", "Compare", "Describe", "List", "Search", "Get")),
            "visage:ReadAuditLog",
        )
        return cls((Statement("Allow", actions, ("*",)),))

    @classmethod
    def for_collection(cls, collection_arn: str) -> Policy:
        """Everything on one collection, plus the operations that touch no collection.

        The ARN must name one collection by its CollectionId: a wildcard there (``*``,
        ``team-*``) would make a key for many, so it is refused."""
        from visage.contract import shape_pattern

        collection_id = collection_arn.rpartition(":collection/")[2]
        if not shape_pattern("CollectionId").fullmatch(collection_id):
            raise PolicyError(
                f"{collection_id!r} is not a CollectionId (letters, digits, _ . -): a key for one collection"
                " names it exactly, without wildcards."
            )
        return cls(
            (
                Statement(
                    "Allow", ("rekognition:*", "visage:ReviewMatch", "visage:ConfigureCollection"), (collection_arn,)
                ),
                Statement("Allow", ("rekognition:DetectFaces", "rekognition:CompareFaces"), ("*",)),
            )
        )


def known_actions() -> frozenset[str]:
    """Every action a policy may name without a wildcard: ``rekognition:<Operation>`` for each
    operation of Rekognition's service model, and :data:`VISAGE_ACTIONS`."""
    from visage.contract import definition

    return frozenset(f"rekognition:{name}" for name in definition()["operations"]) | frozenset(VISAGE_ACTIONS)


@lru_cache(maxsize=1024)
def _loaded(text: str) -> Policy:
    return Policy.parse(text)


def _statement(raw: Any, index: int, known: set[str] | None) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be an object.")
    unsupported = set(raw) & _UNSUPPORTED_KEYS
    if unsupported:
        raise PolicyError(f"{where}: {', '.join(sorted(unsupported))} is not supported; use Action and Resource.")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown member {', '.join(sorted(unknown))}.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}.Effect must be Allow or Deny, not {effect!r}.")
    actions = _strings(raw.get("Action"), f"{where}.Action")
    for action in actions:
        if action == "*":
            continue
        prefix, _, name = action.partition(":")
        if prefix.lower() not in ("rekognition", "visage") or not name:
            raise PolicyError(f"{where}.Action {action!r} must be rekognition:<Operation> or visage:<Action>.")
        if known is not None and not any(c in action for c in "*?") and action.lower() not in known:
            raise PolicyError(f"{where}.Action {action!r} names no action this server has.")
    resources = _strings(raw.get("Resource"), f"{where}.Resource")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyError(f"{where}.Sid must be a string.")
    return Statement(effect, actions, resources, sid)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a non-empty string or list of strings.")
    return tuple(value)


@lru_cache(maxsize=4096)
def _action_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(_glob(pattern), re.IGNORECASE)


@lru_cache(maxsize=4096)
def _resource_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(_glob(pattern))


def _contains(outer: str, inner: str, fold: bool) -> bool:
    """Whether the pattern ``outer`` matches every string the pattern ``inner`` matches (``*``
    any run, ``?`` one character; ``fold``: without regard to case). Sound, not complete:
    ``inner``'s ``*`` must meet a ``*`` of ``outer``, its ``?`` a ``?`` or ``*``."""
    if fold:
        outer, inner = outer.lower(), inner.lower()

    @cache
    def contains(i: int, j: int) -> bool:  # outer[i:] contains inner[j:]
        if i == len(outer):
            return j == len(inner)
        if outer[i] == "*":  # matches nothing more of inner, or one more of its tokens, whatever it is
            return contains(i + 1, j) or (j < len(inner) and contains(i, j + 1))
        if j == len(inner):
            return False
        if outer[i] == "?":
            return inner[j] != "*" and contains(i + 1, j + 1)
        return inner[j] == outer[i] and contains(i + 1, j + 1)

    return contains(0, 0)


def _meet(one: str, other: str, fold: bool) -> bool:
    """Whether some string matches both patterns (``fold``: without regard to case). It may say
    yes where none does, never no where one does."""
    if fold:
        one, other = one.lower(), other.lower()

    @cache
    def meet(i: int, j: int) -> bool:  # one[i:] and other[j:] match a string in common
        if i == len(one) or j == len(other):
            return all(c == "*" for c in one[i:]) and all(c == "*" for c in other[j:])
        if one[i] == "*":
            return meet(i + 1, j) or meet(i, j + 1)
        if other[j] == "*":
            return meet(i, j + 1) or meet(i + 1, j)
        return (one[i] == "?" or other[j] == "?" or one[i] == other[j]) and meet(i + 1, j + 1)

    return meet(0, 0)


def _glob(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _short_action(action: str) -> str:
    """``rekognition:SearchFaces`` as ``SearchFaces``; ``rekognition:*`` and ``visage:`` actions whole."""
    prefix, _, name = action.partition(":")
    return name if prefix.lower() == "rekognition" and name != "*" else action


def _short_resource(resource: str) -> str:
    return resource.rsplit(":", 1)[-1] if resource.startswith("arn:") else resource
