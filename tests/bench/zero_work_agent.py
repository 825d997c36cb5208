"""A stand-in agent that does no work, for the SSI ceiling of ``edge_throughput.py --ceiling``.

It answers ``/_p13n/auth`` and ``/_p13n/slot/NAME`` with responses captured from the
real agent (same headers and bytes), so what it measures is what nginx, the HTTP server
and the kernel cost per page with a decision that takes no time. Served by the same
server code and options as the real agent (``p13n.serve.run_factory``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
App = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def app_from_env() -> App:
    with open(os.environ["P13N_BENCH_CAPTURE"], encoding="utf-8") as f:
        captured = json.load(f)
    auth = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in captured["auth"]] + [(b"content-length", b"0")]
    slots = {name: body.encode("utf-8") for name, body in captured["slots"].items()}

    async def app(scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/_p13n/auth":
            await send({"type": "http.response.start", "status": 204, "headers": auth})
            await send({"type": "http.response.body", "body": b""})
            return
        body = slots.get(scope["path"].rsplit("/", 1)[-1], b"")
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"private")]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": 200 if body else 204, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
