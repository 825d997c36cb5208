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
