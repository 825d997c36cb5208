"""What the hub asks of its storage: :class:`HubStore`, and the values it answers in.

Callers (the API, the jobs, the CLI) hold a ``HubStore`` and never a database
connection: the layering test forbids SQL, ``sqlite3`` and the SQLite store's
connections outside ``hub/storage/``. SQLite (``hub.storage.sqlite``) is the one
implementation today; the PostgreSQL option of the scale-out work implements the same
protocol. Every method is blocking and safe to call from any thread (async callers
use ``asyncio.to_thread``); writes are serialized inside the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.experiments.metrics import Metric
from hub.experiments.stats import Aggregate
from hub.ingest.batch import IngestReport, PreparedBatch
from hub.pii import PiiCipher
from models.erasure import ErasureOrder, Tokenizer


class StoreUnreadable(Exception):
    """The storage exists but cannot be read (a corrupt file, a broken database): the
    message says what the backend reported. Nothing is written while it lasts."""


@dataclass(frozen=True)
class SubjectIds:
    """A data subject's identifiers: as given, its pseudonym, its linked visitor ids."""

    given: str
    pseudonym: str
    anonymous_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def all(self) -> frozenset[str]:
        return frozenset({self.pseudonym, *self.anonymous_ids})


@dataclass(frozen=True)
class RetentionCutoffs:
    """Rows older than these go: lake days before ``lake_day`` (``YYYY-MM-DD``), and
    ISO receive times for the warehouse (events, users, identities, user features),
    dead letters and consent records."""

    lake_day: str
    warehouse: str
    dead_letters: str
    consent: str


@dataclass
class RekeyReport:
    """What a key rotation re-encrypted: users' PII, sealed traits and dead letters."""

    active_key: str
    reencrypted: int = 0
    sealed_reencrypted: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class TrainingRows:
    """What training may use from a window of the warehouse: the item events of
        subjects whose consent allows personalization and who were not erased (columns of
        equal length; times in epoch seconds), the catalog, and those subjects' marts
        features. ``left_out`` counts the subjects whose events were not used, by reason:
    ``no_choice`` (no consent recorded), ``declined`` (the latest choice, under the
    subject or the visitor id, leaves personalization out), ``erased``."""

    subjects: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    #: item_id, title, description, tags, category of every catalog item
    catalog: list[dict[str, str]] = field(default_factory=list)
    #: subject → views, clicks, carts, purchases, category_views (marts)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)


@dataclass
class ExperimentSummary:
    """An experiment seen in exposures: exposure events per variant, first and last."""

    name: str
    exposures: dict[str, int]
    first_exposure: str
    last_exposure: str


@dataclass
class ExperimentData:
    """What an experiment's analysis needs, aggregated in the store: users per variant
    (exposed to that variant only), users left out for seeing several, and per metric
    and variant the sufficient statistics (:class:`hub.experiments.stats.Aggregate`)."""

    name: str
    users: dict[str, int] = field(default_factory=dict)
    multiple_exposures: int = 0
    first_exposure: str = ""
    last_exposure: str = ""
    metrics: dict[str, dict[str, Aggregate]] = field(default_factory=dict)


class ErasureLedger(Protocol):
    """The record of erasure requests and of the edges' acknowledgements."""

    def create(self, order: ErasureOrder, requested_by: str, edges: list[str], work: str) -> None:
        """Record a request before any deletion; ``work`` (the identifiers, encrypted)
        lets a restarted hub finish it, and is wiped by :meth:`hub_done`."""

    def hub_done(self, request_id: str, hub: dict[str, Any]) -> None: ...
    def mark_published(self, request_id: str) -> None: ...
    def pending_work(self) -> list[tuple[str, str]]: ...
    def unpublished(self) -> list[ErasureOrder]: ...
    def ack(self, request_id: str, edge_id: str, deleted: dict[str, int], now: float) -> bool:
        """Record an edge's acknowledgement; True when it completes the request."""

    def forget_edge(self, edge_id: str, now: float) -> list[str]: ...
    def pending_count(self) -> int: ...
    def oldest_pending(self) -> float | None:
        """When the oldest incomplete request was made (Unix time; None: none)."""

    def status(self, request_id: str) -> dict[str, Any] | None: ...
    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest requests, newest first, as :meth:`status` gives them."""


class RunInProgress(Exception):
    """A training run is already going (on a shared store: maybe in another hub process)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"training run {run_id} is in progress")


class TrainingLedger(Protocol):
    """The record of training runs: one dict per run (``id``, ``trigger``,
    ``requested_by``, ``force``, ``status``, ``reason``, ``started_at``,
    ``finished_at``, ``summary``, ``timings``, ``gate``, ``version``, ``pushed``,
    ``report``)."""

    def create(self, run: dict[str, Any]) -> None:
        """Record a new run; :class:`RunInProgress` while another one is running."""

    def update(self, run_id: str, fields: dict[str, Any]) -> None: ...
    def get(self, run_id: str) -> dict[str, Any] | None: ...
    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The latest runs, newest first."""

    def interrupted(self, now: float) -> list[str]:
        """Mark runs still ``running`` whose hub process stopped mid-run as failed; their ids."""


class HubStore(Protocol):
    """The hub's lake, warehouse and marts, and the records kept beside them."""

    #: Names incoming events' subjects by erasure token (set by the hub at start).
    tokenizer: Tokenizer | None
    #: Seals personal data before it is stored (set by the hub at start).
    cipher: PiiCipher | None

    # -- ingest
    def prepare(self, events: Sequence[Any], source: str, received_at: str, results: bool = True) -> PreparedBatch: ...
    def commit(self, batch: PreparedBatch) -> IngestReport:
        """Store a prepared batch in every tier; duplicates (by event id) are counted."""

    def ingest(self, events: Sequence[Any], source: str, received_at: str) -> IngestReport: ...
    def writable(self) -> bool:
        """True when the warehouse takes a write now (a poison message fails alone)."""

    def dead_letter_raw(self, payloads: Sequence[bytes], reason: str, received_at: str) -> None: ...
    def suppress(self, tokens: Iterable[str], now: str) -> None:
        """Erased subjects' tokens: their events are dropped from now on."""

    def refresh_marts(self, limit: int = 200_000) -> int:
        """Fold new warehouse events into the marts; returns the rows folded."""

    # -- catalog and CRM
    def upsert_items(self, items: Sequence[dict[str, Any]], now: str) -> int: ...
    def crm_state(self) -> dict[str, str]: ...
    def set_crm_state(self, values: dict[str, str]) -> None: ...
    def upsert_crm_users(self, rows: Sequence[tuple[str, str, str, str | None]]) -> int: ...

    # -- data subjects
    def resolve_subject(self, given: str, key: bytes) -> SubjectIds: ...
    def erase_subject(self, subject: SubjectIds) -> dict[str, int]:
        """Delete the subject from every tier; rows deleted per ``tier.table``."""

    def export_subject(self, subject: SubjectIds, cipher: PiiCipher) -> dict[str, Any]:
        """Everything the tiers hold about the subject, personal data opened."""

    @property
    def erasures(self) -> ErasureLedger: ...
    @property
    def training_runs(self) -> TrainingLedger: ...

    # -- retention and keys
    def delete_expired(self, cutoffs: RetentionCutoffs) -> dict[str, int]: ...
    def rekey(self, cipher: PiiCipher) -> RekeyReport: ...

    # -- reads
    def consent_by_subject(self) -> dict[str, bool]:
        """Latest consent per subject (True: personalization), erased subjects left out."""

    def profiles(self, subjects: list[str]) -> dict[str, dict[str, Any]]:
        """Behaviour aggregates and CRM attributes of each subject that has any."""

    def top_items(self, limit: int) -> list[dict[str, Any]]: ...
    def training_rows(self, since: str) -> TrainingRows:
        """Item events received at or after ``since`` (ISO) that training may use."""

    def experiments(self) -> list[ExperimentSummary]:
        """Every experiment that has exposures, with their counts per variant."""

    def experiment(self, name: str, metrics: Sequence[Metric]) -> ExperimentData:
        """Users per variant and each metric's per-variant sums (hub.experiments)."""

    def bandit_evidence(self, name: str, metric: Metric) -> dict[str, tuple[int, int]]:
        """A bandit's units exposed to each variant alone and how many converted on the
        conversion metric, kept up to date from the events since the last call."""

    def dead_letters(self, samples: int = 3) -> list[dict[str, Any]]:
        """Dead letters per reason and source: count, last, redacted samples."""

    def replay_dead_letters(self, reason: str, limit: int = 10_000) -> dict[str, int]:
        """Ingest one reason's dead letters again (after a fix); replayed rows removed."""

    def consent_by_day(self, days: int = 14) -> list[dict[str, Any]]:
        """Consent choices per day and how many granted each category."""

    def marts_lag(self) -> dict[str, Any]:
        """Events the marts have not folded yet; the newest event's receive time."""

    def counters(self) -> dict[str, int]: ...
    def table_rows(self) -> dict[str, int]: ...

    def close(self) -> None: ...
