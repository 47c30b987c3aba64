"""The audit log as CSV or JSONL: the fields, in order, as ``visage audit-log`` and the
console's download write them.

Each record of a search by image also says how far its candidates were reviewed
(``review``: "unreviewed", "1 of 2 reviewed", "reviewed"; empty for other records;
:func:`visage.reviews.review_statuses`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

from visage.store.base import AuditRecord

FIELDS = (
    "time",
    "access_key_id",
    "operation",
    "collection_id",
    "threshold",
    "match_count",
    "best_similarity",
    "face_ids",
    "user_ids",
    "probe_sha256",
    "outcome",
    "details",
    "seq",
    "review",
)


def as_json(record: AuditRecord, review: str | None) -> dict[str, Any]:
    """The record as one JSON object of :data:`FIELDS`."""
    out = {f: getattr(record, f) for f in FIELDS if f != "review"}
    out["time"] = record.time.isoformat()
    out["review"] = review
    return out


def jsonl_lines(records: Sequence[AuditRecord], reviews: Sequence[str | None]) -> Iterator[str]:
    for record, review in zip(records, reviews):
        yield json.dumps(as_json(record, review)) + "\n"


def csv_lines(records: Sequence[AuditRecord], reviews: Sequence[str | None]) -> Iterator[str]:
    """The header, then a row per record (lists space-separated, details as JSON)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(FIELDS)
    yield flush()
    for r, review in zip(records, reviews):
        writer.writerow(
            [
                r.time.isoformat(),
                r.access_key_id,
                r.operation,
                r.collection_id or "",
                r.threshold,
                r.match_count,
                "" if r.best_similarity is None else r.best_similarity,
                " ".join(r.face_ids),
                " ".join(r.user_ids),
                r.probe_sha256 or "",
                r.outcome,
                json.dumps(r.details, sort_keys=True),
                r.seq,
                review or "",
            ]
        )
        yield flush()
