"""Visage's exceptions: one hierarchy, one class per Rekognition error code.

Each class is named exactly like the Rekognition error code it stands for, so
the wire layer writes ``type(error).__name__`` as ``__type`` and boto3 raises
``client.exceptions.<SameName>``. Raise them where a failure is detected, with
a message that tells the caller what to change. Only codes that Visage raises
have a class here; a feature that needs another code adds it.
"""

from __future__ import annotations


class VisageError(Exception):
    """Base of every error Visage reports to its callers."""

    #: HTTP status the Rekognition protocol uses for this error.
    status: int = 400

    @property
    def code(self) -> str:
        return type(self).__name__

    @property
    def message(self) -> str:
        return str(self)


# Client errors (HTTP 400) -------------------------------------------------------------


class InvalidParameterException(VisageError):
    """A request member is missing, out of range, or makes no sense here."""


class InvalidImageFormatException(VisageError):
    """The bytes are not a PNG or JPEG image that can be decoded."""


class ImageTooLargeException(VisageError):
    """The image is over the byte or pixel limit."""


class InvalidS3ObjectException(VisageError):
    """An S3Object could not be read."""


class ResourceNotFoundException(VisageError):
    """A collection, face, user or job does not exist."""


class ResourceAlreadyExistsException(VisageError):
    """A collection with this id already exists."""


class ConflictException(VisageError):
    """The request conflicts with the current state (for example a user id in use)."""


class IdempotentParameterMismatchException(VisageError):
    """A ClientRequestToken was reused with different parameters."""


class ServiceQuotaExceededException(VisageError):
    """A quota (faces per user, faces per collection) would be exceeded."""


class InvalidPaginationTokenException(VisageError):
    """A NextToken was not issued by this server for this request."""


class UnrecognizedClientException(VisageError):
    """The access key id is not known to this server, or the key was revoked."""


class AccessDeniedException(VisageError):
    """The caller's key policy does not allow the action on the resource."""


class InvalidSignatureException(VisageError):
    """The request signature does not match, or its timestamp is out of range."""


class MissingAuthenticationTokenException(VisageError):
    """The request carries no AWS Signature Version 4."""

    status = 403


class UnknownOperationException(VisageError):
    """The X-Amz-Target names no operation this server knows."""


class SerializationException(VisageError):
    """The request body is not valid JSON for this protocol."""


class ThrottlingException(VisageError):
    """The server is too busy; retry with backoff."""


# Server errors (HTTP 500) -------------------------------------------------------------


class InternalServerError(VisageError):
    """Something failed inside Visage; the message says what, never how to fix the input."""

    status = 500


class ModelIntegrityError(InternalServerError):
    """A bundled model file is missing or its SHA-256 does not match the pinned one."""

    @property
    def code(self) -> str:
        return "InternalServerError"


class SecretKeyFileError(InternalServerError):
    """The key file that encrypts the access keys' secrets is missing, unreadable, or not the one that sealed them."""

    @property
    def code(self) -> str:
        return "InternalServerError"
