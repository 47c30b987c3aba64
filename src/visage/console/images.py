"""The pages that look at uploaded images: Index, Detect and Compare.

Each page posts its images to the server, which calls the Rekognition operation through
the service and answers with the result drawn over a copy of the image
(:mod:`visage.console.pictures`). Nothing uploaded is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from visage.bulk import as_external_image_id
from visage.config import Settings
from visage.console.accuracy import bias_caveat, fmr_words, threshold_cost_sentence
from visage.console.app import Context, page, service_error
from visage.console.pictures import Picture, preview
from visage.errors import InvalidParameterException, VisageError
from visage.faces import BoundingBox

#: The console's default threshold on Compare and Search: a person reviews what it returns,
#: so it asks for the strict end (the API keeps Rekognition's 80).
CONSOLE_THRESHOLD = 99.0
QUALITY_FILTERS = ("AUTO", "NONE", "LOW", "MEDIUM", "HIGH")
_FIVE = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")


def routes() -> list[BaseRoute]:
    return [
        Route("/index", page(index_page), methods=["GET"]),
        Route("/index", page(index_images), methods=["POST"]),
        Route("/detect", page(detect_page), methods=["GET"]),
        Route("/detect", page(detect), methods=["POST"]),
        Route("/compare", page(compare_page), methods=["GET"]),
        Route("/compare", page(compare), methods=["POST"]),
    ]


async def upload(context: Context, name: str, settings: Settings) -> tuple[str, bytes]:
    """The file name and bytes of upload ``name`` (InvalidParameterException if none was sent)."""
    assert context.form is not None
    sent = context.form.get(name)
    if not isinstance(sent, UploadFile) or not sent.filename:
        raise InvalidParameterException(f"Choose an image for {name}.")
    return sent.filename, await sent.read(settings.max_image_bytes + 1)


def box_of(face: dict[str, Any]) -> BoundingBox:
    return BoundingBox.from_rekognition(face["BoundingBox"])


def points_of(detail: dict[str, Any], every: bool = True) -> tuple[tuple[float, float], ...]:
    return tuple((lm["X"], lm["Y"]) for lm in detail.get("Landmarks", []) if every or lm["Type"] in _FIVE)


async def collection_ids(context: Context) -> list[str] | None:
    """Every collection's id, for a form to choose from; None when the caller's key may not
    list them (a key for one collection), so the form asks for the id instead. Its policy
    is asked first, so showing a form records no refused ListCollections."""
    if not context.caller.policy.allows("rekognition:ListCollections", context.service.collection_arn("*")):
        return None
    ids: list[str] = []
    token = None
    while True:
        listed = await context.call("ListCollections", {"NextToken": token} if token else {})
        ids += listed["CollectionIds"]
        token = listed.get("NextToken")
        if token is None:
            return ids


# Index -------------------------------------------------------------------------------------


@dataclass
class Indexed:
    """What IndexFaces did with one uploaded image."""

    filename: str
    external_image_id: str | None
    picture: Picture | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    unindexed: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


async def index_page(context: Context, results: list[Indexed] | None = None, error: str | None = None) -> Response:
    try:
        collections = await collection_ids(context)
    except VisageError as failure:
        collections, error = [], service_error(failure)
    return context.render(
        "index.html",
        section="index",
        title="Index faces",
        collections=collections,
        results=results or [],
        quality_filters=QUALITY_FILTERS,
        max_faces=context.console.settings.max_faces,
        form={
            "collection_id": context.field("collection_id") or context.request.query_params.get("collection", ""),
            "external_image_id": context.field("external_image_id"),
            "max_faces": context.field("max_faces", str(context.console.settings.max_faces)),
            "quality_filter": context.field("quality_filter", "AUTO") or "AUTO",
        },
        error=error,
    )


async def index_images(context: Context) -> Response:
    assert context.form is not None
    settings = context.console.settings
    collection_id = context.field("collection_id")
    external = context.field("external_image_id")
    quality = context.field("quality_filter", "AUTO")
    try:
        max_faces = int(context.field("max_faces") or settings.max_faces)
    except ValueError:
        return await index_page(context, error="MaxFaces must be a whole number.")
    files = [f for f in context.form.getlist("images") if isinstance(f, UploadFile) and f.filename]
    if not files:
        return await index_page(context, error="Choose one or more images to index.")
    results = []
    for sent in files:
        data = await sent.read(settings.max_image_bytes + 1)
        name = sent.filename or "image"
        external_id = external or as_external_image_id(PurePath(name).stem) or None
        result = Indexed(name, external_id)
        request: dict[str, Any] = {
            "CollectionId": collection_id,
            "Image": {"Bytes": data},
            "MaxFaces": max_faces,
            "QualityFilter": quality,
            "DetectionAttributes": ["DEFAULT"],
        }
        if external_id:
            request["ExternalImageId"] = external_id
        try:
            answer = await context.call("IndexFaces", request)
            picture = await context.console.run(_preview, context, data)
        except VisageError as failure:
            result.error = service_error(failure)
            results.append(result)
            continue
        result.records, result.unindexed = answer["FaceRecords"], answer["UnindexedFaces"]
        for number, record in enumerate(result.records, start=1):
            picture.mark(box_of(record["Face"]), str(number), "indexed")
        for face in result.unindexed:
            detail = face["FaceDetail"]
            picture.mark(box_of(detail), "×", "refused")
        result.picture = picture
        results.append(result)
    return await index_page(context, results=results)


def _preview(context: Context, data: bytes) -> Picture:
    return preview(context.service.engine.decode(data))


# Detect ------------------------------------------------------------------------------------


async def detect_page(
    context: Context,
    picture: Picture | None = None,
    faces: list[dict[str, Any]] | None = None,
    answer: str | None = None,
    error: str | None = None,
) -> Response:
    return context.render(
        "detect.html",
        section="detect",
        title="Detect faces",
        picture=picture,
        faces=faces or [],
        answer=answer,
        error=error,
    )


async def detect(context: Context) -> Response:
    settings = context.console.settings
    try:
        _, data = await upload(context, "image", settings)
        answer = await context.call("DetectFaces", {"Image": {"Bytes": data}, "Attributes": ["ALL"]})
        picture = await context.console.run(_preview, context, data)
    except VisageError as failure:
        return await detect_page(context, error=service_error(failure))
    faces = answer["FaceDetails"]
    for number, face in enumerate(faces, start=1):
        picture.mark(box_of(face), str(number), "detected", points_of(face))
    return await detect_page(context, picture, faces, json.dumps(answer, indent=2))


# Compare -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compared:
    number: int
    similarity: float | None  # None: below the threshold (CompareFaces reports no Similarity then)
    words: str


async def compare_page(
    context: Context,
    source: Picture | None = None,
    target: Picture | None = None,
    compared: list[Compared] | None = None,
    threshold: float = CONSOLE_THRESHOLD,
    caveat: Any = None,
    answer: str | None = None,
    error: str | None = None,
) -> Response:
    return context.render(
        "compare.html",
        section="compare",
        title="Compare faces",
        source=source,
        target=target,
        compared=compared or [],
        threshold=threshold,
        cost=threshold_cost_sentence(context.console.settings, context.console.settings.face_model),
        caveat=caveat,
        answer=answer,
        error=error,
    )


async def compare(context: Context) -> Response:
    console, settings = context.console, context.console.settings
    try:
        threshold = float(context.field("threshold") or CONSOLE_THRESHOLD)
    except ValueError:
        return await compare_page(context, error="The threshold must be a number from 0 to 100.")
    try:
        _, source_bytes = await upload(context, "source", settings)
        _, target_bytes = await upload(context, "target", settings)
        answer = await context.call(
            "CompareFaces",
            {
                "SourceImage": {"Bytes": source_bytes},
                "TargetImage": {"Bytes": target_bytes},
                "SimilarityThreshold": threshold,
            },
        )
        source = await console.run(_preview, context, source_bytes)
        target = await console.run(_preview, context, target_bytes)
    except VisageError as failure:
        return await compare_page(context, threshold=threshold, error=service_error(failure))
    similarity_map = context.service.engine.similarity_map(settings.face_model)
    source.mark(box_of(answer["SourceImageFace"]), "source", "source")
    compared = []
    number = 0
    for match in answer["FaceMatches"]:
        number += 1
        target.mark(box_of(match["Face"]), str(number), "match")
        similarity = match["Similarity"]
        compared.append(Compared(number, similarity, fmr_words(similarity_map, similarity)))
    for face in answer["UnmatchedFaces"]:
        number += 1
        target.mark(box_of(face), str(number), "nomatch")
        compared.append(Compared(number, None, f"below {threshold:g}: not a match at this threshold"))
    model_version = context.service.engine.face_model(settings.face_model).version
    return await compare_page(
        context,
        source,
        target,
        compared,
        threshold,
        bias_caveat(settings, threshold, model_version),
        json.dumps(answer, indent=2),
    )
