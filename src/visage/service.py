"""The Rekognition face operations, on plain Python values: no HTTP in sight.

Each public method takes one operation's request (a dict in Rekognition's
shape, already validated against the service model by the protocol layer) and
returns its response dict. Face work goes to the :class:`~visage.engine.Engine`,
state to the :class:`~visage.store.base.Store`. Every search also appends a
record to the audit log.

Behaviours worth knowing (docs/api.md has the full list):

- A collection is pinned to the face model it was created with; its vectors are
  only ever compared with vectors of that model.
- Thresholds default to 80 (75 for AssociateFaces), as in Rekognition.
- A user's similarity to a probe is the highest similarity among its faces.
- The server keeps no image: only vectors and metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from visage.config import DEFAULT_THRESHOLD, Settings
from visage.contract import shape_max, shape_pattern
from visage.engine import DecodedImage, Engine
from visage.engine.engine import no_faces, passing
from visage.errors import (
    FACE_ID_NOT_FOUND,
    IdempotentParameterMismatchException,
    InvalidPaginationTokenException,
    InvalidParameterException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    UnknownOperationException,
    rekognition_message,
)
from visage.faces import BoundingBox, Face
from visage.s3 import read_s3_object
from visage.store import open_store
from visage.store.base import AuditRecord, Collection, RequestToken, ScoredFace, Store, StoredFace, User

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
_ARN = re.compile(r"arn:aws:rekognition:([^:]*):([^:]*):collection/(.+)")


def open_service(settings: Settings) -> RekognitionService:
    """The service over an engine and the store that ``settings`` name."""
    return RekognitionService(Engine(settings), open_store(settings), settings)


@dataclass(frozen=True)
class Caller:
    """Who sent the request (the verified access key id)."""

    access_key_id: str


class RekognitionService:
    """Rekognition's face API over an engine and a store."""

    def __init__(self, engine: Engine, store: Store, settings: Settings | None = None) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings or engine.settings
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
        }

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._operations)

    def call(self, operation: str, request: Request, caller: Caller) -> Response:
        handler = self._operations.get(operation)
        if handler is None:
            raise UnknownOperationException(
                f"{operation} is a Rekognition operation that Visage does not implement; "
                f"it implements {', '.join(sorted(self._operations))}."
            )
        return handler(request, caller)

    # Images ------------------------------------------------------------------------

    def image(self, image: Request) -> DecodedImage:
        """Decode an ``Image`` member: exactly one of Bytes or S3Object."""
        data, limit = self._image_bytes(image)
        return self.engine.decode(data, max_bytes=limit)

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
        result = self.engine.compare_faces(
            self.image(request["SourceImage"]),
            self.image(request["TargetImage"]),
            threshold=threshold,
            quality_filter=request.get("QualityFilter", "NONE"),
        )
        self._audit(
            caller,
            "CompareFaces",
            None,
            threshold,
            similarities=[m.similarity for m in result.matches],
        )
        return result.to_rekognition()

    # Collections -----------------------------------------------------------------------

    def create_collection(self, request: Request, caller: Caller) -> Response:
        collection_id = request["CollectionId"]
        model = self.engine.face_model()
        collection = Collection(
            collection_id=collection_id,
            arn=self._arn(collection_id),
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

    def index_faces(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        data, limit = self._image_bytes(request["Image"])
        image, image_hash = self.engine.decode(data, max_bytes=limit), hashlib.sha256(data).hexdigest()
        external_id = request.get("ExternalImageId")
        quality = request.get("QualityFilter", "AUTO")
        max_faces = min(request.get("MaxFaces", self.settings.max_faces), self.settings.max_faces)
        faces = self._analyze(collection, image, quality, max_faces, attributes=request.get("DetectionAttributes"))

        indexed: list[Face] = []
        unindexed: list[Response] = []
        for face in faces:  # largest first; the engine embedded exactly the faces to index
            if face.embedding is not None:
                indexed.append(face)
            else:
                reasons = list(face.filter_reasons) or ["EXCEEDS_MAX_FACES"]
                unindexed.append({"Reasons": reasons, "FaceDetail": face.detail.to_rekognition()})

        existing = self.store.find_image(collection.collection_id, image_hash, external_id)
        if existing:
            # The same image with the same ExternalImageId: answer with the faces already stored.
            stored = _match_stored(existing, indexed)
        else:
            faces_now, _ = self.store.count(collection.collection_id)
            if faces_now + len(indexed) > self.settings.max_faces_per_collection:
                raise ServiceQuotaExceededException(
                    f"Collection {collection.collection_id} holds {faces_now:,} faces; indexing "
                    f"{len(indexed)} more would pass its limit of {self.settings.max_faces_per_collection:,}."
                )
            image_id = str(uuid.uuid4())
            stored = [
                StoredFace(
                    face_id=str(uuid.uuid4()),
                    image_id=image_id,
                    bounding_box=face.detail.bounding_box,
                    confidence=face.detail.confidence,
                    vector=face.embedded.vector,
                    external_image_id=external_id,
                    image_hash=image_hash,
                )
                for face in indexed
            ]
            self.store.add_faces(collection.collection_id, stored)
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
        matches = self._search(
            collection, probe.vector, request.get("MaxFaces", DEFAULT_MAX_MATCHES), threshold, exclude=face_id
        )
        self._audit(caller, "SearchFaces", collection.collection_id, threshold, matches=matches)
        return {
            "SearchedFaceId": face_id,
            "FaceMatches": [self._face_match(collection, m) for m in matches],
            "FaceModelVersion": collection.face_model_version,
        }

    def search_faces_by_image(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        image = self.image(request["Image"])
        quality = request.get("QualityFilter", "NONE")
        faces = self._analyze(collection, image, quality, max_embedded=1)
        usable = [f for f in faces if f.embedding is not None]
        if not usable:
            raise no_faces(f"No face was found in the image{passing(quality) if faces else ''}.")
        probe = usable[0]  # the largest
        threshold = request.get("FaceMatchThreshold", DEFAULT_THRESHOLD)
        matches = self._search(
            collection, probe.embedded.vector, request.get("MaxFaces", DEFAULT_MAX_MATCHES), threshold
        )
        self._audit(caller, "SearchFacesByImage", collection.collection_id, threshold, matches=matches)
        return {
            "SearchedFaceBoundingBox": probe.detail.bounding_box.to_rekognition(),
            "SearchedFaceConfidence": probe.detail.confidence,
            "FaceMatches": [self._face_match(collection, m) for m in matches],
            "FaceModelVersion": collection.face_model_version,
        }

    # Users ---------------------------------------------------------------------------

    def create_user(self, request: Request, caller: Caller) -> Response:
        token, replayed = self._idempotent("CreateUser", request)
        if not replayed:
            self.store.create_user(request["CollectionId"], request["UserId"], token=token)
        return {}

    def delete_user(self, request: Request, caller: Caller) -> Response:
        token, replayed = self._idempotent("DeleteUser", request)
        if not replayed:
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
        collection = self.store.get_collection(collection_id)
        token, replayed = self._idempotent("AssociateFaces", request)
        if replayed:
            return self._association_replay(collection_id, user_id, request["FaceIds"])
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
                f"User {user_id} has {len(own)} faces; adding {len(to_associate)} would pass the limit of "
                f"{MAX_FACES_PER_USER} faces per user."
            )
        if to_associate or token is not None:
            self.store.associate_faces(collection_id, user_id, to_associate, token=token)
        associated += [{"FaceId": f} for f in to_associate]
        status = "ACTIVE" if own or to_associate else user.status
        return {"AssociatedFaces": associated, "UnsuccessfulFaceAssociations": unsuccessful, "UserStatus": status}

    def _association_replay(self, collection_id: str, user_id: str, face_ids: list[str]) -> Response:
        """The answer to a repeated AssociateFaces: the faces of the request that are now the user's."""
        user = self.store.get_user(collection_id, user_id)
        faces = self.store.get_faces(collection_id, face_ids)
        return {
            "AssociatedFaces": [{"FaceId": f.face_id} for f in faces if f.user_id == user_id],
            "UnsuccessfulFaceAssociations": [],
            "UserStatus": user.status,
        }

    def disassociate_faces(self, request: Request, caller: Caller) -> Response:
        collection_id, user_id = request["CollectionId"], request["UserId"]
        token, replayed = self._idempotent("DisassociateFaces", request)
        user = self.store.get_user(collection_id, user_id)
        if replayed:
            return {"DisassociatedFaces": [], "UnsuccessfulFaceDisassociations": [], "UserStatus": user.status}
        wanted = list(dict.fromkeys(request["FaceIds"]))
        found = {f.face_id: f for f in self.store.get_faces(collection_id, wanted)}
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
        return {
            "DisassociatedFaces": disassociated,
            "UnsuccessfulFaceDisassociations": unsuccessful,
            "UserStatus": status,
        }

    # User search ---------------------------------------------------------------------

    def search_users(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        face_id, user_id = request.get("FaceId"), request.get("UserId")
        if (face_id is None) == (user_id is None):
            raise InvalidParameterException("SearchUsers needs exactly one of FaceId or UserId.")
        threshold = request.get("UserMatchThreshold", DEFAULT_THRESHOLD)
        max_users = request.get("MaxUsers", DEFAULT_USER_PAGE)
        response: Response = {"FaceModelVersion": collection.face_model_version}
        if face_id is not None:
            (probe,) = self._faces_or_fail(collection.collection_id, [face_id])
            probes = [probe.vector]
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
        self._audit(caller, "SearchUsers", collection.collection_id, threshold, users=matches)
        response["UserMatches"] = [self._user_match(collection.collection_id, u, s) for u, s in matches]
        return response

    def search_users_by_image(self, request: Request, caller: Caller) -> Response:
        collection = self.store.get_collection(request["CollectionId"])
        image = self.image(request["Image"])
        quality = request.get("QualityFilter", "NONE")
        faces = self._analyze(collection, image, quality, max_embedded=1)
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
        self._audit(caller, "SearchUsersByImage", collection.collection_id, threshold, users=matches)
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

    # Helpers -----------------------------------------------------------------------

    def _arn(self, collection_id: str) -> str:
        return f"arn:aws:rekognition:{self.settings.region}:{self.settings.account_id}:collection/{collection_id}"

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

    def _analyze(
        self,
        collection: Collection,
        image: DecodedImage,
        quality_filter: str,
        max_embedded: int | None,
        attributes: list[str] | None = None,
    ) -> list[Face]:
        """The faces of the image; those that pass ``quality_filter``, up to ``max_embedded``,
        with their vectors in the collection's face model."""
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
            embed=True,
            quality_filter=quality_filter,
            max_embedded=max_embedded,
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

    def _search(
        self, collection: Collection, vector: Any, limit: int, threshold: float, exclude: str | None = None
    ) -> list[tuple[StoredFace, float]]:
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

    def _face_match(self, collection: Collection, match: tuple[StoredFace, float]) -> Response:
        face, similarity = match
        return {"Similarity": similarity, "Face": face.to_rekognition(collection.face_model_version)}

    def _user_match(self, collection_id: str, user_id: str, similarity: float) -> Response:
        user: User = self.store.get_user(collection_id, user_id)
        return {"Similarity": similarity, "User": {"UserId": user.user_id, "UserStatus": user.status}}

    def _idempotent(self, operation: str, request: Request) -> tuple[RequestToken | None, bool]:
        """The request's ClientRequestToken, and whether this exact request already ran.

        Checks the collection exists. A token reused with other parameters fails.
        """
        collection_id = request["CollectionId"]
        self.store.get_collection(collection_id)
        if "ClientRequestToken" not in request:
            return None, False
        body = {k: v for k, v in request.items() if k != "ClientRequestToken"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        token = RequestToken(token=request["ClientRequestToken"], operation=operation, request_digest=digest)
        previous = self.store.get_token(collection_id, token.token)
        if previous is None:
            return token, False
        if previous.operation != token.operation or previous.request_digest != token.request_digest:
            raise IdempotentParameterMismatchException(
                f"ClientRequestToken {token.token} was already used with a different {previous.operation} "
                "request; use a new token for a new request."
            )
        return token, True

    def _audit(
        self,
        caller: Caller,
        operation: str,
        collection_id: str | None,
        threshold: float,
        matches: list[tuple[StoredFace, float]] | None = None,
        users: list[tuple[str, float]] | None = None,
        similarities: list[float] | None = None,
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
            )
        )


def _token_key(token: str | None, pattern: re.Pattern[str]) -> str | None:
    """A NextToken is the last key of the previous page; anything else is refused."""
    if token is None:
        return None
    if not pattern.fullmatch(token):
        raise InvalidPaginationTokenException(f"NextToken {token!r} was not issued by this server for this list.")
    return token


def _match_stored(existing: list[StoredFace], faces: list[Face]) -> list[StoredFace]:
    """Pair each face found now with the stored face of the same box (same image, same order)."""

    def centre(box: BoundingBox) -> tuple[float, float]:
        return box.left + box.width / 2, box.top + box.height / 2

    out = []
    for face in faces:
        cx, cy = centre(face.detail.bounding_box)
        out.append(
            min(existing, key=lambda s: (centre(s.bounding_box)[0] - cx) ** 2 + (centre(s.bounding_box)[1] - cy) ** 2)
        )
    return out
