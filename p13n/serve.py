"""Run an ASGI app factory under the chosen HTTP server.

``granian`` (default) is a Rust HTTP server; measured here it serves the agent's slot
endpoint at about twice uvicorn's rate (docs/PERFORMANCE.md). ``uvicorn`` (with uvloop
and httptools) stays available as a pure-Python-stack alternative. The app is built by
a factory in the worker process (``module:function``), so nothing opens before it runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

#: A worker still running this long after SIGTERM is killed: the app's own stop is
#: bounded well below it (models/tasks.py), so this only ends a wedged process.
WORKER_KILL_TIMEOUT_S = 45


#: The HTTP server's loggers write through the root logger, so its lines take the
#: service's log format too (models/logs.py configures the root before it starts).
SERVER_LOGS = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"_granian": {"handlers": [], "propagate": True}, "granian.access": {"handlers": [], "propagate": True}},
}


#: Seconds between replacing one worker and the next on a reload (a new bundle).
RESPAWN_INTERVAL_S = 1.0


def run_factory(
    target: str,
    host: str,
    port: int,
    log_level: str,
    server: str = "granian",
    tls_cert: str = "",
    tls_key: str = "",
    workers: int = 1,
    on_reload: Callable[[], None] | None = None,
) -> None:
    """Serve ``target`` with ``workers`` processes forked from this one (granian; uvicorn
    serves one); with ``tls_cert`` and ``tls_key`` over HTTPS only. ``on_reload`` runs
    here on SIGHUP, before the workers are replaced one at a time."""
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces, Loops

        level = "warning" if log_level == "trace" else log_level
        granian = Granian(
            target,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            factory=True,
            workers=workers,
            respawn_failed_workers=True,
            respawn_interval=RESPAWN_INTERVAL_S,
            loop=Loops.uvloop if importlib.util.find_spec("uvloop") else Loops.asyncio,
            websockets=False,
            log_level=level,  # type: ignore[arg-type]
            log_access=False,
            log_dictconfig=SERVER_LOGS,
            backlog=2048,
            workers_kill_timeout=WORKER_KILL_TIMEOUT_S,
            ssl_cert=Path(tls_cert) if tls_cert else None,
            ssl_key=Path(tls_key) if tls_key else None,
        )
        if on_reload is not None:
            granian.on_reload(on_reload)
        granian.serve()
        return
    import uvicorn

    uvicorn.run(
        target,
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # its loggers write through ours (models/logs.py)
        access_log=False,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        timeout_graceful_shutdown=5,
        ssl_certfile=tls_cert or None,
        ssl_keyfile=tls_key or None,
    )
