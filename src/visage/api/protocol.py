"""Rekognition's JSON 1.1 wire codec, driven by botocore's service model.

Every limit, pattern, enum and member name comes from the Rekognition service
model shipped with botocore (:mod:`visage.contract` loads it once); nothing here
copies a constraint by hand.

Usage::

    model = rekognition()
    operation = model.parse_target(headers.get("X-Amz-Target"))
    params = model.decode_request(operation, body)      # validated, blobs -> bytes
    ...
    body = model.encode_response(operation, result)     # datetimes, bytes, numpy -> JSON
    status, body = encode_error(error)                  # any VisageError

Wire facts: requests are ``POST /`` with ``Content-Type: application/x-amz-json-1.1``
and ``X-Amz-Target: RekognitionService.<Operation>``; blobs travel as base64
strings; ``timestamp`` shapes travel as epoch seconds (botocore's JSON parser
turns numbers into ``datetime``); errors are ``{"__type": code, "message": ...}``.

Validation choices (where Visage is stricter than, or differs from, AWS):

* Only the first violation is reported (AWS may list several, separated by "; ").
* An unknown member raises ``InvalidParameterException`` naming it (AWS answers
  ``SerializationException`` or ignores it), so typos in hand-written clients surface.
* A blob over its model ``max`` raises ``ImageTooLargeException``, not
  ``InvalidParameterException``: every blob member in this API is an image.
* JSON ``null`` counts as an absent member.
* The model's regular expressions are Java-flavoured and unanchored; they are
  matched against the whole value (``re.fullmatch``), with ``\\p{L}``-style
  Unicode categories translated to explicit character ranges
  (:func:`visage.contract.compile_pattern`).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from visage.contract import compile_pattern, definition
from visage.engine.images import too_many_bytes
from visage.errors import (
    ImageTooLargeException,
    InternalServerError,
    InvalidParameterException,
    SerializationException,
    UnknownOperationException,
    VisageError,
)

__all__ = [
    "CONTENT_TYPE",
    "TARGET_HEADER",
    "ServiceModel",
    "encode_error",
    "rekognition",
]

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_HEADER = "X-Amz-Target"

Shape = Mapping[str, Any]

#: Value bounds of the model's integral types (the JVM's int and long).
_INTEGER_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class ServiceModel:
    """A botocore service model (JSON protocol) used as a request and response codec."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        self._metadata: Shape = model["metadata"]
        self._operations: Mapping[str, Shape] = model["operations"]
        self._shapes: Mapping[str, Shape] = model["shapes"]

    @property
    def target_prefix(self) -> str:
        """The ``X-Amz-Target`` prefix, e.g. ``"RekognitionService"``."""
        return self._metadata["targetPrefix"]

    def operation_names(self) -> set[str]:
        """The names of every operation in the model, e.g. ``"DetectFaces"``."""
        return set(self._operations)

    def parse_target(self, header_value: str | None) -> str:
        """Return the operation named by an ``X-Amz-Target`` header value.

        ``"RekognitionService.DetectFaces"`` gives ``"DetectFaces"``. A missing
        header, a wrong prefix or an operation the model does not define raises
        ``UnknownOperationException``.
        """
        if not header_value:
            raise UnknownOperationException(f"Missing {TARGET_HEADER} header")
        prefix, _, operation = header_value.partition(".")
        if prefix != self.target_prefix or operation not in self._operations:
            raise UnknownOperationException(
                f"Unknown operation {header_value!r}: expected {self.target_prefix}.<Operation>"
            )
        return operation

    def decode_request(self, operation: str, body: bytes) -> dict[str, Any]:
        """Parse and validate a request body against ``operation``'s input shape.

        An empty body counts as ``{}``. Malformed JSON, or JSON whose top level
        is not an object, raises ``SerializationException``. Every other
        problem raises ``InvalidParameterException`` naming the member path
        (``Image.S3Object.Bucket``, ``FaceIds[3]``) and the broken rule; only
        the first problem found is reported. Unknown members are rejected
        (AWS would ignore them or answer ``SerializationException``). A blob
        over its ``max`` raises ``ImageTooLargeException`` instead.

        The result has the same members with ``null`` ones dropped, blobs
        decoded to ``bytes``, floats as ``float`` and timestamps as aware
        UTC ``datetime``.
        """
        shape = self._io_shape(operation, "input", UnknownOperationException)
        params = _parse_json(body)
        return self._decode(params, shape, "")

    def check_request(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a request already in Python values (blobs as ``bytes``), as
        :meth:`decode_request` validates a body: for callers that are not HTTP clients (the console)."""
        shape = self._io_shape(operation, "input", UnknownOperationException)
        return self._decode(dict(params), shape, "")

    def encode_response(self, operation: str, result: Mapping[str, Any]) -> bytes:
        """Serialise ``result`` as ``operation``'s output shape.

        ``None`` values are dropped, ``datetime`` becomes epoch seconds (naive
        ones are taken as UTC), ``bytes`` become base64 and numpy scalars plain
        numbers. A member the output shape does not define, or a value of the
        wrong type, is a bug in the caller and raises ``InternalServerError``
        naming it.
        """
        shape = self._io_shape(operation, "output", InternalServerError)
        try:
            encoded = self._encode(result, shape, "")
        except InternalServerError as error:
            raise InternalServerError(f"{operation} response: {error}") from None
        return json.dumps(encoded, separators=(",", ":")).encode()

    # -- internals ----------------------------------------------------------------------

    def _io_shape(self, operation: str, io: str, error: type[VisageError]) -> Shape:
        if operation not in self._operations:
            raise error(f"Unknown operation {operation!r}")
        ref = self._operations[operation].get(io)
        return self._shapes[ref["shape"]] if ref else {"type": "structure", "members": {}}

    def _member_shapes(self, shape: Shape) -> dict[str, Shape]:
        return {name: self._shapes[ref["shape"]] for name, ref in shape.get("members", {}).items()}

    def _decode(self, value: Any, shape: Shape, path: str) -> Any:
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, dict):
                raise _invalid(path, "must be an object")
            members = self._member_shapes(shape)
            for name in value:
                if name not in members:
                    expected = ", ".join(members)
                    raise InvalidParameterException(
                        f"Unknown parameter {_join(path, name)}; expected one of {expected}"
                    )
            for name in shape.get("required", ()):
                if value.get(name) is None:
                    missing = _join(path, name)
                    raise InvalidParameterException(f"Missing required parameter {missing}")
            return {
                name: self._decode(item, members[name], _join(path, name))
                for name, item in value.items()
                if item is not None
            }
        if kind == "list":
            if not isinstance(value, list):
                raise _invalid(path, "must be a list")
            _check_size(len(value), shape, path, "item", "have")
            member = self._shapes[shape["member"]["shape"]]
            return [self._decode(item, member, f"{path}[{i}]") for i, item in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise _invalid(path, "must be an object")
            _check_size(len(value), shape, path, "entry", "have")
            key_shape = self._shapes[shape["key"]["shape"]]
            value_shape = self._shapes[shape["value"]["shape"]]
            return {
                self._decode(key, key_shape, f"{path} key {key!r}"): self._decode(item, value_shape, f"{path}[{key}]")
                for key, item in value.items()
            }
        return _decode_scalar(value, shape, path)

    def _encode(self, value: Any, shape: Shape, path: str) -> Any:
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, Mapping):
                got = _typename(value)
                raise InternalServerError(f"{path or 'result'} must be a mapping, got {got}")
            members = self._member_shapes(shape)
            encoded = {}
            for name, item in value.items():
                if item is None:
                    continue
                if name not in members:
                    raise InternalServerError(
                        f"{_join(path, name)} is not a member of the output shape; expected one of {', '.join(members)}"
                    )
                encoded[name] = self._encode(item, members[name], _join(path, name))
            return encoded
        if kind == "list":
            if not isinstance(value, (list, tuple)):
                raise InternalServerError(f"{path} must be a list, got {_typename(value)}")
            member = self._shapes[shape["member"]["shape"]]
            return [self._encode(item, member, f"{path}[{i}]") for i, item in enumerate(value)]
        if kind == "map":
            if not isinstance(value, Mapping):
                raise InternalServerError(f"{path} must be a mapping, got {_typename(value)}")
            key_shape = self._shapes[shape["key"]["shape"]]
            value_shape = self._shapes[shape["value"]["shape"]]
            return {
                self._encode(key, key_shape, f"{path} key {key!r}"): self._encode(item, value_shape, f"{path}[{key}]")
                for key, item in value.items()
                if item is not None
            }
        return _encode_scalar(value, shape, path)


@functools.cache
def rekognition() -> ServiceModel:
    """The codec for the Rekognition service model (:func:`visage.contract.definition`), made once."""
    return ServiceModel(definition())


def encode_error(error: VisageError) -> tuple[int, bytes]:
    """Return the HTTP status and JSON body that report ``error`` to an AWS SDK."""
    body = {"__type": error.code, "message": error.message}
    return error.status, json.dumps(body, separators=(",", ":")).encode()


# -- decoding ------------------------------------------------------------------------------


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        params = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise SerializationException(f"Request body is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise SerializationException(f"Request body must be a JSON object, not a JSON {_typename(params)}")
    return params


_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _decode_scalar(value: Any, shape: Shape, path: str) -> Any:
    kind = shape["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise _invalid(path, "must be a string")
        if _SURROGATE.search(value):  # JSON may spell one (\\ud800) that is no character: UTF-8 has none
            raise _invalid(path, "must be Unicode text (it holds a lone UTF-16 surrogate)")
        if "enum" in shape and value not in shape["enum"]:
            raise _invalid(path, "must be one of " + ", ".join(shape["enum"]))
        _check_size(len(value), shape, path, "character")
        if "pattern" in shape and not compile_pattern(shape["pattern"]).fullmatch(value):
            raise _invalid(path, f"must match {shape['pattern']}")
        return value
    if kind in _INTEGER_BOUNDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(path, "must be an integer")
        _check_range(value, shape, path)
        low, high = _INTEGER_BOUNDS[kind]
        if not low <= value <= high:
            raise _invalid(path, f"must be between {low} and {high}")
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(path, "must be a number")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _invalid(path, "must be a finite number")
        _check_range(number, shape, path)
        return number
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _invalid(path, "must be true or false")
        return value
    if kind == "blob":
        return _decode_blob(value, shape, path)
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(path, "must be a number of seconds since the Unix epoch")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise _invalid(path, "is not a representable timestamp") from None
    raise InternalServerError(f"{path}: shape type {kind!r} is not supported")


def _decode_blob(value: Any, shape: Shape, path: str) -> bytes:
    if isinstance(value, bytes):  # check_request: already decoded (JSON never holds bytes)
        data = value
    elif not isinstance(value, str):
        raise _invalid(path, "must be a base64-encoded string")
    else:
        try:
            data = base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII characters
            raise _invalid(path, "must be valid base64") from None
    if "max" in shape and len(data) > shape["max"]:
        # Every blob in this API is an image, and the service answers
        # ImageTooLargeException for an oversized one.
        raise ImageTooLargeException(f"{path}: {too_many_bytes(len(data), shape['max'])}")
    _check_size(len(data), shape, path, "byte")
    return data


def _check_size(size: int, shape: Shape, path: str, unit: str, verb: str = "be") -> None:
    """Check a length (string, blob) or item count (list, map) against min/max."""
    if "min" in shape and size < shape["min"]:
        raise _invalid(path, f"must {verb} at least {_plural(shape['min'], unit)}")
    if "max" in shape and size > shape["max"]:
        raise _invalid(path, f"must {verb} at most {_plural(shape['max'], unit)}")


def _check_range(number: float, shape: Shape, path: str) -> None:
    """Check a number against its shape's min/max value bounds."""
    low, high = shape.get("min"), shape.get("max")
    if (low is None or number >= low) and (high is None or number <= high):
        return
    if low is not None and high is not None:
        raise _invalid(path, f"must be between {_number(low)} and {_number(high)}")
    if low is not None:
        raise _invalid(path, f"must be at least {_number(low)}")
    assert high is not None
    raise _invalid(path, f"must be at most {_number(high)}")


def _invalid(path: str, rule: str) -> InvalidParameterException:
    return InvalidParameterException(f"{path} {rule}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _plural(count: int, unit: str) -> str:
    if count == 1:
        return f"1 {unit}"
    return f"{count} {unit[:-1] + 'ies' if unit.endswith('y') else unit + 's'}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _typename(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# -- encoding ------------------------------------------------------------------------------


def _encode_scalar(value: Any, shape: Shape, path: str) -> Any:
    kind = shape["type"]
    is_bool = isinstance(value, (bool, np.bool_))
    is_integer = isinstance(value, (int, np.integer)) and not is_bool
    if kind == "string" and isinstance(value, str):
        return value
    if kind in _INTEGER_BOUNDS and is_integer:
        return int(value)
    if kind in ("float", "double") and (is_integer or isinstance(value, (float, np.floating))):
        number = float(value)
        if not math.isfinite(number):
            raise InternalServerError(f"{path} must be a finite number, got {number}")
        return number
    if kind == "boolean" and is_bool:
        return bool(value)
    if kind == "blob" and isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if kind == "timestamp" and isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise InternalServerError(f"{path} is a {kind} in the model, got {_typename(value)}")
