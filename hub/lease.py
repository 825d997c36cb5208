"""One hub process runs the scheduled jobs: the holder of a lease in NATS KV.

With several hub processes (``P13N_HUB_JOB_LEASE_S`` > 0) the periodic jobs (retention,
profile publishing, CRM sync, training, bandits, erasure resume, console samples, lake
export…) run only in the process that holds key ``jobs`` of KV bucket ``p13n_leases``.
The bucket keeps a value for the lease time only (its maximum age), so:

* a process takes the lease by creating the key, which fails while another holds it;
* the holder renews it every third of the lease time, each write naming the revision it
  last wrote, so a holder that lost the key (it expired while the process stalled, and
  another took it) finds out at its next renewal and stops starting jobs;
* when the holder dies its value ages out, and another process creates the key at its
  next attempt: jobs move within about 1⅓ lease times.

A job already running when the lease is lost finishes its run (jobs are idempotent
passes); the lease time should exceed a network partition's detection, not a job's
length, because renewals go on while jobs run. Followers (consumers shared by all
processes) are not leased.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

from nats.js.api import KeyValueConfig
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError, NotFoundError

log = logging.getLogger(__name__)

BUCKET = "p13n_leases"
KEY = "jobs"


class JobLease:
    """Takes and keeps the jobs lease; ``held`` (an event) is set while this process has it."""

    def __init__(self, lease_s: float, replicas: int = 1) -> None:
        self.lease_s = lease_s
        self.replicas = replicas
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.held = asyncio.Event()
        self.revision = 0
        self.current = ""  # who holds it, as last seen

    def view(self) -> dict[str, Any]:
        return {"held": self.held.is_set(), "holder": self.current, "me": self.holder, "lease_s": self.lease_s}

    async def _bucket(self, js: Any) -> Any:
        try:
            return await js.key_value(BUCKET)
        except (NotFoundError, BadRequestError):
            cfg = KeyValueConfig(bucket=BUCKET, description="Hub job lease", history=1, ttl=self.lease_s, replicas=self.replicas)
            return await js.create_key_value(cfg)

    async def step(self, kv: Any) -> None:
        """One attempt: renew what is held, else try to take it."""
        value = self.holder.encode()
        if self.held.is_set():
            try:
                self.revision = await kv.update(KEY, value, last=self.revision)
                return
            except (KeyWrongLastSequenceError, BadRequestError) as e:
                self.held.clear()
                log.warning("job lease lost (%s): scheduled jobs stop here", e)
        try:
            self.revision = await kv.create(KEY, value)
        except (KeyWrongLastSequenceError, BadRequestError):
            try:
                entry = await kv.get(KEY)
                self.current = (entry.value or b"").decode("utf-8", "replace")
            except Exception:  # it just expired: the next attempt takes it
                self.current = ""
            return
        self.current = self.holder
        self.held.set()
        log.info("job lease taken by %s: scheduled jobs run here", self.holder)

    async def run(self, js_of: Callable[[], Any], ready: asyncio.Event) -> None:
        """Hold the lease forever (a task of the hub's lifespan); NATS errors are retried."""
        kv = None
        while True:
            await ready.wait()
            try:
                if kv is None:
                    kv = await self._bucket(js_of())
                await self.step(kv)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # NATS away: cannot renew, so cannot be sure to hold it
                if self.held.is_set():
                    log.warning("job lease not renewed (%s): scheduled jobs stop here", e)
                self.held.clear()
                kv = None
            await asyncio.sleep(self.lease_s / 3)

    async def release(self, js_of: Callable[[], Any]) -> None:
        """At a clean stop: give the lease up so another process takes it at once."""
        if not self.held.is_set():
            return
        self.held.clear()
        try:
            kv = await js_of().key_value(BUCKET)
            await kv.delete(KEY, last=self.revision)
        except Exception:  # it ages out instead
            log.info("job lease not released; it expires in %.0f s", self.lease_s)
