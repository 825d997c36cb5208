"""The marts refresh (SQL aggregation) against a plain Python definition of the marts,
on a random mix of events, identities and categorized items, folded in small steps."""

from __future__ import annotations

import copy
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from hub.storage.sqlite import MART_WEIGHTS, SqliteStore

RECEIVED = "2026-11-26T10:00:00.000Z"
COUNTS = {"page_view": "views", "click": "clicks", "scroll": "scrolls", "add_to_cart": "carts", "purchase": "purchases"}


def python_refresh(storage: SqliteStore, limit: int) -> int:
    """The marts as defined before they moved into SQL: the warehouse rows past the
    watermark, joined to identities and item categories at fold time, counted in Python."""
    row = storage.marts.execute("SELECT rowid FROM watermarks WHERE name = 'events'").fetchone()
    mark = int(row[0]) if row else 0
    top = storage.warehouse.execute(
        "SELECT max(rowid) FROM (SELECT rowid FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?)", (mark, limit)
    ).fetchone()[0]
    if top is None:
        return 0
    rows = storage.warehouse.execute(
        "SELECT e.type, coalesce(i.user_id, e.user_id, e.anonymous_id), e.item_id, e.amount_minor, e.ts, it.category "
        "FROM events e LEFT JOIN identities i ON i.anonymous_id = e.anonymous_id AND e.user_id IS NULL "
        "LEFT JOIN items it ON it.item_id = e.item_id WHERE e.rowid > ? AND e.rowid <= ?",
        (mark, top),
    ).fetchall()
    db = storage.marts
    for kind, subject, item, amount, ts, category in rows:
        if subject:
            old = db.execute("SELECT * FROM user_features WHERE subject = ?", (subject,)).fetchone()
            u = list(old[1:8]) if old else [0, 0, 0, 0, 0, 0, ""]
            cats = Counter(orjson.loads(old[8])) if old and old[8] else Counter()
            if kind in COUNTS:
                u[list(COUNTS).index(kind)] += 1
            if kind == "purchase" and amount:
                u[5] += amount
            u[6] = max(u[6], ts)
            if category:
                cats[category] += 1
            db.execute(
                "INSERT OR REPLACE INTO user_features VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (subject, *u, orjson.dumps(cats).decode()),
            )
        if item and kind in MART_WEIGHTS:
            old = db.execute("SELECT * FROM item_popularity WHERE item_id = ?", (item,)).fetchone()
            c = list(old[1:]) if old else [0, 0, 0, 0, 0]
            c[("page_view", "click", "add_to_cart", "purchase").index(kind)] += 1
            c[4] += MART_WEIGHTS[kind]
            db.execute("INSERT OR REPLACE INTO item_popularity VALUES (?, ?, ?, ?, ?, ?)", (item, *c))
    db.execute("INSERT OR REPLACE INTO watermarks VALUES ('events', ?)", (top,))
    return len(rows)


def stored(storage: SqliteStore) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[int, ...]]]:
    features = {r[0]: (*r[1:8], orjson.loads(r[8]) if r[8] else {}) for r in storage.marts.execute("SELECT * FROM user_features")}
    popularity = {r[0]: tuple(r[1:]) for r in storage.marts.execute("SELECT * FROM item_popularity")}
    return features, popularity


def random_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    visitors = [f"visitor{i:015d}" for i in range(12)]
    users = [f"user-{i}" for i in range(4)]
    items = [f"it{i}" for i in range(10)]
    out: list[dict[str, Any]] = []
    for k in range(n):
        kind = rng.choice(["page_view", "click", "scroll", "add_to_cart", "purchase", "identify"])
        e: dict[str, Any] = {
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "anonymous_id": rng.choice(visitors),
            "ts": int((time.time() - rng.randrange(3600, 4 * 86400)) * 1000),  # inside the clock-skew window
        }
        if rng.random() < 0.25:
            e["user_id"] = rng.choice(users)
        if kind == "page_view":
            e["url"] = f"https://shop.example/p/{rng.choice(items)}"
        elif kind in ("click", "add_to_cart"):
            e["item_id"] = rng.choice(items)
        elif kind == "scroll":
            e["depth"] = rng.choice([25, 50, 75, 100])
        elif kind == "purchase":
            item = rng.choice(items)
            price = {"amount": rng.randrange(1, 500) / 10, "currency": "eur"}
            e |= {"order_id": f"o{k}", "items": [{"item_id": item, "quantity": 1, "price": price}], "total": price}
        elif kind == "identify":
            e["user_id"] = rng.choice(users)
        out.append(e)
    return out


def test_sql_marts_equal_the_definition_folded_in_steps(tmp_path: Path) -> None:
    """Two hubs take the same batches; one folds with the SQL refresh, the other with the
    Python definition, in the same steps (identities linked later do not rewrite the
    past: both fold with the links known at fold time)."""
    rng = random.Random(11)
    sql, ref = SqliteStore(tmp_path / "sql"), SqliteStore(tmp_path / "ref")
    try:
        # half the catalog has a category, so both kinds of subjects occur
        catalog = [
            {"item_id": f"it{i}", "title": f"Item {i}", "category": ("shoes", "bags")[i % 2] if i < 5 else ""} for i in range(10)
        ]
        for storage in (sql, ref):
            storage.upsert_items(catalog, RECEIVED)
        for _ in range(4):
            batch = random_events(rng, 150)
            for storage in (sql, ref):  # ingest normalizes the dicts it is given: a copy each
                assert storage.ingest(copy.deepcopy(batch), "test", RECEIVED).accepted > 100
            while True:
                folded = sql.refresh_marts(limit=37)
                assert python_refresh(ref, 37) == folded
                if not folded:
                    break
            assert stored(sql) == stored(ref)
        features = stored(sql)[0]
        assert any(v[7] for v in features.values()) and any(not v[7] for v in features.values())
        assert any(v[5] for v in features.values())  # revenue from purchases
        linked = sql.warehouse.execute(
            "SELECT count(*) FROM (SELECT anonymous_id FROM identities GROUP BY anonymous_id HAVING count(*) > 1)"
        ).fetchone()[0]
        assert linked >= 1  # an anonymous id linked to two users: its events count for both
    finally:
        sql.close()
        ref.close()
