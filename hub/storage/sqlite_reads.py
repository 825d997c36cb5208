"""Reads of the SQLite tiers for profiles and the API: consent per subject, profile
rows, popular items. Separate read-only connections: WAL readers never wait for the
writer."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

#: The order of consent choices: by receive time (the edge's clock, kept within the
#: hub's skew window; a visitor cannot set it, unlike the client's ``ts``), and among
#: choices received in the same millisecond grants before withdrawals, so a withdrawal
#: never loses to a grant it raced with; then arrival order.
CONSENT_ORDER = "received_at, instr(coalesce(props, ''), '\"personalization\"') > 0 DESC, rowid"


def consent_by_subject(storage: SqliteStore) -> dict[str, bool]:
    """Latest consent choice per subject: True when it includes personalization.
    Erased subjects are left out."""
    return without_erased(storage, latest_consent(storage))


def latest_consent(storage: SqliteStore) -> dict[str, bool]:
    """Latest consent choice per subject key, erased subjects included."""
    db = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        rows = db.execute(
            f"SELECT coalesce(user_id, anonymous_id), props FROM events WHERE type = 'consent' ORDER BY {CONSENT_ORDER}"
        ).fetchall()
    finally:
        db.close()
    return latest_choices(rows)


def latest_choices(rows: Iterable[tuple[Any, ...]]) -> dict[str, bool]:
    """Subject → whether its last choice among (subject, props) rows, in consent
    order, includes personalization."""
    out: dict[str, bool] = {}
    for subject, props in rows:
        if subject:
            categories = json.loads(props or "{}").get("categories", [])
            out[subject] = "personalization" in categories
    return out


def without_erased(storage: Any, choices: dict[str, bool]) -> dict[str, bool]:
    """``choices`` without the subjects on the store's suppression list."""
    tokenizer = storage.tokenizer
    if storage.suppressed and tokenizer is not None:
        return {s: ok for s, ok in choices.items() if tokenizer(s) not in storage.suppressed}
    return choices


def profiles(storage: SqliteStore, subjects: list[str]) -> dict[str, dict[str, Any]]:
    if not subjects:
        return {}
    marts = storage.reader(storage.data_dir / "marts.sqlite")
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    profiles: dict[str, dict[str, Any]] = {}
    try:
        for i in range(0, len(subjects), 900):
            chunk = subjects[i : i + 900]
            marks = ",".join("?" * len(chunk))
            for row in marts.execute(f"SELECT {PROFILE_COLUMNS} FROM user_features WHERE subject IN ({marks})", chunk):
                profiles[row[0]] = profile_of(row)
            for user_id, attributes in wh.execute(f"SELECT user_id, attributes FROM users WHERE user_id IN ({marks})", chunk):
                if attributes:
                    profiles.setdefault(user_id, {})["attributes"] = json.loads(attributes)
    except sqlite3.OperationalError:
        return {}
    finally:
        marts.close()
        wh.close()
    return profiles


#: What a published profile carries of the marts.
PROFILE_COLUMNS = "subject, views, clicks, carts, purchases, revenue_minor, last_ts, category_views"
TOP_ITEMS = (
    "SELECT item_id, views, clicks, carts, purchases, score FROM item_popularity ORDER BY score DESC, item_id LIMIT {limit}"
)


def profile_of(row: Sequence[Any]) -> dict[str, Any]:
    """A profile from a row of :data:`PROFILE_COLUMNS`."""
    return {
        "views": row[1],
        "clicks": row[2],
        "carts": row[3],
        "purchases": row[4],
        "revenue_minor": row[5],
        "last_ts": row[6],
        "category_views": json.loads(row[7]) if row[7] else {},
    }


def top_item(r: Sequence[Any]) -> dict[str, Any]:
    return {"item_id": r[0], "views": r[1], "clicks": r[2], "carts": r[3], "purchases": r[4], "score": r[5]}


def top_items(storage: SqliteStore, limit: int) -> list[dict[str, Any]]:
    """The most popular items of the marts (aggregates, no subjects)."""
    db = storage.reader(storage.data_dir / "marts.sqlite")
    try:
        return [top_item(r) for r in db.execute(TOP_ITEMS.format(limit="?"), (limit,))]
    finally:
        db.close()
