"""Search with human review: a probe image searched in a collection, each candidate shown
beside it for a person to decide on, and each decision recorded.

A candidate's form carries a token the console signed: the collection, the probe's
SHA-256, the FaceId and the Similarity the search gave, for the reviewer's key. A
decision is accepted only with such a token (for 24 hours), so what is recorded is
what the search showed; the probe image itself is never kept. The service stores the
decision and appends it to the audit log (:meth:`RekognitionService.review_match`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from visage.console.accuracy import Caveat, bias_caveat, fmr_fraction, fmr_words, threshold_cost_sentence
from visage.console.app import Context, page, service_error
from visage.console.images import CONSOLE_THRESHOLD, box_of, collection_ids, upload
from visage.console.pictures import Picture, face_crop, jpeg_uri, preview
from visage.errors import InvalidParameterException, VisageError
from visage.evaluation.prediction import predicted_fmr
from visage.store.base import DECISIONS, Review

#: Candidates a console search asks for, unless the form says otherwise.
DEFAULT_CANDIDATES = 10
#: How long a search's review form may be sent after the search, in seconds.
REVIEW_FORM_SECONDS = 24 * 3600
DECISION_WORDS = {"same": "Same person", "different": "Different person", "cannot_tell": "Cannot tell"}


def routes() -> list[BaseRoute]:
    return [
        Route("/search", page(search_page), methods=["GET"]),
        Route("/search", page(search), methods=["POST"]),
        Route("/search/review", page(record_review), methods=["POST"]),
    ]


@dataclass(frozen=True)
class Candidate:
    number: int
    face: dict[str, Any]  # Rekognition's Face
    similarity: float
    fmr: str  # "1 in 1,000,000"
    words: str
    thumbnail: str | None  # a data URI, when one is kept
    token: str
    earlier: list[Review]  # decisions already recorded on this probe and face


async def search_page(
    context: Context,
    picture: Picture | None = None,
    probe: str | None = None,
    candidates: list[Candidate] | None = None,
    caveat: Caveat | None = None,
    searched: dict[str, Any] | None = None,
    error: str | None = None,
    face_model: str | None = None,
) -> Response:
    """The search form (and a search's candidates); beside the threshold, what 99 costs with the
    searched collection's face model (before a search, the model new collections get)."""
    settings = context.console.settings
    try:
        collections = await collection_ids(context)
    except VisageError as failure:
        collections, error = [], service_error(failure)
    return context.render(
        "search.html",
        section="search",
        title="Search and review",
        collections=collections,
        picture=picture,
        probe=probe,
        candidates=candidates or [],
        caveat=caveat,
        searched=searched,
        cost=threshold_cost_sentence(settings, face_model or settings.face_model),
        decisions=DECISION_WORDS,
        form={
            "collection_id": context.field("collection_id") or context.request.query_params.get("collection", ""),
            "threshold": context.field("threshold", f"{CONSOLE_THRESHOLD:g}") or f"{CONSOLE_THRESHOLD:g}",
            "max_faces": context.field("max_faces", str(DEFAULT_CANDIDATES)) or str(DEFAULT_CANDIDATES),
        },
        error=error,
    )


async def search(context: Context) -> Response:
    console, service = context.console, context.service
    collection_id = context.field("collection_id")
    try:
        threshold = float(context.field("threshold") or CONSOLE_THRESHOLD)
        max_faces = int(context.field("max_faces") or DEFAULT_CANDIDATES)
    except ValueError:
        return await search_page(context, error="The threshold and the number of candidates must be numbers.")
    try:
        _, data = await upload(context, "image", console.settings)
        answer = await context.call(
            "SearchFacesByImage",
            {
                "CollectionId": collection_id,
                "Image": {"Bytes": data},
                "FaceMatchThreshold": threshold,
                "MaxFaces": max_faces,
            },
        )
        probe_sha256 = hashlib.sha256(data).hexdigest()

        def gather() -> tuple[Picture, str, dict[str, bytes], list[Review], str, str]:
            image = service.engine.decode(data)
            box = box_of({"BoundingBox": answer["SearchedFaceBoundingBox"]})
            picture = preview(image).mark(box, "probe", "source")
            ids = [m["Face"]["FaceId"] for m in answer["FaceMatches"]]
            collection = service.collection(collection_id, context.caller)
            thumbnails = service.face_thumbnails(collection_id, ids, context.caller)
            earlier = service.match_reviews(collection_id, context.caller, probe_sha256)
            return (
                picture,
                face_crop(image, box),
                thumbnails,
                earlier,
                collection.face_model,
                collection.face_model_version,
            )

        picture, probe, thumbnails, earlier, model, model_version = await console.run(gather)
    except VisageError as failure:
        return await search_page(context, error=service_error(failure))
    similarity_map = service.engine.similarity_map(model)
    signer = console.sessions.signer("review")
    candidates = []
    for number, match in enumerate(answer["FaceMatches"], start=1):
        face, similarity = match["Face"], match["Similarity"]
        token = signer.dumps(
            {
                "c": collection_id,
                "p": probe_sha256,
                "f": face["FaceId"],
                "s": similarity,
                "k": context.caller.access_key_id,
            }
        )
        kept = thumbnails.get(face["FaceId"])
        candidates.append(
            Candidate(
                number,
                face,
                similarity,
                fmr_fraction(predicted_fmr(similarity_map, similarity)),
                fmr_words(similarity_map, similarity),
                jpeg_uri(kept) if kept else None,
                token,
                [r for r in earlier if r.face_id == face["FaceId"]],
            )
        )
    searched = {"collection_id": collection_id, "threshold": threshold, "probe_sha256": probe_sha256}
    caveat = bias_caveat(console.settings, threshold, model_version)
    return await search_page(context, picture, probe, candidates, caveat, searched, face_model=model)


async def record_review(context: Context) -> Response:
    """Record the decisions of a search's review form (candidates left undecided are skipped)."""
    assert context.form is not None
    signer = context.console.sessions.signer("review")
    recorded: list[Review] = []
    errors: list[str] = []
    for index, token in enumerate(context.form.getlist("candidate")):
        decision = context.field(f"decision-{index}")
        if not decision:
            continue
        try:
            if decision not in DECISIONS:
                raise InvalidParameterException(f"{decision!r} is not a decision.")
            try:
                signed = signer.loads(str(token), max_age=REVIEW_FORM_SECONDS)
            except BadSignature:
                raise InvalidParameterException(
                    "This review form is too old or was changed; search again to review."
                ) from None
            if signed.get("k") != context.caller.access_key_id:
                raise InvalidParameterException("This review form was made for another reviewer's search.")
            review = await context.console.run(
                context.service.review_match,
                signed["c"],
                signed["p"],
                signed["f"],
                float(signed["s"]),
                decision,
                context.field(f"note-{index}"),
                context.caller,
            )
            recorded.append(review)
        except VisageError as failure:
            errors.append(service_error(failure))
    if not recorded and not errors:
        errors.append("No decision was chosen: pick same person, different person or cannot tell for a candidate.")
    return context.render(
        "reviewed.html",
        400 if errors and not recorded else 200,
        section="search",
        title="Decisions recorded",
        recorded=recorded,
        decisions=DECISION_WORDS,
        error=" ".join(errors) or None,
    )
