"""Reading the hub API's requests within bounds: the body, and a ``limit`` query."""

from __future__ import annotations

from starlette.requests import Request


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it is longer than ``limit`` (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def query_limit(request: Request, default: int, most: int) -> int:
    """``?limit=N`` kept within 1…``most``; raises ValueError when it is not an integer."""
    return min(most, max(1, int(request.query_params.get("limit", str(default)))))
