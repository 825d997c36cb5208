"""The hub's storage tiers on SQLite (schema through sqlite-utils, bulk writes through
``executemany``): :class:`SqliteStore` implements :class:`hub.storage.HubStore`, with
its subjects, erasure ledger, retention, key rotation and reads in the ``sqlite_*``
modules beside it.

* **lake** — ``lake/events-YYYY-MM-DD.sqlite``: raw accepted events, one file per UTC
  day of receipt, so retention drops whole files.
* **warehouse** — ``warehouse.sqlite``: normalized ``events`` (primary key
  ``event_id``: the deduplication), ``users``, ``items``, ``identities``,
  ``dead_letters`` (reason + raw payload: nothing disappears) and ``counters``.
* **marts** — ``marts.sqlite``: ``user_features`` and ``item_popularity``, refreshed
  incrementally from the warehouse by a rowid watermark kept in the same transaction.

A batch commits the lake first, then the warehouse (with its counters); a crash
between the two is repaired by redelivery: the lake ignores the duplicate, the
warehouse takes the event. Deduplication is the primary key of each tier (``INSERT OR
IGNORE``; the changes count tells the duplicates apart). Every event therefore lands
once in the warehouse and once in its day's lake file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from hub.experiments.metrics import Metric
from hub.ingest.batch import (
    EVENT_COLUMNS,
    IngestReport,
    LakeRow,
    PreparedBatch,
    Row,
    prepare_batch,
)
from hub.personal import seal_payload
from hub.pii import PiiCipher
from hub.storage import (
    sqlite_bandits,
    sqlite_console,
    sqlite_experiments,
    sqlite_reads,
    sqlite_rekey,
    sqlite_retention,
    sqlite_subjects,
    sqlite_training,
)
from hub.storage.common import consent_log_rows, drop_suppressed_rows, identity_rows, subject_tokens, user_rows
from hub.storage.interface import (
    ExperimentData,
    ExperimentSummary,
    RekeyReport,
    RetentionCutoffs,
    StoreUnreadable,
    SubjectIds,
    TrainingRows,
)
from hub.storage.sqlite_erasures import SqliteErasureLedger
from hub.storage.sqlite_training_runs import SqliteTrainingLedger
from models.erasure import Tokenizer
from models.weights import EVENT_WEIGHTS

_INSERT_EVENT = f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
#: Mart weights per event type (views count 1 … purchases 8), as in training.
MART_WEIGHTS = {k: int(EVENT_WEIGHTS[k]) for k in ("page_view", "click", "add_to_cart", "purchase")}
_CHUNK = 900  # SQLite's default limit on host parameters is 999
#: Event type → the user_features counter it increments.
_MART_COUNTS = {"page_view": "views", "click": "clicks", "scroll": "scrolls", "add_to_cart": "carts", "purchase": "purchases"}


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    # deleted rows are overwritten, not left in free pages: an erasure leaves nothing behind
    db.execute("PRAGMA secure_delete=ON")
    return db


#: The lake's directory under the hub's data directory.
LAKE_DIR = "lake"
_LAKE_TABLE = "CREATE TABLE IF NOT EXISTS raw_events (event_id TEXT PRIMARY KEY, received_at TEXT, edge TEXT, body TEXT)"


def open_lake(path: Path) -> sqlite3.Connection:
    """A connection to one day's lake file (created with its table when new)."""
    db = _connect(path)
    db.execute(_LAKE_TABLE)
    return db


#: This process's open lake files for :func:`append_lake`, (directory, day) →
#: connection; the last few only.
_WORKER_LAKES: OrderedDict[tuple[Path, str], sqlite3.Connection] = OrderedDict()


def append_lake(lake_dir: Path, day: str, rows: Sequence[LakeRow]) -> None:
    """Append rows to ``day``'s lake file from a preparation worker (``hub.ingest.prep``),
    keeping today's and yesterday's files open (retention may remove older ones)."""
    key = (lake_dir, day)
    db = _WORKER_LAKES.get(key)
    if db is None:
        db = _WORKER_LAKES[key] = open_lake(lake_dir / f"events-{day}.sqlite")
        while len(_WORKER_LAKES) > 2:
            _WORKER_LAKES.popitem(last=False)[1].close()
    write_lake(db, rows)


def read_lake_day(path: Path, batch_rows: int) -> Iterator[list[LakeRow]]:
    """One lake day file's rows (event_id, received_at, edge, body) in the order they were
    stored, ``batch_rows`` at a time, read-only (the Parquet mirror: hub/lake_parquet.py)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = db.execute("SELECT event_id, received_at, edge, body FROM raw_events ORDER BY rowid")
        while rows := cursor.fetchmany(batch_rows):
            yield rows
    finally:
        db.close()


def write_lake(db: sqlite3.Connection, rows: Sequence[LakeRow]) -> None:
    """Append rows to a lake file in one transaction; a known event id is ignored
    (a redelivered batch), so every event is in its day's file once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR IGNORE INTO raw_events VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class SqliteStore:
    """Lake, warehouse and marts under ``data_dir``. One writer; ``close()`` is idempotent."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lake_dir = data_dir / LAKE_DIR
        self.lake_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.warehouse = _connect(data_dir / "warehouse.sqlite")
        self.marts = _connect(data_dir / "marts.sqlite")
        self._lakes: OrderedDict[str, sqlite3.Connection] = OrderedDict()
        #: Erasure tokens of erased subjects (their late events are dropped) and the
        #: tokenizer that names incoming events' subjects; set by the hub (``suppress``).
        self.suppressed: set[str] = set()
        self.tokenizer: Tokenizer | None = None
        #: Seals personal data (identify traits, dead letters) before it is stored.
        self.cipher: PiiCipher | None = None
        self._suppression_version = 0
        self._create_schema()
        # the marts refresh aggregates warehouse events straight into the marts file
        self.warehouse.execute("ATTACH DATABASE ? AS marts", (str(data_dir / "marts.sqlite"),))
        self.warehouse.execute("PRAGMA marts.secure_delete=ON")
        if self._exposures_new:  # a warehouse from before the exposures mart: fold what the marts already saw
            sqlite_experiments.backfill_exposures(self.warehouse)
        self.warehouse.execute(
            "CREATE TEMP TABLE IF NOT EXISTS mart_rows (type TEXT, subject TEXT, item_id TEXT, amount_minor INTEGER, ts TEXT, category TEXT)"
        )
        self.warehouse.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bandit_seen (kind INTEGER, unit TEXT, variant TEXT, first_jd REAL)"
        )
        self.warehouse.execute("CREATE TEMP TABLE IF NOT EXISTS bandit_links (visitor TEXT, user_id TEXT)")
        self.suppressed = {r[0] for r in self.warehouse.execute("SELECT token FROM suppressions")}
        self._erasures = SqliteErasureLedger(self)
        self._training_runs = SqliteTrainingLedger(self)

    @property
    def lock(self) -> threading.RLock:
        """The writer lock: hold it for any write outside :meth:`ingest`."""
        return self._lock

    # ------------------------------------------------------------------ schema
    def _create_schema(self) -> None:
        wh = sqlite_utils.Database(self.warehouse)
        wh.table("events").create(
            {c: (int if c == "amount_minor" else str) for c in EVENT_COLUMNS}, pk="event_id", if_not_exists=True
        )
        # erasure and stitching look-ups; no more on the hot insert path. Most events are
        # anonymous, so the user index is partial: NULLs cost nothing (the planner uses it
        # for user_id = ? and IN (...), which imply NOT NULL)
        wh.table("events").create_index(["anonymous_id"], if_not_exists=True)
        user_index = wh.execute("SELECT sql FROM sqlite_master WHERE name = 'idx_events_user_id'").fetchone()
        if user_index is not None and "WHERE" not in (user_index[0] or ""):
            wh.execute("DROP INDEX idx_events_user_id")  # an index from before: rebuilt partial, once
        wh.execute("CREATE INDEX IF NOT EXISTS idx_events_user_id ON events (user_id) WHERE user_id IS NOT NULL")
        for index in sqlite_experiments.INDEXES:  # experiment analysis (hub/storage/sqlite_experiments.py)
            wh.execute(index)
        wh.table("users").create(
            {"user_id": str, "first_seen": str, "last_seen": str, "attributes": str, "pii": str}, pk="user_id", if_not_exists=True
        )
        if "pii" not in wh.table("users").columns_dict:  # databases from before encryption at rest
            wh.execute("ALTER TABLE users ADD COLUMN pii TEXT")
        # proof of every consent choice: what, when, where from (kept beyond event retention)
        wh.table("consent_log").create(
            {"event_id": str, "subject": str, "categories": str, "source": str, "edge": str, "ts": str, "received_at": str},
            pk="event_id",
            if_not_exists=True,
        )
        wh.table("consent_log").create_index(["subject"], if_not_exists=True)
        if "tcf" not in wh.table("consent_log").columns_dict:  # the CMP's record (TCF), for audit
            wh.execute("ALTER TABLE consent_log ADD COLUMN tcf TEXT NOT NULL DEFAULT ''")
        wh.table("suppressions").create({"token": str, "created": str}, pk="token", if_not_exists=True)
        wh.table("identities").create(
            {"anonymous_id": str, "user_id": str, "first_seen": str}, pk=("anonymous_id", "user_id"), if_not_exists=True
        )
        wh.table("identities").create_index(["user_id"], if_not_exists=True)
        wh.table("items").create(
            {
                "item_id": str,
                "title": str,
                "description": str,
                "tags": str,
                "category": str,
                "price_minor": int,
                "currency": str,
                "url": str,
                "updated": str,
            },
            pk="item_id",
            if_not_exists=True,
        )
        wh.table("dead_letters").create(
            {"id": int, "received_at": str, "source": str, "reason": str, "detail": str, "raw": str}, pk="id", if_not_exists=True
        )
        wh.table("dead_letters").create_index(["reason"], if_not_exists=True)
        if "subjects" not in wh.table("dead_letters").columns_dict:  # erasure tokens of the ids a payload names
            wh.table("dead_letters").add_column("subjects", str)
        wh.table("counters").create({"name": str, "value": int}, pk="name", if_not_exists=True)
        wh.table("crm_state").create({"name": str, "value": str}, pk="name", if_not_exists=True)
        marts = sqlite_utils.Database(self.marts)
        marts.table("user_features").create(
            {
                "subject": str,
                "views": int,
                "clicks": int,
                "scrolls": int,
                "carts": int,
                "purchases": int,
                "revenue_minor": int,
                "last_ts": str,
                "category_views": str,
            },
            pk="subject",
            if_not_exists=True,
        )
        marts.table("item_popularity").create(
            {"item_id": str, "views": int, "clicks": int, "carts": int, "purchases": int, "score": int},
            pk="item_id",
            if_not_exists=True,
        )
        marts.table("item_popularity").create_index(["score"], if_not_exists=True)
        marts.table("watermarks").create({"name": str, "rowid": int}, pk="name", if_not_exists=True)
        self._exposures_new = "exposures" not in marts.table_names()
        marts.execute(sqlite_experiments.EXPOSURES_MART)
        for statement in sqlite_bandits.SCHEMA:
            marts.execute(statement)

    def lake(self, day: str) -> sqlite3.Connection:
        db = self._lakes.get(day)
        if db is None:
            db = self._lakes[day] = open_lake(self.lake_dir / f"events-{day}.sqlite")
            while len(self._lakes) > 3:  # keep the most recently used few (today's, yesterday's) open
                stale = next(d for d in self._lakes if d != day)
                self._lakes.pop(stale).close()
        else:
            self._lakes.move_to_end(day)
        return db

    def drop_lake_day(self, day: str) -> None:
        """Remove one day's lake file (retention drops whole days)."""
        with self._lock:
            db = self._lakes.pop(day, None)
            if db is not None:
                db.close()
            for suffix in ("", "-wal", "-shm"):
                (self.lake_dir / f"events-{day}.sqlite{suffix}").unlink(missing_ok=True)

    # ------------------------------------------------------------------ ingest
    def ingest(self, events: Sequence[Any], source: str, received_at: str) -> IngestReport:
        """Validate, deduplicate, normalize and store one batch."""
        return self.commit(self.prepare(events, source, received_at))

    def prepare(self, events: Sequence[Any], source: str, received_at: str, results: bool = True) -> PreparedBatch:
        """Validate and normalize one batch: CPU only, no database. The consumer runs it
        in worker processes (``hub.ingest.prep``) while the previous batch commits.
        ``results=False`` skips the per-event answers only the HTTP API returns."""
        return prepare_batch(events, source, received_at, results, self._suppression_version, self._is_suppressed, self.cipher)

    def commit(self, batch: PreparedBatch) -> IngestReport:
        """Store a prepared batch: lake, then warehouse with its counters. Thread: the writer's."""
        report = batch.report
        with self._lock:
            if self.suppressed and batch.suppression_version != self._suppression_version:
                self._drop_suppressed(batch)  # prepared elsewhere, or an erasure came in between
            rows = batch.rows
            for day, lake_rows in batch.lake.items():
                write_lake(self.lake(day), lake_rows)
            wh = self.warehouse
            wh.execute("BEGIN IMMEDIATE")
            try:
                before = wh.total_changes
                # the primary key deduplicates: a known event_id is ignored, and counted
                wh.executemany(_INSERT_EVENT, rows)
                inserted = wh.total_changes - before
                report.duplicates = len(rows) - inserted
                self._identities(rows)
                self._consent_log(rows)
                if batch.dead_rows:
                    wh.executemany(
                        "INSERT INTO dead_letters (received_at, source, reason, detail, raw, subjects) VALUES (?, ?, ?, ?, ?, ?)",
                        [(*row[:5], subject_tokens(self.tokenizer, row[5])) for row in batch.dead_rows],
                    )
                counts = {
                    "received": report.received,
                    "accepted": inserted,
                    "duplicates": report.duplicates,
                    "suppressed": report.suppressed,
                }
                counts.update({f"dead:{reason}": n for reason, n in report.dead.items()})
                wh.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    [(k, v) for k, v in counts.items() if v],
                )
                wh.execute("COMMIT")
            except BaseException:
                wh.execute("ROLLBACK")
                raise
        report.accepted = inserted
        return report

    def _drop_suppressed(self, batch: PreparedBatch) -> None:
        dropped = drop_suppressed_rows(batch, self.tokenizer, self.suppressed)
        if not dropped:
            return
        for day, ids in batch.lake_written.items():
            # a worker stored these before the subject was erased: take them out again
            # (the erasure itself found no warehouse twin to lead it to them)
            gone = [i for i in ids if i in dropped]
            if gone:
                lake = self.lake(day)
                lake.execute("BEGIN IMMEDIATE")
                for s in range(0, len(gone), _CHUNK):
                    chunk = gone[s : s + _CHUNK]
                    lake.execute(f"DELETE FROM raw_events WHERE event_id IN ({','.join('?' * len(chunk))})", chunk)
                lake.execute("COMMIT")
                lake.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        batch.report.suppressed += len(dropped)

    def _identities(self, rows: Iterable[Row]) -> None:
        links = identity_rows(rows)
        users = user_rows(rows)
        if links:
            self.warehouse.executemany(
                "INSERT INTO identities VALUES (?, ?, ?) ON CONFLICT (anonymous_id, user_id) "
                "DO UPDATE SET first_seen = min(first_seen, excluded.first_seen)",
                links,
            )
        if users:
            self.warehouse.executemany(
                "INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET "
                "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)",
                users,
            )

    def _is_suppressed(self, event: dict[str, Any]) -> bool:
        tokenizer = self.tokenizer
        return tokenizer is not None and tokenizer.any_in((event.get("user_id"), event.get("anonymous_id")), self.suppressed)

    def _consent_log(self, rows: Iterable[Row]) -> None:
        log_rows = consent_log_rows(rows)
        if log_rows:
            self.warehouse.executemany(
                "INSERT OR IGNORE INTO consent_log (event_id, subject, categories, source, edge, ts, received_at, tcf) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                log_rows,
            )

    def suppress(self, tokens: Iterable[str], now: str) -> None:
        """Record erasure tokens: events of those subjects are dropped from now on."""
        new = [t for t in tokens if t not in self.suppressed]
        with self._lock:
            self.warehouse.executemany("INSERT OR IGNORE INTO suppressions VALUES (?, ?)", [(t, now) for t in new])
            self.suppressed.update(new)
            self._suppression_version += 1

    def writable(self) -> bool:
        """True when the warehouse takes a write (a commit of one counter): tells a
        poison message (fails alone while storage works) from a storage failure."""
        try:
            with self._lock:
                wh = self.warehouse
                wh.execute("BEGIN IMMEDIATE")
                try:
                    wh.execute(
                        "INSERT INTO counters (name, value) VALUES ('writer_probes', 1) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + 1"
                    )
                    wh.execute("COMMIT")
                except BaseException:
                    wh.execute("ROLLBACK")
                    raise
            return True
        except sqlite3.Error:
            return False

    def dead_letter_raw(self, payloads: Sequence[bytes], reason: str, received_at: str) -> None:
        """Keep payloads that were not even a JSON array of events."""
        with self._lock:
            wh = self.warehouse
            wh.execute("BEGIN IMMEDIATE")
            cipher = self.cipher
            wh.executemany(
                "INSERT INTO dead_letters (received_at, source, reason, detail, raw, subjects) VALUES (?, 'nats', ?, '', ?, '')",
                [
                    (received_at, reason, seal_payload(text, cipher) if cipher else text)
                    for text in (p.decode("utf-8", "replace") for p in payloads)
                ],
            )
            wh.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (f"dead:{reason}", len(payloads)),
            )
            wh.execute("COMMIT")

    # ------------------------------------------------------------------ marts
    def events_deleted(self) -> None:
        """Call after deleting warehouse events (erasure, retention). SQLite numbers a
        new row max(rowid) + 1, so once the newest events are gone the next ones reuse
        rowids the marts watermark has already passed: lower it to the newest remaining
        event (nothing above it exists, so nothing is folded twice)."""
        with self._lock:
            top = self.warehouse.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
            self.marts.execute("UPDATE watermarks SET rowid = min(rowid, ?) WHERE name = 'events'", (top,))
            self.marts.execute("UPDATE bandit_marks SET rowid = min(rowid, ?)", (top,))

    def refresh_marts(self, limit: int = 200_000) -> int:
        """Fold warehouse events past the watermark into the marts; returns the event rows
        folded (an event counts once per identity its anonymous id is linked to).

        The aggregation runs in SQLite (the marts are attached to the warehouse
        connection), so it costs the writer no Python per event: only subjects whose
        events carry a category have their JSON category counts merged here."""
        with self._lock:
            wh = self.warehouse
            row = wh.execute("SELECT rowid FROM marts.watermarks WHERE name = 'events'").fetchone()
            mark = int(row[0]) if row else 0
            top = wh.execute(
                "SELECT max(rowid) FROM (SELECT rowid FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?)", (mark, limit)
            ).fetchone()[0]
            if top is None:
                return 0
            wh.execute("BEGIN")
            try:
                wh.execute("DELETE FROM temp.mart_rows")
                folded = wh.execute(
                    "INSERT INTO temp.mart_rows SELECT e.type, coalesce(i.user_id, e.user_id, e.anonymous_id), e.item_id, "
                    "e.amount_minor, e.ts, it.category FROM events e "
                    "LEFT JOIN identities i ON i.anonymous_id = e.anonymous_id AND e.user_id IS NULL "
                    "LEFT JOIN items it ON it.item_id = e.item_id WHERE e.rowid > ? AND e.rowid <= ?",
                    (mark, top),
                ).rowcount
                wh.execute(
                    "INSERT INTO marts.user_features SELECT subject, sum(type = 'page_view'), sum(type = 'click'), "
                    "sum(type = 'scroll'), sum(type = 'add_to_cart'), sum(type = 'purchase'), "
                    "sum(CASE WHEN type = 'purchase' AND amount_minor THEN amount_minor ELSE 0 END), max(ts), '{}' "
                    "FROM temp.mart_rows WHERE subject IS NOT NULL AND subject != '' GROUP BY subject "
                    "ON CONFLICT(subject) DO UPDATE SET views = views + excluded.views, clicks = clicks + excluded.clicks, "
                    "scrolls = scrolls + excluded.scrolls, carts = carts + excluded.carts, "
                    "purchases = purchases + excluded.purchases, revenue_minor = revenue_minor + excluded.revenue_minor, "
                    "last_ts = max(last_ts, excluded.last_ts)"
                )
                self._merge_category_views()
                w = MART_WEIGHTS
                wh.execute(
                    "INSERT INTO marts.item_popularity SELECT item_id, sum(type = 'page_view'), sum(type = 'click'), "
                    "sum(type = 'add_to_cart'), sum(type = 'purchase'), sum(CASE type WHEN 'page_view' THEN ? "
                    "WHEN 'click' THEN ? WHEN 'add_to_cart' THEN ? ELSE ? END) FROM temp.mart_rows "
                    "WHERE item_id IS NOT NULL AND item_id != '' AND type IN ('page_view', 'click', 'add_to_cart', 'purchase') "
                    "GROUP BY item_id ON CONFLICT(item_id) DO UPDATE SET views = views + excluded.views, "
                    "clicks = clicks + excluded.clicks, carts = carts + excluded.carts, "
                    "purchases = purchases + excluded.purchases, score = score + excluded.score",
                    (w["page_view"], w["click"], w["add_to_cart"], w["purchase"]),
                )
                wh.execute(sqlite_experiments.FOLD_EXPOSURES, (mark, top))
                wh.execute(
                    "INSERT INTO marts.watermarks VALUES ('events', ?) ON CONFLICT(name) DO UPDATE SET rowid = excluded.rowid",
                    (top,),
                )
                wh.execute("DELETE FROM temp.mart_rows")
                wh.execute("COMMIT")
            except BaseException:
                wh.execute("ROLLBACK")
                raise
            return int(folded)

    def _merge_category_views(self) -> None:
        """Add this fold's per-category counts to each subject's JSON map."""
        wh = self.warehouse
        counts: dict[str, Counter[str]] = {}
        for subject, category, n in wh.execute(
            "SELECT subject, category, count(*) FROM temp.mart_rows WHERE subject IS NOT NULL AND subject != '' "
            "AND category IS NOT NULL AND category != '' GROUP BY subject, category"
        ):
            counts.setdefault(subject, Counter())[category] += n
        if not counts:
            return
        subjects = list(counts)
        updates = []
        for s in range(0, len(subjects), _CHUNK):
            chunk = subjects[s : s + _CHUNK]
            for subject, current in wh.execute(
                f"SELECT subject, category_views FROM marts.user_features WHERE subject IN ({','.join('?' * len(chunk))})", chunk
            ):
                merged = Counter(orjson.loads(current)) if current else Counter()
                merged.update(counts[subject])
                updates.append((orjson.dumps(merged).decode(), subject))
        wh.executemany("UPDATE marts.user_features SET category_views = ? WHERE subject = ?", updates)

    # ------------------------------------------------------------------ catalog
    def upsert_items(self, items: Sequence[dict[str, Any]], now: str) -> int:
        with self._lock:
            db = sqlite_utils.Database(self.warehouse)
            db.table("items").upsert_all([{**i, "updated": now} for i in items], pk="item_id")
            return len(items)

    # ------------------------------------------------------------------ CRM
    def crm_state(self) -> dict[str, str]:
        with self._lock:
            return {r[0]: r[1] for r in self.warehouse.execute("SELECT name, value FROM crm_state")}

    def set_crm_state(self, values: dict[str, str]) -> None:
        with self._lock:
            self.warehouse.executemany(
                "INSERT INTO crm_state VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", list(values.items())
            )

    def upsert_crm_users(self, rows: Sequence[tuple[str, str, str, str | None]]) -> int:
        """(pseudonym, seen time, attributes JSON, encrypted PII or None): the CRM's
        attributes replace the previous ones. Erased (suppressed) subjects are skipped;
        returns the rows stored."""
        keep = [r for r in rows if not (self.suppressed and self.tokenizer and self.tokenizer(r[0]) in self.suppressed)]
        with self._lock:
            self.warehouse.execute("BEGIN IMMEDIATE")
            self.warehouse.executemany(
                "INSERT INTO users (user_id, first_seen, last_seen, attributes, pii) VALUES (?1, ?2, ?2, ?3, ?4) "
                "ON CONFLICT(user_id) DO UPDATE SET attributes = excluded.attributes, pii = excluded.pii, "
                "last_seen = max(last_seen, excluded.last_seen)",
                keep,
            )
            self.warehouse.execute("COMMIT")
        return len(keep)

    # ------------------------------------------------------------------ subjects
    def resolve_subject(self, given: str, key: bytes) -> SubjectIds:
        return sqlite_subjects.resolve(self, given, key)

    def erase_subject(self, subject: SubjectIds) -> dict[str, int]:
        return sqlite_subjects.erase(self, subject)

    def export_subject(self, subject: SubjectIds, cipher: PiiCipher) -> dict[str, Any]:
        return sqlite_subjects.export(self, subject, cipher)

    @property
    def erasures(self) -> SqliteErasureLedger:
        return self._erasures

    @property
    def training_runs(self) -> SqliteTrainingLedger:
        return self._training_runs

    # ------------------------------------------------------------------ retention, keys
    def delete_expired(self, cutoffs: RetentionCutoffs) -> dict[str, int]:
        return sqlite_retention.delete_expired(self, cutoffs)

    def rekey(self, cipher: PiiCipher) -> RekeyReport:
        return sqlite_rekey.rekey(self, cipher)

    # ------------------------------------------------------------------ reads
    def consent_by_subject(self) -> dict[str, bool]:
        return sqlite_reads.consent_by_subject(self)

    def profiles(self, subjects: list[str]) -> dict[str, dict[str, Any]]:
        return sqlite_reads.profiles(self, subjects)

    def top_items(self, limit: int) -> list[dict[str, Any]]:
        return sqlite_reads.top_items(self, limit)

    def experiments(self) -> list[ExperimentSummary]:
        return sqlite_experiments.experiments(self)

    def dead_letters(self, samples: int = 3) -> list[dict[str, Any]]:
        return sqlite_console.dead_letters(self, samples)

    def replay_dead_letters(self, reason: str, limit: int = 10_000) -> dict[str, int]:
        return sqlite_console.replay_dead_letters(self, reason, limit)

    def consent_by_day(self, days: int = 14) -> list[dict[str, Any]]:
        return sqlite_console.consent_by_day(self, days)

    def marts_lag(self) -> dict[str, Any]:
        return sqlite_console.marts_lag(self)

    def experiment(self, name: str, metrics: Sequence[Metric]) -> ExperimentData:
        return sqlite_experiments.experiment(self, name, metrics)

    def bandit_evidence(self, name: str, metric: Metric) -> dict[str, tuple[int, int]]:
        return sqlite_bandits.bandit_evidence(self, name, metric)

    def training_rows(self, since: str) -> TrainingRows:
        try:
            return sqlite_training.training_rows(self, since)
        except sqlite3.DatabaseError as e:  # a page of the warehouse is corrupt
            raise StoreUnreadable(f"{self.data_dir / 'warehouse.sqlite'}: {e}") from e

    def reader(self, path: Path) -> sqlite3.Connection:
        """A separate read-only connection: WAL readers never wait for the writer."""
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def counters(self) -> dict[str, int]:
        db = self.reader(self.data_dir / "warehouse.sqlite")
        try:
            return {r[0]: int(r[1]) for r in db.execute("SELECT name, value FROM counters")}
        finally:
            db.close()

    def table_rows(self) -> dict[str, int]:
        """Rows per table of every tier (read connections; the ingest keeps writing)."""
        out: dict[str, int] = {}
        wh = self.reader(self.data_dir / "warehouse.sqlite")
        marts = self.reader(self.data_dir / "marts.sqlite")
        try:
            for t in ("events", "users", "identities", "items", "dead_letters"):
                out[f"warehouse.{t}"] = int(wh.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in ("user_features", "item_popularity"):
                out[f"marts.{t}"] = int(marts.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        finally:
            wh.close()
            marts.close()
        lake_rows = unreadable = 0
        files = sorted(self.lake_dir.glob("events-*.sqlite"))
        for path in files:
            try:
                db = self.reader(path)
            except sqlite3.Error:  # a damaged day file: counted, never a failed answer
                unreadable += 1
                continue
            try:
                lake_rows += int(db.execute("SELECT count(*) FROM raw_events").fetchone()[0])
            except sqlite3.OperationalError:  # created but not yet written
                pass
            finally:
                db.close()
        out["lake.raw_events"] = lake_rows
        out["lake.files"] = len(files)
        out["lake.unreadable_files"] = unreadable
        return out

    def close(self) -> None:
        with self._lock:
            for db in (self.warehouse, self.marts, *self._lakes.values()):
                try:
                    db.close()
                except sqlite3.Error:
                    pass
            self._lakes.clear()
