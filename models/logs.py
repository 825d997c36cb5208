"""How the hub and the edge write their logs: plain text lines (the default) or JSON,
one object a line (``P13N_HUB_LOG_FORMAT`` / ``P13N_EDGE_LOG_FORMAT``), for a log
pipeline to index without parsing.

A JSON line carries ``time`` (UTC, ISO 8601), ``level``, ``component`` (``hub`` or
``edge``), ``logger``, ``event`` (the message), the component's own id where it has one
(``edge_id``) and, for an exception, ``exc_info``. Log messages name no visitor, user,
e-mail or other personal data — pages are logged by path, subjects by erasure token or
request id — and a test scans the logs of a whole demo session for them
(tests/integration/test_logs.py).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

#: The values of ``P13N_*_LOG_FORMAT``.
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Loggers of the HTTP servers, which keep their own handlers unless told otherwise.
SERVER_LOGGERS = ("_granian", "granian.access", "uvicorn", "uvicorn.error")


def formatter(fmt: str, component: str, ids: dict[str, str] | None = None) -> logging.Formatter:
    if fmt != "json":
        return logging.Formatter(TEXT_FORMAT)
    from pythonjsonlogger.json import JsonFormatter

    fields: dict[str, Any] = {"component": component, **(ids or {})}
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger", "message": "event"},
        static_fields=fields,
        timestamp="time",
    )


def configure(fmt: str, component: str, ids: dict[str, str] | None = None) -> None:
    """Send every record (ours and the HTTP server's) to stderr in ``fmt``, keeping the
    root level (INFO unless configured lower)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, component, ids))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level == logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    for name in SERVER_LOGGERS:
        server = logging.getLogger(name)
        for old in list(server.handlers):
            server.removeHandler(old)
        server.propagate = True
