"""The Rekognition face operations, on plain Python values: no HTTP in sight.

Each public method takes one operation's request (a dict in Rekognition's
shape, already validated against the service model by the protocol layer) and
returns its response dict. Face work goes to the :class:`~visage.engine.Engine`,
state to the :class:`~visage.store.base.Store`, access keys to the
:class:`~visage.keys.KeyRing`.

Authorisation lives here, one place for the API and the console: :meth:`RekognitionService.call`
checks the caller's key policy for ``rekognition:<Operation>`` on the operation's resource
(:func:`resource_member`, docs/keys.md) before the operation runs, and the methods only
Visage has (keys, the audit log) check their ``visage:`` action. A refused call raises
:class:`~visage.errors.AccessDeniedException` and is recorded in the audit log.

Every comparison and search appends a record to the audit log, with the SHA-256 of
the probe image; so does every refused call and every change of keys.
The stored-video operations live in :mod:`visage.jobs`.

Behaviours worth knowing (docs/api.md has the full list):

- A collection is pinned to the face model it was created with; its vectors are
  only ever compared with vectors of that model.
- Thresholds default to 80 (75 for AssociateFaces), as in Rekognition.
- A user's similarity to a probe is the highest similarity among its faces.
- The server keeps no image: only vectors and metadata, and a small thumbnail of
  each indexed face where a collection (or the server) is told to keep them;
  thumbnails never leave through the Rekognition operations.

Besides Rekognition's operations, the service has Visage's own, for the console
(docs/console.md): face pages with thumbnails, a collection's thumbnail setting,
reviewers' decisions on search candidates and their statistics.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from visage.config import DEFAULT_THRESHOLD, Settings
from visage.contract import definition, shape_max, shape_pattern
from visage.engine import DecodedImage, Engine
from visage.engine.engine import no_faces, passing
from visage.engine.images import image_format
from visage.engine.thumbnails import face_thumbnail
from visage.errors import (
    FACE_ID_NOT_FOUND,
    AccessDeniedException,
    IdempotentParameterMismatchException,
    InvalidImageFormatException,
    InvalidPaginationTokenException,
    InvalidParameterException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    UnknownOperationException,
    UnrecognizedClientException,
    rekognition_message,
    user_face_limit,
)
from visage.faces import Face
from visage.jobs.operations import ENDED_OPERATIONS, VideoJobs
from visage.keys import AccessKey, Credentials, KeyRing, SecretBox
from visage.policy import Policy
from visage.reviews import REVIEW_OPERATION, ReviewBand, review_bands, review_statuses
from visage.s3 import read_s3_object
from visage.store import open_store
from visage.store.audit_chain import ChainReport, read_chain, verify
from visage.store.base import (
    DECISIONS,
    AuditRecord,
    Collection,
    RequestToken,
    Review,
    ScoredFace,
    Store,
    StoredFace,
    User,
)

Request = dict[str, Any]
Response = dict[str, Any]

DEFAULT_ASSOCIATE_THRESHOLD = 75.0
MAX_FACES_PER_USER = 100
DEFAULT_PAGE = 1000
# An omitted MaxFaces or MaxUsers (and ListUsers' MaxResults) asks for as many as a request may.
DEFAULT_MAX_MATCHES = shape_max("MaxFaces")
DEFAULT_USER_PAGE = shape_max("MaxUserResults")
MAX_TAGS = shape_max("TagMap")

# A NextToken is the last key of the previous page, so it has that key's pattern.
_FACE_ID = shape_pattern("FaceId")
_COLLECTION_ID = shape_pattern("CollectionId")
_USER_ID = shape_pattern("UserId")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Longest note a reviewer may add to a decision, in characters.
MAX_REVIEW_NOTE = 2000
_ARN = re.compile(r"arn:aws:rekognition:([^:]*):([^:]*):collection/(.+)")


#: The input members that name an operation's resource, in the order they are looked for.
RESOURCE_MEMBERS = ("ResourceArn", "CollectionId")
#: Operations on every collection at once, checked on ``...:collection/*`` (IAM's table
#: gives ListCollections the collection resource type).
ALL_COLLECTIONS_OPERATIONS = frozenset({"ListCollections"})


def open_service(settings: Settings) -> RekognitionService:
    """The service over an engine and the store that ``settings`` name, with the store's keys
    (and those of a keys.json left from before keys lived in the store, imported once)."""
    store = open_store(settings)
    keys = KeyRing.open(store, settings.secret_key_path, settings.keys_path)
    return RekognitionService(Engine(settings), store, settings, keys)


@functools.cache
def resource_member(operation: str) -> str | None:
    """The input member of ``operation`` (any operation of the service model) whose value is
    the resource its permission is checked on, or None when it is checked on ``*`` (or on
    every collection, :data:`ALL_COLLECTIONS_OPERATIONS`). Read from the model, so an
    operation added later gets its collection or ARN checked without a table to update."""
    spec = definition()["operations"][operation]
    members = definition()["shapes"][spec["input"]["shape"]]["members"] if "input" in spec else {}
    return next((member for member in RESOURCE_MEMBERS if member in members), None)


def operation_resource(operation: str, request: Request, settings: Settings) -> str:
    """The resource a request of ``operation`` is checked on, following IAM's action table for
    Rekognition: its ResourceArn, its collection's ARN, every collection's (``...:collection/*``)
    for ListCollections, and ``*`` for the rest (DetectFaces, CompareFaces)."""
    member = resource_member(operation)
    if member == "ResourceArn" and member in request:
        return str(request[member])
    if member == "CollectionId" and member in request:
        return collection_arn(settings, request[member])
    if operation in ALL_COLLECTIONS_OPERATIONS:
        return collection_arn(settings, "*")
    return "*"


@dataclass(frozen=True)
class Caller:
    """Who sent the request: the access key that signed it, and the key's policy."""

    access_key_id: str
    policy: Policy
    name: str = ""

    @classmethod
    def of(cls, key: AccessKey) -> Caller:
        return cls(key.access_key_id, key.policy, key.name)

    @classmethod
    def local(cls, name: str) -> Caller:
        """Someone on this machine, allowed everything: ``visage index``, a ``--no-auth`` server's
        anonymous callers, benchmarks calling the service in-process."""
        return cls(name, Policy.admin(), name)


class RekognitionService:
    """Rekognition's face API over an engine and a store."""

    def __init__(
        self, engine: Engine, store: Store, settings: Settings | None = None, keys: KeyRing | None = None
    ) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings or engine.settings
        self.keys = keys or KeyRing(store, SecretBox(self.settings.secret_key_path))
        self.video = VideoJobs(self)
        self._operations: dict[str, Callable[[Request, Caller], Response]] = {
            "DetectFaces": self.detect_faces,
            "CompareFaces": self.compare_faces,
            "CreateCollection": self.create_collection,
            "DeleteCollection": self.delete_collection,
            "ListCollections": self.list_collections,
            "DescribeCollection": self.describe_collection,
            "IndexFaces": self.index_faces,
            "ListFaces": self.list_faces,
            "DeleteFaces": self.delete_faces,
            "SearchFaces": self.search_faces,
            "SearchFacesByImage": self.search_faces_by_image,
            "CreateUser": self.create_user,
            "DeleteUser": self.delete_user,
            "ListUsers": self.list_users,
            "AssociateFaces": self.associate_faces,
            "DisassociateFaces": self.disassociate_faces,
            "SearchUsers": self.search_users,
            "SearchUsersByImage": self.search_users_by_image,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
            "StartFaceDetection": self.video.start_face_detection,
            "GetFaceDetection": self.video.get_face_detection,
            "StartFaceSearch": self.video.start_face_search,
            "GetFaceSearch": self.video.get_face_search,
        }

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._operations)

    def call(self, operation: str, request: Request, caller: Caller, **options: Any) -> Response:
        """Runs the operation if the caller's policy allows ``rekognition:<operation>`` on its resource.
        ``options`` go to the operation's handler: what Visage's own pages may choose beyond
        Rekognition's request (CreateCollection's ``face_model``)."""
        handler = self._operations.get(operation)
        if handler is None:
            raise UnknownOperationException(
                ENDED_OPERATIONS.get(operation)
                or f"{operation} is a Rekognition operation that Visage does not implement; "
                f"it implements {', '.join(sorted(self._operations))}."
            )
        self.authorize(
            caller,
            f"rekognition:{operation}",
            self.resource(operation, request),
            operation=operation,
            collection_id=request.get("CollectionId"),
        )
        return handler(request, caller, **options)

    # Authorisation -----------------------------------------------------------------

    def resource(self, operation: str, request: Request) -> str:
        """The resource a request of ``operation`` is checked on (:func:`operation_resource`)."""
        return operation_resource(operation, request, self.settings)

    def authorize(
        self, caller: Caller, action: str, resource: str, *, operation: str, collection_id: str | None = None
    ) -> None:
        """Returns if the caller's policy allows ``action`` on ``resource``; otherwise records the refusal
        in the audit log and raises AccessDeniedException, in AWS's words."""
        decision = caller.policy.decide(action, resource)
        if decision.allowed:
            return
        self._audit(
            caller,
            operation,
            collection_id,
            None,
            outcome="refused",
            details={"action": action, "resource": resource, "reason": decision.reason},
        )
        why = (
            "with an explicit deny in an identity-based policy"
            if decision.reason == "explicit deny"
            else f"because no identity-based policy allows the {action} action"
        )
        raise AccessDeniedException(
            f"User: {caller.access_key_id} is not authorized to perform: {action} on resource: {resource} {why}"
        )

    def authenticate(self, access_key_id: str, secret_access_key: str) -> Caller:
        """The caller whose key pair this is (the console's sign-in); UnrecognizedClientException
        if the pair is wrong or the key revoked, without saying which."""
        found = self.keys.lookup(access_key_id)
        if found is None or not hmac.compare_digest(found.secret_access_key, secret_access_key):
            raise UnrecognizedClientException(
                "The access key id or secret access key is wrong, or the key was revoked."
            )
        self.keys.note_use(found.key)
        return Caller.of(found.key)

    def caller(self, access_key_id: str) -> Caller:
        """The caller of an active key, read from the store now (a console session checks its key
        with each request, so a revoked key's session ends at once); UnrecognizedClientException if
        the key is unknown or revoked."""
        found = self.keys.lookup(access_key_id)
        if found is None:
            raise UnrecognizedClientException(f"The access key {access_key_id} is unknown or was revoked.")
        self.keys.note_use(found.key)
        return Caller.of(found.key)

    # Keys and the audit log: what only Visage has ------------------------------------

    def create_key(self, caller: Caller, policy: Policy, name: str) -> tuple[AccessKey, Credentials]:
        """A new key (``visage:ManageKeys``, and a policy the caller's covers); the returned
        credentials are the only copy of its secret."""
        self.authorize(caller, "visage:ManageKeys", "*", operation="CreateAccessKey")
        self._no_stronger(caller, policy, "CreateAccessKey", "make")
        return self.keys.create(policy, name, by=caller.access_key_id)

    def list_keys(self, caller: Caller) -> list[AccessKey]:
        """Every key, revoked ones too, oldest first (``visage:ManageKeys``)."""
        self.authorize(caller, "visage:ManageKeys", "*", operation="ListAccessKeys")
        return self.keys.keys()

    def revoke_key(self, caller: Caller, access_key_id: str) -> AccessKey:
        """Revokes a key from its next request on, everywhere (``visage:ManageKeys``)."""
        self.authorize(caller, "visage:ManageKeys", "*", operation="RevokeAccessKey")
        self._no_stronger(caller, self.keys.get(access_key_id).policy, "RevokeAccessKey", "revoke", access_key_id)
        return self.keys.revoke(access_key_id, by=caller.access_key_id)

    def rotate_key(self, caller: Caller, access_key_id: str) -> tuple[AccessKey, Credentials]:
        """A new pair with the key's name and policy; the old key is revoked (``visage:ManageKeys``)."""
        self.authorize(caller, "visage:ManageKeys", "*", operation="RotateAccessKey")
        self._no_stronger(caller, self.keys.get(access_key_id).policy, "RotateAccessKey", "rotate", access_key_id)
        return self.keys.rotate(access_key_id, by=caller.access_key_id)

    def _no_stronger(self, caller: Caller, policy: Policy, operation: str, verb: str, key_id: str = "") -> None:
        """Refuses (and audits the refusal) when ``policy`` may allow what the caller's does not: a
        key allowed ``visage:ManageKeys`` manages only keys no stronger than itself."""
        if caller.policy.covers(policy):
            return
        self._audit(
            caller,
            operation,
            None,
            None,
            outcome="refused",
            details={"key": key_id, "policy": policy.summary(), "reason": "stronger than the caller's key"},
        )
        target = f"the key {key_id}" if key_id else "a key with this policy"
        raise AccessDeniedException(
            f"User: {caller.access_key_id} may not {verb} {target}: its policy allows what the caller's does not"
            " (a key manages only keys allowed no more than itself)."
        )

    def read_audit_log(self, caller: Caller, since: datetime | None = None, **filters: Any) -> list[AuditRecord]:
        """Audit records (``visage:ReadAuditLog``); ``filters`` are those of
        :meth:`~visage.store.base.Store.audit_records` (until, access_key_id, operation,
        collection_id, outcome, limit, offset, newest_first)."""
        self.authorize(caller, "visage:ReadAuditLog", "*", operation="ReadAuditLog")
        return self.store.audit_records(since, **filters)

    def verify_audit_log(self, caller: Caller, anchor: str | None = None) -> ChainReport:
        """Walks the audit log's hash chain (``visage:ReadAuditLog``); see :func:`visage.store.audit_chain.verify`."""
        self.authorize(caller, "visage:ReadAuditLog", "*", operation="VerifyAuditLog")
        return verify(read_chain(self.store), anchor)

    # Images ------------------------------------------------------------------------

    def image(self, image: Request) -> DecodedImage:
        """Decode an ``Image`` member: exactly one of Bytes or S3Object."""
        return self._hashed_image(image)[0]

    def _hashed_image(self, image: Request) -> tuple[DecodedImage, str]:
        """An ``Image`` member decoded, and the SHA-256 (hex) of its bytes; bytes sent base64-encoded
        twice are refused with a hint."""
        data, limit = self._image_bytes(image)
        try:
            decoded = self.engine.decode(data, max_bytes=limit)
        except InvalidImageFormatException as error:
            if "Bytes" in image and _is_base64_of_an_image(data):
                raise InvalidImageFormatException(
                    f"{error.message} It is base64 text of an image: Image.Bytes takes the image's raw bytes "
                    "(an AWS SDK base64-encodes them for you)."
                ) from error
            raise
        return decoded, hashlib.sha256(data).hexdigest()

    def _image_bytes(self, image: Request) -> tuple[bytes, int]:
        """The raw bytes of an ``Image`` member, and the byte limit that applies to them."""
        has_bytes, has_s3 = "Bytes" in image, "S3Object" in image
        if has_bytes == has_s3:
            raise InvalidParameterException("Image must have exactly one of Bytes or S3Object.")
        if has_bytes:
            return image["Bytes"], self.settings.max_image_bytes
        return read_s3_object(image["S3Object"], self.settings), self.settings.max_s3_image_bytes

    # Stateless -----------------------------------------------------------------------

    def detect_faces(self, request: Request, caller: Caller) -> Response:
        faces = self.engine.detect_faces(self.image(request["Image"]), attributes=request.get("Attributes"))
        return {"FaceDetails": [face.to_rekognition() for face in faces]}

    def compare_faces(self, request: Request, caller: Caller) -> Response:
        threshold = request.get("SimilarityThreshold", DEFAULT_THRESHOLD)
        source, source_hash = self._hashed_image(request["SourceImage"])
        target, target_hash = self._hashed_image(request["TargetImage"])
        result = self.engine.compare_faces(
            source, target, threshold=threshold, quality_filter=request.get("QualityFilter", "NONE")
        )
        self._audit(
            caller,
            "CompareFaces",
            None,
            threshold,
            similarities=[m.similarity for m in result.matches],
            probe_sha256=source_hash,
            details={"target_sha256": target_hash},
        )
        return result.to_rekognition()

    # Collections -----------------------------------------------------------------------

    def create_collection(self, request: Request, caller: Caller, face_model: str | None = None) -> Response:
        """CreateCollection: the collection keeps ``face_model`` (default: the server's) for good."""
        collection_id = request["CollectionId"]
        model = self.engine.face_model(face_model)
        collection = Collection(
            collection_id=collection_id,
            arn=self.collection_arn(collection_id),
            face_model=model.name,
            face_model_version=model.version,
            created_at=datetime.now(UTC),
            tags=dict(request.get("Tags", {})),
        )
        self.store.create_collection(collection)
        return {"StatusCode": 200, "CollectionArn": collection.arn, "FaceModelVersion": collection.face_model_version}

    def delete_collection(self, request: Request, caller: Caller) -> Response:
        self.store.delete_collection(request["CollectionId"])
        return {"StatusCode": 200}

    def list_collections(self, request: Request, caller: Caller) -> Response:
        after = _token_key(request.get("NextToken"), _COLLECTION_ID)
        limit = request.get("MaxResults") or DEFAULT_PAGE
        page = self.store.list_collections(after, limit + 1)
        response: Response = {
            "CollectionIds": [c.collection_id for c in page[:limit]],
            "FaceModelVersions": [c.face_model_version for c in page[:limit]],
        }
        if len(page) > limit:
            response["NextToken"] = page[limit - 1].collection_id
        return response

    def describe_collection(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        faces, users = self.store.count(collection.collection_id)
        return {
            "FaceCount": faces,
            "UserCount": users,
            "FaceModelVersion": collection.face_model_version,
            "CollectionARN": collection.arn,
            "CreationTimestamp": collection.created_at,
        }

    # Faces -----------------------------------------------------------------------------

    def index_faces(self, request: Request, caller: Caller, largest_only: bool = False) -> Response:
        """IndexFaces. With ``largest_only`` (``visage index``, where a file names the person in it),
        MaxFaces counts the largest faces whether or not they pass QualityFilter: a bystander is
        never indexed in place of a larger face that fails it."""
        collection = self.store.get_collection(request["CollectionId"])
        image, image_hash = self._hashed_image(request["Image"])
        external_id = request.get("ExternalImageId")
        quality = request.get("QualityFilter", "AUTO")
        max_faces = min(request.get("MaxFaces", self.settings.max_faces), self.settings.max_faces)
        faces = self.analyze(
            collection, image, quality, max_faces, request.get("DetectionAttributes"), largest_only=largest_only
        )

        indexed: list[Face] = []
        unindexed: list[Response] = []
        for face in faces:  # largest first; the engine embedded exactly the faces to index
            if face.embedding is not None:
                indexed.append(face)
            else:
                reasons = list(face.filter_reasons) or ["EXCEEDS_MAX_FACES"]
                unindexed.append({"Reasons": reasons, "FaceDetail": face.detail.to_rekognition()})

        # The same image with the same ExternalImageId: a face already stored from it is not
        # stored twice (as Rekognition does); its stored face answers. The others are stored.
        existing = self.store.find_image(collection.collection_id, image_hash, external_id)
        matched = _match_stored(existing, indexed)
        new = [face for face, match in zip(indexed, matched) if match is None]
        added: list[StoredFace] = []
        if new:
            faces_now, _ = self.store.count(collection.collection_id)
            if faces_now + len(new) > self.settings.max_faces_per_collection:
                raise ServiceQuotaExceededException(
                    f"Collection {collection.collection_id} holds {faces_now:,} faces; indexing "
                    f"{len(new)} more would pass its limit of {self.settings.max_faces_per_collection:,}."
                )
            image_id, now = existing[0].image_id if existing else str(uuid.uuid4()), datetime.now(UTC)
            added = [
                StoredFace(
                    face_id=str(uuid.uuid4()),
                    image_id=image_id,
                    bounding_box=face.detail.bounding_box,
                    confidence=face.detail.confidence,
                    vector=face.embedded.vector,
                    external_image_id=external_id,
                    image_hash=image_hash,
                    indexed_at=now,
                )
                for face in new
            ]
            thumbnails = None
            if self.keeps_face_thumbnails(collection):
                thumbnails = {s.face_id: face_thumbnail(image, f.detail) for s, f in zip(added, new)}
            self.store.add_faces(collection.collection_id, added, thumbnails)
        fresh = iter(added)
        stored = [match if match is not None else next(fresh) for match in matched]
        return {
            "FaceRecords": [
                {"Face": s.to_rekognition(collection.face_model_version), "FaceDetail": f.detail.to_rekognition()}
                for s, f in zip(stored, indexed)
            ],
            "FaceModelVersion": collection.face_model_version,
            "UnindexedFaces": unindexed,
        }

    def list_faces(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        after = _token_key(request.get("NextToken"), _FACE_ID)
        limit = request.get("MaxResults") or DEFAULT_PAGE
        page = self.store.list_faces(
            collection.collection_id, after, limit + 1, user_id=request.get("UserId"), face_ids=request.get("FaceIds")
        )
        response: Response = {
            "Faces": [f.to_rekognition(collection.face_model_version) for f in page[:limit]],
            "FaceModelVersion": collection.face_model_version,
        }
        if len(page) > limit:
            response["NextToken"] = page[limit - 1].face_id
        return response

    def delete_faces(self, request: Request, caller: Caller) -> Response:
        collection_id = request["CollectionId"]
        self.store.get_collection(collection_id)
        wanted = list(dict.fromkeys(request["FaceIds"]))
        found = {f.face_id: f for f in self.store.get_faces(collection_id, wanted)}
        unsuccessful, deletable = [], []
        for face_id in wanted:
            face = found.get(face_id)
            if face is None:
                unsuccessful.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
            elif face.user_id is not None:
                unsuccessful.append(
                    {"FaceId": face_id, "UserId": face.user_id, "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}
                )
            else:
                deletable.append(face_id)
        deleted = self.store.delete_faces(collection_id, deletable) if deletable else []
        return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": unsuccessful}

    # Face search -------------------------------------------------------------------

    def search_faces(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        face_id = request["FaceId"]
        (probe,) = self._faces_or_fail(collection.collection_id, [face_id])
        threshold = request.get("FaceMatchThreshold", DEFAULT_THRESHOLD)
        matches = self.search_collection(
            collection, probe.vector, request.get("MaxFaces", DEFAULT_MAX_MATCHES), threshold, exclude=face_id
        )
        self._audit(
            caller,
            "SearchFaces",
            collection.collection_id,
            threshold,
            matches=matches,
            probe_sha256=probe.image_hash,
            details={"searched_face_id": face_id},
        )
        return {
            "SearchedFaceId": face_id,
            "FaceMatches": [self.face_match(collection, m) for m in matches],
            "FaceModelVersion": collection.face_model_version,
        }

    def search_faces_by_image(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        image, image_hash = self._hashed_image(request["Image"])
        quality = request.get("QualityFilter", "NONE")
        faces = self.analyze(collection, image, quality, max_embedded=1)
        usable = [f for f in faces if f.embedding is not None]
        if not usable:
            raise no_faces(f"No face was found in the image{passing(quality) if faces else ''}.")
        probe = usable[0]  # the largest
        threshold = request.get("FaceMatchThreshold", DEFAULT_THRESHOLD)
        matches = self.search_collection(
            collection, probe.embedded.vector, request.get("MaxFaces", DEFAULT_MAX_MATCHES), threshold
        )
        self._audit(
            caller, "SearchFacesByImage", collection.collection_id, threshold, matches=matches, probe_sha256=image_hash
        )
        return {
            "SearchedFaceBoundingBox": probe.detail.bounding_box.to_rekognition(),
            "SearchedFaceConfidence": probe.detail.confidence,
            "FaceMatches": [self.face_match(collection, m) for m in matches],
            "FaceModelVersion": collection.face_model_version,
        }

    # Users ---------------------------------------------------------------------------

    def create_user(self, request: Request, caller: Caller) -> Response:
        token, kept = self._idempotent("CreateUser", request)
        if kept is None:
            self.store.create_user(request["CollectionId"], request["UserId"], token=token)
        return {}

    def delete_user(self, request: Request, caller: Caller) -> Response:
        token, kept = self._idempotent("DeleteUser", request)
        if kept is None:
            self.store.delete_user(request["CollectionId"], request["UserId"], token=token)
        return {}

    def list_users(self, request: Request, caller: Caller) -> Response:
        collection_id = request["CollectionId"]
        self.store.get_collection(collection_id)
        after = _token_key(request.get("NextToken"), _USER_ID)
        limit = request.get("MaxResults") or DEFAULT_USER_PAGE
        page = self.store.list_users(collection_id, after, limit + 1)
        response: Response = {"Users": [{"UserId": u.user_id, "UserStatus": u.status} for u in page[:limit]]}
        if len(page) > limit:
            response["NextToken"] = page[limit - 1].user_id
        return response

    def associate_faces(self, request: Request, caller: Caller) -> Response:
        collection_id, user_id = request["CollectionId"], request["UserId"]
        token, kept = self._idempotent("AssociateFaces", request)  # checks the collection exists
        if kept is not None:
            return self._first_response(kept) or self._association_replay(collection_id, user_id, request["FaceIds"])
        collection = self.store.get_collection(collection_id)
        user = self.store.get_user(collection_id, user_id)
        threshold = request.get("UserMatchThreshold", DEFAULT_ASSOCIATE_THRESHOLD)
        wanted = list(dict.fromkeys(request["FaceIds"]))
        found = {f.face_id: f for f in self.store.get_faces(collection_id, wanted)}
        own = self.store.list_faces(collection_id, None, MAX_FACES_PER_USER + 1, user_id=user_id)
        mapping = self.engine.similarity_map(collection.face_model)

        associated, unsuccessful, to_associate = [], [], []
        for face_id in wanted:
            face = found.get(face_id)
            if face is None:
                unsuccessful.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
            elif face.user_id == user_id:
                associated.append({"FaceId": face_id})  # already this user's: nothing to do
            elif face.user_id is not None:
                unsuccessful.append(
                    {"FaceId": face_id, "UserId": face.user_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
                )
            elif own:
                similarity = max(float(mapping(float(o.vector @ face.vector))) for o in own)
                if similarity < threshold:
                    unsuccessful.append(
                        {"FaceId": face_id, "Confidence": similarity, "Reasons": ["LOW_MATCH_CONFIDENCE"]}
                    )
                else:
                    to_associate.append(face_id)
            else:
                to_associate.append(face_id)
        if len(own) + len(to_associate) > MAX_FACES_PER_USER:
            raise ServiceQuotaExceededException(
                user_face_limit(user_id, len(own) + len(to_associate), MAX_FACES_PER_USER)
            )
        if to_associate or token is not None:
            self.store.associate_faces(collection_id, user_id, to_associate, token=token, max_faces=MAX_FACES_PER_USER)
        associated += [{"FaceId": f} for f in to_associate]
        status = "ACTIVE" if own or to_associate else user.status
        response = {"AssociatedFaces": associated, "UnsuccessfulFaceAssociations": unsuccessful, "UserStatus": status}
        return self._kept_for_repeats(collection_id, token, response)

    def _kept_for_repeats(self, collection_id: str, token: RequestToken | None, response: Response) -> Response:
        """``response``, kept with its ClientRequestToken so a repeat of the request gets it again, as
        Rekognition answers one (:meth:`_first_response`)."""
        if token is not None:
            self.store.set_token_response(collection_id, token.token, json.dumps(response))
        return response

    @staticmethod
    def _first_response(kept: RequestToken) -> Response | None:
        """The response the request of this kept token was first given, if it was kept (a server killed
        between the write and keeping it, or two identical requests at once, leave none: the caller
        answers from the store's state instead)."""
        return json.loads(kept.response) if kept.response is not None else None

    def _association_replay(self, collection_id: str, user_id: str, face_ids: list[str]) -> Response:
        """The answer to a repeated AssociateFaces, when the first response was not kept: the faces
        of the request that are now the user's."""
        user = self.store.get_user(collection_id, user_id)
        faces = self.store.get_faces(collection_id, face_ids)
        return {
            "AssociatedFaces": [{"FaceId": f.face_id} for f in faces if f.user_id == user_id],
            "UnsuccessfulFaceAssociations": [],
            "UserStatus": user.status,
        }

    def disassociate_faces(self, request: Request, caller: Caller) -> Response:
        collection_id, user_id = request["CollectionId"], request["UserId"]
        token, kept = self._idempotent("DisassociateFaces", request)
        if kept is not None and (first := self._first_response(kept)) is not None:
            return first
        user = self.store.get_user(collection_id, user_id)
        wanted = list(dict.fromkeys(request["FaceIds"]))
        found = {f.face_id: f for f in self.store.get_faces(collection_id, wanted)}
        if kept is not None:  # the first response was not kept: the faces of the request that are now no one's
            freed = [{"FaceId": f} for f in wanted if f in found and found[f].user_id is None]
            return {"DisassociatedFaces": freed, "UnsuccessfulFaceDisassociations": [], "UserStatus": user.status}
        disassociated, unsuccessful, to_clear = [], [], []
        for face_id in wanted:
            face = found.get(face_id)
            if face is None:
                unsuccessful.append({"FaceId": face_id, "UserId": user_id, "Reasons": ["FACE_NOT_FOUND"]})
            elif face.user_id is None:
                disassociated.append({"FaceId": face_id})  # already free: nothing to do
            elif face.user_id != user_id:
                unsuccessful.append(
                    {"FaceId": face_id, "UserId": face.user_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
                )
            else:
                to_clear.append(face_id)
        if to_clear or token is not None:
            self.store.disassociate_faces(collection_id, user_id, to_clear, token=token)
        disassociated += [{"FaceId": f} for f in to_clear]
        status = self.store.get_user(collection_id, user_id).status
        response = {
            "DisassociatedFaces": disassociated,
            "UnsuccessfulFaceDisassociations": unsuccessful,
            "UserStatus": status,
        }
        return self._kept_for_repeats(collection_id, token, response)

    # User search ---------------------------------------------------------------------

    def search_users(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        face_id, user_id = request.get("FaceId"), request.get("UserId")
        if (face_id is None) == (user_id is None):
            raise InvalidParameterException("SearchUsers needs exactly one of FaceId or UserId.")
        threshold = request.get("UserMatchThreshold", DEFAULT_THRESHOLD)
        max_users = request.get("MaxUsers", DEFAULT_USER_PAGE)
        response: Response = {"FaceModelVersion": collection.face_model_version}
        probe_hash: str | None = None
        if face_id is not None:
            (probe,) = self._faces_or_fail(collection.collection_id, [face_id])
            probes, probe_hash = [probe.vector], probe.image_hash
            response["SearchedFace"] = {"FaceId": face_id}
        else:
            assert user_id is not None
            self.store.get_user(collection.collection_id, user_id)
            probes = [
                f.vector
                for f in self.store.list_faces(collection.collection_id, None, MAX_FACES_PER_USER, user_id=user_id)
            ]
            response["SearchedUser"] = {"UserId": user_id}
        matches = self._search_users(collection, probes, max_users, threshold, exclude_user=user_id)
        self._audit(
            caller,
            "SearchUsers",
            collection.collection_id,
            threshold,
            users=matches,
            probe_sha256=probe_hash,
            details={"searched_face_id": face_id} if face_id is not None else {"searched_user_id": user_id},
        )
        response["UserMatches"] = [self._user_match(collection.collection_id, u, s) for u, s in matches]
        return response

    def search_users_by_image(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        image, image_hash = self._hashed_image(request["Image"])
        quality = request.get("QualityFilter", "NONE")
        faces = self.analyze(collection, image, quality, max_embedded=1)
        threshold = request.get("UserMatchThreshold", DEFAULT_THRESHOLD)
        probe, unsearched = None, []
        for face in faces:  # largest first; the engine embedded only the probe
            if face.embedding is not None:
                probe = face
                continue
            reasons = list(face.filter_reasons) or ["FACE_NOT_LARGEST"]
            unsearched.append({"FaceDetails": face.detail.to_rekognition(), "Reasons": reasons})
        response: Response = {"FaceModelVersion": collection.face_model_version, "UnsearchedFaces": unsearched}
        matches: list[tuple[str, float]] = []
        if probe is not None:
            matches = self._search_users(
                collection, [probe.embedded.vector], request.get("MaxUsers", DEFAULT_USER_PAGE), threshold
            )
            response["SearchedFace"] = {"FaceDetail": probe.detail.to_rekognition()}
        self._audit(
            caller, "SearchUsersByImage", collection.collection_id, threshold, users=matches, probe_sha256=image_hash
        )
        response["UserMatches"] = [self._user_match(collection.collection_id, u, s) for u, s in matches]
        return response

    # Tags --------------------------------------------------------------------------

    def tag_resource(self, request: Request, caller: Caller) -> Response:
        collection = self._collection_by_arn(request["ResourceArn"])
        tags = {**collection.tags, **request["Tags"]}
        if len(tags) > MAX_TAGS:
            raise ServiceQuotaExceededException(
                f"A resource may carry at most {MAX_TAGS} tags; this would make {len(tags)}."
            )
        self.store.set_tags(collection.collection_id, request["Tags"])
        return {}

    def untag_resource(self, request: Request, caller: Caller) -> Response:
        collection = self._collection_by_arn(request["ResourceArn"])
        self.store.remove_tags(collection.collection_id, request["TagKeys"])
        return {}

    def list_tags_for_resource(self, request: Request, caller: Caller) -> Response:
        return {"Tags": self._collection_by_arn(request["ResourceArn"]).tags}

    # Visage's own operations ---------------------------------------------------------

    def collection(self, collection_id: str, caller: Caller) -> Collection:
        """The collection as stored: its tags and thumbnail setting with the rest
        (``rekognition:DescribeCollection``)."""
        self._may(caller, "rekognition:DescribeCollection", collection_id)
        return self.store.get_collection(collection_id)

    def keeps_face_thumbnails(self, collection: Collection) -> bool:
        """Whether IndexFaces keeps thumbnails in ``collection``: its own setting, else the server's."""
        own = collection.keep_face_thumbnails
        return self.settings.keep_face_thumbnails if own is None else own

    def set_keep_face_thumbnails(self, collection_id: str, keep: bool | None, caller: Caller) -> None:
        """Turn the thumbnails of faces indexed from now on on or off (None: as the server's setting).
        Thumbnails already kept stay until their faces go (``visage:ConfigureCollection``)."""
        self._may(caller, "visage:ConfigureCollection", collection_id)
        self.store.set_keep_face_thumbnails(collection_id, keep)

    def face_page(
        self,
        collection_id: str,
        caller: Caller,
        after: str | None = None,
        limit: int = DEFAULT_PAGE,
        user_id: str | None = None,
        external_image_id: str | None = None,
    ) -> FacePage:
        """A page of the collection's faces in FaceId order, as stored (with when each was
        indexed), and which of them have a thumbnail (``rekognition:ListFaces``)."""
        self._may(caller, "rekognition:ListFaces", collection_id)
        collection = self.store.get_collection(collection_id)
        after = _token_key(after, _FACE_ID)
        page = self.store.list_faces(
            collection.collection_id, after, limit + 1, user_id=user_id, external_image_id=external_image_id
        )
        faces = page[:limit]
        kept = self.store.get_thumbnails(collection.collection_id, [f.face_id for f in faces])
        return FacePage(faces, frozenset(kept), faces[-1].face_id if len(page) > limit else None)

    def face_thumbnails(self, collection_id: str, face_ids: list[str], caller: Caller) -> dict[str, bytes]:
        """The JPEG thumbnails kept for these faces of the collection, by FaceId (``rekognition:ListFaces``:
        the console's face list shows them; no Rekognition operation returns them)."""
        self._may(caller, "rekognition:ListFaces", collection_id)
        return self.store.get_thumbnails(collection_id, face_ids)

    def review_match(
        self,
        collection_id: str,
        probe_sha256: str,
        face_id: str,
        similarity: float,
        decision: str,
        note: str,
        caller: Caller,
    ) -> Review:
        """Record a reviewer's decision on a candidate of a search of the collection: whether
        the face with ``face_id`` shows the same person as the probe (the image whose SHA-256 is
        ``probe_sha256``; the image itself is never kept). Stored, and appended to the audit log
        (``visage:ReviewMatch`` on the collection)."""
        self._may(caller, "visage:ReviewMatch", collection_id)
        if decision not in DECISIONS:
            raise InvalidParameterException(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}.")
        if not _SHA256.fullmatch(probe_sha256):
            raise InvalidParameterException("probe_sha256 must be the SHA-256 of the probe image, in lowercase hex.")
        if not _FACE_ID.fullmatch(face_id):
            raise InvalidParameterException(f"{face_id!r} is not a FaceId.")
        if not 0.0 <= similarity <= 100.0:
            raise InvalidParameterException(f"similarity must be between 0 and 100, not {similarity}.")
        note = note.replace("\r\n", "\n")  # a form's line breaks, counted as one as the browser does
        if len(note) > MAX_REVIEW_NOTE:
            raise InvalidParameterException(f"A note may hold at most {MAX_REVIEW_NOTE} characters.")
        review = Review(
            time=datetime.now(UTC),
            access_key_id=caller.access_key_id,
            collection_id=collection_id,
            probe_sha256=probe_sha256,
            face_id=face_id,
            similarity=similarity,
            decision=decision,
            note=note,
        )
        self.store.add_review(
            review,
            AuditRecord(
                time=review.time,
                access_key_id=caller.access_key_id,
                operation=REVIEW_OPERATION,
                collection_id=collection_id,
                threshold=None,
                match_count=0,
                best_similarity=similarity,
                face_ids=[face_id],
                probe_sha256=probe_sha256,
                details={"decision": decision, "note": note},
            ),
        )
        return review

    def match_reviews(self, collection_id: str, caller: Caller, probe_sha256: str | None = None) -> list[Review]:
        """The decisions recorded on the collection's candidates (those of one probe, if given), oldest
        first (``rekognition:DescribeCollection``)."""
        self._may(caller, "rekognition:DescribeCollection", collection_id)
        return self.store.reviews(collection_id, probe_sha256)

    def review_statistics(self, collection_id: str, caller: Caller) -> list[ReviewBand]:
        """The reviewers' decisions on the collection's candidates, counted per Similarity band,
        beside the false-match rate the calibration promises at each band's lower edge
        (``rekognition:DescribeCollection``)."""
        self._may(caller, "rekognition:DescribeCollection", collection_id)
        collection = self.store.get_collection(collection_id)
        return review_bands(self.store.reviews(collection_id), self.engine.similarity_map(collection.face_model))

    def review_status(self, caller: Caller, records: list[AuditRecord]) -> list[str | None]:
        """For each audit record of a search by image with candidates, how far its candidates were
        reviewed ("unreviewed", "2 of 3 reviewed", "reviewed"); None for the other records
        (``visage:ReadAuditLog``)."""
        self.authorize(caller, "visage:ReadAuditLog", "*", operation="ReadAuditLog")
        return review_statuses(self.store, records)

    # Helpers -----------------------------------------------------------------------

    def _may(self, caller: Caller, action: str, collection_id: str) -> None:
        """Checks ``action`` on the collection, as :meth:`call` checks a Rekognition operation."""
        operation = action.split(":", 1)[1]
        self.authorize(
            caller, action, self.collection_arn(collection_id), operation=operation, collection_id=collection_id
        )

    def collection_arn(self, collection_id: str) -> str:
        """The ARN of a collection of this server (``*`` for every collection)."""
        return collection_arn(self.settings, collection_id)

    def _collection_by_arn(self, arn: str) -> Collection:
        match = _ARN.fullmatch(arn)
        if match is None:
            raise InvalidParameterException(
                f"{arn} is not a collection ARN (arn:aws:rekognition:<region>:<account>:collection/<id>)."
            )
        collection = self.store.get_collection(match.group(3))
        if collection.arn != arn:
            raise ResourceNotFoundException(f"No resource has the ARN {arn}; did you mean {collection.arn}?")
        return collection

    def analyze(
        self,
        collection: Collection,
        image: DecodedImage,
        quality_filter: str,
        max_embedded: int | None,
        attributes: list[str] | None = None,
        largest_only: bool = False,
        embed: bool = True,
    ) -> list[Face]:
        """The faces of the image; those that pass ``quality_filter``, up to ``max_embedded``,
        with their vectors in the collection's face model (unless not ``embed``: then
        :meth:`Engine.embed_faces` gives a face its vector later)."""
        model = self.engine.face_model(collection.face_model)
        if model.version != collection.face_model_version:
            raise InvalidParameterException(
                f"Collection {collection.collection_id} holds {collection.face_model_version} vectors, and this "
                f"server's {collection.face_model} model is {model.version}; vectors cannot be converted: "
                "create a new collection and index the images again."
            )
        return self.engine.analyze(
            image,
            attributes,
            collection.face_model,
            embed=embed,
            quality_filter=quality_filter,
            max_embedded=max_embedded,
            largest_only=largest_only,
        )

    def _faces_or_fail(self, collection_id: str, face_ids: list[str]) -> list[StoredFace]:
        found = self.store.get_faces(collection_id, face_ids)
        if len(found) != len(set(face_ids)):
            missing = sorted(set(face_ids) - {f.face_id for f in found})
            raise InvalidParameterException(
                rekognition_message(
                    FACE_ID_NOT_FOUND, f"Face {', '.join(missing)} is not in collection {collection_id}."
                )
            )
        return found

    def search_collection(
        self, collection: Collection, vector: Any, limit: int, threshold: float, exclude: str | None = None
    ) -> list[tuple[StoredFace, float]]:
        """The faces of the collection (at most ``limit``, best first) of Similarity >= ``threshold`` to ``vector``."""
        mapping = self.engine.similarity_map(collection.face_model)
        scored = self.store.search(
            collection.collection_id, vector, limit, mapping.raw_threshold(threshold), exclude_face_id=exclude
        )
        return [(s.face, similarity) for s in scored if (similarity := float(mapping(s.score))) >= threshold]

    def _search_users(
        self,
        collection: Collection,
        probes: list[Any],
        max_users: int,
        threshold: float,
        exclude_user: str | None = None,
    ) -> list[tuple[str, float]]:
        """Users ranked by their best face's raw score against any probe vector, with its Similarity."""
        mapping = self.engine.similarity_map(collection.face_model)
        best: dict[str, float] = {}  # the best raw score of each user's faces
        for vector in probes:
            scored: list[ScoredFace] = self.store.search(
                collection.collection_id,
                vector,
                max_users * MAX_FACES_PER_USER,
                mapping.raw_threshold(threshold),
                with_user_only=True,
            )
            for s in scored:
                user = s.face.user_id
                if user is None or user == exclude_user:
                    continue
                if float(mapping(s.score)) >= threshold and s.score > best.get(user, float("-inf")):
                    best[user] = s.score
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:max_users]
        return [(user, float(mapping(score))) for user, score in ranked]

    def face_match(self, collection: Collection, match: tuple[StoredFace, float]) -> Response:
        face, similarity = match
        return {"Similarity": similarity, "Face": face.to_rekognition(collection.face_model_version)}

    def _user_match(self, collection_id: str, user_id: str, similarity: float) -> Response:
        user: User = self.store.get_user(collection_id, user_id)
        return {"Similarity": similarity, "User": {"UserId": user.user_id, "UserStatus": user.status}}

    def _idempotent(self, operation: str, request: Request) -> tuple[RequestToken | None, RequestToken | None]:
        """The request's ClientRequestToken, and the one kept when this exact request already ran
        (None: it did not).

        Checks the collection exists. A token reused with other parameters fails.
        """
        collection_id = request["CollectionId"]
        self.store.get_collection(collection_id)
        if "ClientRequestToken" not in request:
            return None, None
        body = {k: v for k, v in request.items() if k != "ClientRequestToken"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        token = RequestToken(token=request["ClientRequestToken"], operation=operation, request_digest=digest)
        previous = self.store.get_token(collection_id, token.token)
        if previous is not None and (
            previous.operation != token.operation or previous.request_digest != token.request_digest
        ):
            raise IdempotentParameterMismatchException(
                f"ClientRequestToken {token.token} was already used with a different {previous.operation} "
                "request; use a new token for a new request."
            )
        return token, previous

    def _audit(
        self,
        caller: Caller,
        operation: str,
        collection_id: str | None,
        threshold: float | None,
        matches: list[tuple[StoredFace, float]] | None = None,
        users: list[tuple[str, float]] | None = None,
        similarities: list[float] | None = None,
        probe_sha256: str | None = None,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        scores = similarities or [s for _, s in (matches or [])] or [s for _, s in (users or [])]
        self.store.append_audit(
            AuditRecord(
                time=datetime.now(UTC),
                access_key_id=caller.access_key_id,
                operation=operation,
                collection_id=collection_id,
                threshold=threshold,
                match_count=len(scores),
                best_similarity=max(scores) if scores else None,
                face_ids=[f.face_id for f, _ in (matches or [])],
                user_ids=[u for u, _ in (users or [])],
                probe_sha256=probe_sha256,
                outcome=outcome,
                details=details or {},
            )
        )


@dataclass(frozen=True)
class FacePage:
    """A page of a collection's faces (:meth:`RekognitionService.face_page`)."""

    faces: list[StoredFace]
    with_thumbnail: frozenset[str]  # the FaceIds of this page that have a thumbnail
    next_after: str | None  # the ``after`` of the next page, None on the last


def _is_base64_of_an_image(data: bytes) -> bool:
    try:
        return image_format(base64.b64decode(data[:16], validate=True)) is not None
    except ValueError:
        return False


def collection_arn(settings: Settings, collection_id: str) -> str:
    """The ARN of collection ``collection_id`` on a server with these settings (``*``: every collection)."""
    return f"arn:aws:rekognition:{settings.region}:{settings.account_id}:collection/{collection_id}"


def _token_key(token: str | None, pattern: re.Pattern[str]) -> str | None:
    """A NextToken is the last key of the previous page; anything else is refused."""
    if token is None:
        return None
    if not pattern.fullmatch(token):
        raise InvalidPaginationTokenException(f"NextToken {token!r} was not issued by this server for this list.")
    return token


#: A face found now is the stored face of the same image whose box overlaps its box at least this much (IoU).
SAME_FACE_OVERLAP = 0.5


def _match_stored(existing: list[StoredFace], faces: list[Face]) -> list[StoredFace | None]:
    """For each face found now, the face stored from the same image with the same box (each
    stored face answers for one face at most; best overlaps first), or None: a face to store."""
    pairs = sorted(
        (
            (face.detail.bounding_box.overlap(stored.bounding_box), i, j)
            for i, face in enumerate(faces)
            for j, stored in enumerate(existing)
        ),
        reverse=True,
    )
    matched: list[StoredFace | None] = [None] * len(faces)
    taken: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < SAME_FACE_OVERLAP:
            break
        if matched[i] is None and j not in taken:
            matched[i] = existing[j]
            taken.add(j)
    return matched
