"""Response helpers shared by the agent's handlers."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from models.errors import error_body


def json_error(status: int, reason: str, detail: str = "", **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(status, reason, detail, **extra), status_code=status)
