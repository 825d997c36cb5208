"""The one JSON error shape both HTTP services answer with.

``{"error": {"status": 400, "reason": "malformed_json", "detail": "…"}}`` — ``reason``
is a stable machine code, ``detail`` a human sentence. A test pins the shape.
"""

from __future__ import annotations

from typing import Any


def error_body(status: int, reason: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "reason": reason, "detail": detail}
    body.update(extra)
    return {"error": body}
