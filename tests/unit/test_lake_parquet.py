"""The lake mirrored as Parquet: partitions by day that DuckDB reads as one table,
rewritten when an erasure changes a day, deleted when retention drops it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import duckdb

from hub import retention
from hub.lake_parquet import MANIFEST, LakeSource, sync
from hub.storage import HubStore
from hub.storage.interface import SubjectIds
from hub.storage.sqlite import SqliteStore
from tests.unit.test_retention import NOW, at, event


def read(target: Path, where: str = "") -> list[tuple[str, int]]:
    """(day, rows) of the export as DuckDB reads it (Hive partitions)."""
    sql = (
        f"SELECT CAST(day AS VARCHAR), count(*) FROM read_parquet('{target}/*/*.parquet', hive_partitioning = true) "
        f"{where} GROUP BY day ORDER BY day"
    )
    return [(str(d), int(n)) for d, n in duckdb.sql(sql).fetchall()]


def lake_of(store: HubStore) -> Path | LakeSource:
    """The lake as the mirror reads it: the SQLite store's day files, or the PostgreSQL store."""
    lake_dir = getattr(store, "lake_dir", None)
    return lake_dir if isinstance(lake_dir, Path) else cast(LakeSource, store)


def test_the_export_mirrors_the_lake_through_erasure_and_retention(tmp_path: Path, hub_store: HubStore) -> None:
    """On each backend: SQLite day files, PostgreSQL's ``lake_events``."""
    storage = hub_store
    lake = lake_of(storage)
    target = tmp_path / "parquet"
    for days in (100, 40, 1):
        received = at(days)
        storage.ingest(
            [
                event("page_view", "visitor-subject-000000001", received, url="https://s.example/p/1"),
                event("page_view", f"visitor-other-{days:03d}000000", received, url="https://s.example/p/2"),
                event("click", f"visitor-other-{days:03d}000000", received, item_id="p2"),
            ],
            "edge-1",
            received,
        )
    first = sync(lake, str(target))
    assert first.written == {at(100)[:10]: 3, at(40)[:10]: 3, at(1)[:10]: 3} and first.deleted == []
    assert read(target) == [(at(d)[:10], 3) for d in (100, 40, 1)]
    columns = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{target}/*/*.parquet', hive_partitioning = true)")
    assert [c[0] for c in columns.fetchall()] == ["event_id", "received_at", "edge", "body", "day"]
    again = sync(lake, str(target))
    assert again.written == {} and again.unchanged == 3  # nothing changed, nothing rewritten

    # an erasure deletes the subject from the day files: their partitions are rewritten without it
    subject = "visitor-subject-000000001"
    storage.erase_subject(SubjectIds(subject, "", frozenset({subject})))
    erased = sync(lake, str(target))
    assert sorted(erased.written) == sorted(at(d)[:10] for d in (100, 40, 1))
    assert read(target) == [(at(d)[:10], 2) for d in (100, 40, 1)]
    assert read(target, f"WHERE body LIKE '%{subject}%'") == []
    assert not list(target.rglob(".*.tmp"))  # partitions are replaced whole

    # retention drops whole day files: their partitions go too
    policy = retention.RetentionPolicy(lake_days=30, warehouse_days=90, dead_letter_days=30, consent_days=365)
    retention.run(storage, policy, NOW)
    kept = sync(lake, str(target))
    assert sorted(kept.deleted) == sorted([at(100)[:10], at(40)[:10]]) and kept.written == {}
    assert read(target) == [(at(1)[:10], 2)]
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, f"day={at(1)[:10]}"]
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["format"] == "p13n-lake-parquet/1" and list(manifest["days"]) == [at(1)[:10]]


def test_a_closed_lake_is_exported_once(tmp_path: Path) -> None:
    storage = SqliteStore(tmp_path / "hub")
    storage.ingest([event("page_view", "visitor-closed-000000001", at(1), url="https://s.example/p/1")], "edge-1", at(1))
    storage.close()  # the write-ahead log is gone; the export's own read-only look must not count as a change
    assert sync(storage.lake_dir, str(tmp_path / "pq")).written == {at(1)[:10]: 1}
    again = sync(storage.lake_dir, str(tmp_path / "pq"))
    assert again.written == {} and again.unchanged == 1
