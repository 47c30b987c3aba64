"""AWS Signature Version 4: checking who sent a request.

This module owns request authentication. :func:`verify_request` decides whether
an HTTP request carries a valid header-based SigV4 signature (``Authorization:
AWS4-HMAC-SHA256 ...``) for the ``rekognition`` service, made with the secret
of a known access key, and returns that key. The keys themselves are made
and kept by :mod:`visage.keys`.

It is pure logic: no web framework, no clock or key store of its own. The web
layer passes in the request's parts, a function that looks keys up, and
(for tests) the current time. Failures raise the :mod:`visage.errors` class
named after the error code AWS would send.

Not supported: query-string signing (presigned URLs), the ``Date`` header in
place of ``X-Amz-Date``, ``UNSIGNED-PAYLOAD`` and streaming payloads, and
session tokens (``X-Amz-Security-Token`` is an ordinary header here).

The algorithm is specified at
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar
from urllib.parse import quote, unquote

from visage.errors import (
    SIGNATURE_MISMATCH,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
TERMINATOR = "aws4_request"

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_AUTH_PARAMETERS = ("Credential", "SignedHeaders", "Signature")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class SigningKey(Protocol):
    """What a key lookup returns: anything with the secret (:class:`visage.keys.Credentials`,
    :class:`visage.keys.ActiveKey`)."""

    @property
    def secret_access_key(self) -> str: ...


K = TypeVar("K", bound=SigningKey)


def verify_request(
    method: str,
    path: str,
    query: str,
    headers: Headers,
    body: bytes,
    lookup_key: Callable[[str], K | None],
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=15),
) -> K:
    """Check the request's SigV4 signature and return the key that made it (as ``lookup_key`` found it).

    ``path`` and ``query`` are as sent on the wire, still percent-encoded (ASGI's
    ``raw_path`` and ``query_string``). ``headers`` is a mapping or a list of
    ``(name, value)`` pairs; names are matched without regard to case and
    repeated headers are joined with commas, as SigV4 specifies. ``now`` must be
    timezone-aware and defaults to the current time.

    The credential scope must name the ``rekognition`` service and the date of
    ``X-Amz-Date``; its region may be anything (Visage is not regional), but it
    is part of the signing key, so client and server still agree on it.

    Raises:
        MissingAuthenticationTokenException: there is no ``Authorization`` header.
        InvalidSignatureException: the header is malformed or incomplete, the scope
            is wrong, ``X-Amz-Date`` is more than ``max_skew`` away from ``now``,
            ``X-Amz-Content-Sha256`` does not match the body, or the signature
            does not match.
        UnrecognizedClientException: ``lookup_key`` does not know the access key id
            (unknown, or revoked).
    """
    fields = _header_fields(headers)
    if "authorization" not in fields:
        raise MissingAuthenticationTokenException(
            "Requests must be signed with AWS Signature "
            "Version 4 (an 'Authorization: AWS4-HMAC-SHA256 ...' header). Create a key "
            "pair with `visage keys create` and give it to boto3 (aws_access_key_id=..., "
            "aws_secret_access_key=..., endpoint_url=<this server>) or any AWS SDK."
        )
    auth = _Authorization.parse(_single(fields, "authorization"))
    amz_date, signed_at = _amz_date(fields)
    auth.check_scope(amz_date)
    _check_signed_headers(auth.signed_headers, fields)
    _check_clock(amz_date, signed_at, now, max_skew)

    found = lookup_key(auth.access_key_id)
    if found is None:
        raise UnrecognizedClientException(
            f"Access key id {auth.access_key_id!r} is not an active key of this server (unknown, or revoked)."
        )

    payload_hash = hashlib.sha256(body).hexdigest()
    declared_hash = fields.get("x-amz-content-sha256")
    if declared_hash is not None and ",".join(declared_hash).lower() != payload_hash:
        raise InvalidSignatureException(
            "The provided 'X-Amz-Content-Sha256' header does not match the SHA-256 of "
            f"the body ({payload_hash}); send the body's hex SHA-256 or leave the header out."
        )

    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_uri(path),
            _canonical_query(query),
            "".join(f"{name}:{_trimmed(fields[name])}\n" for name in auth.signed_headers),
            ";".join(auth.signed_headers),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _signing_key(found.secret_access_key, auth.date, auth.region)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise InvalidSignatureException(SIGNATURE_MISMATCH)
    return found


@dataclass(frozen=True)
class _Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]
    signature: str

    @property
    def scope(self) -> str:
        return "/".join([self.date, self.region, self.service, self.terminator])

    @classmethod
    def parse(cls, header: str) -> _Authorization:
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise InvalidSignatureException(
                f"Unsupported Authorization algorithm {algorithm!r}: only AWS Signature "
                f"Version 4 ({ALGORITHM}) is accepted."
            )
        params: dict[str, str] = {}
        for part in rest.split(","):
            name, equals, value = part.strip().partition("=")
            if not equals or name not in _AUTH_PARAMETERS or name in params:
                raise InvalidSignatureException(
                    f"Malformed Authorization header near {part.strip()!r}: expected "
                    "'Credential=..., SignedHeaders=..., Signature=...', each once."
                )
            params[name] = value
        missing = [name for name in _AUTH_PARAMETERS if not params.get(name)]
        if missing:
            raise InvalidSignatureException(
                " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            )

        credential = params["Credential"].split("/")
        if len(credential) != 5 or not all(credential):
            raise InvalidSignatureException(
                f"Credential {params['Credential']!r} must have the form "
                f"<AccessKeyId>/<YYYYMMDD>/<region>/{SERVICE}/{TERMINATOR}."
            )
        names = params["SignedHeaders"].split(";")
        if not all(names):
            raise InvalidSignatureException(
                f"SignedHeaders {params['SignedHeaders']!r} must be header names separated by ';'."
            )
        if not _SIGNATURE.fullmatch(params["Signature"]):
            raise InvalidSignatureException("Signature must be 64 lowercase hexadecimal digits.")
        access_key_id, date, region, service, terminator = credential
        return cls(
            access_key_id, date, region, service, terminator, sorted({n.lower() for n in names}), params["Signature"]
        )

    def check_scope(self, amz_date: str) -> None:
        """Refuse a scope for another service or day; any region is fine."""
        if self.terminator != TERMINATOR:
            raise InvalidSignatureException(
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{self.terminator}'."
            )
        if self.service != SERVICE:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{SERVICE}', not '{self.service}'."
            )
        if self.date != amz_date[:8]:
            raise InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{self.date}' != '{amz_date[:8]}', from '{amz_date}'."
            )


def _header_fields(headers: Headers) -> dict[str, list[str]]:
    """Values of each header by lowercase name, in the order they came."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name.lower(), []).append(value)
    return fields


def _single(fields: dict[str, list[str]], name: str) -> str:
    values = fields[name]
    if len(values) > 1:
        raise InvalidSignatureException(f"The request has {len(values)} '{name}' headers; send one.")
    return values[0]


def _amz_date(fields: dict[str, list[str]]) -> tuple[str, datetime]:
    if "x-amz-date" not in fields:
        raise InvalidSignatureException("Authorization header requires existence of a 'X-Amz-Date' header.")
    amz_date = _single(fields, "x-amz-date").strip()
    try:
        if not _AMZ_DATE.fullmatch(amz_date):
            raise ValueError
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidSignatureException(
            f"X-Amz-Date {amz_date!r} is not a UTC time of the form YYYYMMDDTHHMMSSZ."
        ) from None
    return amz_date, signed_at


def _check_signed_headers(signed_headers: list[str], fields: dict[str, list[str]]) -> None:
    for required in ("host", "x-amz-date"):
        if required not in signed_headers:
            raise InvalidSignatureException(
                f"SignedHeaders must include '{required}'; it has {';'.join(signed_headers)!r}."
            )
    for name in signed_headers:
        if name not in fields:
            raise InvalidSignatureException(f"Header '{name}' is listed in SignedHeaders but is not in the request.")


def _check_clock(amz_date: str, signed_at: datetime, now: datetime | None, max_skew: timedelta) -> None:
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(UTC)
    skew = f"{max_skew.total_seconds() / 60:g} min."
    if signed_at < now - max_skew:
        raise InvalidSignatureException(
            f"Signature expired: {amz_date} is now earlier than {_format(now - max_skew)} ({_format(now)} - {skew})"
        )
    if signed_at > now + max_skew:
        raise InvalidSignatureException(
            f"Signature not yet current: {amz_date} is still later than "
            f"{_format(now + max_skew)} ({_format(now)} + {skew})"
        )


def _format(moment: datetime) -> str:
    return moment.strftime(_AMZ_DATE_FORMAT)


def _canonical_uri(path: str) -> str:
    """The path with dot segments and empty segments removed, percent-encoded once more.

    Encoding the already-encoded wire path again is the "encode twice" rule AWS
    gives for every service but S3, and what botocore does.
    """
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing = "/" if segments and path.endswith("/") else ""
    return quote("/" + "/".join(segments) + trailing, safe="/~")


def _canonical_query(query: str) -> str:
    """Each name and value decoded, re-encoded per RFC 3986, sorted by name then value."""
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((_uri_encode(unquote(name)), _uri_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _trimmed(values: list[str]) -> str:
    """Header values with outer whitespace removed and inner runs collapsed, comma-joined."""
    return ",".join(" ".join(value.split()) for value in values)


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, SERVICE, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
