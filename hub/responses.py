"""The hub's one JSON error response (the shared shape of ``models.errors``)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from models.errors import error_body


def json_error(status: int, reason: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, reason, detail), status_code=status, headers=dict(headers) if headers else None)
