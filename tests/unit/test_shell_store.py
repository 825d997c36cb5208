"""The SQLite shell cache stays within its bounds, whatever the traffic."""

from __future__ import annotations

from pathlib import Path

from edge_agent.store import EdgeStore, StoredShell


def shell(expires: float, size: int = 1000, vary: tuple[tuple[str, str], ...] = ()) -> StoredShell:
    return StoredShell(200, {"content-type": "text/html"}, b"x" * size, expires, vary)


def test_entries_bytes_and_age_are_bounded(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    now = 1_000.0
    for i in range(500):
        store.put_shell(f"h/p{i}", shell(now + 60), now + i, max_entries=100, max_bytes=10**9)
    count = store.db.execute("SELECT count(*) FROM shells").fetchone()[0]
    assert 90 <= count <= 100
    assert store.get_shell("h/p499", now) is not None and store.get_shell("h/p0", now) is None  # oldest out first
    for i in range(50):
        store.put_shell(f"big/{i}", shell(now + 60, size=100_000), now + 600 + i, max_entries=10_000, max_bytes=1_000_000)
    size = store.db.execute("SELECT sum(bytes) FROM shells").fetchone()[0]
    assert size <= 1_000_000
    # expired shells are purged whatever the bounds
    assert store.purge_shells(now + 10_000, 10_000, 10**9) > 0
    assert store.db.execute("SELECT count(*) FROM shells").fetchone()[0] == 0
    store.close()


def test_vary_values_survive_a_restart(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.put_shell("h/p", shell(2_000.0, vary=(("accept-language", "de"),)), 1_000.0, 10, 10**6)
    store.close()
    again = EdgeStore(tmp_path / "edge.sqlite3")
    got = again.get_shell("h/p", 1_000.0)
    assert got is not None and got.vary == (("accept-language", "de"),)
    again.close()
