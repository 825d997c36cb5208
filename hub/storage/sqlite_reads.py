"""Reads of the SQLite tiers for profiles and the API: consent per subject, profile
rows, popular items. Separate read-only connections: WAL readers never wait for the
writer."""

from __future__ import annotations

import json
import sqlite3
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
    out = latest_consent(storage)
    tokenizer = storage.tokenizer
    if storage.suppressed and tokenizer is not None:
        out = {s: ok for s, ok in out.items() if tokenizer(s) not in storage.suppressed}
    return out


def latest_consent(storage: SqliteStore) -> dict[str, bool]:
    """Latest consent choice per subject key, erased subjects included."""
    db = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        rows = db.execute(
            f"SELECT coalesce(user_id, anonymous_id), props FROM events WHERE type = 'consent' ORDER BY {CONSENT_ORDER}"
        ).fetchall()
    finally:
        db.close()
    out: dict[str, bool] = {}
    for subject, props in rows:
        if subject:
            categories = json.loads(props or "{}").get("categories", [])
            out[subject] = "personalization" in categories
    return out


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
            for row in marts.execute(
                f"SELECT subject, views, clicks, carts, purchases, revenue_minor, last_ts, category_views FROM user_features WHERE subject IN ({marks})",
                chunk,
            ):
                profiles[row[0]] = {
                    "views": row[1],
                    "clicks": row[2],
                    "carts": row[3],
                    "purchases": row[4],
                    "revenue_minor": row[5],
                    "last_ts": row[6],
                    "category_views": json.loads(row[7]) if row[7] else {},
                }
            for user_id, attributes in wh.execute(f"SELECT user_id, attributes FROM users WHERE user_id IN ({marks})", chunk):
                if attributes:
                    profiles.setdefault(user_id, {})["attributes"] = json.loads(attributes)
    except sqlite3.OperationalError:
        return {}
    finally:
        marts.close()
        wh.close()
    return profiles


def top_items(storage: SqliteStore, limit: int) -> list[dict[str, Any]]:
    """The most popular items of the marts (aggregates, no subjects)."""
    db = storage.reader(storage.data_dir / "marts.sqlite")
    try:
        return [
            {"item_id": r[0], "views": r[1], "clicks": r[2], "carts": r[3], "purchases": r[4], "score": r[5]}
            for r in db.execute(
                "SELECT item_id, views, clicks, carts, purchases, score FROM item_popularity ORDER BY score DESC LIMIT ?",
                (limit,),
            )
        ]
    finally:
        db.close()
