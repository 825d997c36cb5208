"""What both storage backends derive from a prepared batch the same way, in Python:
the identity links, users and consent records its rows imply, and the removal of
erased subjects' events from it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from hub.ingest.batch import C_ANON, C_EDGE, C_ID, C_PROPS, C_RECEIVED, C_TS, C_TYPE, C_USER, PreparedBatch, Row
from hub.personal import open_dead_letter, open_traits
from hub.pii import PiiCipher, PiiKeyError
from models.erasure import Tokenizer


def identity_rows(rows: Iterable[Row]) -> list[tuple[str, str, str]]:
    """(anonymous id, user id, first time) per pair the rows' identify events link, in
    key order (stored keeping the earliest time: ``first_seen``)."""
    links: dict[tuple[str, str], str] = {}
    for r in rows:
        if r[C_TYPE] == "identify" and r[C_ANON] and r[C_USER]:
            key = (r[C_ANON], r[C_USER])
            links[key] = min(links.get(key, r[C_TS]), r[C_TS])
    return [(*key, links[key]) for key in sorted(links)]


def user_rows(rows: Iterable[Row]) -> list[tuple[str, str, str]]:
    """(user id, first seen, last seen) per user the rows name, in user order."""
    seen: dict[str, tuple[str, str]] = {}
    for r in rows:
        user = r[C_USER]
        if user:
            ts = r[C_TS]
            first, last = seen.get(user, (ts, ts))
            seen[user] = (min(first, ts), max(last, ts))
    return [(u, *seen[u]) for u in sorted(seen)]


def consent_log_rows(rows: Iterable[Row]) -> list[tuple[str, ...]]:
    """The proof kept of each consent choice among the rows (``consent_log``)."""
    out: list[tuple[str, ...]] = []
    for r in rows:
        if r[C_TYPE] != "consent":
            continue
        props = orjson.loads(r[C_PROPS]) if r[C_PROPS] else {}
        out.append(
            (
                r[C_ID],
                r[C_USER] or r[C_ANON] or "",
                orjson.dumps(sorted(props.get("categories") or [])).decode(),
                str(props.get("source") or ""),
                r[C_EDGE] or "",
                r[C_TS],
                r[C_RECEIVED],
                orjson.dumps(props["tcf"]).decode() if isinstance(props.get("tcf"), dict) else "",
            )
        )
    return out


def subject_tokens(tokenizer: Tokenizer | None, ids: Sequence[str]) -> str:
    """Space-separated erasure tokens of ``ids`` (what a dead letter keeps in clear)."""
    return " ".join(sorted({tokenizer(i) for i in ids})) if tokenizer is not None and ids else ""


def drop_suppressed_rows(batch: PreparedBatch, tokenizer: Tokenizer | None, suppressed: set[str]) -> set[str]:
    """Take erased subjects' events out of ``batch`` (rows, lake rows, answers); the
    ids dropped. Lake rows a preparation worker already wrote are the caller's."""
    if tokenizer is None:
        return set()
    keep = [r for r in batch.rows if not tokenizer.any_in((r[C_USER], r[C_ANON]), suppressed)]
    dropped = {r[C_ID] for r in batch.rows} - {r[C_ID] for r in keep}
    if not dropped:
        return dropped
    batch.rows = keep
    batch.lake = {day: [x for x in rows if x[0] not in dropped] for day, rows in batch.lake.items()}
    answer: dict[str, Any] = {"status": "rejected", "reason": "erased_subject"}
    batch.report.results = [dict(answer) if r.get("event_id") in dropped else r for r in batch.report.results]
    return dropped


def export_document(
    pseudonym: str,
    anonymous_ids: Iterable[str],
    rows: dict[str, list[tuple[Any, ...]]],
    event_columns: Sequence[str],
    feature_columns: Sequence[str],
    cipher: PiiCipher,
) -> dict[str, Any]:
    """The access request's answer from the rows a backend read about the subject:
    ``users``, ``events`` (in ``event_columns``), ``dead_letters`` (id, received, source,
    reason, detail, payload), ``identities``, ``consents``, ``features`` (in
    ``feature_columns``), ``exposures``, ``bandits`` and ``lake`` (raw event bodies)."""
    out: dict[str, Any] = {"identifiers": {"pseudonym": pseudonym, "anonymous_ids": sorted(anonymous_ids)}}
    users = []
    for user_id, first, last, attributes, pii in rows["users"]:
        row: dict[str, Any] = {"user_id": user_id, "first_seen": first, "last_seen": last}
        row["attributes"] = orjson.loads(attributes) if attributes else {}
        if pii:
            try:
                row["pii"] = orjson.loads(cipher.decrypt(pii, aad=user_id))
            except PiiKeyError as err:
                row["pii_error"] = str(err)
        users.append(row)
    out["users"] = users
    events = [dict(zip(event_columns, r, strict=True)) for r in rows["events"]]
    for event in events:
        for k in ("props", "context"):
            if event.get(k):
                event[k] = orjson.loads(event[k])
        if isinstance(event.get("props"), dict):
            open_traits(event["props"], str(event["event_id"]), cipher)
    out["events"] = events
    dead: list[dict[str, Any]] = []
    for did, received, source, reason, detail, payload in rows["dead_letters"]:
        if all(d["id"] != did for d in dead):
            body = open_dead_letter(payload, cipher)
            try:
                parsed: Any = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = body
            dead.append(
                {"id": did, "received_at": received, "source": source, "reason": reason, "detail": detail, "payload": parsed}
            )
    out["dead_letters"] = dead
    out["identities"] = [{"anonymous_id": a, "user_id": u, "first_seen": f} for a, u, f in rows["identities"]]
    out["consents"] = [
        {
            "event_id": eid,
            "subject": s,
            "categories": orjson.loads(c),
            "source": src,
            "edge": edge,
            "ts": ts,
            "received_at": r,
            **({"tcf": orjson.loads(t)} if t else {}),
        }
        for eid, s, c, src, edge, ts, r, t in rows["consents"]
    ]
    out["features"] = [dict(zip(feature_columns, r, strict=True)) for r in rows["features"]]
    out["exposures"] = [
        {"experiment": r[0], "variant": r[1], "first": r[2], "last": r[3], "count": r[4]} for r in rows["exposures"]
    ]
    out["bandits"] = [
        {"experiment": r[0], "variant": r[1], "mixed": bool(r[2]), "first_exposure_jd": r[3], "converted": bool(r[4])}
        for r in rows["bandits"]
    ]
    raw: list[Any] = []
    for (body,) in rows["lake"]:
        event = orjson.loads(body)
        if isinstance(event, dict):
            open_traits(event, str(event.get("event_id", "")), cipher)
        raw.append(event)
    out["lake"] = raw
    return out
