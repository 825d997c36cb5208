"""The hub's storage on both backends: SQLite (the embedded default) and PostgreSQL
(``P13N_HUB_DATABASE_URL``; a real server from Debian's package, see
``tests/postgres_server.py``).

The first test feeds both the same history (catalog, consent choices, identities across
devices, every event type, experiments with a mixed unit, dead letters, duplicates) and
compares every answer of the storage interface, so the PostgreSQL dialect of each query
says what the SQLite one (tested in depth by the other unit tests) says. The others are
PostgreSQL's own: several writers at once, a transaction committed late, erasure
tokens recorded by another process, a training run whose hub is still alive.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hub.experiments.metrics import DEFAULT_METRICS, Metric
from hub.pii import PiiCipher
from hub.storage import HubStore, RetentionCutoffs, RunInProgress, open_store
from hub.storage.postgres import PostgresStore
from models.erasure import ErasureOrder, Tokenizer
from tests.postgres_server import PostgresServer
from tests.unit.test_marts import random_events

KEY = b"backend-test-key"
NOW = datetime.now(UTC).replace(microsecond=0)
VISITORS = [f"visitor{i:015d}" for i in range(12)]
BUYERS = Metric("buyers", "conversion", "purchase", 48.0)


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def history(rng: random.Random) -> list[tuple[str, list[dict[str, Any]]]]:
    """(receive time, batch) in arrival order: four days of mixed traffic, consent
    choices, and an experiment's exposures and purchases (30 visitors; pairs of them
    one user on two devices, one pair split across the arms)."""
    out = []
    for day in (3, 2, 1, 0):
        batch = random_events(rng, 120)

        def add(kind: str, visitor: str, hours: float, batch: list[dict[str, Any]] = batch, day: int = day, **extra: Any) -> None:
            batch.append(
                {"event_id": uuid.uuid4().hex, "type": kind, "anonymous_id": visitor, "ts": iso(day + hours / 24), **extra}
            )

        for n, visitor in enumerate(VISITORS):
            choice = ["necessary", "analytics", "personalization"] if (n + day) % 4 else ["necessary"]
            add("consent", visitor, 3, categories=choice, source="banner")
        for n in range(30):
            visitor = f"visitorExp{n:014d}"
            arm = ("a", "b")[n % 2] if n != 7 else ("a", "b")[day % 2]  # visitor 7 sees both
            add("exposure", visitor, 2, experiment="ex", variant=arm, slot="hero")
            if n < 6 and day == 3:
                add("identify", visitor, 2.5, user_id=f"user-exp-{n // 2 if n != 5 else 9}")
            if rng.random() < 0.3:
                price = {"amount": rng.randrange(1, 500) / 10, "currency": "eur"}
                add(
                    "purchase",
                    visitor,
                    rng.choice((3, 1, -20)),
                    order_id=uuid.uuid4().hex,
                    items=[{"item_id": "it1", "quantity": 1, "price": price}],
                    total=price,
                )
        add("identify", VISITORS[4], 4, user_id="user-1", traits={"email": f"someone{day}@example.com"})  # sealed at rest
        add("page_view", VISITORS[0], 1, item_id="x")  # invalid: a page view names no item
        out.append((iso(day), batch))
    out.append((iso(0), copy.deepcopy(out[-1][1][:40])))  # a redelivered part of the last batch
    return out


def answers(store: HubStore, cipher: PiiCipher) -> dict[str, Any]:
    """Everything the interface answers about the stored history."""
    subjects = sorted({*VISITORS, *(f"user-{i}" for i in range(4))})
    experiment = store.experiment("ex", DEFAULT_METRICS)
    training = store.training_rows(iso(30))
    dead = store.dead_letters()
    for group in dead:
        for sample in group["samples"]:
            sample.pop("id")
    return {
        "counters": {k: v for k, v in store.counters().items() if k != "writer_probes"},
        "tables": store.table_rows(),
        "profiles": store.profiles(subjects),
        "top": store.top_items(50),
        "consent": store.consent_by_subject(),
        "experiments": store.experiments(),
        "experiment": (experiment.users, experiment.multiple_exposures, experiment.first_exposure, experiment.metrics),
        "bandit": store.bandit_evidence("ex", BUYERS),
        "training": (
            # SQLite's julianday carries times to about a microsecond of float error: compared to the millisecond
            sorted(zip(training.subjects, training.items, training.types, [round(t, 3) for t in training.times], strict=True)),
            training.catalog,
            training.profiles,
            training.left_out,
        ),
        "dead": dead,
        "consent_days": store.consent_by_day(30),
        "lag": store.marts_lag()["events_behind"],
        "export": _export(store, VISITORS[1], cipher),
    }


def _export(store: HubStore, given: str, cipher: PiiCipher) -> dict[str, Any]:
    doc = store.export_subject(store.resolve_subject(given, KEY), cipher)
    for row in doc["dead_letters"]:
        row.pop("id")
    doc["events"] = sorted(doc["events"], key=lambda e: (e["ts"], e["event_id"]))
    doc["lake"] = sorted(doc["lake"], key=lambda e: str(e.get("event_id")))
    return doc


def test_both_backends_give_the_same_answers(tmp_path: Path, pg_url: str) -> None:
    cipher = PiiCipher.from_settings("", None, tmp_path / "keys")
    stores = {"sqlite": open_store(tmp_path / "hub", ""), "postgres": open_store(tmp_path / "unused", pg_url)}
    got: dict[str, dict[str, Any]] = {}
    batches = history(random.Random(7))  # once: its times are read from the clock
    try:
        for store in stores.values():
            store.tokenizer = Tokenizer(KEY)
            store.cipher = cipher
            store.upsert_items(
                [{"item_id": f"it{i}", "title": f"Item {i}", "category": ("shoes", "bags", "")[i % 3]} for i in range(10)], iso(5)
            )
            store.upsert_crm_users(
                [("user-1", iso(4), '{"tier": "gold"}', cipher.encrypt(b'{"email": "a@example.com"}', aad="user-1"))]
            )
            for received, batch in batches:
                report = store.ingest(copy.deepcopy(batch), "test", received)
                assert report.accepted + report.duplicates + sum(report.dead.values()) == len(batch)
                while store.refresh_marts(limit=37):  # folded in slices
                    pass
                store.bandit_evidence("ex", BUYERS)  # kept up to date between batches, as the weight job does
        for name, store in stores.items():
            got[name] = answers(store, cipher)
        sqlite, postgres = got["sqlite"], got["postgres"]
        # the history is rich enough to mean something
        assert sqlite["counters"]["accepted"] > 500 and sqlite["counters"]["duplicates"] == 40
        assert sqlite["counters"]["dead:invalid"] == 4
        assert len(sqlite["experiment"][0]) == 2 and sqlite["experiment"][1] == 3  # visitor 7, two users on two devices
        assert sqlite["training"][0] and sqlite["export"]["events"] and sqlite["export"]["lake"]
        assert sqlite["profiles"]["user-1"]["attributes"] == {"tier": "gold"}
        for key in sqlite:
            assert postgres[key] == sqlite[key], key

        # erasure, late events of the erased subject, retention, key rotation: same counts
        erased = {}
        for name, store in stores.items():
            subject = store.resolve_subject(VISITORS[2], KEY)
            store.suppress([Tokenizer(KEY)(i) for i in subject.all], iso(0))
            counts = store.erase_subject(subject)
            late = store.ingest(
                [
                    {
                        "event_id": uuid.uuid4().hex,
                        "type": "click",
                        "anonymous_id": sorted(subject.anonymous_ids)[0],
                        "item_id": "it1",
                    }
                ],
                "test",
                iso(0),
            )
            gone = store.delete_expired(
                RetentionCutoffs(lake_day=iso(1.5)[:10], warehouse=iso(2.5), dead_letters=iso(1.5), consent=iso(0.5))
            )
            old_ring = ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in cipher.ring)
            new_cipher = PiiCipher.from_settings(f"k2:{base64.b64encode(b'k' * 32).decode()},{old_ring}", None, tmp_path / "keys")
            rekeyed = store.rekey(new_cipher)
            erased[name] = (
                counts,
                late.suppressed,
                gone,
                store.table_rows(),
                rekeyed.reencrypted,
                rekeyed.sealed_reencrypted,
                rekeyed.failed,
            )
        assert erased["sqlite"][0]["warehouse.events"] > 0 and erased["sqlite"][1] == 1
        assert erased["sqlite"][2]["lake.files"] == 2 and erased["sqlite"][2]["warehouse.events"] > 0
        assert erased["sqlite"][0]["lake.raw_events"] > 0
        # the CRM record; then sealed traits (warehouse, lake) and sealed dead letters that retention kept
        assert erased["sqlite"][4] == 1 and erased["sqlite"][5] >= 5 and erased["sqlite"][6] == 0
        assert erased["postgres"] == erased["sqlite"]
    finally:
        for store in stores.values():
            store.close()


@pytest.mark.parametrize("writers", [4])
def test_concurrent_writers_store_every_event_exactly_once(pg_url: str, writers: int) -> None:
    """Several stores (as several hub processes) ingest overlapping batches at once,
    every event sent by two of them: each is stored once, and the counters add up."""
    stores = [PostgresStore(pg_url) for _ in range(writers)]
    events = [
        {"event_id": uuid.uuid4().hex, "type": "click", "anonymous_id": VISITORS[i % 12], "item_id": f"it{i % 7}"}
        for i in range(4000)
    ]
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for n, batch in enumerate(batches):
                if n % writers in (k, (k + 1) % writers):  # two writers per batch
                    stores[k].ingest(copy.deepcopy(batch[::-1] if k % 2 else batch), "test", iso(0))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        counters = stores[0].counters()
        tables = stores[0].table_rows()
        assert tables["warehouse.events"] == tables["lake.raw_events"] == len(events)
        assert counters["accepted"] == len(events) and counters["duplicates"] == len(events)
        assert counters["received"] == 2 * len(events)
        while stores[1].refresh_marts(limit=500):
            pass
        assert sum(p["clicks"] for p in stores[2].profiles(VISITORS).values()) == len(events)
    finally:
        for s in stores:
            s.close()


def test_an_event_committed_late_is_folded_into_the_marts_once(pg_url: str) -> None:
    """A transaction that took its id first commits last: a watermark on arrival order
    would skip its row. The refresh waits for it, then folds it once."""
    store = PostgresStore(pg_url)
    slow = psycopg.connect(pg_url)
    try:
        slow.execute(
            "INSERT INTO events (event_id, type, ts, received_at, anonymous_id, item_id) VALUES ('slow', 'click', %s, %s, %s, 'it1')",
            (iso(0), iso(0), VISITORS[0]),
        )  # its transaction stays open
        store.ingest(
            [{"event_id": uuid.uuid4().hex, "type": "click", "anonymous_id": VISITORS[0], "item_id": "it1"}], "test", iso(0)
        )
        assert store.refresh_marts() == 0  # the open transaction holds the watermark back
        assert store.marts_lag()["events_behind"] == 1
        slow.commit()
        assert store.refresh_marts() == 2
        assert store.refresh_marts() == 0
        assert store.profiles([VISITORS[0]])[VISITORS[0]]["clicks"] == 2
    finally:
        slow.close()
        store.close()


def test_erasure_tokens_recorded_by_one_process_stop_every_other_at_once(pg_url: str) -> None:
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        for s in (a, b):
            s.tokenizer = Tokenizer(KEY)
        batch = [{"event_id": uuid.uuid4().hex, "type": "click", "anonymous_id": VISITORS[3], "item_id": "it1"}]
        prepared = b.prepare(copy.deepcopy(batch), "test", iso(0))  # prepared before the erasure
        a.suppress([Tokenizer(KEY)(VISITORS[3])], iso(0))
        report = b.commit(prepared)
        assert (report.accepted, report.suppressed) == (0, 1)
        assert report.results[0]["reason"] == "erased_subject"
        assert b.table_rows()["warehouse.events"] == 0 and b.table_rows()["lake.raw_events"] == 0
        assert b.upsert_crm_users([(VISITORS[3], iso(0), "{}", None)]) == 0
    finally:
        a.close()
        b.close()


def test_one_training_run_at_a_time_across_hubs_and_a_dead_hubs_run_is_failed(pg_url: str) -> None:
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        a.training_runs.create({"id": "run-a", "started_at": time.time(), "status": "running"})
        with pytest.raises(RunInProgress) as busy:  # b's hub may not start a second run meanwhile
            b.training_runs.create({"id": "run-b", "started_at": time.time(), "status": "running"})
        assert busy.value.run_id == "run-a"
        assert b.training_runs.interrupted(time.time()) == []  # a is alive: its run goes on
        a.close()
        # a's server session ends a moment after its connection closes
        deadline = time.monotonic() + 10
        failed: list[str] = []
        while not failed and time.monotonic() < deadline:
            failed = b.training_runs.interrupted(time.time())
            time.sleep(0.05)
        assert failed == ["run-a"]
        assert (b.training_runs.get("run-a") or {})["status"] == "failed"
        b.training_runs.create({"id": "run-b", "started_at": time.time(), "status": "running"})  # free again
    finally:
        b.close()


def test_the_ledgers_answer_alike(tmp_path: Path, hub_store: HubStore) -> None:
    """The erasure and training ledgers on each backend (``hub_store``: both in turn)."""
    ledger = hub_store.erasures
    ledger.create(ErasureOrder("r1", ("t1",), 100.0), "admin", ["e1", "e2"], "sealed-work")
    ledger.create(ErasureOrder("r2", ("t2",), 200.0), "admin", [], "")
    assert ledger.pending_work() == [("r1", "sealed-work"), ("r2", "")]
    ledger.hub_done("r1", {"warehouse.events": 3})
    assert [o.request_id for o in ledger.unpublished()] == ["r1"]
    ledger.mark_published("r1")
    assert ledger.unpublished() == [] and ledger.pending_count() == 1 and ledger.oldest_pending() == 100.0
    assert ledger.ack("r1", "e1", {"sessions": 1}, 150.0) is False
    assert ledger.forget_edge("e2", 160.0) == ["r1"]
    status = ledger.status("r1")
    assert status is not None and status["status"] == "completed" and status["completion_s"] == 60.0
    assert status["edges"] == {"e1": {"status": "acknowledged", "acked_at": 150.0, "deleted": {"sessions": 1}}}
    assert [r["request_id"] for r in ledger.recent()] == ["r2", "r1"] and ledger.pending_count() == 0
    runs = hub_store.training_runs
    runs.create({"id": "t1", "started_at": 1.0, "status": "running"})
    with pytest.raises(RunInProgress):
        runs.create({"id": "t2", "started_at": 2.0, "status": "running"})
    runs.update("t1", {"status": "passed", "summary": "ok"})
    assert runs.get("t1") == {"id": "t1", "started_at": 1.0, "status": "passed", "summary": "ok"}
    with pytest.raises(KeyError):
        runs.update("missing", {"status": "failed"})
    assert [r["id"] for r in runs.recent(5)] == ["t1"]


def test_a_sqlite_hub_copied_into_postgres_answers_the_same(tmp_path: Path, pg_url: str) -> None:
    """``p13n storage copy``: a stopped SQLite hub's tiers into an empty database. The
    marts are folded again from the copied events (with the identities known now), so
    everything but the per-subject marts answers exactly as the SQLite hub did."""
    import subprocess
    import sys

    cipher = PiiCipher.from_settings("", None, tmp_path / "keys")
    sqlite = open_store(tmp_path / "hub", "")
    sqlite.tokenizer, sqlite.cipher = Tokenizer(KEY), cipher
    sqlite.upsert_items(
        [{"item_id": f"it{i}", "title": f"Item {i}", "category": ("shoes", "bags")[i % 2]} for i in range(10)], iso(5)
    )
    for received, batch in history(random.Random(3)):
        sqlite.ingest(copy.deepcopy(batch), "test", received)
    sqlite.suppress([Tokenizer(KEY)(VISITORS[9])], iso(0))
    sqlite.erasures.create(ErasureOrder("r1", ("t1",), 100.0), "admin", ["e1"], "")
    sqlite.refresh_marts()
    before = answers(sqlite, cipher)
    sqlite.close()

    env = {**os.environ, "P13N_HUB_DATA_DIR": str(tmp_path / "hub"), "P13N_ALLOW_DEV_KEYS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "p13n", "storage", "copy", "--to", pg_url], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    copied = json.loads(run.stdout)
    assert copied["warehouse.events"] == before["tables"]["warehouse.events"] > 500
    assert copied["lake.raw_events"] == before["tables"]["lake.raw_events"] and copied["marts.folded"] > 500

    postgres = open_store(tmp_path / "unused", pg_url)
    postgres.tokenizer, postgres.cipher = Tokenizer(KEY), cipher
    try:
        after = answers(postgres, cipher)
        for key in (
            "counters",
            "top",
            "consent",
            "experiments",
            "experiment",
            "bandit",
            "training",
            "dead",
            "consent_days",
            "lag",
        ):
            assert after[key] == before[key], key
        for key in ("profiles", "features"):  # the marts: the same subjects' rows, folded again
            before["export"].pop(key, None), after["export"].pop(key, None)
        assert after["export"] == before["export"]
        assert {k: v for k, v in after["tables"].items() if not k.startswith("marts.")} == {
            k: v for k, v in before["tables"].items() if not k.startswith("marts.")
        }
        late = postgres.ingest(
            [{"event_id": uuid.uuid4().hex, "type": "click", "anonymous_id": VISITORS[9], "item_id": "it1"}], "test", iso(0)
        )
        assert late.suppressed == 1  # the erased subject stays erased
        assert [r["request_id"] for r in postgres.erasures.recent()] == ["r1"]
    finally:
        postgres.close()
    again = subprocess.run(
        [sys.executable, "-m", "p13n", "storage", "copy", "--to", pg_url], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.returncode == 1 and "already holds" in again.stderr  # never merged into a database in use


def test_a_database_made_with_the_sql_ascii_encoding_still_answers_text(postgres: PostgresServer) -> None:
    """A cluster initialised without a locale makes SQL_ASCII databases, whose text
    psycopg returns as bytes unless the connection asks for UTF-8 (found in a container)."""
    name = f"ascii{uuid.uuid4().hex[:8]}"
    postgres.query("postgres", f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    store = PostgresStore(postgres.url(name))
    try:
        store.tokenizer = Tokenizer(KEY)
        store.ingest(
            [{"event_id": uuid.uuid4().hex, "type": "click", "anonymous_id": VISITORS[0], "item_id": "it1"}], "test", iso(0)
        )
        assert store.counters() == {"received": 1, "accepted": 1}
        assert all(isinstance(k, str) for k in store.table_rows())
        assert store.resolve_subject(VISITORS[0], KEY).anonymous_ids == frozenset({VISITORS[0]})
    finally:
        store.close()
