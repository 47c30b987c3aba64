"""The Audit log page: the records, newest first, filtered by time, key, operation and
collection, paged, each search by image with how far its candidates were reviewed; and
the same records, oldest first, as CSV or JSONL (:mod:`visage.audit_export`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from visage.audit_export import as_json, csv_lines, jsonl_lines
from visage.console.app import Context, page, service_error
from visage.errors import VisageError
from visage.store.base import AuditRecord

#: Records per page of the Audit log page.
RECORDS_PER_PAGE = 50
#: Most records one download holds.
MAX_DOWNLOAD = 100_000
#: The operations the filter offers (any other can be typed in the address).
OPERATIONS = (
    "SearchFacesByImage",
    "SearchFaces",
    "SearchUsers",
    "SearchUsersByImage",
    "CompareFaces",
    "ReviewMatch",
)


def routes() -> list[BaseRoute]:
    return [
        Route("/audit", page(audit_page), methods=["GET"]),
        Route("/audit.csv", page(download_csv), methods=["GET"]),
        Route("/audit.jsonl", page(download_jsonl), methods=["GET"]),
    ]


@dataclass(frozen=True)
class AuditFilter:
    since: str = ""
    until: str = ""
    key: str = ""
    operation: str = ""
    collection: str = ""
    page: int = 0

    @classmethod
    def of(cls, context: Context) -> AuditFilter:
        query = context.request.query_params
        number = query.get("page", "0")
        return cls(
            since=query.get("since", "").strip(),
            until=query.get("until", "").strip(),
            key=query.get("key", "").strip(),
            operation=query.get("operation", "").strip(),
            collection=query.get("collection", "").strip(),
            page=int(number) if number.isdigit() else 0,
        )

    def query(self, **changes: Any) -> str:
        values = {**asdict(self), **changes}
        return urlencode({k: v for k, v in values.items() if v not in ("", 0)})

    def arguments(self) -> dict[str, Any]:
        """The filters as :meth:`RekognitionService.read_audit_log` takes them (ValueError for a bad time)."""
        return {
            "since": _moment(self.since),
            "until": _moment(self.until),
            "access_key_id": self.key or None,
            "operation": self.operation or None,
            "collection_id": self.collection or None,
        }


def _moment(text: str) -> datetime | None:
    """A time from the form (the browser's ``datetime-local``, read as UTC), or None."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


async def audit_page(context: Context) -> Response:
    filters = AuditFilter.of(context)
    service, caller = context.service, context.caller

    def read() -> tuple[list[AuditRecord], list[str | None]]:
        records = service.read_audit_log(
            caller,
            **filters.arguments(),
            limit=RECORDS_PER_PAGE + 1,
            offset=filters.page * RECORDS_PER_PAGE,
            newest_first=True,
        )
        return records, service.review_status(caller, records)

    error = None
    try:
        records, reviews = await context.console.run(read)
    except ValueError:
        records, reviews, error = [], [], "Times are written 2026-12-01T09:30 (UTC)."
    except VisageError as failure:
        records, reviews, error = [], [], service_error(failure)
    shown = list(zip(records, reviews))[:RECORDS_PER_PAGE]
    return context.render(
        "audit.html",
        403 if error and "AccessDenied" in error else None,
        section="audit",
        title="Audit log",
        filters=filters,
        rows=[(record, review, as_json(record, review)["details"]) for record, review in shown],
        more=len(records) > RECORDS_PER_PAGE,
        operations=OPERATIONS,
        error=error,
    )


async def _download(context: Context, kind: str) -> Response:
    filters = AuditFilter.of(context)
    service, caller = context.service, context.caller

    def read() -> tuple[list[AuditRecord], list[str | None]]:
        records = service.read_audit_log(caller, **filters.arguments(), limit=MAX_DOWNLOAD)
        return records, service.review_status(caller, records)

    try:
        records, reviews = await context.console.run(read)
    except ValueError:
        return Response("Times are written 2026-12-01T09:30 (UTC).", 400, media_type="text/plain")
    except VisageError as failure:
        return Response(
            service_error(failure), failure.status if failure.status >= 400 else 400, media_type="text/plain"
        )
    lines = (csv_lines if kind == "csv" else jsonl_lines)(records, reviews)
    media_type = "text/csv" if kind == "csv" else "application/x-ndjson"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    disposition = f'attachment; filename="visage-audit-{stamp}.{kind}"'
    return StreamingResponse(lines, media_type=media_type, headers={"Content-Disposition": disposition})


async def download_csv(context: Context) -> Response:
    return await _download(context, "csv")


async def download_jsonl(context: Context) -> Response:
    return await _download(context, "jsonl")
