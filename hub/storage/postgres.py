"""The hub's storage tiers on PostgreSQL (``P13N_HUB_DATABASE_URL``), so several hub
processes, on one machine or many, share one lake, warehouse and marts.
:class:`PostgresStore` implements :class:`hub.storage.HubStore`; its subjects, erasure
ledger, retention, key rotation, experiments and reads are in the ``postgres_*``
modules beside it. One database holds the three tiers as tables:

* **lake** — ``lake_events``: raw accepted events keyed by (UTC day of receipt, event
  id), as the SQLite lake keeps one file per day; retention deletes whole days.
  ``lake_changes`` counts each day's inserts and deletions per writer (the Parquet
  mirror rewrites a day whose count moved: hub/lake_parquet.py).
* **warehouse** — ``events`` (primary key ``event_id``: the deduplication), ``users``,
  ``items``, ``identities``, ``consent_log``, ``dead_letters``, ``counters`` and the
  ledgers.
* **marts** — ``user_features``, ``item_popularity``, ``exposures``, ``bandit_units``.

**Ingest.** A batch is copied (``COPY``) into temporary tables and moved into the lake
and the warehouse by ``INSERT … SELECT … ORDER BY event_id ON CONFLICT DO NOTHING``, in
one transaction. Two hubs inserting the same event id at once: the second waits for
the first's transaction and then skips the row (PostgreSQL's speculative insertion),
so every event is stored once whoever consumed it; rows go in key order, so two
batches sharing ids never deadlock. Counters are kept per writer (``counters`` rows
keyed by name and writer, summed when read): writers never wait on one hot row.

**Marts watermark.** Rows carry the id of the transaction that inserted them
(``txid``). Concurrent writers commit out of order, so a watermark on a row sequence
would skip a row committed late with a lower number. The refresh instead folds the
rows whose transaction id lies between the last watermark and the oldest transaction
still running (``pg_snapshot_xmin``): every transaction below it has finished, so each
row is folded exactly once, and a transaction still open is folded next time.

**Erasure ordering.** A commit holds a shared advisory lock while it reads new erasure
tokens and inserts; recording tokens takes it exclusively. Once :meth:`suppress`
returns, no hub process stores an event of those subjects, so the erasure that follows
finds every one of them.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from hub.experiments.metrics import Metric
from hub.ingest.batch import EVENT_COLUMNS, IngestReport, LakeRow, PreparedBatch, prepare_batch
from hub.personal import seal_payload
from hub.pii import PiiCipher
from hub.storage import (
    postgres_console,
    postgres_experiments,
    postgres_ledgers,
    postgres_reads,
    postgres_rekey,
    postgres_retention,
    postgres_subjects,
    redact_database_url,
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
from hub.storage.postgres_ledgers import PostgresErasureLedger, PostgresTrainingLedger
from hub.storage.sqlite import MART_WEIGHTS
from models.erasure import Tokenizer

#: Advisory lock keys (``pg_advisory_*``), one per kind of exclusion.
SCHEMA_LOCK, SUPPRESS_LOCK, MARTS_LOCK = 0x7031336E01, 0x7031336E02, 0x7031336E03
#: This transaction's id, as a bigint (what ``events.txid`` holds).
TXID = "pg_current_xact_id()::text::bigint"
#: The oldest transaction still running: every smaller id has finished.
XMIN = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"

_EVENT_DDL = ", ".join(f"{c} {'bigint' if c == 'amount_minor' else 'text'}" for c in EVENT_COLUMNS)
_COLS = ", ".join(EVENT_COLUMNS)

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS events ({_EVENT_DDL}, seq bigint GENERATED ALWAYS AS IDENTITY, "
    f"txid bigint NOT NULL DEFAULT ({TXID}), PRIMARY KEY (event_id))",
    "CREATE INDEX IF NOT EXISTS idx_events_anonymous_id ON events (anonymous_id)",
    "CREATE INDEX IF NOT EXISTS idx_events_user_id ON events (user_id) WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_events_metric ON events (type, anonymous_id, user_id, ts, amount_minor)",
    "CREATE INDEX IF NOT EXISTS idx_events_txid ON events (txid)",
    "CREATE TABLE IF NOT EXISTS users (user_id text PRIMARY KEY, first_seen text, last_seen text, attributes text, pii text)",
    "CREATE TABLE IF NOT EXISTS consent_log (event_id text PRIMARY KEY, subject text, categories text, source text, "
    "edge text, ts text, received_at text, tcf text NOT NULL DEFAULT '')",
    "CREATE INDEX IF NOT EXISTS idx_consent_log_subject ON consent_log (subject)",
    "CREATE TABLE IF NOT EXISTS suppressions (token text PRIMARY KEY, created text, id bigint GENERATED ALWAYS AS IDENTITY)",
    "CREATE INDEX IF NOT EXISTS idx_suppressions_id ON suppressions (id)",  # every commit reads the new ones
    "CREATE TABLE IF NOT EXISTS identities (anonymous_id text, user_id text, first_seen text, PRIMARY KEY (anonymous_id, user_id))",
    "CREATE INDEX IF NOT EXISTS idx_identities_user_id ON identities (user_id)",
    "CREATE TABLE IF NOT EXISTS items (item_id text PRIMARY KEY, title text, description text, tags text, category text, "
    "price_minor bigint, currency text, url text, updated text)",
    "CREATE TABLE IF NOT EXISTS dead_letters (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, received_at text, "
    "source text, reason text, detail text, raw text, subjects text)",
    "CREATE INDEX IF NOT EXISTS idx_dead_letters_reason ON dead_letters (reason)",
    "CREATE TABLE IF NOT EXISTS counters (name text, writer text, value bigint NOT NULL, PRIMARY KEY (name, writer))",
    "CREATE TABLE IF NOT EXISTS crm_state (name text PRIMARY KEY, value text)",
    "CREATE TABLE IF NOT EXISTS lake_events (day text, event_id text, received_at text, edge text, body text, "
    "seq bigint GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (day, event_id))",
    "CREATE TABLE IF NOT EXISTS lake_changes (day text, writer text, changes bigint NOT NULL, PRIMARY KEY (day, writer))",
    "CREATE TABLE IF NOT EXISTS user_features (subject text PRIMARY KEY, views bigint, clicks bigint, scrolls bigint, "
    "carts bigint, purchases bigint, revenue_minor bigint, last_ts text, category_views text)",
    "CREATE TABLE IF NOT EXISTS item_popularity (item_id text PRIMARY KEY, views bigint, clicks bigint, carts bigint, "
    "purchases bigint, score bigint)",
    "CREATE INDEX IF NOT EXISTS idx_item_popularity_score ON item_popularity (score)",
    "CREATE TABLE IF NOT EXISTS watermarks (name text PRIMARY KEY, mark bigint NOT NULL)",
    *postgres_experiments.SCHEMA,
    *postgres_ledgers.SCHEMA,
)

#: Per connection (temporary tables vanish with it): the batch's staging tables.
_SESSION = (
    f"CREATE TEMP TABLE IF NOT EXISTS stage_events ({_EVENT_DDL}) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_lake (event_id text, received_at text, edge text, body text) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS mart_rows (type text, subject text, item_id text, amount_minor bigint, ts text, "
    "category text) ON COMMIT DELETE ROWS",
)
_COUNT = (
    "INSERT INTO counters (name, writer, value) VALUES (%s, %s, %s) "
    "ON CONFLICT (name, writer) DO UPDATE SET value = counters.value + excluded.value"
)


#: How every connection is made: autocommit (transactions are explicit, ``with
#: conn.transaction()``), times in UTC, text as UTF-8 whatever the database's encoding
#: (on a SQL_ASCII database psycopg would otherwise return bytes).
CONNECTION: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": 10,
    "application_name": "p13n-hub",
    "client_encoding": "utf8",
    "options": "-c timezone=UTC",
}
#: Read connections per hub process (API calls, jobs and the console read at once).
READERS = 4


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection as :data:`CONNECTION` says; :class:`StoreUnreadable` when it fails."""
    try:
        return psycopg.Connection.connect(url, **CONNECTION)
    except psycopg.Error as e:
        detail = " ".join(str(e).split())  # libpq's message spans lines
        raise StoreUnreadable(f"PostgreSQL at {redact_database_url(url)}: {detail}") from e


def slice_end(cur: psycopg.Cursor[Any], lo: int, hi: int, rows: int) -> int:
    """The end of a slice of about ``rows`` events from transaction ``lo`` on (before
    ``hi``): a transaction is never cut in two, so the slice ends where the transaction
    of the row past ``rows`` starts, or just after it when it is the first."""
    cut = cur.execute(
        "SELECT txid FROM events WHERE txid >= %s AND txid < %s ORDER BY txid OFFSET %s LIMIT 1", (lo, hi, rows)
    ).fetchone()
    if cut is None:
        return hi
    first = cur.execute("SELECT min(txid) FROM events WHERE txid >= %s AND txid < %s", (lo, hi)).fetchone()
    end = int(cut[0])
    return end + 1 if first is not None and first[0] == end else end


class PostgresStore:
    """Lake, warehouse and marts in one PostgreSQL database; safe for several hub
    processes at once. ``close()`` is idempotent."""

    #: No lake files: the store writes the lake itself, in the batch's transaction.
    lake_dir: Path | None = None

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        #: This process's name among the writers (counters, lake changes are kept per writer).
        self.writer = secrets.token_hex(8)
        #: Held (a session advisory lock) while this store is open: tells other hubs this one is alive.
        self.owner = secrets.randbits(62) + 1
        self.suppressed: set[str] = set()
        self.tokenizer: Tokenizer | None = None
        self.cipher: PiiCipher | None = None
        self._suppression_version = 0
        self._suppression_seen = 0
        self.db = connect(url)
        # opened once the writer connected (a bad URL fails there, with its reason)
        self._readers = ConnectionPool(
            url, kwargs=CONNECTION, min_size=1, max_size=READERS, timeout=10, name="p13n-readers", open=True
        )
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                self.db.execute(statement)
        self._session()
        self._load_suppressions()
        self._erasures = PostgresErasureLedger(self)
        self._training_runs = PostgresTrainingLedger(self)

    def _session(self) -> None:
        for statement in _SESSION:
            self.db.execute(statement)
        self.db.execute("SELECT pg_advisory_lock(%s)", (self.owner,))

    @property
    def lock(self) -> threading.RLock:
        """The writer lock: the writer connection is used by one thread at a time."""
        return self._lock

    @contextmanager
    def writing(self) -> Iterator[psycopg.Connection[Any]]:
        """The writer connection in a transaction (reconnected when it broke)."""
        with self._lock:
            if self.db.closed or self.db.broken:
                self.db = connect(self.url)
                self._session()
            with self.db.transaction():
                yield self.db

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A read connection from the pool (autocommit: each statement sees what is
        committed); several threads read at once."""
        with self._readers.connection() as db:
            yield db

    # ------------------------------------------------------------------ ingest
    def ingest(self, events: Sequence[Any], source: str, received_at: str) -> IngestReport:
        return self.commit(self.prepare(events, source, received_at))

    def prepare(self, events: Sequence[Any], source: str, received_at: str, results: bool = True) -> PreparedBatch:
        return prepare_batch(events, source, received_at, results, self._suppression_version, self._is_suppressed, self.cipher)

    def _is_suppressed(self, event: dict[str, Any]) -> bool:
        tokenizer = self.tokenizer
        return tokenizer is not None and tokenizer.any_in((event.get("user_id"), event.get("anonymous_id")), self.suppressed)

    def _load_suppressions(self, db: psycopg.Connection[Any] | None = None) -> None:
        """Read the erasure tokens recorded since the last read (by any hub process)."""
        conn = db or self.db
        rows = conn.execute("SELECT token, id FROM suppressions WHERE id > %s", (self._suppression_seen,)).fetchall()
        if rows:
            self.suppressed.update(r[0] for r in rows)
            self._suppression_seen = max(int(r[1]) for r in rows)
            self._suppression_version += 1

    def commit(self, batch: PreparedBatch) -> IngestReport:
        """Store a prepared batch: lake, warehouse and counters in one transaction."""
        report = batch.report
        with self.writing() as db:
            db.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SUPPRESS_LOCK,))
            self._load_suppressions(db)
            if self.suppressed and batch.suppression_version != self._suppression_version:
                report.suppressed += len(drop_suppressed_rows(batch, self.tokenizer, self.suppressed))
            with db.cursor() as cur:
                for day, lake_rows in sorted(batch.lake.items()):
                    self._write_lake(cur, day, lake_rows)
                rows = batch.rows
                if rows:
                    with cur.copy(f"COPY stage_events ({_COLS}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    cur.execute(
                        f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM stage_events ORDER BY event_id ON CONFLICT DO NOTHING"
                    )
                    inserted = max(cur.rowcount, 0)
                    cur.execute("DELETE FROM stage_events")
                else:
                    inserted = 0
                report.duplicates = len(rows) - inserted
                links = identity_rows(rows)
                if links:
                    cur.executemany(
                        "INSERT INTO identities VALUES (%s, %s, %s) ON CONFLICT (anonymous_id, user_id) "
                        "DO UPDATE SET first_seen = LEAST(identities.first_seen, excluded.first_seen)",
                        links,
                    )
                users = user_rows(rows)
                if users:
                    cur.executemany(
                        "INSERT INTO users (user_id, first_seen, last_seen) VALUES (%s, %s, %s) ON CONFLICT (user_id) DO UPDATE "
                        "SET first_seen = LEAST(users.first_seen, excluded.first_seen), "
                        "last_seen = GREATEST(users.last_seen, excluded.last_seen)",
                        users,
                    )
                consents = consent_log_rows(rows)
                if consents:
                    cur.executemany(
                        "INSERT INTO consent_log (event_id, subject, categories, source, edge, ts, received_at, tcf) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        consents,
                    )
                if batch.dead_rows:
                    cur.executemany(
                        "INSERT INTO dead_letters (received_at, source, reason, detail, raw, subjects) VALUES (%s, %s, %s, %s, %s, %s)",
                        [(*row[:5], subject_tokens(self.tokenizer, row[5])) for row in batch.dead_rows],
                    )
                counts = {
                    "received": report.received,
                    "accepted": inserted,
                    "duplicates": report.duplicates,
                    "suppressed": report.suppressed,
                }
                counts.update({f"dead:{reason}": n for reason, n in report.dead.items()})
                cur.executemany(_COUNT, [(k, self.writer, v) for k, v in sorted(counts.items()) if v])
        report.accepted = inserted
        return report

    def _write_lake(self, cur: psycopg.Cursor[Any], day: str, rows: Sequence[LakeRow]) -> None:
        with cur.copy("COPY stage_lake (event_id, received_at, edge, body) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            "INSERT INTO lake_events (day, event_id, received_at, edge, body) SELECT %s, event_id, received_at, edge, body "
            "FROM stage_lake ORDER BY event_id ON CONFLICT DO NOTHING",
            (day,),
        )
        stored = max(cur.rowcount, 0)
        cur.execute("DELETE FROM stage_lake")
        if stored:
            self.lake_changed(cur, day, stored)

    def lake_changed(self, cur: psycopg.Cursor[Any] | psycopg.Connection[Any], day: str, rows: int) -> None:
        """Count ``rows`` inserted into or deleted from ``day`` (the Parquet mirror's cue)."""
        cur.execute(
            "INSERT INTO lake_changes VALUES (%s, %s, %s) ON CONFLICT (day, writer) "
            "DO UPDATE SET changes = lake_changes.changes + excluded.changes",
            (day, self.writer, rows),
        )

    def suppress(self, tokens: Iterable[str], now: str) -> None:
        """Record erasure tokens; from the return on, no hub process stores those
        subjects' events (see the module docstring)."""
        new = sorted({t for t in tokens if t not in self.suppressed})
        with self.writing() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SUPPRESS_LOCK,))
            with db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO suppressions (token, created) VALUES (%s, %s) ON CONFLICT DO NOTHING", [(t, now) for t in new]
                )
        with self._lock:
            self._load_suppressions()

    def writable(self) -> bool:
        try:
            with self.writing() as db:
                db.execute(_COUNT, ("writer_probes", self.writer, 1))
            return True
        except psycopg.Error:
            return False

    def dead_letter_raw(self, payloads: Sequence[bytes], reason: str, received_at: str) -> None:
        cipher = self.cipher
        with self.writing() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (received_at, source, reason, detail, raw, subjects) VALUES (%s, 'nats', %s, '', %s, '')",
                [
                    (received_at, reason, seal_payload(text, cipher) if cipher else text)
                    for text in (p.decode("utf-8", "replace") for p in payloads)
                ],
            )
            cur.execute(_COUNT, (f"dead:{reason}", self.writer, len(payloads)))

    # ------------------------------------------------------------------ marts
    def refresh_marts(self, limit: int = 200_000) -> int:
        """Fold the events of finished transactions past the watermark into the marts;
        returns the event rows folded. One process at a time: while another hub folds,
        this one returns 0 at once rather than wait (every hub's ingest calls this)."""
        with self.writing() as db, db.cursor() as cur:
            if not cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (MARTS_LOCK,)).fetchone()[0]:  # type: ignore[index]
                return 0
            row = cur.execute("SELECT mark FROM watermarks WHERE name = 'events'").fetchone()
            lo = int(row[0]) if row else 0
            hi = int(cur.execute(f"SELECT {XMIN}").fetchone()[0])  # type: ignore[index]
            hi = slice_end(cur, lo, hi, limit)
            if hi <= lo:
                return 0
            cur.execute(
                "INSERT INTO mart_rows SELECT e.type, coalesce(i.user_id, e.user_id, e.anonymous_id), e.item_id, "
                "e.amount_minor, e.ts, it.category FROM events e "
                "LEFT JOIN identities i ON i.anonymous_id = e.anonymous_id AND e.user_id IS NULL "
                "LEFT JOIN items it ON it.item_id = e.item_id WHERE e.txid >= %s AND e.txid < %s",
                (lo, hi),
            )
            folded = max(cur.rowcount, 0)
            n = "count(*) FILTER (WHERE type = '{}')"
            cur.execute(
                f"INSERT INTO user_features SELECT subject, {n.format('page_view')}, {n.format('click')}, "
                f"{n.format('scroll')}, {n.format('add_to_cart')}, {n.format('purchase')}, "
                "coalesce(sum(CASE WHEN type = 'purchase' AND amount_minor <> 0 THEN amount_minor ELSE 0 END), 0), max(ts), '{}' "
                "FROM mart_rows WHERE subject IS NOT NULL AND subject <> '' GROUP BY subject "
                "ON CONFLICT (subject) DO UPDATE SET views = user_features.views + excluded.views, "
                "clicks = user_features.clicks + excluded.clicks, scrolls = user_features.scrolls + excluded.scrolls, "
                "carts = user_features.carts + excluded.carts, purchases = user_features.purchases + excluded.purchases, "
                "revenue_minor = user_features.revenue_minor + excluded.revenue_minor, "
                "last_ts = GREATEST(user_features.last_ts, excluded.last_ts)"
            )
            self._merge_category_views(cur)
            w = MART_WEIGHTS
            cur.execute(
                f"INSERT INTO item_popularity SELECT item_id, {n.format('page_view')}, {n.format('click')}, "
                f"{n.format('add_to_cart')}, {n.format('purchase')}, sum(CASE type WHEN 'page_view' THEN %s "
                "WHEN 'click' THEN %s WHEN 'add_to_cart' THEN %s ELSE %s END) FROM mart_rows "
                "WHERE item_id IS NOT NULL AND item_id <> '' AND type IN ('page_view', 'click', 'add_to_cart', 'purchase') "
                "GROUP BY item_id ON CONFLICT (item_id) DO UPDATE SET views = item_popularity.views + excluded.views, "
                "clicks = item_popularity.clicks + excluded.clicks, carts = item_popularity.carts + excluded.carts, "
                "purchases = item_popularity.purchases + excluded.purchases, score = item_popularity.score + excluded.score",
                (w["page_view"], w["click"], w["add_to_cart"], w["purchase"]),
            )
            cur.execute(postgres_experiments.FOLD_EXPOSURES, (lo, hi))
            cur.execute(
                "INSERT INTO watermarks VALUES ('events', %s) ON CONFLICT (name) DO UPDATE SET mark = excluded.mark", (hi,)
            )
            cur.execute("DELETE FROM mart_rows")
            return folded

    def _merge_category_views(self, cur: psycopg.Cursor[Any]) -> None:
        counts: dict[str, Counter[str]] = {}
        for subject, category, n in cur.execute(
            "SELECT subject, category, count(*) FROM mart_rows WHERE subject IS NOT NULL AND subject <> '' "
            "AND category IS NOT NULL AND category <> '' GROUP BY subject, category"
        ).fetchall():
            counts.setdefault(subject, Counter())[category] += n
        if not counts:
            return
        updates = []
        for subject, current in cur.execute(
            "SELECT subject, category_views FROM user_features WHERE subject = ANY(%s) ORDER BY subject", (sorted(counts),)
        ).fetchall():
            merged = Counter(orjson.loads(current)) if current else Counter()
            merged.update(counts[subject])
            updates.append((orjson.dumps(merged).decode(), subject))
        cur.executemany("UPDATE user_features SET category_views = %s WHERE subject = %s", updates)

    # ------------------------------------------------------------------ catalog, CRM
    def upsert_items(self, items: Sequence[dict[str, Any]], now: str) -> int:
        columns = ("item_id", "title", "description", "tags", "category", "price_minor", "currency", "url")
        rows = {str(i["item_id"]): tuple(i.get(c) for c in columns) for i in items}
        with self.writing() as db, db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO items ({', '.join(columns)}, updated) VALUES ({', '.join(['%s'] * len(columns))}, %s) "
                "ON CONFLICT (item_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in (*columns[1:], "updated")),
                [(*rows[k], now) for k in sorted(rows)],
            )
        return len(items)

    def crm_state(self) -> dict[str, str]:
        with self.reading() as db:
            return {r[0]: r[1] for r in db.execute("SELECT name, value FROM crm_state")}

    def set_crm_state(self, values: dict[str, str]) -> None:
        with self.writing() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO crm_state VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                sorted(values.items()),
            )

    def upsert_crm_users(self, rows: Sequence[tuple[str, str, str, str | None]]) -> int:
        """See ``SqliteStore.upsert_crm_users``."""
        with self._lock:
            self._load_suppressions()
        tokenizer = self.tokenizer
        keep = [r for r in rows if not (self.suppressed and tokenizer and tokenizer(r[0]) in self.suppressed)]
        with self.writing() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO users (user_id, first_seen, last_seen, attributes, pii) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes, pii = excluded.pii, "
                "last_seen = GREATEST(users.last_seen, excluded.last_seen)",
                sorted((r[0], r[1], r[1], r[2], r[3]) for r in keep),
            )
        return len(keep)

    # ------------------------------------------------------------------ subjects
    def resolve_subject(self, given: str, key: bytes) -> SubjectIds:
        return postgres_subjects.resolve(self, given, key)

    def erase_subject(self, subject: SubjectIds) -> dict[str, int]:
        return postgres_subjects.erase(self, subject)

    def export_subject(self, subject: SubjectIds, cipher: PiiCipher) -> dict[str, Any]:
        return postgres_subjects.export(self, subject, cipher)

    @property
    def erasures(self) -> PostgresErasureLedger:
        return self._erasures

    @property
    def training_runs(self) -> PostgresTrainingLedger:
        return self._training_runs

    # ------------------------------------------------------------------ retention, keys
    def delete_expired(self, cutoffs: RetentionCutoffs) -> dict[str, int]:
        return postgres_retention.delete_expired(self, cutoffs)

    def rekey(self, cipher: PiiCipher) -> RekeyReport:
        return postgres_rekey.rekey(self, cipher)

    # ------------------------------------------------------------------ reads
    def consent_by_subject(self) -> dict[str, bool]:
        return postgres_reads.consent_by_subject(self)

    def profiles(self, subjects: list[str]) -> dict[str, dict[str, Any]]:
        return postgres_reads.profiles(self, subjects)

    def top_items(self, limit: int) -> list[dict[str, Any]]:
        return postgres_reads.top_items(self, limit)

    def training_rows(self, since: str) -> TrainingRows:
        return postgres_reads.training_rows(self, since)

    def experiments(self) -> list[ExperimentSummary]:
        return postgres_experiments.experiments(self)

    def experiment(self, name: str, metrics: Sequence[Metric]) -> ExperimentData:
        return postgres_experiments.experiment(self, name, metrics)

    def bandit_evidence(self, name: str, metric: Metric) -> dict[str, tuple[int, int]]:
        return postgres_experiments.bandit_evidence(self, name, metric)

    def dead_letters(self, samples: int = 3) -> list[dict[str, Any]]:
        return postgres_console.dead_letters(self, samples)

    def replay_dead_letters(self, reason: str, limit: int = 10_000) -> dict[str, int]:
        return postgres_console.replay_dead_letters(self, reason, limit)

    def consent_by_day(self, days: int = 14) -> list[dict[str, Any]]:
        return postgres_console.consent_by_day(self, days)

    def marts_lag(self) -> dict[str, Any]:
        return postgres_console.marts_lag(self)

    def counters(self) -> dict[str, int]:
        with self.reading() as db:
            return {r[0]: int(r[1]) for r in db.execute("SELECT name, sum(value) FROM counters GROUP BY name")}

    def table_rows(self) -> dict[str, int]:
        """Rows per table of every tier (the same names as the SQLite store's)."""
        out: dict[str, int] = {}
        with self.reading() as db:
            for t in ("events", "users", "identities", "items", "dead_letters"):
                out[f"warehouse.{t}"] = int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("user_features", "item_popularity"):
                out[f"marts.{t}"] = int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            rows, days = db.execute("SELECT count(*), count(DISTINCT day) FROM lake_events").fetchone()  # type: ignore[misc]
        out["lake.raw_events"] = int(rows)
        out["lake.files"] = int(days)  # one partition per day, as the SQLite lake has one file
        out["lake.unreadable_files"] = 0
        return out

    # ------------------------------------------------------------------ lake (Parquet mirror)
    def lake_days(self) -> dict[str, list[int]]:
        """Day → its change count (inserts and deletions so far): the mirror's cue."""
        with self.reading() as db:
            return {
                str(day): [int(n)]
                for day, n in db.execute("SELECT day, sum(changes) FROM lake_changes GROUP BY day ORDER BY day")
            }

    def read_lake_day(self, day: str, batch_rows: int) -> Iterator[list[LakeRow]]:
        """One day's lake rows in the order they were stored, ``batch_rows`` at a time."""
        with connect(self.url) as db, db.transaction(), db.cursor(name="lake_day") as cur:
            cur.execute("SELECT event_id, received_at, edge, body FROM lake_events WHERE day = %s ORDER BY seq", (day,))
            while rows := cur.fetchmany(batch_rows):
                yield rows

    def close(self) -> None:
        with self._lock:
            self._readers.close()
            try:
                self.db.close()
            except psycopg.Error:
                pass
