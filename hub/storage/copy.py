"""Copy a SQLite hub's tiers into an empty PostgreSQL database: how a deployment moves
from one hub to several (``p13n storage copy --to URL``).

Everything the hub keeps in its SQLite files goes across in one transaction, by
``COPY``: the lake day files, the warehouse's events (in arrival order), users,
identities, consent records, suppressions, items, dead letters, counters, CRM state,
and the erasure and training ledgers. The marts are not copied: the PostgreSQL store
folds them again from the copied events (linking each visitor to the users known now),
before the command returns. The source is opened read-only; stop its hub first, so no
batch arrives between the copy and the switch. A database that already holds events
is refused: the copy never merges two histories.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.ingest.batch import EVENT_COLUMNS
from hub.storage.interface import StoreUnreadable

#: (table, columns in both schemas, ORDER BY in SQLite) copied from the warehouse file.
WAREHOUSE = (
    ("events", EVENT_COLUMNS, "rowid"),
    ("users", ("user_id", "first_seen", "last_seen", "attributes", "pii"), "user_id"),
    ("identities", ("anonymous_id", "user_id", "first_seen"), "anonymous_id, user_id"),
    ("consent_log", ("event_id", "subject", "categories", "source", "edge", "ts", "received_at", "tcf"), "rowid"),
    ("suppressions", ("token", "created"), "rowid"),
    (
        "items",
        ("item_id", "title", "description", "tags", "category", "price_minor", "currency", "url", "updated"),
        "item_id",
    ),
    ("dead_letters", ("received_at", "source", "reason", "detail", "raw", "subjects"), "id"),
    ("crm_state", ("name", "value"), "name"),
    (
        "erasures",
        ("request_id", "tokens", "requested_at", "requested_by", "edges", "hub", "completed_at", "work", "published"),
        "requested_at",
    ),
    ("erasure_acks", ("request_id", "edge_id", "acked_at", "deleted"), "request_id, edge_id"),
    ("training_runs", ("id", "started_at", "status", "doc"), "started_at"),
)
#: The writer name the copied counters are kept under.
COPIED = "copied-from-sqlite"


def _rows(db: sqlite3.Connection, sql: str) -> Iterator[tuple[Any, ...]]:
    cursor = db.execute(sql)
    while batch := cursor.fetchmany(10_000):
        yield from batch


def _copy(cur: Any, statement: str, rows: Iterator[tuple[Any, ...]], prefix: tuple[Any, ...] = ()) -> int:
    """``COPY … FROM STDIN`` of ``rows`` (each after ``prefix``); how many."""
    written = 0
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row((*prefix, *row))
            written += 1
    return written


def copy_to_postgres(data_dir: Path, database_url: str) -> dict[str, int]:
    """Copy the SQLite tiers under ``data_dir`` into the PostgreSQL database; rows per
    table copied (``lake.raw_events``, ``warehouse.<table>``) and ``marts.folded``."""
    from hub.storage.postgres import PostgresStore
    from hub.storage.sqlite import LAKE_DIR

    warehouse_path = data_dir / "warehouse.sqlite"
    if not warehouse_path.is_file():
        raise StoreUnreadable(f"no SQLite warehouse at {warehouse_path}")
    source = sqlite3.connect(f"file:{warehouse_path}?mode=ro", uri=True)
    target = PostgresStore(database_url)  # creates the schema
    counts: dict[str, int] = {}
    try:
        present = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with target.writing() as db, db.cursor() as cur:
            held = cur.execute("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM lake_events)").fetchone()
            if held and held[0]:
                raise StoreUnreadable(
                    f"the PostgreSQL database already holds {held[0]} events and lake rows: copy into an empty one"
                )
            for table, columns, order in WAREHOUSE:
                if table not in present:  # a ledger the hub never opened
                    continue
                names = ", ".join(columns)
                counts[f"warehouse.{table}"] = _copy(
                    cur, f"COPY {table} ({names}) FROM STDIN", _rows(source, f"SELECT {names} FROM {table} ORDER BY {order}")
                )
            for name, value in source.execute("SELECT name, value FROM counters"):
                cur.execute("INSERT INTO counters VALUES (%s, %s, %s)", (name, COPIED, int(value)))
            lake_rows = 0
            for path in sorted((data_dir / LAKE_DIR).glob("events-*.sqlite")):
                day = path.stem.removeprefix("events-")
                lake = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    n = _copy(
                        cur,
                        "COPY lake_events (day, event_id, received_at, edge, body) FROM STDIN",
                        _rows(lake, "SELECT event_id, received_at, edge, body FROM raw_events ORDER BY rowid"),
                        (day,),
                    )
                except sqlite3.OperationalError:  # created but never written
                    n = 0
                finally:
                    lake.close()
                if n:
                    target.lake_changed(cur, day, n)
                lake_rows += n
            counts["lake.raw_events"] = lake_rows
        folded = 0
        while step := target.refresh_marts():
            folded += step
        counts["marts.folded"] = folded
    finally:
        source.close()
        target.close()
    return counts
