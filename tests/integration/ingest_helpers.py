"""Helpers for ingestion tests: wait for the hub, read the warehouse."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from tests.integration.helpers import fetch


def stats(hub: Any) -> dict[str, Any]:
    """The hub's ``/v1/stats`` (``hub``: the conftest ``Hub``, read with a viewer token)."""
    reply = fetch(hub.url + "/v1/stats", hub.auth("viewer"))
    assert reply.status == 200, reply.text
    data: dict[str, Any] = json.loads(reply.body)
    return data


def wait_accepted(hub: Any, expected: int, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = stats(hub)
        except (AssertionError, OSError):
            time.sleep(0.2)
            continue
        if last["accepted"] >= expected:
            return last
        time.sleep(0.1)
    raise AssertionError(f"hub accepted {last.get('accepted')} of {expected} events in {timeout_s}s: {last}")


def hub_rows(hub: Any, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query of the hub's warehouse, whichever backend holds it (``sql``
    without parameters, valid in both dialects)."""
    if hub.database_url:
        import psycopg

        with psycopg.connect(hub.database_url, autocommit=True) as db:
            return [tuple(r) for r in db.execute(sql).fetchall()]
    return warehouse_rows(hub.data_dir, sql)


def warehouse_rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{data_dir / 'warehouse.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def page_view(url: str = "https://shop.example/p/dr01", **extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "type": "page_view", "url": url, "ts": int(time.time() * 1000), **extra}


def post_events(agent_url: str, events: list[Any], headers: dict[str, str] | None = None) -> Any:
    return fetch(
        agent_url + "/_p13n/collect",
        {"Content-Type": "application/json", **(headers or {})},
        method="POST",
        data=json.dumps({"events": events}).encode(),
    )
