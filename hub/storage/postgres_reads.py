"""Reads of the PostgreSQL tiers for profiles, the API and training: the queries of
``sqlite_reads`` and ``sqlite_training`` in PostgreSQL's dialect, with their Python
halves shared."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hub.storage.interface import TrainingRows
from hub.storage.sqlite_reads import PROFILE_COLUMNS, TOP_ITEMS, latest_choices, profile_of, top_item, without_erased
from hub.storage.sqlite_training import (
    CATALOG_SELECT,
    PRODUCT_PAGES,
    TRAINING_SELECT,
    catalog,
    collect,
    profile_rows,
)
from hub.storage.sqlite_training import PROFILE_COLUMNS as TRAINING_PROFILE_COLUMNS

if TYPE_CHECKING:
    from hub.storage.postgres import PostgresStore

#: The order of consent choices (see ``sqlite_reads.CONSENT_ORDER``); ``seq`` is the
#: arrival order SQLite's rowid gives.
CONSENT_ORDER = "received_at, strpos(coalesce(props, ''), '\"personalization\"') > 0 DESC, seq"


def latest_consent(storage: PostgresStore) -> dict[str, bool]:
    with storage.reading() as db:
        rows = db.execute(
            f"SELECT coalesce(user_id, anonymous_id), props FROM events WHERE type = 'consent' ORDER BY {CONSENT_ORDER}"
        ).fetchall()
    return latest_choices(rows)


def consent_by_subject(storage: PostgresStore) -> dict[str, bool]:
    return without_erased(storage, latest_consent(storage))


def profiles(storage: PostgresStore, subjects: list[str]) -> dict[str, dict[str, Any]]:
    if not subjects:
        return {}
    out: dict[str, dict[str, Any]] = {}
    with storage.reading() as db:
        for row in db.execute(f"SELECT {PROFILE_COLUMNS} FROM user_features WHERE subject = ANY(%s)", (subjects,)).fetchall():
            out[row[0]] = profile_of(row)
        for user_id, attributes in db.execute(
            "SELECT user_id, attributes FROM users WHERE user_id = ANY(%s) AND attributes IS NOT NULL", (subjects,)
        ).fetchall():
            if attributes:
                out.setdefault(user_id, {})["attributes"] = json.loads(attributes)
    return out


def top_items(storage: PostgresStore, limit: int) -> list[dict[str, Any]]:
    with storage.reading() as db:
        return [top_item(r) for r in db.execute(TOP_ITEMS.format(limit="%s"), (limit,)).fetchall()]


def training_rows(storage: PostgresStore, since: str) -> TrainingRows:
    consent = latest_consent(storage)
    epoch = "extract(epoch FROM e.ts::timestamptz)::float8"
    with storage.reading() as db, db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with db.cursor(name="training_rows") as cur:
            cur.itersize = 20_000
            cur.execute(TRAINING_SELECT.format(epoch=epoch, since="%s", product="%s"), (since, PRODUCT_PAGES))
            out = collect(cur, consent, storage.tokenizer, storage.suppressed)
        out.catalog = catalog(db.execute(CATALOG_SELECT).fetchall())
        subjects = sorted(set(out.subjects))
        out.profiles = profile_rows(
            db.execute(f"SELECT {TRAINING_PROFILE_COLUMNS} FROM user_features WHERE subject = ANY(%s)", (subjects,)).fetchall()
        )
    return out
