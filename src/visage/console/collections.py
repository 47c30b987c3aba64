"""The Collections pages: the list, one collection with its faces, users, tags, thumbnail
setting and review statistics, and the actions on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from visage.console.accuracy import fmr_fraction
from visage.console.app import Context, page, service_error
from visage.engine.registry import FACE_MODELS, face_model_entry
from visage.errors import ResourceNotFoundException, VisageError
from visage.service import Caller, RekognitionService
from visage.store.base import Collection

#: Faces per page of a collection's faces.
FACES_PER_PAGE = 100
#: Users listed on a collection's page.
USERS_PER_PAGE = 100
#: The choices of a collection's thumbnail setting, and what each stores.
THUMBNAIL_CHOICES: dict[str, bool | None] = {"server": None, "on": True, "off": False}


def routes() -> list[BaseRoute]:
    return [
        Route("/collections", page(list_collections), methods=["GET"]),
        Route("/collections", page(create_collection), methods=["POST"]),
        Route("/collections/{cid}", page(show_collection), methods=["GET"]),
        Route("/collections/{cid}/delete", page(confirm_delete), methods=["GET"]),
        Route("/collections/{cid}/delete", page(delete_collection), methods=["POST"]),
        Route("/collections/{cid}/tags", page(edit_tags), methods=["POST"]),
        Route("/collections/{cid}/thumbnails", page(set_thumbnails), methods=["POST"]),
        Route("/collections/{cid}/faces", page(act_on_faces), methods=["POST"]),
        Route("/collections/{cid}/faces/{fid}/thumbnail", page(thumbnail), methods=["GET"]),
        Route("/collections/{cid}/users", page(create_user), methods=["POST"]),
        Route("/collections/{cid}/users/{uid}/delete", page(delete_user), methods=["POST"]),
    ]


@dataclass(frozen=True)
class Summary:
    collection: Collection
    faces: int
    users: int
    keeps_thumbnails: bool


def summarize(service: RekognitionService, caller: Caller, collection_id: str) -> Summary:
    """A collection with its counts, through the service (DescribeCollection's checks apply)."""
    described = service.call("DescribeCollection", {"CollectionId": collection_id}, caller)
    collection = service.collection(collection_id, caller)
    return Summary(
        collection, described["FaceCount"], described["UserCount"], service.keeps_face_thumbnails(collection)
    )


def all_summaries(service: RekognitionService, caller: Caller) -> list[Summary]:
    out, token = [], None
    while True:
        listed = service.call("ListCollections", {"NextToken": token} if token else {}, caller)
        for collection_id in listed["CollectionIds"]:
            try:
                out.append(summarize(service, caller, collection_id))
            except ResourceNotFoundException:  # deleted meanwhile
                continue
        token = listed.get("NextToken")
        if token is None:
            return out


async def list_collections(context: Context, error: str | None = None, status: int = 200) -> Response:
    try:
        summaries = await context.console.run(all_summaries, context.service, context.caller)
    except VisageError as failure:
        summaries, error = [], service_error(failure)
    return context.render(
        "collections.html",
        status,
        section="collections",
        title="Collections",
        summaries=summaries,
        server_keeps=context.console.settings.keep_face_thumbnails,
        error=error,
        form={k: context.field(k) for k in ("collection_id", "tags", "thumbnails", "face_model")},
        face_models=FACE_MODELS.values(),
        server_model=context.console.settings.face_model,
    )


def parse_tags(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines ignored) as a tag map."""
    tags = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"Tag line {number} must read key=value, not {line.strip()!r}.")
        tags[key.strip()] = value.strip()
    return tags


async def create_collection(context: Context) -> Response:
    collection_id = context.field("collection_id")
    try:
        tags = parse_tags(context.field("tags"))
        keep = THUMBNAIL_CHOICES[context.field("thumbnails", "server") or "server"]
        model = context.field("face_model", "server") or "server"
        await context.call(
            "CreateCollection",
            {"CollectionId": collection_id, **({"Tags": tags} if tags else {})},
            face_model=None if model == "server" else face_model_entry(model).name,
        )
        if keep is not None:
            await context.console.run(context.service.set_keep_face_thumbnails, collection_id, keep, context.caller)
    except (VisageError, ValueError, KeyError) as failure:
        message = service_error(failure) if isinstance(failure, VisageError) else str(failure)
        return await list_collections(context, error=message, status=400)
    return context.redirect(f"/collections/{collection_id}", f"Created collection {collection_id}.")


@dataclass(frozen=True)
class FaceFilter:
    external_image_id: str
    user_id: str
    after: str

    def query(self, **changes: str) -> str:
        values = {"external_image_id": self.external_image_id, "user_id": self.user_id, "after": self.after}
        values.update(changes)
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in values.items() if v})


async def show_collection(context: Context, error: str | None = None, status: int = 200) -> Response:
    collection_id = context.request.path_params["cid"]
    filters = FaceFilter(
        context.request.query_params.get("external_image_id", "").strip(),
        context.request.query_params.get("user_id", "").strip(),
        context.request.query_params.get("after", "").strip(),
    )
    service, caller = context.service, context.caller

    def gather() -> dict[str, Any]:
        summary = summarize(service, caller, collection_id)
        faces = service.face_page(
            collection_id,
            caller,
            after=filters.after or None,
            limit=FACES_PER_PAGE,
            user_id=filters.user_id or None,
            external_image_id=filters.external_image_id or None,
        )
        users = service.call("ListUsers", {"CollectionId": collection_id, "MaxResults": USERS_PER_PAGE}, caller)
        bands = service.review_statistics(collection_id, caller)
        return {"summary": summary, "faces": faces, "users": users, "bands": bands}

    try:
        gathered = await context.console.run(gather)
    except ResourceNotFoundException as failure:
        return context.render("missing.html", 404, section="collections", title="Not found", what=failure.message)
    except VisageError as failure:  # a bad filter or page token: show the first page
        return context.redirect(f"/collections/{collection_id}", service_error(failure))
    return context.render(
        "collection.html",
        status,
        section="collections",
        title=f"Collection {collection_id}",
        filters=filters,
        fmr_fraction=fmr_fraction,
        server_keeps=context.console.settings.keep_face_thumbnails,
        error=error,
        **gathered,
    )


async def confirm_delete(context: Context) -> Response:
    collection_id = context.request.path_params["cid"]
    try:
        summary = await context.console.run(summarize, context.service, context.caller, collection_id)
    except VisageError as failure:
        return context.redirect("/collections", service_error(failure))
    return context.render("delete_collection.html", section="collections", title="Delete a collection", summary=summary)


async def delete_collection(context: Context) -> Response:
    collection_id = context.request.path_params["cid"]
    request = {"CollectionId": collection_id}
    return await context.act("DeleteCollection", request, "/collections", f"Deleted collection {collection_id}.")


async def edit_tags(context: Context) -> Response:
    collection_id = context.request.path_params["cid"]
    here = f"/collections/{collection_id}"
    try:
        arn = (await context.console.run(context.service.collection, collection_id, context.caller)).arn
        remove = context.field("remove")
        if remove:
            await context.call("UntagResource", {"ResourceArn": arn, "TagKeys": [remove]})
            return context.redirect(here, f"Removed tag {remove}.")
        tags = parse_tags(f"{context.field('key')}={context.field('value')}")
        await context.call("TagResource", {"ResourceArn": arn, "Tags": tags})
    except (VisageError, ValueError) as failure:
        return context.redirect(here, service_error(failure) if isinstance(failure, VisageError) else str(failure))
    return context.redirect(here, f"Tagged {', '.join(tags)}.")


async def set_thumbnails(context: Context) -> Response:
    collection_id = context.request.path_params["cid"]
    choice = context.field("thumbnails")
    here = f"/collections/{collection_id}"
    if choice not in THUMBNAIL_CHOICES:
        return context.redirect(here, "Choose server, on or off.")
    try:
        await context.console.run(
            context.service.set_keep_face_thumbnails, collection_id, THUMBNAIL_CHOICES[choice], context.caller
        )
    except VisageError as failure:
        return context.redirect(here, service_error(failure))
    said = {"server": "as the server says", "on": "on", "off": "off"}[choice]
    return context.redirect(here, f"Face thumbnails for faces indexed from now on: {said}.")


async def act_on_faces(context: Context) -> Response:
    """Delete the selected faces, or associate them with a user, or disassociate them from one."""
    collection_id = context.request.path_params["cid"]
    assert context.form is not None
    face_ids = [str(v) for v in context.form.getlist("face_id")]
    action, user_id = context.field("action"), context.field("user_id")
    back = f"/collections/{collection_id}?" + context.field("return_query")
    if not face_ids:
        return context.redirect(back, "Select at least one face first.")
    try:
        if action == "delete":
            answer = await context.call("DeleteFaces", {"CollectionId": collection_id, "FaceIds": face_ids})
            done, failed = len(answer["DeletedFaces"]), answer["UnsuccessfulFaceDeletions"]
            message = f"Deleted {done} face(s)."
        elif action in ("associate", "disassociate"):
            operation = "AssociateFaces" if action == "associate" else "DisassociateFaces"
            answer = await context.call(
                operation, {"CollectionId": collection_id, "UserId": user_id, "FaceIds": face_ids}
            )
            key = "Associated" if action == "associate" else "Disassociated"
            done = len(answer[f"{key}Faces"])
            failed = answer[f"Unsuccessful{'FaceAssociations' if action == 'associate' else 'FaceDisassociations'}"]
            message = f"{key} {done} face(s) {'with' if action == 'associate' else 'from'} user {user_id}."
        else:
            return context.redirect(back, "Choose what to do with the selected faces.")
    except VisageError as failure:
        return context.redirect(back, service_error(failure))
    if failed:
        reasons = sorted({reason for f in failed for reason in f.get("Reasons", [])})
        message += f" {len(failed)} not: {', '.join(reasons)}."
    return context.redirect(back, message)


async def thumbnail(context: Context) -> Response:
    collection_id, face_id = context.request.path_params["cid"], context.request.path_params["fid"]
    try:
        kept = await context.console.run(context.service.face_thumbnails, collection_id, [face_id], context.caller)
    except VisageError:
        kept = {}
    if face_id not in kept:
        return Response("No thumbnail is kept for this face.", 404, media_type="text/plain")
    # A face's thumbnail never changes; the browser may keep it while the session lasts.
    return Response(kept[face_id], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=1800"})


async def create_user(context: Context) -> Response:
    collection_id, user_id = context.request.path_params["cid"], context.field("user_id")
    request = {"CollectionId": collection_id, "UserId": user_id}
    return await context.act("CreateUser", request, f"/collections/{collection_id}", f"Created user {user_id}.")


async def delete_user(context: Context) -> Response:
    collection_id, user_id = context.request.path_params["cid"], context.request.path_params["uid"]
    request = {"CollectionId": collection_id, "UserId": user_id}
    done = f"Deleted user {user_id}; its faces stay in the collection."
    return await context.act("DeleteUser", request, f"/collections/{collection_id}", done)
