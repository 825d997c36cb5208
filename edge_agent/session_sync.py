"""Sessions written through to SQLite when several workers serve one edge.

Alone, a worker keeps live sessions in memory and writes changed ones every second
(edge_agent/app.py). With several workers the next page may reach another worker, so
a collect request's session change is written in the same transaction as its events,
before the answer (edge_agent/group_commit.py), and its stamp changed
(edge_agent/coherence.py): any worker's next read of that visitor goes to SQLite.

Two workers may change one visitor's session at once (the SDK's batches reach
whichever worker accepts the connection). Each change is kept as the events applied
(:class:`Pending`) with the stamp the session was read at; inside the write
transaction, which SQLite runs one at a time across processes, a changed stamp means
another worker wrote first, and the events are applied again to the stored session
instead of overwriting it. Writers set the stamp inside the transaction and, unless
another writer has since, again after the commit (see edge_agent/coherence.py), so no
change is lost either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.group_commit import GroupCommitter
from models.session import apply_event, new_session, url_item

if TYPE_CHECKING:
    from edge_agent.state import EdgeState


@dataclass(slots=True)
class Pending:
    """Events applied to a session in memory and not yet written."""

    #: the stamp the session was read or last written at
    base: int
    events: list[tuple[dict[str, Any], float]] = field(default_factory=list)


@dataclass(slots=True)
class _Write:
    visitor: str
    base: int
    text: str
    expires: float
    events: list[tuple[dict[str, Any], float]]
    taken: int  # how many of the pending events this write carries


def note(state: EdgeState, visitor: str, events: list[dict[str, Any]], now: float) -> None:
    """``events`` were applied to ``visitor``'s session in memory: write them next."""
    entry = state.pending.get(visitor)
    if entry is None:
        entry = state.pending[visitor] = Pending(state.session_stamps.get(visitor, 0))
    entry.events.extend((event, now) for event in events)


def committer(state: EdgeState) -> GroupCommitter:
    """The outbox writer of a worker among several."""
    return GroupCommitter(
        lambda rows, now, writes: _commit(state, rows, now, writes),
        take=lambda: _take(state),
        settle=lambda result: _settle(state, result),
    )


def _take(state: EdgeState) -> tuple[list[_Write], dict[str, str]]:
    """On the event loop: the pending sessions as JSON (serialised here, where nothing
    changes them meanwhile) and the category map the events are applied with."""
    ttl = state.settings.session_ttl_s
    writes = []
    for visitor, entry in state.pending.items():
        session = state.sessions.get(visitor)
        text = json.dumps(session) if session is not None else ""
        expires = float(session.get("last", 0)) + ttl if session is not None else 0.0
        writes.append(_Write(visitor, entry.base, text, expires, list(entry.events), len(entry.events)))
    return writes, state.category_of


def _commit(
    state: EdgeState, rows: list[Any], now: float, taken: tuple[list[_Write], dict[str, str]]
) -> list[tuple[_Write, dict[str, Any] | None, int]]:
    """On a worker thread: events and sessions in one transaction; per write, the
    session as merged with another worker's (None when nothing had to be merged) and
    the stamp after the commit."""
    writes, categories = taken
    coh = state.coherence
    assert coh is not None
    merged: dict[str, dict[str, Any]] = {}
    own: dict[str, int] = {}
    ttl = state.settings.session_ttl_s

    def sessions(read: Callable[[str], str | None]) -> list[tuple[str, str, float]]:
        out = []
        for w in writes:
            text, expires = w.text, w.expires
            if not text or coh.stamp(w.visitor) != w.base:  # another worker wrote it first
                stored = read(w.visitor)
                session = json.loads(stored) if stored else new_session()
                for event, at in w.events:
                    apply_event(session, event, categories, url_item, at)
                merged[w.visitor] = session
                text, expires = json.dumps(session), float(session.get("last", 0)) + ttl
            own[w.visitor] = coh.bump(w.visitor)  # inside the transaction: a writer after this one merges
            out.append((w.visitor, text, expires))
        return out

    state.store.commit(rows, now, sessions if writes else None)
    return [(w, merged.get(w.visitor), coh.bump_if(w.visitor, own[w.visitor])) for w in writes]


def _settle(state: EdgeState, result: list[tuple[_Write, dict[str, Any] | None, int]]) -> None:
    """Back on the loop: the written events leave the pending list; a merged session
    replaces the one in memory, with the events applied since the write on top."""
    categories = state.category_of
    for w, merged, stamp in result:
        entry = state.pending.get(w.visitor)
        later = entry.events[w.taken :] if entry is not None else []
        if merged is not None:
            for event, at in later:
                apply_event(merged, event, categories, url_item, at)
            state.sessions[w.visitor] = merged
        state.session_stamps[w.visitor] = stamp
        if later and entry is not None:
            entry.base, entry.events = stamp, later
        else:
            state.pending.pop(w.visitor, None)
