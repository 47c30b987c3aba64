"""The audit log's hash chain: what a record's hash covers, and walking the chain to find tampering.

Each record carries the SHA-256 of the record before it (``prev_hash``; the first
record's is :data:`GENESIS`) and its own (``hash``), computed over ``prev_hash`` and
every field of the record (:func:`record_hash`). The store appends one record at a
time under a lock, so the chain never forks.

Anyone with write access to the database could still rewrite the whole chain from
some record on. Anchor it: keep the head hash (:func:`verify` reports it) somewhere the
server cannot write, every day, and verify later that the chain still holds that hash
(``visage audit-log verify --anchor HASH``). docs/keys.md says how.

:func:`verify` names the first record that was changed, removed or inserted:

- **changed**: its own hash no longer covers its content, and the next record still
  points at the hash it was written with;
- **inserted**: it does not belong to the chain: its hash is wrong and nothing points
  at it, or an intact record further on points past it at an earlier record;
- **removed**: an intact record points at a hash no record before it has (or the
  anchored hash is not in the chain at all).

The position (``seq``) is not hashed: the chain itself is the order, so rows
renumbered without being reordered still verify.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from visage.store.base import AuditEntry, AuditRecord, Store

#: The ``prev_hash`` of the first record.
GENESIS = "0" * 64
#: Version of the hashed form; part of what is hashed, so a future form cannot be confused with this one.
HASH_VERSION = 1
#: How many recent hashes the walk remembers, to tell an inserted record from a removed one.
_MEMORY = 10_000


def record_hash(record: AuditRecord, prev_hash: str) -> str:
    """The SHA-256 (hex) of the record chained after ``prev_hash``.

    The hashed form is canonical JSON (sorted keys, no spaces, UTF-8) of every field,
    the time as ISO 8601 UTC with microseconds and numbers as float, so a record read
    back from either store hashes as it did when it was written.
    """
    form = {
        "v": HASH_VERSION,
        "prev": prev_hash,
        "time": record.time.astimezone(UTC).isoformat(timespec="microseconds"),
        "access_key_id": record.access_key_id,
        "operation": record.operation,
        "collection_id": record.collection_id,
        "threshold": _number(record.threshold),
        "match_count": int(record.match_count),
        "best_similarity": _number(record.best_similarity),
        "face_ids": list(record.face_ids),
        "user_ids": list(record.user_ids),
        "probe_sha256": record.probe_sha256,
        "outcome": record.outcome,
        "details": record.details,
    }
    text = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def details_json(details: dict[str, object]) -> str:
    """``details`` as stored: canonical JSON, so that it reads back equal."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


Problem = Literal["changed", "inserted", "removed"]


@dataclass(frozen=True)
class ChainBreak:
    """The first place the chain does not hold."""

    problem: Problem
    #: The position of the record changed or inserted, or of the first intact record after a removal
    #: (None: the anchored hash is missing, so records at the end went).
    seq: int | None
    message: str


@dataclass(frozen=True)
class ChainReport:
    records: int  # how many were read
    head_seq: int | None  # the last record's position and hash (None for an empty log)
    head_hash: str | None
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(entries: Iterable[AuditEntry], anchor: str | None = None) -> ChainReport:
    """Walks the chain in order and reports the first record changed, removed or inserted.

    ``anchor``, a head hash recorded earlier outside the server, must be the hash of some
    record: if it is not, records were removed from the end (or the chain was rewritten).
    """
    expected = GENESIS
    previous: AuditEntry | None = None
    recent: deque[tuple[str, int]] = deque(maxlen=_MEMORY)  # (hash, seq) of the records accepted so far
    anchored = anchor is None
    count = 0
    stream = _with_next(entries)
    for entry, following in stream:
        count += 1
        intact = entry.hash == record_hash(entry.record, entry.prev_hash or "")
        linked = entry.prev_hash == expected
        if intact and linked:
            anchored = anchored or entry.hash == anchor
            recent.append((entry.hash or "", entry.seq))
            expected, previous = entry.hash or "", entry
            continue
        broken = _diagnose(entry, following, previous, expected, intact, linked, recent)
        count += sum(1 for _ in stream)
        return ChainReport(count, None, None, broken)
    head_seq, head_hash = (previous.seq, previous.hash) if previous else (None, None)
    if not anchored:
        return ChainReport(
            count,
            head_seq,
            head_hash,
            ChainBreak(
                "removed",
                None,
                f"The anchored hash {anchor} is no record's hash: records after it were removed, "
                "or the log was rewritten from some record on.",
            ),
        )
    return ChainReport(count, head_seq, head_hash)


def read_chain(store: Store, page: int = 10_000) -> Iterator[AuditEntry]:
    """The store's whole chain, in order, read a page at a time."""
    after = 0
    while True:
        entries = store.audit_entries(after, page)
        yield from entries
        if len(entries) < page:
            return
        after = entries[-1].seq


def _diagnose(
    entry: AuditEntry,
    following: AuditEntry | None,
    previous: AuditEntry | None,
    expected: str,
    intact: bool,
    linked: bool,
    recent: deque[tuple[str, int]],
) -> ChainBreak:
    after = f"seq {previous.seq}" if previous else "the start of the log"
    if not intact:
        # Does the chain go on from this record (it was there, and changed) or around it (it was slipped in)?
        pointed_at = following is not None and following.prev_hash == entry.hash
        bypassed = following is not None and following.prev_hash == expected
        if (linked and not bypassed) or pointed_at:
            return ChainBreak(
                "changed",
                entry.seq,
                f"Record seq {entry.seq} was changed: its content no longer matches its hash.",
            )
        return ChainBreak(
            "inserted",
            entry.seq,
            f"Record seq {entry.seq} was inserted: it is not part of the chain (it follows {after}).",
        )
    earlier = {digest: seq for digest, seq in recent}
    if entry.prev_hash in earlier:
        # An intact record pointing back past the records just before it: those were slipped in.
        skipped = [seq for digest, seq in recent if seq > earlier[entry.prev_hash]]
        first = skipped[0] if skipped else entry.seq
        return ChainBreak(
            "inserted",
            first,
            f"Record seq {first} was inserted: seq {entry.seq} follows seq {earlier[entry.prev_hash]} in the chain.",
        )
    return ChainBreak(
        "removed",
        entry.seq,
        f"A record was removed before seq {entry.seq} (after {after}): seq {entry.seq} follows a record "
        "that is no longer in the log"
        + (f", or seq {previous.seq} was rewritten with a new hash." if previous else "."),
    )


def _with_next(entries: Iterable[AuditEntry]) -> Iterator[tuple[AuditEntry, AuditEntry | None]]:
    """Each entry with the one after it (None for the last)."""
    iterator = iter(entries)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following
