"""Reading the hub API's ``limit`` query within bounds (bodies: :mod:`models.http_body`)."""

from __future__ import annotations

from starlette.requests import Request


def query_limit(request: Request, default: int, most: int) -> int:
    """``?limit=N`` kept within 1…``most``; raises ValueError when it is not an integer."""
    return min(most, max(1, int(request.query_params.get("limit", str(default)))))
