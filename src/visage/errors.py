"""Visage's exceptions: one hierarchy, one class per Rekognition error code.

Each class is named exactly like the Rekognition error code it stands for, so
the wire layer writes ``type(error).__name__`` as ``__type`` and boto3 raises
``client.exceptions.<SameName>``. Raise them where a failure is detected, with
a message that tells the caller what to change. Only codes that Visage raises
have a class here; a feature that needs another code adds it.

Clients match on Rekognition's message text too (double-take reads an error that
contains "no faces" as "no match"). So where Rekognition raises the same error for
the same cause and its text is known, the message starts with that text, kept
here once, and Visage's detail follows it (:func:`rekognition_message`). A class
whose every cause has one Rekognition text carries it as ``rekognition_text`` and
puts it in front of any message itself. docs/api.md lists each text and where it
was found.
"""

from __future__ import annotations

# Rekognition's own texts, for the causes where Visage fails as Rekognition does -------

#: No face to work on: SearchFacesByImage, CompareFaces (either image).
NO_FACES = "There are no faces in the image. Should be at least 1."
#: The generic InvalidParameterException text, given for an image too small to hold a face.
INVALID_PARAMETERS = "Request has invalid parameters"
#: InvalidImageFormatException, whatever is wrong with the bytes.
INVALID_IMAGE_FORMAT = "Request has invalid image format"
#: InvalidS3ObjectException, whatever kept the object from being read.
S3_OBJECT_UNREADABLE = "Unable to get object metadata from S3. Check object key, region and/or access permissions."
#: SearchFaces (and SearchUsers) with a FaceId the collection does not hold: InvalidParameterException.
FACE_ID_NOT_FOUND = "faceId was not found in the collection."
#: UnrecognizedClientException: the access key id is unknown.
UNKNOWN_ACCESS_KEY = "The security token included in the request is invalid."
#: InvalidSignatureException: the signature does not match.
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
#: MissingAuthenticationTokenException: the request is not signed.
MISSING_AUTHENTICATION_TOKEN = "Missing Authentication Token"


def collection_not_found(collection_id: str) -> str:
    """ResourceNotFoundException's text for a collection that does not exist."""
    return f"The collection id: {collection_id} does not exist"


def user_face_limit(user_id: str, would_hold: int, limit: int) -> str:
    """ServiceQuotaExceededException's text for faces that would take a user past ``limit`` faces."""
    return f"User {user_id} would hold {would_hold} faces; the limit is {limit} faces per user."


def rekognition_message(rekognition_text: str, detail: str = "") -> str:
    """Rekognition's text first, unchanged, so clients that match on it keep working; then Visage's detail."""
    if not detail:
        return rekognition_text
    separator = " " if rekognition_text.endswith((".", ":")) else ". "
    return f"{rekognition_text}{separator}{detail}"


class VisageError(Exception):
    """Base of every error Visage reports to its callers."""

    #: HTTP status the Rekognition protocol uses for this error.
    status: int = 400
    #: Rekognition's text for this error where it is the same for every cause; it opens the message.
    rekognition_text: str = ""

    def __init__(self, message: str = "") -> None:
        text = self.rekognition_text
        if text and not message.startswith(text):  # already there when an error is re-made (unpickled)
            message = rekognition_message(text, message)
        super().__init__(message)

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

    rekognition_text = INVALID_IMAGE_FORMAT


class ImageTooLargeException(VisageError):
    """The image is over the byte or pixel limit."""


class InvalidS3ObjectException(VisageError):
    """An S3Object could not be read."""

    rekognition_text = S3_OBJECT_UNREADABLE


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

    rekognition_text = UNKNOWN_ACCESS_KEY


class AccessDeniedException(VisageError):
    """The caller's key policy does not allow the action on the resource."""


class InvalidSignatureException(VisageError):
    """The request signature does not match, or its timestamp is out of range."""


class MissingAuthenticationTokenException(VisageError):
    """The request carries no AWS Signature Version 4."""

    status = 403
    rekognition_text = MISSING_AUTHENTICATION_TOKEN


class UnknownOperationException(VisageError):
    """The X-Amz-Target names no operation this server knows."""


class SerializationException(VisageError):
    """The request body is not valid JSON for this protocol."""


class LimitExceededException(VisageError):
    """Too many video jobs are queued or running; start this one when one has finished."""


class VideoTooLargeException(VisageError):
    """The video is over the size or duration limit."""


# Server errors (HTTP 500) -------------------------------------------------------------


class ThrottlingException(VisageError):
    """The server is too busy; retry with backoff. A server fault (HTTP 500) in the service model."""

    status = 500


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


class StoreWriteError(InternalServerError):
    """The store could not write: its disk is full, a file reached its size limit, or the disk failed.
    The request's transaction was rolled back whole; the call may be retried once space is freed."""

    @property
    def code(self) -> str:
        return "InternalServerError"


class StoreUnavailableError(ThrottlingException):
    """The store's database does not answer (PostgreSQL is down or restarting); retry shortly.

    On the wire it is Rekognition's ThrottlingException ("temporarily unable to process the
    request"), which the AWS SDKs retry with backoff on their own."""

    @property
    def code(self) -> str:
        return "ThrottlingException"
