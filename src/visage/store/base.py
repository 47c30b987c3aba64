"""The store interface: collections, faces, users, tags, request tokens, access keys and the audit log.

Both backends (SQLite, the embedded default; PostgreSQL with pgvector) implement
:class:`Store` and pass the same conformance tests (tests/test_store.py). The
store keeps vectors and metadata only, never images.

Conventions every backend follows:

- Each write method is one transaction: it stores everything or nothing.
- Vectors are float32, unit length, of the collection's face model; the score of
  a match is their cosine (dot product).
- Lists are ordered by a stable key and paginated with ``after`` (the last key
  of the previous page) and ``limit``; the service turns keys into NextTokens.
- Missing collections raise :class:`~visage.errors.ResourceNotFoundException`;
  the other semantic checks (quotas, user conflicts) live in the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from visage.faces import BoundingBox


@dataclass(frozen=True)
class Collection:
    collection_id: str
    arn: str
    face_model: str  # e.g. "sface"
    face_model_version: str  # e.g. "sface-1"; every face in the collection has this version
    created_at: datetime  # timezone-aware UTC
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredFace:
    face_id: str  # lowercase UUID
    image_id: str  # lowercase UUID, shared by the faces of one IndexFaces call
    bounding_box: BoundingBox
    confidence: float
    vector: np.ndarray = field(repr=False, compare=False)  # float32, unit length
    external_image_id: str | None = None
    user_id: str | None = None
    #: SHA-256 of the image bytes the face was indexed from (dedupe, resumable bulk indexing).
    image_hash: str | None = None

    def to_rekognition(self, model_version: str) -> dict[str, Any]:
        """Rekognition's ``Face`` shape."""
        out: dict[str, Any] = {
            "FaceId": self.face_id,
            "BoundingBox": self.bounding_box.to_rekognition(),
            "ImageId": self.image_id,
            "Confidence": self.confidence,
            "IndexFacesModelVersion": model_version,
        }
        if self.external_image_id is not None:
            out["ExternalImageId"] = self.external_image_id
        if self.user_id is not None:
            out["UserId"] = self.user_id
        return out


@dataclass(frozen=True)
class User:
    user_id: str
    status: str  # Rekognition UserStatus: CREATED (no faces yet) or ACTIVE
    face_count: int = 0


@dataclass(frozen=True)
class ScoredFace:
    face: StoredFace
    score: float  # raw cosine


@dataclass(frozen=True)
class RequestToken:
    """A ClientRequestToken already used, and a digest of the request it came with."""

    token: str
    operation: str
    request_digest: str


@dataclass(frozen=True)
class StoredKey:
    """An access key as stored: its secret encrypted (:class:`visage.keys.SecretBox`), its policy as JSON."""

    access_key_id: str
    name: str
    secret: str = field(repr=False)  # a Fernet token, never the plain secret
    policy: str  # the policy document (visage.policy), JSON
    created_at: datetime  # timezone-aware UTC
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One event of the audit log: a search, a comparison, a refused call, a change of keys...

    Every field, ``details`` included, is part of the record's hash in the chain
    (:mod:`visage.store.audit_chain`). ``details`` holds what only some events have, as a
    JSON object (for example the target image's SHA-256 of a CompareFaces, or a reviewer's
    decision): add keys there rather than columns.
    """

    time: datetime  # timezone-aware UTC
    access_key_id: str
    operation: str
    collection_id: str | None
    threshold: float | None
    match_count: int
    best_similarity: float | None
    face_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    #: SHA-256 (hex) of the probe image of a search or comparison; never the image.
    probe_sha256: str | None = None
    #: "ok", or "refused" for a call the caller's policy did not allow.
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    #: The record's position in the log (set when read back; not part of equality).
    seq: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AuditEntry:
    """A record as the chain holds it: its position, the hash of the record before it, and its own."""

    seq: int
    record: AuditRecord
    prev_hash: str | None
    hash: str | None


class Store(Protocol):
    """What the service needs from a backend."""

    # Collections -------------------------------------------------------------------
    def create_collection(self, collection: Collection) -> None:
        """Raises ResourceAlreadyExistsException if the id is taken."""

    def delete_collection(self, collection_id: str) -> None:
        """Deletes the collection with its faces, users and tags. ResourceNotFound if absent."""

    def get_collection(self, collection_id: str) -> Collection:
        """ResourceNotFoundException if absent."""

    def list_collections(self, after: str | None, limit: int) -> list[Collection]:
        """Collections with id > ``after``, ordered by id."""

    def count(self, collection_id: str) -> tuple[int, int]:
        """(faces, users) in the collection."""

    # Faces -------------------------------------------------------------------------
    def add_faces(self, collection_id: str, faces: Sequence[StoredFace]) -> None:
        """Stores all the faces in one transaction."""

    def list_faces(
        self,
        collection_id: str,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
    ) -> list[StoredFace]:
        """Faces with face_id > ``after``, ordered by face_id, optionally filtered."""

    def get_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[StoredFace]:
        """The faces that exist among ``face_ids`` (any order)."""

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        """Deletes the faces that exist; returns their ids."""

    def find_image(self, collection_id: str, image_hash: str, external_image_id: str | None) -> list[StoredFace]:
        """Faces already indexed from the same image bytes with the same ExternalImageId."""

    def search(
        self,
        collection_id: str,
        vector: np.ndarray,
        limit: int,
        min_score: float,
        exclude_face_id: str | None = None,
        with_user_only: bool = False,
    ) -> list[ScoredFace]:
        """The ``limit`` faces of highest cosine >= ``min_score``, best first (ties by
        face_id). Exact: every face of the collection is considered."""

    # Users -------------------------------------------------------------------------
    def create_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        """ConflictException if the user exists. ``token``, if given, is recorded in the
        same transaction (as for every user write below)."""

    def delete_user(self, collection_id: str, user_id: str, token: RequestToken | None = None) -> None:
        """Disassociates its faces and deletes it. ResourceNotFound if absent."""

    def get_user(self, collection_id: str, user_id: str) -> User:
        """ResourceNotFoundException if absent."""

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[User]:
        """Users with user_id > ``after``, ordered by user_id."""

    def associate_faces(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], token: RequestToken | None = None
    ) -> None:
        """Sets user_id on these faces (the service has checked them) in one transaction."""

    def disassociate_faces(
        self, collection_id: str, user_id: str, face_ids: Sequence[str], token: RequestToken | None = None
    ) -> None:
        """Clears user_id on these faces of this user, in one transaction."""

    # Tags --------------------------------------------------------------------------
    def set_tags(self, collection_id: str, tags: dict[str, str]) -> None: ...

    def remove_tags(self, collection_id: str, keys: Sequence[str]) -> None: ...

    # Idempotency tokens ------------------------------------------------------------
    def get_token(self, collection_id: str, token: str) -> RequestToken | None:
        """A token recorded by a user write of this collection, if any."""

    # Access keys -------------------------------------------------------------------
    def add_access_key(self, key: StoredKey) -> None:
        """ConflictException if the id is taken."""

    def get_access_key(self, access_key_id: str) -> StoredKey | None:
        """The key, revoked or not; None if there is no such key."""

    def list_access_keys(self) -> list[StoredKey]:
        """Every key, revoked ones too, oldest first."""

    def revoke_access_key(self, access_key_id: str, at: datetime) -> StoredKey:
        """Marks the key revoked at ``at`` (a revoked key keeps its first revocation time);
        returns it. ResourceNotFoundException if there is no such key."""

    def rotate_access_key(self, access_key_id: str, new: StoredKey) -> None:
        """In one transaction: revokes the key at ``new.created_at`` and adds ``new``.
        ResourceNotFoundException if there is no such key, or it is already revoked."""

    def touch_access_key(self, access_key_id: str, at: datetime) -> None:
        """Records a use of the key at ``at`` (an earlier time than the one recorded is ignored)."""

    # Audit log ---------------------------------------------------------------------
    def append_audit(self, record: AuditRecord) -> AuditEntry:
        """Appends the record to the chain: one writer at a time, across threads, processes
        and servers, so that each record follows exactly one other."""

    def audit_records(
        self,
        since: datetime | None = None,
        *,
        until: datetime | None = None,
        access_key_id: str | None = None,
        operation: str | None = None,
        collection_id: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records at or after ``since`` and before ``until`` that match every filter given,
        in time order (oldest first unless ``newest_first``), ``offset`` skipped, at most ``limit``."""

    def audit_entries(self, after_seq: int = 0, limit: int = 10_000) -> list[AuditEntry]:
        """The chain from position ``after_seq`` on (exclusive), in order, at most ``limit`` entries."""

    def warm(self) -> None:
        """Prepare for the first searches (load or build indexes); may take a while."""

    def close(self) -> None: ...
