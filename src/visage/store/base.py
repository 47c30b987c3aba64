"""The store interface: collections, faces, users, tags, request tokens, access keys, the audit log
and video jobs.

Both backends (SQLite, the embedded default; PostgreSQL with pgvector) implement
:class:`Store` and pass the same conformance tests (tests/test_store.py). The
store keeps vectors and metadata, and no images but the face thumbnails a collection
is told to keep (off by default).

Conventions every backend follows:

- Each write method is one transaction: it stores everything or nothing.
- Vectors are float32, unit length, of the collection's face model; the score of
  a match is their cosine (dot product).
- Lists are ordered by a stable key and paginated with ``after`` (the last key
  of the previous page) and ``limit``; the service turns keys into NextTokens.
- Thumbnails (small JPEG crops of faces, kept only when asked for) and reviews
  belong to their face and collection: deleting those deletes them, in the same
  transaction.
- Missing collections raise :class:`~visage.errors.ResourceNotFoundException`;
  the other semantic checks (quotas, user conflicts) live in the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

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
    #: Whether IndexFaces keeps a thumbnail of each face; None: as the server's
    #: ``keep_face_thumbnails`` setting says.
    keep_face_thumbnails: bool | None = None


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
    #: When IndexFaces stored it (timezone-aware UTC); None for faces stored before Visage kept it.
    indexed_at: datetime | None = None

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
    #: The first request's response (JSON), where the operation keeps it (set_token_response).
    response: str | None = field(default=None, compare=False)


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


#: A reviewer's decision on a search candidate: the same person, a different person, or cannot tell.
Decision = Literal["same", "different", "cannot_tell"]
DECISIONS: tuple[Decision, ...] = ("same", "different", "cannot_tell")


@dataclass(frozen=True)
class Review:
    """A person's decision on one candidate of a search. The probe image itself is never kept:
    its SHA-256 ties the decision to the search (whose audit record carries the same digest)."""

    time: datetime  # timezone-aware UTC
    access_key_id: str  # the reviewer's key
    collection_id: str
    probe_sha256: str
    face_id: str  # the candidate
    similarity: float  # the candidate's Similarity in that search
    decision: Decision
    note: str = ""


#: A video job's states. QUEUED and RUNNING are both IN_PROGRESS on the wire.
JOB_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class VideoJob:
    """A stored-video job (StartFaceDetection, StartFaceSearch) and where it stands."""

    job_id: str
    operation: str  # the Start operation: "StartFaceDetection" or "StartFaceSearch"
    request: dict[str, Any]  # the Start request as validated, without its ClientRequestToken
    access_key_id: str  # who started it
    created_at: datetime  # timezone-aware UTC
    status: str = "QUEUED"  # one of JOB_STATES
    status_message: str | None = None
    video_metadata: dict[str, Any] | None = None  # Rekognition's VideoMetadata, once the video is opened
    client_token: str | None = None
    request_digest: str = ""  # SHA-256 of the request: a token reused with another request is refused
    progress: float = 0.0  # 0-1, the share of the video analysed
    attempts: int = 0  # times a worker took it (a crash of its server makes one more)
    worker: str | None = None  # the worker holding it while RUNNING
    lease_until: datetime | None = None  # a RUNNING job whose lease has passed was abandoned
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class JobResult:
    """One item of a job's results: a FaceDetection or a PersonMatch, in Rekognition's shape."""

    timestamp_ms: int
    body: dict[str, Any]  # without Person.Index, which is kept apart (renumbered as people merge)
    person_index: int | None = None  # Person.Index of a face-search result
    seq: int = 0  # its place in the job's time order, given by the store

    def to_rekognition(self) -> dict[str, Any]:
        """The FaceDetection, or the PersonMatch with its Person.Index."""
        if self.person_index is None:
            return self.body
        return {**self.body, "Person": {"Index": self.person_index, **self.body["Person"]}}


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
    def add_faces(
        self, collection_id: str, faces: Sequence[StoredFace], thumbnails: Mapping[str, bytes] | None = None
    ) -> None:
        """Stores all the faces, and the JPEG thumbnails given for some of them (by face_id),
        in one transaction."""

    def list_faces(
        self,
        collection_id: str,
        after: str | None,
        limit: int,
        user_id: str | None = None,
        face_ids: Sequence[str] | None = None,
        external_image_id: str | None = None,
    ) -> list[StoredFace]:
        """Faces with face_id > ``after``, ordered by face_id, optionally filtered."""

    def get_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[StoredFace]:
        """The faces that exist among ``face_ids`` (any order)."""

    def delete_faces(self, collection_id: str, face_ids: Sequence[str]) -> list[str]:
        """Deletes the faces that exist, with their thumbnails; returns their ids."""

    def get_thumbnails(self, collection_id: str, face_ids: Sequence[str]) -> dict[str, bytes]:
        """The JPEG thumbnails kept for these faces, by face_id (faces without one are left out)."""

    def set_keep_face_thumbnails(self, collection_id: str, keep: bool | None) -> None:
        """Sets the collection's :attr:`Collection.keep_face_thumbnails`."""

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
        """Disassociates its faces, deletes their thumbnails, and deletes it. ResourceNotFound if absent."""

    def get_user(self, collection_id: str, user_id: str) -> User:
        """ResourceNotFoundException if absent."""

    def list_users(self, collection_id: str, after: str | None, limit: int) -> list[User]:
        """Users with user_id > ``after``, ordered by user_id."""

    def set_token_response(self, collection_id: str, token: str, response: str) -> None:
        """Keeps the response (JSON) a request with this ClientRequestToken was answered with, for
        its repeats (tokens are kept while their collection is)."""

    def associate_faces(
        self,
        collection_id: str,
        user_id: str,
        face_ids: Sequence[str],
        token: RequestToken | None = None,
        max_faces: int | None = None,
    ) -> None:
        """Sets user_id on these faces (the service has checked them) in one transaction. A face
        another user holds by then is left theirs; if the user would then hold more than
        ``max_faces`` faces, ServiceQuotaExceededException and nothing is written (two requests
        at once cannot together pass the limit the service checked)."""

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
    def add_access_key(self, key: StoredKey, audit: AuditRecord | None = None) -> None:
        """Adds the key, and appends ``audit`` to the audit log in the same transaction.
        ConflictException if the id is taken."""

    def get_access_key(self, access_key_id: str) -> StoredKey | None:
        """The key, revoked or not; None if there is no such key."""

    def list_access_keys(self) -> list[StoredKey]:
        """Every key, revoked ones too, oldest first."""

    def revoke_access_key(self, access_key_id: str, at: datetime, audit: AuditRecord | None = None) -> StoredKey:
        """Marks the key revoked at ``at`` (a revoked key keeps its first revocation time),
        and appends ``audit`` to the audit log in the same transaction; returns the key.
        ResourceNotFoundException if there is no such key."""

    def rotate_access_key(self, access_key_id: str, new: StoredKey, audit: AuditRecord | None = None) -> None:
        """In one transaction: revokes the key at ``new.created_at``, adds ``new`` and appends
        ``audit`` to the audit log. ResourceNotFoundException if there is no such key, or it
        is already revoked."""

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

    # Reviews -----------------------------------------------------------------------
    def add_review(self, review: Review, audit: AuditRecord) -> None:
        """Stores a decision on a candidate of a search of ``review.collection_id`` and appends
        ``audit`` (its record) to the audit log, in one transaction: both or neither."""

    def reviews(self, collection_id: str, probe_sha256: str | None = None) -> list[Review]:
        """The decisions on the collection's candidates (those on one probe, if given), oldest first."""

    # Video jobs --------------------------------------------------------------------
    def create_job(self, job: VideoJob, max_active: int) -> VideoJob:
        """Queues ``job`` and returns it; if its client_token was used before with the same
        request_digest, returns that job instead (nothing is queued), and with another digest
        raises IdempotentParameterMismatchException. LimitExceededException if ``max_active``
        jobs are already queued or running."""

    def get_job(self, job_id: str) -> VideoJob:
        """ResourceNotFoundException if absent."""

    def list_jobs(self, limit: int, offset: int = 0) -> list[VideoJob]:
        """The ``limit`` most recently created jobs after the ``offset`` newest, newest first."""

    def claim_job(self, worker: str, lease_until: datetime) -> VideoJob | None:
        """Takes the oldest QUEUED job for ``worker`` (RUNNING, one more attempt, results of an
        earlier attempt dropped); None if there is none. Several processes may call it at
        once: each job is taken by one."""

    def save_job_progress(
        self,
        job_id: str,
        worker: str,
        lease_until: datetime,
        progress: float,
        results: Sequence[JobResult] = (),
        video_metadata: dict[str, Any] | None = None,
    ) -> bool:
        """Appends ``results`` (after those already saved, in order) and renews the lease, if
        ``worker`` still holds the job; False (and nothing written) if it does not."""

    def finish_job(
        self,
        job_id: str,
        worker: str,
        status: str,
        message: str | None = None,
        renumber: Mapping[int, int] | None = None,
        audit: AuditRecord | None = None,
    ) -> VideoJob | None:
        """Ends a job ``worker`` holds as SUCCEEDED or FAILED (None if it does not hold it), and
        in the same transaction gives its results of each person_index in ``renumber`` the new
        one and appends ``audit`` to the audit log."""

    def release_job(self, job_id: str, worker: str) -> None:
        """Puts a job ``worker`` holds back in the queue, the attempt not counted (a clean shutdown)."""

    def expire_jobs(self, now: datetime, max_attempts: int, message: str) -> list[VideoJob]:
        """RUNNING jobs whose lease passed before ``now``: queued again while they have had fewer
        than ``max_attempts`` attempts, else FAILED with ``message``; returns the failed ones."""

    def job_results(self, job_id: str, by_person: bool, after: tuple[int, int] | None, limit: int) -> list[JobResult]:
        """The job's results in time order, or by (person_index, time) if ``by_person``, after
        the key ``after`` ((0, seq) or (person_index, seq)): a page."""

    def purge_jobs(self, finished_before: datetime) -> int:
        """Deletes the jobs (and their results) that finished before the time; how many."""

    def warm(self) -> None:
        """Prepare for the first searches (load or build indexes); may take a while."""

    def close(self) -> None: ...
