"""Run an ASGI app under uvicorn with the project's production defaults.

uvloop and httptools when installed (they are dependencies; measured in
docs/PERFORMANCE.md), no access log (the proxy in front keeps one).
"""

from __future__ import annotations

import importlib.util
from typing import Any


def run_asgi(app: Any, host: str, port: int, log_level: str) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
