"""The Keys pages, for keys allowed ``visage:ManageKeys``: list the access keys, create one
(its secret is shown on that page only), revoke one. The service checks the permission and
records each change in the audit log; a revoked key's console sessions end at their next
request."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from visage.console.app import Context, page, service_error
from visage.errors import AccessDeniedException, VisageError
from visage.policy import Policy, PolicyError, known_actions

#: The policies the create form offers, in the order of `visage keys create`'s options.
PRESETS = {
    "read-only": "Read-only: detect, compare, describe, list, search, get, read the audit log",
    "collection": "One collection: everything on it (with review), plus Detect and Compare",
    "admin": "Administrator: everything, keys included",
    "policy": "A policy document (IAM's JSON grammar, docs/keys.md)",
}


def routes() -> list[BaseRoute]:
    return [
        Route("/keys", page(keys_page), methods=["GET"]),
        Route("/keys", page(create_key), methods=["POST"]),
        Route("/keys/{kid}/revoke", page(revoke_key), methods=["POST"]),
    ]


async def keys_page(
    context: Context, created: tuple[str, str] | None = None, error: str | None = None, status: int | None = None
) -> Response:
    try:
        keys = await context.console.run(context.service.list_keys, context.caller)
    except AccessDeniedException as failure:
        return context.render("denied.html", 403, section="keys", title="Keys", error=service_error(failure))
    return context.render(
        "keys.html",
        status,
        section="keys",
        title="Access keys",
        keys=keys,
        created=created,
        presets=PRESETS,
        # A key made: the form starts afresh; a key refused: the form keeps what was typed.
        form={k: "" if created else context.field(k) for k in ("name", "preset", "collection_id", "policy")},
        error=error,
    )


def chosen_policy(context: Context) -> tuple[Policy, str]:
    """The policy the create form asks for, and a name for it."""
    preset = context.field("preset") or "read-only"
    if preset == "admin":
        return Policy.admin(), "admin"
    if preset == "collection":
        collection_id = context.field("collection_id")
        if not collection_id:
            raise PolicyError("Name the collection the key is for.")
        return Policy.for_collection(context.service.collection_arn(collection_id)), f"collection {collection_id}"
    if preset == "policy":
        return Policy.parse(context.field("policy"), known_actions()), "policy"
    return Policy.read_only(), "read-only"


async def create_key(context: Context) -> Response:
    try:
        policy, label = chosen_policy(context)
        _, credentials = await context.console.run(
            context.service.create_key, context.caller, policy, context.field("name") or label
        )
    except AccessDeniedException as failure:
        return context.render("denied.html", 403, section="keys", title="Keys", error=service_error(failure))
    except VisageError as failure:
        return await keys_page(context, error=service_error(failure))
    return await keys_page(context, created=(credentials.access_key_id, credentials.secret_access_key))


async def revoke_key(context: Context) -> Response:
    key_id = context.request.path_params["kid"]
    try:
        await context.console.run(context.service.revoke_key, context.caller, key_id)
    except AccessDeniedException as failure:
        return context.render("denied.html", 403, section="keys", title="Keys", error=service_error(failure))
    except VisageError as failure:
        return context.redirect("/keys", service_error(failure))
    if key_id == context.caller.access_key_id:
        return context.redirect("/sign-in", f"Revoked {key_id}, the key of this session: it has ended.")
    return context.redirect("/keys", f"Revoked {key_id}: it is refused from its next request on.")
