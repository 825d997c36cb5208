"""Read-only JetStream access for edges: direct gets, no consumers.

An edge may not create consumers (a consumer's deliver subject is not covered by NATS
permissions, so creating one would let an edge republish a stream's messages onto
another stream's subject: docs/SECURITY.md). It reads the profiles bucket, the control
bucket and the model object store with JetStream's *direct get* API instead, which
can only read: :func:`read_batch` for ranges of messages (the batched form, nats-server
2.11+) and :func:`read_last` for the newest message on one subject.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

#: Most messages one batched direct get returns (the server also bounds the bytes).
MAX_BATCH = 1000
#: Longest wait for the next message of a batch (seconds).
READ_TIMEOUT_S = 5.0


class DirectGetError(Exception):
    """The server answered a direct get with an error status."""

    def __init__(self, stream: str, status: str, description: str) -> None:
        self.stream, self.status, self.description = stream, status, description
        super().__init__(f"direct get on {stream}: {status} {description}".strip())


@dataclass(frozen=True, slots=True)
class StoredMsg:
    subject: str
    seq: int
    data: bytes
    headers: dict[str, str]


def _headers(msg: Msg) -> dict[str, str]:
    # nats-py keys some status headers by an enum whose hash is not the string's
    return {str(getattr(k, "value", k)): str(v) for k, v in (msg.headers or {}).items()}


def _stored(stream: str, headers: dict[str, str], data: bytes) -> StoredMsg:
    try:
        return StoredMsg(headers["Nats-Subject"], int(headers["Nats-Sequence"]), data, headers)
    except (KeyError, ValueError) as e:
        raise DirectGetError(stream, "bad_reply", f"missing {e}") from e


async def read_batch(
    nc: NATS, stream: str, start_seq: int, subjects: str, batch: int = MAX_BATCH, max_bytes: int = 0
) -> tuple[list[StoredMsg], int]:
    """Up to ``batch`` messages on ``subjects`` from ``start_seq`` on, in order, and how
    many more are pending after them (0 when the stream holds no more)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    out: list[StoredMsg] = []
    try:
        request: dict[str, object] = {"seq": max(1, start_seq), "batch": max(1, min(batch, MAX_BATCH)), "next_by_subj": subjects}
        if max_bytes:
            request["max_bytes"] = max_bytes
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox)
        while True:
            try:
                msg = await sub.next_msg(timeout=READ_TIMEOUT_S)
            except NatsTimeoutError as e:
                raise DirectGetError(stream, "timeout", "no reply (is direct get allowed on the stream?)") from e
            headers = _headers(msg)
            status = headers.get("Status", "")
            if status == "204":  # end of batch
                return out, int(headers.get("Nats-Num-Pending", "0") or 0)
            if status == "404":  # nothing at or after start_seq
                return out, 0
            if status:
                raise DirectGetError(stream, status, str(headers.get("Description", "")))
            out.append(_stored(stream, headers, msg.data))
    finally:
        await sub.unsubscribe()


async def read_last(nc: NATS, stream: str, subject: str) -> StoredMsg | None:
    """The newest message on ``subject`` (a literal subject), or None."""
    try:
        msg = await nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=READ_TIMEOUT_S)
    except NatsTimeoutError as e:
        raise DirectGetError(stream, "timeout", "no reply") from e
    headers = _headers(msg)
    status = headers.get("Status", "")
    if status == "404":
        return None
    if status:
        raise DirectGetError(stream, status, str(headers.get("Description", "")))
    return _stored(stream, headers, msg.data)
