"""A batch of events made ready for the tiers, without a database: validated against
the contracts, normalized into warehouse rows and lake rows, personal data sealed,
each bad event dead-lettered by itself. Runs in the ingest workers
(``hub.ingest.prep``) or on the writer thread; any store commits the result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub.ingest.normalize import normalize
from hub.personal import seal_payload, seal_traits, subject_ids
from hub.pii import PiiCipher
from models.contracts import validate

EVENT_COLUMNS = (
    "event_id",
    "type",
    "ts",
    "received_at",
    "edge",
    "anonymous_id",
    "user_id",
    "item_id",
    "url",
    "amount_minor",
    "currency",
    "props",
    "context",
)
Row = tuple[Any, ...]
"""A warehouse event row: the values of :data:`EVENT_COLUMNS`, in order."""
(C_ID, C_TYPE, C_TS, C_RECEIVED, C_EDGE, C_ANON, C_USER, C_ITEM, C_URL, C_AMOUNT, C_CURRENCY, C_PROPS, C_CONTEXT) = range(
    len(EVENT_COLUMNS)
)
LakeRow = tuple[str, str, str, str]
"""A lake row: event id, receive time, edge, the event as received (JSON)."""


@dataclass
class IngestReport:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    results: list[dict[str, Any]] = field(default_factory=list)


def prepare_batch(
    events: Sequence[Any],
    source: str,
    received_at: str,
    results: bool,
    suppression_version: int,
    suppressed: Callable[[dict[str, Any]], bool] | None,
    cipher: PiiCipher | None = None,
) -> PreparedBatch:
    """Validate and normalize ``events`` into rows (no database): see :meth:`hub.storage.HubStore.prepare`.
    With ``cipher``, personal data is sealed first (:mod:`hub.personal`)."""
    report = IngestReport(received=len(events))
    batch = PreparedBatch(report, suppression_version)
    for raw in events:
        try:
            _prepare_one(raw, batch, source, received_at, results, suppressed, cipher)
        except Exception as e:  # one event that breaks normalization never holds up its batch-mates
            _dead(batch, received_at, source, "unprocessable", f"{type(e).__name__}: {e}"[:300], raw, results, cipher)
    return batch


def _prepare_one(
    raw: Any,
    batch: PreparedBatch,
    source: str,
    received_at: str,
    results: bool,
    suppressed: Callable[[dict[str, Any]], bool] | None,
    cipher: PiiCipher | None,
) -> None:
    report = batch.report
    verdict = validate(raw)
    if not verdict.ok:
        _dead(batch, received_at, source, verdict.reason, verdict.detail, raw, results, cipher)
        return
    if suppressed is not None and suppressed(raw):
        report.suppressed += 1
        if results:
            report.results.append({"status": "rejected", "reason": "erased_subject"})
        return
    if cipher is not None:
        seal_traits(raw, cipher)  # before the lake row and the warehouse props are made
    row = normalize(raw, received_at)
    values = tuple(row[c] for c in EVENT_COLUMNS)
    lake_row = (values[C_ID], values[C_RECEIVED], values[C_EDGE], orjson.dumps(raw).decode())
    batch.rows.append(values)  # appended only once everything about the event worked
    batch.lake.setdefault(values[C_RECEIVED][:10], []).append(lake_row)
    if results:
        report.results.append({"status": "accepted", "event_id": raw["event_id"]})


def _dead(
    batch: PreparedBatch,
    received_at: str,
    source: str,
    reason: str,
    detail: str,
    raw: Any,
    results: bool,
    cipher: PiiCipher | None = None,
) -> None:
    batch.report.dead[reason] += 1
    try:
        body = orjson.dumps(raw).decode()
    except TypeError:  # not JSON-serializable as it stands (never from a decoded payload)
        body = repr(raw)[:65536]
    ids = tuple(sorted(set(subject_ids(raw))))  # the writer keeps only their erasure tokens
    batch.dead_rows.append((received_at, source, reason, detail, seal_payload(body, cipher) if cipher else body, ids))
    if results:
        batch.report.results.append({"status": "rejected", "reason": reason, "detail": detail})


@dataclass
class PreparedBatch:
    """A validated, normalized batch waiting for :meth:`hub.storage.HubStore.commit`."""

    report: IngestReport
    suppression_version: int
    rows: list[Row] = field(default_factory=list)
    #: Lake rows by day, for the writer to store at commit …
    lake: dict[str, list[LakeRow]] = field(default_factory=dict)
    #: … or the event ids a preparation worker already wrote to each day's lake file
    #: (committed before the warehouse, as the writer would: see ``hub.ingest.prep``).
    lake_written: dict[str, list[str]] = field(default_factory=dict)
    #: (received_at, source, reason, detail, payload — sealed when a cipher is set —,
    #: the subject ids the payload names)
    dead_rows: list[tuple[str, str, str, str, str, tuple[str, ...]]] = field(default_factory=list)
