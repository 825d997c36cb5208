"""NATS connection trouble, logged the way an operator can read it.

nats-py's default error callback logs a full traceback for every failed attempt
(every half second while the server is away). :class:`ConnectionLog` replaces it: the
first failure of a streak is one line, later ones are counted and summarised at most
once a minute, and the recovery says how many attempts failed. Hub and edge both use it.
"""

from __future__ import annotations

import logging
import time
from typing import Any


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


class ConnectionLog:
    """Callbacks for ``nats.connect`` (``error_cb``, ``disconnected_cb``,
    ``reconnected_cb``) plus :meth:`failed` / :meth:`connected` for the caller's own
    connect loop."""

    def __init__(self, logger: logging.Logger, what: str, summary_every_s: float = 60.0) -> None:
        self.log, self.what, self.every = logger, what, summary_every_s
        self.failures = 0
        self.since = 0.0
        self.reported = 0.0
        self.last = ""
        #: The connected client, once there is one: a disconnect it is closing itself
        #: (shutdown) is not trouble.
        self.client: Any = None

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        self.last = one_line(error)
        if self.failures == 1:
            self.since = self.reported = now
            self.log.warning(
                "%s: NATS unreachable (%s); retrying, failures are summarised every %.0f s", self.what, self.last, self.every
            )
        elif now - self.reported >= self.every:
            self.reported = now
            self.log.warning(
                "%s: NATS still unreachable after %d attempts over %.0f s (last: %s)",
                self.what,
                self.failures,
                now - self.since,
                self.last,
            )

    def connected(self) -> None:
        if self.failures:
            self.log.warning(
                "%s: NATS connected after %d failed attempts over %.0f s",
                self.what,
                self.failures,
                time.monotonic() - self.since,
            )
        self.failures = 0

    # nats-py callbacks ---------------------------------------------------------
    async def error_cb(self, error: Exception) -> None:
        self.failed(error)

    async def disconnected_cb(self) -> None:
        if self.client is not None and self.client.is_closed:
            return  # closed on purpose
        if self.failures == 0:
            self.log.warning("%s: NATS connection lost; reconnecting", self.what)

    async def reconnected_cb(self) -> None:
        self.connected()
        self.log.info("%s: NATS reconnected", self.what)

    def callbacks(self) -> dict[str, Any]:
        return {"error_cb": self.error_cb, "disconnected_cb": self.disconnected_cb, "reconnected_cb": self.reconnected_cb}


def redact_url(urls: str) -> str:
    """NATS URLs without their credentials (``nats://edge-a:***@host:4222``)."""
    from urllib.parse import urlsplit

    out = []
    for url in urls.split(","):
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            out.append("<invalid url>")
            continue
        if parts.password is not None or parts.username is not None:
            user = parts.username or ""
            netloc = f"{user}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
            out.append(parts._replace(netloc=netloc).geturl())
        else:
            out.append(url.strip())
    return ",".join(out)


def startup_logger() -> logging.Logger:
    """The logger of the one-line start-up summary: shown at the default level too."""
    logger = logging.getLogger("p13n.startup")
    logger.setLevel(logging.INFO)
    return logger
