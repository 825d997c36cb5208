"""Scans for privacy tests: every file under a directory, every message in NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import nats
from nats.js.errors import NotFoundError


def files_containing(roots: Iterable[Path], needles: Iterable[str]) -> list[tuple[str, str]]:
    """(file, needle) for every file under ``roots`` whose bytes contain a needle
    (SQLite databases with their -wal/-shm files, factors, keys, everything)."""
    wanted = [(n, n.encode()) for n in needles]
    hits = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            hits.extend((str(path), n) for n, raw in wanted if raw in data)
    return hits


def rows_containing(database_url: str, needles: Iterable[str]) -> list[tuple[str, str]]:
    """(table, needle) for every table of the PostgreSQL database with a row whose text
    contains a needle (every column, as the row's text form)."""
    import psycopg

    hits = []
    with psycopg.connect(database_url, autocommit=True) as db:
        tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        for table in tables:
            for needle in needles:
                row = db.execute(f'SELECT 1 FROM "{table}" t WHERE strpos(t::text, %s) > 0 LIMIT 1', (needle,)).fetchone()
                if row is not None:
                    hits.append((table, needle))
    return hits


async def _nats_hits(url: str, needles: list[str]) -> list[tuple[str, str]]:
    nc = await nats.connect(url)
    hits: list[tuple[str, str]] = []
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name
            assert name is not None
            state = info.state
            if not state.messages:
                continue
            for seq in range(max(1, int(state.first_seq)), int(state.last_seq) + 1):
                try:
                    msg = await js.get_msg(name, seq)
                except NotFoundError:  # deleted
                    continue
                blob = (msg.subject or "").encode() + (msg.data or b"") + repr(msg.headers or {}).encode()
                hits.extend((f"{name}#{seq}", n) for n in needles if n.encode() in blob)
    finally:
        await nc.close()
    return hits


def nats_messages_containing(url: str, needles: Iterable[str]) -> list[tuple[str, str]]:
    """(stream#seq, needle) for every stored message (subject, headers, body) holding a needle."""
    return asyncio.run(_nats_hits(url, list(needles)))
