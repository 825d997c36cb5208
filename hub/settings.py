"""Hub settings, read once from ``P13N_HUB_*`` environment variables.

Each setting is declared once, below: default, meaning, variable, parsing, secrecy.
The loader, docs/SETTINGS.md's table and ``p13n hub serve --help`` are derived from
these declarations (``models.settings_base``); a test fails when the docs differ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.pseudonym import DEV_PSEUDONYM_KEY
from models.secret_files import generated_secret
from models.settings_base import (
    SettingsError,
    env_names,
    env_str,
    load,
    log_format,
    log_level,
    names_as_given,
    segment_kinds,
    server,
    setting,
)

PREFIX = "P13N_HUB_"


def _nats_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    for url in value.split(","):
        if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):  # user:password@ may follow
            raise SettingsError(name, f"expected nats:// or tls:// URLs, got {url!r}")
    return value


#: The job lease of hubs sharing a PostgreSQL database when none is set (seconds).
SHARED_STORE_LEASE_S = 15.0


@dataclass(frozen=True)
class HubSettings:
    """Validated hub configuration."""

    listen: tuple[str, int] = setting(
        ("127.0.0.1", 8600),
        "`HOST:PORT` the hub API binds.",
    )
    nats_url: str = setting(
        "nats://127.0.0.1:4222",
        "NATS server URL; a comma-separated list for a cluster; `nats://hub:PASSWORD@…` with `p13n nats-config` users.",
        parse=_nats_url,
    )
    data_dir: Path = setting(
        Path("data/hub"),
        "Directory for the lake, warehouse and marts.",
    )
    database_url: str = setting(
        "",
        "PostgreSQL for the lake, warehouse and marts (`postgresql://USER:PASSWORD@HOST:5432/DB`, libpq's URL or `key=value` form), so several hub processes share them; empty: SQLite files in `P13N_HUB_DATA_DIR` (one hub). Needs `pip install 'p13n[postgres]'`. The audit log, API tokens and console sessions stay in each hub's data directory.",
        secret=True,
    )
    nats_replicas: int = setting(
        1,
        "Copies of every stream, bucket and the model store on a NATS cluster: 3 on a three-node cluster (survives one node), 1 on a single server (the embedded default). Raised on an existing layout at the next start.",
        minimum=1,
        maximum=5,
    )
    nats_retry_s: float = setting(
        0.5,
        "First pause between NATS connection attempts at start; doubles up to 30 s, with ±20 % jitter.",
        minimum=0.05,
    )
    api_keys: tuple[str, ...] = setting(
        (),
        "Comma-separated machine keys for `POST /v1/events` only (`Authorization: Bearer KEY` or `X-API-Key: KEY`); operator and admin tokens are accepted there too.",
        parse=names_as_given,
        secret=True,
    )
    fetch_batch: int = setting(
        20,
        "NATS messages the ingest consumer takes per fetch (each carries up to `P13N_EDGE_PUBLISH_BATCH` events).",
        minimum=1,
        maximum=1000,
    )
    ingest_workers: int = setting(
        2,
        "Worker processes that decode, validate and normalize ingest batches while the main process commits the previous one (0: everything in the main process). Measured in docs/PERFORMANCE.md.",
        minimum=0,
        maximum=32,
    )
    ingest_retry_s: float = setting(
        1.0,
        "Delay before an event message that failed to store is delivered again; doubled per delivery up to 30 s. After 5 deliveries a message that fails on its own while the warehouse takes writes goes to the dead-letter stream (docs/INGESTION.md) with the reason (`p13n_hub_ingest_dead_lettered_messages_total`), so it never blocks the consumer; during a storage outage messages wait instead.",
        minimum=0.01,
    )
    audit_refusal_window_s: float = setting(
        60.0,
        'Requests without a valid token (401) are all counted (`p13n_hub_auth_failures_total`), but audited once per endpoint and window: the first at once, the rest as one entry `{"repeated": n}` when the window closes, so a brute force cannot grow the audit log.',
        minimum=0.1,
    )
    pseudonym_key: str = setting(
        DEV_PSEUDONYM_KEY,
        "The deployment's pseudonymization secret; must equal `P13N_EDGE_PSEUDONYM_KEY`.",
        secret=True,
        shown="*(development key)*",
    )
    crm_config: str = setting(
        "",
        "Path of the CRM sync config JSON (docs/INGESTION.md). Empty: no scheduled CRM sync.",
    )
    crm_interval_s: float = setting(
        900.0,
        "Seconds between scheduled CRM syncs (±10 % jitter); a failed run is logged and counted, the next one retries.",
        minimum=1.0,
    )
    edge_stale_s: float = setting(
        30.0,
        "An edge whose last heartbeat is older than this is shown as stale in `GET /v1/edges`.",
        minimum=0.1,
    )
    profile_sync_s: float = setting(
        5.0,
        "Seconds between publications of changed consented profiles to the `p13n_profiles` KV bucket (withdrawn consents are purged in the same pass).",
        minimum=0.1,
    )
    nats_ca: str = setting(
        "",
        "CA certificate (PEM) that verifies the NATS server; use with `tls://` URLs.",
    )
    user_factors: str = setting(
        "",
        "`user-factors-vN.npz` from `p13n train`: each consented profile then carries the subject's ALS factors, so the edge recommends for a known visitor before any session activity.",
    )
    bundle_public_key: str = setting(
        "",
        "Public key (PEM, from `p13n keys generate`) that bundles uploaded with `p13n push` / `POST /v1/bundles` must verify with — the same key the edges hold. Empty: uploads are refused (503 `no_public_key`).",
    )
    log_level: str = setting(
        "warning",
        "As for the edge.",
        parse=log_level,
    )
    log_format: str = setting(
        "text",
        "As for the edge (`text` or `json`; a JSON line has `component` `hub` and no `edge_id`).",
        parse=log_format,
    )
    server: str = setting(
        "granian",
        "`granian` or `uvicorn`, as for the edge.",
        parse=server,
    )
    tokens_file: str = setting(
        "",
        "Admin API tokens file written by `p13n tokens create` (name, role, SHA-256 of each token; re-read within a second of a change). Empty: every admin endpoint answers 401. Roles: docs/PRIVACY.md.",
    )
    audit_key: str = setting(
        "",
        "Secret keying the audit log's HMAC chain; a hub-only secret, never derived from the pseudonym key every edge holds. Empty: a random development key kept in the data directory (`p13n hub serve` refuses it without `P13N_ALLOW_DEV_KEYS=1`). Keep it away from the data so nobody with file access can rewrite the chain.",
        secret=True,
    )
    pii_keys: str = setting(
        "",
        "PII key ring `id:base64[,id:base64…]` (AES-256-GCM; `p13n keys pii` makes a key). The first key encrypts, all decrypt. Empty (and no file): a development key is created under the data directory, with a warning.",
        secret=True,
    )
    pii_keys_file: str = setting(
        "",
        "File holding the key ring, one `id:base64` a line (wins over `P13N_HUB_PII_KEYS`).",
    )
    retention_lake_days: int = setting(
        30,
        "Days raw events stay in the lake; whole day files are dropped. Must not exceed the warehouse days.",
        minimum=1,
    )
    retention_warehouse_days: int = setting(
        395,
        "Days clean events stay in the warehouse; users not seen since, identity links first seen before and user features without activity since go too.",
        minimum=1,
    )
    retention_dead_letter_days: int = setting(
        30,
        "Days dead letters are kept.",
        minimum=1,
    )
    retention_consent_days: int = setting(
        1095,
        "Days consent records (the proof of each choice) are kept.",
        minimum=1,
    )
    retention_interval_s: float = setting(
        3600.0,
        "Seconds between runs of the retention job (also `POST /v1/retention/run` and `p13n retention run`).",
        minimum=1.0,
    )
    job_lease_s: float = setting(
        0.0,
        "With several hub processes: seconds of the lease in NATS KV that lets one of them run the scheduled jobs (renewed every third of it; a dead holder's jobs move within about 1⅓ of it). 0: no lease, this process runs every job (one hub; hub/lease.py) — unless `P13N_HUB_DATABASE_URL` is set, where 0 means 15 s: hubs sharing a database never all run the jobs.",
        minimum=0.0,
    )
    lake_export: str = setting(
        "",
        "Mirror the lake as Parquet here: a directory or a pyarrow filesystem URI (`s3://bucket/prefix`), one `day=YYYY-MM-DD/events.parquet` partition per day file, rewritten when the day changes (an erasure, new events) and deleted with it (retention). Needs `p13n[lake]`. Empty: off (hub/lake_parquet.py).",
    )
    lake_export_interval_s: float = setting(
        900.0,
        "Seconds between Parquet syncs of the lake (`P13N_HUB_LAKE_EXPORT`); erasures and retention also sync at once.",
        minimum=1.0,
    )
    training_key: str = setting(
        "",
        "Bundle signing key (PEM, `p13n keys generate`) the hub signs the bundles it trains with; its public half is `P13N_HUB_BUNDLE_PUBLIC_KEY`. Empty: the hub does not train (`POST /v1/training/runs` answers 503 `training_off`); train elsewhere with `p13n train --from-hub` and push.",
    )
    training_interval_s: float = setting(
        86400.0,
        "Seconds between scheduled training runs (±10 % jitter). A scheduled run happens only when at least `P13N_HUB_TRAINING_MIN_NEW_EVENTS` events were stored since the last run; `POST /v1/training/runs` starts one at any time.",
        minimum=1.0,
    )
    training_min_new_events: int = setting(
        1,
        "Events stored since the last run that a scheduled run waits for (0: run on every interval).",
        minimum=0,
    )
    training_window_days: float = setting(
        90.0,
        "Days of events a run trains on.",
        minimum=0.01,
    )
    training_half_life_days: float = setting(
        30.0,
        "An event's weight halves every this many days of age.",
        minimum=0.01,
    )
    training_holdout_days: float = setting(
        1.0,
        "The most recent days, held out to compare the new bundle with the live one (docs/MODELS.md, the gate).",
        minimum=0.001,
    )
    training_tolerance: float = setting(
        0.05,
        "The new bundle ships when its holdout nDCG is at least (1 - this) × the live bundle's.",
        minimum=0.0,
        maximum=1,
    )
    training_gate_min_users: int = setting(
        20,
        "Fewer holdout users than this and the gate cannot compare: the run ships and says so.",
        minimum=1,
    )
    training_min_interactions: int = setting(
        200,
        "Fewer subject-item interactions in the window and a run trains nothing (the live bundle stays).",
        minimum=1,
    )
    training_min_subjects: int = setting(
        20,
        "Fewer consenting subjects in the window and a run trains nothing.",
        minimum=1,
    )
    training_min_items: int = setting(
        5,
        "Fewer items in the window and a run trains nothing.",
        minimum=1,
    )
    training_tune: bool = setting(
        True,
        "Search hyperparameters on a validation split in each run (slower); off: defaults.",
    )
    training_segment_kinds: tuple[str, ...] = setting(
        ("kmeans", "gmm"),
        "Clusterings a training run fits for segments, the best silhouette winning: `kmeans`, `gmm`, `dbscan` (density clusters; visitors it calls noise get no segment; docs/MODELS.md).",
        parse=segment_kinds,
    )
    training_templates: str = setting(
        "",
        "Templates directory whose slots and catalog trained bundles ship. Empty: the live bundle's content is carried over.",
    )
    training_encoder: str = setting(
        "",
        'Directory of the sentence encoder that embeds item text for `"model": "semantic"` slots (`p13n encoder install` puts it there). Empty: where that command installs by default, inside the Python environment.',
    )
    bandit_interval_s: float = setting(
        300.0,
        "Seconds between recomputations of the bandit slots' weights (Thompson sampling on their metric; docs/EXPERIMENTS.md).",
        minimum=1.0,
    )
    experiment_metrics: str = setting(
        "",
        "JSON file of the metrics experiments are measured by (docs/EXPERIMENTS.md). Empty: purchase and add-to-cart conversion, revenue, clicks, page views (guardrail).",
    )
    console_session_s: float = setting(
        28800.0,
        "Seconds an operator console sign-in lasts (the session cookie's lifetime; sign-out ends it at once; docs/CONSOLE.md).",
        minimum=60.0,
    )
    console_results_ttl_s: float = setting(
        300.0,
        "Seconds between the hub's snapshots of every experiment's results, which the console's experiment pages show (a page's Compute again link recomputes at once; the API always computes). 0: no snapshots; a page computes on every view.",
        minimum=0.0,
    )
    console_sample_s: float = setting(
        60.0,
        "Seconds between the samples of the pipeline counters the console charts (kept 14 days; docs/CONSOLE.md).",
        minimum=1.0,
    )
    tls_cert: str = setting(
        "",
        "Certificate (PEM) to serve the hub's API over HTTPS (with `P13N_HUB_TLS_KEY`); the admin commands verify it with their `--ca` option.",
    )
    tls_key: str = setting(
        "",
        "The certificate's private key (PEM).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        env: Any = os.environ if environ is None else environ
        return load(cls, PREFIX, env)

    @classmethod
    def for_data_dir(cls, data_dir: Path | None) -> HubSettings:
        """Settings from the environment, a command's ``--data-dir`` winning."""
        env = dict(os.environ)
        if data_dir is not None:
            env[PREFIX + "DATA_DIR"] = str(data_dir)
        return cls.from_env(env)

    def check(self) -> None:
        """Rules across settings (run by the loader)."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError(PREFIX + "TLS_CERT", "set both P13N_HUB_TLS_CERT and P13N_HUB_TLS_KEY, or neither")
        for name, value in ((PREFIX + "TLS_CERT", self.tls_cert), (PREFIX + "TLS_KEY", self.tls_key)):
            if value and not Path(value).is_file():
                raise SettingsError(name, f"no such file {value!r}")
        if self.training_key and not self.bundle_public_key:  # what it trains must be uploadable
            raise SettingsError(PREFIX + "TRAINING_KEY", "needs P13N_HUB_BUNDLE_PUBLIC_KEY (its public half)")
        if self.experiment_metrics:
            from hub.experiments.metrics import MetricError, load_metrics

            try:
                load_metrics(self.experiment_metrics)
            except MetricError as e:
                raise SettingsError(PREFIX + "EXPERIMENT_METRICS", str(e)) from e
        if self.retention_lake_days > self.retention_warehouse_days:  # erasure finds lake rows through the warehouse
            raise SettingsError(PREFIX + "RETENTION_LAKE_DAYS", "must not exceed P13N_HUB_RETENTION_WAREHOUSE_DAYS")

    @property
    def training_dir(self) -> Path:
        """Where the hub's training runs write bundles, reports, user factors and logs."""
        return self.data_dir / "training"

    @property
    def effective_job_lease_s(self) -> float:
        """The job lease in force: ``job_lease_s``, or 15 s on a shared database."""
        if self.job_lease_s > 0:
            return self.job_lease_s
        return SHARED_STORE_LEASE_S if self.database_url else 0.0

    @property
    def audit_secret(self) -> bytes:
        """The audit chain key: the configured one, else a random development key kept
        under the data directory (never derived from the pseudonym key, which every edge
        holds: an edge must not be able to re-sign the hub's audit chain)."""
        if self.audit_key:
            return self.audit_key.encode()
        return generated_secret(self.data_dir / "audit-dev.key").encode()

    def development_keys(self) -> list[str]:
        """Settings left on a development default (``p13n hub serve`` refuses them
        unless ``P13N_ALLOW_DEV_KEYS=1``)."""
        out = []
        if self.pseudonym_key == DEV_PSEUDONYM_KEY:
            out.append(PREFIX + "PSEUDONYM_KEY")
        if not self.pii_keys and not self.pii_keys_file:
            out.append(PREFIX + "PII_KEYS")
        if not self.audit_key:
            out.append(PREFIX + "AUDIT_KEY")
        return out


#: Environment variable for each settings field (docs and docker-compose are checked against it).
ENV_NAMES: dict[str, str] = env_names(HubSettings, PREFIX)
