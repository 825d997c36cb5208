"""What worker processes share (edge_agent/coherence.py), how sessions written by two
of them merge (edge_agent/session_sync.py), and the page's visitor id they agree on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent import coherence
from edge_agent.coherence import Coherence, OwnerLock
from edge_agent.collect import update_session
from edge_agent.metrics import EdgeMetrics
from edge_agent.pages import request_visitor_id
from edge_agent.settings import EdgeSettings
from edge_agent.state import EdgeState
from edge_agent.store import EdgeStore
from models.pseudonym import valid_visitor_id

VISITOR = "visitorUnitWorkers000001"
CONSENT = frozenset({"necessary", "analytics", "personalization"})


def test_a_stamp_changes_for_every_write_and_every_process_sees_it(tmp_path: Path) -> None:
    path = coherence.create(tmp_path)
    a, b = Coherence(path), Coherence(path)
    before = b.stamp(VISITOR)
    written = a.bump(VISITOR)
    assert b.stamp(VISITOR) == written != before
    assert a.bump(VISITOR) != written  # the same writer twice: still a change
    # another process's writes show here too
    child = subprocess.run(
        [sys.executable, "-c", f"from edge_agent.coherence import Coherence; print(Coherence({str(path)!r}).bump({VISITOR!r}))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert b.stamp(VISITOR) == int(child.stdout) != written
    a.close()
    b.close()


def test_a_writer_never_takes_as_current_a_stamp_that_hides_another_writers_commit(tmp_path: Path) -> None:
    """A commits (stamp set in its transaction), B commits after it and sets the stamp
    both times, then A's after-commit step runs late: A must not end up holding the
    stamp now in the slot, or it would serve, and later write back, a session missing
    B's events (a CI run lost one event of 82 to an unconditional second write)."""
    path = coherence.create(tmp_path)
    a, b = Coherence(path), Coherence(path)
    a_own = a.bump(VISITOR)  # A's transaction
    b_own = b.bump(VISITOR)  # B's transaction, after A's commit
    b_held = b.bump_if(VISITOR, b_own)
    assert b_held != b_own and b.stamp(VISITOR) == b_held  # nobody wrote between: B's copy is current
    a_held = a.bump_if(VISITOR, a_own)  # A's late after-commit step
    assert a.stamp(VISITOR) == b_held  # B's value stands
    assert a_held != a.stamp(VISITOR)  # A reads the session again before serving it
    # and a reader that read the old row between a transaction and its commit sees a change
    reader_held = a.stamp(VISITOR)
    c_own = b.bump(VISITOR)
    assert b.bump_if(VISITOR, c_own) != reader_held


def test_an_epoch_is_waited_for_until_every_live_worker_has_seen_it(tmp_path: Path) -> None:
    path = coherence.create(tmp_path)
    me, other = Coherence(path), Coherence(path)
    me.join()
    other.join()  # two registrations from one pid share its slot
    assert list(me.workers()) == [os.getpid()]
    epoch = me.raise_epoch()
    assert me.lagging(epoch) == [os.getpid()]
    assert asyncio.run(me.wait_seen(epoch, 0.05)) == [os.getpid()]  # nobody marked it: late at the timeout
    me.mark_seen(epoch)
    assert me.lagging(epoch) == [] and asyncio.run(me.wait_seen(epoch, 1.0)) == []
    me.serving(7)
    assert me.workers() == {os.getpid(): 7}
    # a dead worker's registration neither holds an erasure up nor counts as a worker
    dead = subprocess.Popen(
        [sys.executable, "-c", f"from edge_agent.coherence import Coherence; Coherence({str(path)!r}).join()"]
    )
    dead.wait()
    assert me.lagging(me.raise_epoch()) == [os.getpid()]
    assert list(me.workers()) == [os.getpid()]
    me.close()
    other.close()


def test_one_owner_at_a_time_and_the_lock_passes_on_when_it_goes(tmp_path: Path) -> None:
    first, second = OwnerLock(tmp_path / "owner.lock"), OwnerLock(tmp_path / "owner.lock")
    assert first.try_acquire() and first.held
    assert not second.try_acquire() and not second.held
    first.close()
    assert second.try_acquire()
    second.close()


def test_a_first_time_visitors_id_is_one_per_page_request_and_secret_keyed() -> None:
    one = request_visitor_id(b"k1", "0123456789abcdef0123456789abcdef")
    assert one == request_visitor_id(b"k1", "0123456789abcdef0123456789abcdef")
    assert valid_visitor_id(one) and len(one) == 22
    assert one != request_visitor_id(b"k1", "0123456789abcdef0123456789abcdee")
    assert one != request_visitor_id(b"k2", "0123456789abcdef0123456789abcdef")


def _worker(tmp_path: Path, shared: Path) -> EdgeState:
    settings = EdgeSettings.from_env({"P13N_EDGE_DATA_DIR": str(tmp_path)})
    state = EdgeState(settings=settings, store=EdgeStore(tmp_path / "edge.sqlite3"), metrics=EdgeMetrics.create(), bundle=None)
    state.join_workers(shared)
    return state


@pytest.mark.parametrize("order", ["a_first", "b_first"])
def test_two_workers_changing_one_session_at_once_lose_no_event(tmp_path: Path, order: str) -> None:
    shared = coherence.create(tmp_path)

    async def run() -> tuple[int, int, int]:
        a, b = _worker(tmp_path, shared), _worker(tmp_path, shared)
        for s in (a, b):
            s.outbox_writer.start()
        # both read the (absent) session and fold an event into it before either writes
        update_session(a, VISITOR, CONSENT, [{"type": "page_view", "url": "https://s/p/dr01"}])
        update_session(b, VISITOR, CONSENT, [{"type": "page_view", "url": "https://s/p/dr02"}])
        update_session(b, VISITOR, CONSENT, [{"type": "click", "url": "https://s/p/dr02"}])
        first, second = (a, b) if order == "a_first" else (b, a)
        await first.outbox_writer.write([])
        await second.outbox_writer.write([])  # finds the stamp moved: applies its events to the stored session
        stored = a.store.get_session(VISITOR, 0.0) or {}
        seen_a, seen_b = (a.session(VISITOR, create=False) or {}), (b.session(VISITOR, create=False) or {})
        for s in (a, b):
            await s.outbox_writer.stop()
            s.leave_workers()
            s.store.close()
        assert seen_a == stored, (seen_a, stored)
        assert seen_b == stored, (seen_b, stored)
        return int(stored["views"]), int(stored["clicks"]), len(a.pending) + len(b.pending)

    assert asyncio.run(run()) == (2, 1, 0)


def test_each_worker_keeps_its_share_of_the_live_sessions(tmp_path: Path) -> None:
    settings = EdgeSettings.from_env(
        {
            "P13N_EDGE_DATA_DIR": str(tmp_path),
            "P13N_EDGE_WORKERS": "4",
            "P13N_EDGE_SESSIONS_IN_MEMORY": "1000",
            "P13N_EDGE_MODEL_MEMO_ENTRIES": "2000",
        }
    )
    state = EdgeState(settings=settings, store=EdgeStore(tmp_path / "edge.sqlite3"), metrics=EdgeMetrics.create(), bundle=None)
    assert state.memory_share == 1000  # alone: the whole bound
    state.join_workers(coherence.create(tmp_path))
    assert state.memory_share == 250
    for i in range(400):
        state.session(f"visitorShare{i:012d}", create=True)
    assert len(state.sessions) == 250
    state.leave_workers()
    state.store.close()
