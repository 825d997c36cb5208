"""The hub's shared state: what the app factory builds once and every endpoint and
background job reads (settings, storage, NATS connection, metrics, audit, keys).

This module imports what the state holds, never the modules that use the state (the
API, the guard, the privacy endpoints, the jobs): they import it, and
``tests/unit/test_layering.py`` forbids the reverse, so the wiring has no cycle.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry, Counter, Gauge

from hub import retention
from hub.audit import AuditLog
from hub.auth import TokenStore
from hub.console.state import Console
from hub.fleet import Fleet
from hub.ingest.consumer import ConsumerCollector, ConsumerState
from hub.ingest.prep import Preparer
from hub.jobs import Supervisor
from hub.lease import JobLease
from hub.metrics import HubCollector
from hub.pii import PiiCipher
from hub.profiles import ProfilePublisher
from hub.refusals import RefusalAggregator
from hub.settings import HubSettings
from hub.storage import ErasureLedger, HubStore
from hub.storage.sqlite import LAKE_DIR
from hub.training_service import TrainingService


@dataclass
class HubState:
    settings: HubSettings
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    nc: NATS | None = None
    layout_ready: bool = False
    last_error: str = ""
    storage: HubStore | None = None
    #: The scheduled jobs' lease among several hub processes (``P13N_HUB_JOB_LEASE_S``)
    lease: JobLease | None = None
    consumer: ConsumerState = field(default_factory=ConsumerState)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    fleet: Fleet = field(default_factory=Fleet)
    publisher: ProfilePublisher | None = None
    erasures: ErasureLedger = field(init=False)
    profiles_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The background jobs (hub/jobs.py); created with the app's event loop running.
    jobs: Supervisor = field(init=False)

    def _take_factors(self, factors: dict[str, list[float]]) -> None:
        """A trained bundle shipped: consented profiles carry its user factors from now on."""
        if self.publisher is None:
            self.publisher = ProfilePublisher(factors)
        else:
            self.publisher.user_factors = factors
            self.publisher.published.clear()  # every profile again, with the new factors

    def __post_init__(self) -> None:
        s = self.settings
        self.tokens = TokenStore(s.tokens_file)
        self.audit = AuditLog(s.data_dir / "audit.sqlite", s.audit_secret)
        self.cipher = PiiCipher.from_settings(s.pii_keys, s.pii_keys_file, s.data_dir)
        # with PostgreSQL the store writes the lake itself, in the batch's transaction
        lake_dir = None if s.database_url else s.data_dir / LAKE_DIR
        self.preparer = Preparer(s.ingest_workers, lake_dir, self.cipher.ring)
        self.retention_policy = retention.RetentionPolicy(
            lake_days=s.retention_lake_days,
            warehouse_days=s.retention_warehouse_days,
            dead_letter_days=s.retention_dead_letter_days,
            consent_days=s.retention_consent_days,
        )
        self.jobs = Supervisor(self.registry)
        self.training = TrainingService(s, self.registry, self._take_factors, self.audit)
        self.console: Console | None = None  # opened with the storage (hub.app)
        self.consumer.retry_base_s = s.ingest_retry_s
        self.registry.register(ConsumerCollector(self.consumer))
        self.registry.register(HubCollector(self))
        self.refusals = RefusalAggregator(s.audit_refusal_window_s)
        self.auth_failures = Counter(
            "p13n_hub_auth_failures", "Requests refused for want of a valid token (401)", registry=self.registry
        )
        self.connect_failures = Counter(
            "p13n_hub_nats_connect_failures", "Failed NATS connection attempts", registry=self.registry
        )
        self.crm_failures = Counter("p13n_hub_crm_sync_failures", "Failed scheduled CRM syncs", registry=self.registry)
        self.nats_up = Gauge(
            "p13n_hub_nats_connected", "1 when connected to NATS and the layout is declared", registry=self.registry
        )
        self.erasure_requests = Counter("p13n_hub_erasure_requests", "Erasure requests accepted", registry=self.registry)
        self.erasures_pending = Gauge(
            "p13n_hub_erasures_pending", "Erasure requests not yet acknowledged by every edge", registry=self.registry
        )
        self.erasures_pending.set_function(lambda: self.erasures.pending_count() if hasattr(self, "erasures") else 0)
