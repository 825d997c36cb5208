"""Hub settings, read once from ``P13N_HUB_*`` environment variables.

Every field is documented in docs/SETTINGS.md (a test keeps the two in step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from models.pseudonym import DEV_PSEUDONYM_KEY
from models.secret_files import generated_secret
from models.settings_base import LOG_LEVELS, SERVERS, SettingsError, env_choice, env_float, env_host_port, env_int, env_str

PREFIX = "P13N_HUB_"


@dataclass(frozen=True)
class HubSettings:
    """Validated hub configuration."""

    #: Address uvicorn binds.
    listen: tuple[str, int] = ("127.0.0.1", 8600)
    #: NATS server URL (comma-separated list for a cluster).
    nats_url: str = "nats://127.0.0.1:4222"
    #: Directory for the hub's lake, warehouse and marts.
    data_dir: Path = Path("./data/hub")
    #: Seconds between NATS reconnect attempts at start-up (doubled up to 30 s, jittered).
    nats_retry_s: float = 0.5
    #: API keys accepted by ``POST /v1/events`` (comma-separated; empty = endpoint closed).
    api_keys: tuple[str, ...] = ()
    #: Messages taken per fetch by the ingest consumer (each holds many events).
    fetch_batch: int = 20
    #: Worker processes that decode, validate and normalize ingest batches while the
    #: main process commits (0: all in the main process).
    ingest_workers: int = 2
    #: Delay before the first redelivery of an event message that failed to store
    #: (doubled per delivery up to 30 s; dead-lettered after the delivery bound).
    ingest_retry_s: float = 1.0
    #: 401s of one endpoint within this window are audited as one entry with a count.
    audit_refusal_window_s: float = 60.0
    #: Deployment secret for pseudonyms; must equal the edges'.
    pseudonym_key: str = field(default=DEV_PSEUDONYM_KEY, repr=False)
    #: CRM sync config JSON (docs/INGESTION.md); empty = no scheduled sync.
    crm_config: str = ""
    #: Seconds between scheduled CRM syncs (±10 % jitter).
    crm_interval_s: float = 900.0
    #: Seconds without a heartbeat after which an edge is shown as stale.
    edge_stale_s: float = 30.0
    #: Seconds between profile publications to the edges.
    profile_sync_s: float = 5.0
    #: CA certificate (PEM) to verify the NATS server with; set it to use ``tls://`` URLs.
    nats_ca: str = ""
    #: ``user-factors-vN.npz`` written by ``p13n train``: known users' ALS factors, sent
    #: with their consented profiles (empty: profiles carry no factors).
    user_factors: str = ""
    #: Public key (PEM) that bundles uploaded to ``POST /v1/bundles`` must verify with
    #: (the edges' ``P13N_EDGE_BUNDLE_PUBLIC_KEY``); empty: uploads are refused.
    bundle_public_key: str = ""
    #: Log level of the service and its HTTP server.
    log_level: str = "warning"
    #: HTTP server: ``granian`` (default, measured faster) or ``uvicorn``.
    server: str = "granian"
    #: Admin API tokens file (JSON written by ``p13n tokens create``: names, roles,
    #: SHA-256 of each token). Empty: every admin endpoint answers 401.
    tokens_file: str = ""
    #: Secret keying the audit log's hash chain (empty: derived from the pseudonym key).
    audit_key: str = field(default="", repr=False)
    #: PII key ring ``id:base64[,id:base64…]``; the first key encrypts (``p13n keys pii``).
    pii_keys: str = field(default="", repr=False)
    #: File holding the PII key ring (wins over ``pii_keys``); one ``id:base64`` a line.
    pii_keys_file: str = ""
    #: Days raw events stay in the lake (whole day files are dropped).
    retention_lake_days: int = 30
    #: Days clean events stay in the warehouse (and user features without newer activity).
    retention_warehouse_days: int = 395
    #: Days dead letters are kept.
    retention_dead_letter_days: int = 30
    #: Days consent records (the proof of each choice) are kept.
    retention_consent_days: int = 1095
    #: Seconds between runs of the retention job.
    retention_interval_s: float = 3600.0
    #: Certificate (PEM) for HTTPS on the hub's API; with ``tls_key``. Empty: plain HTTP.
    tls_cert: str = ""
    #: Private key (PEM) of ``tls_cert``.
    tls_key: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        env = os.environ if environ is None else environ
        d = cls()
        nats_url = env_str(env, PREFIX + "NATS_URL", d.nats_url)
        for url in nats_url.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):  # user:password@ may follow
                raise SettingsError(PREFIX + "NATS_URL", f"expected nats:// or tls:// URLs, got {url!r}")
        level = env_choice(env, PREFIX + "LOG_LEVEL", d.log_level, LOG_LEVELS)
        server = env_choice(env, PREFIX + "SERVER", d.server, SERVERS)
        nats_ca = env_str(env, PREFIX + "NATS_CA", d.nats_ca)
        tls_cert = env_str(env, PREFIX + "TLS_CERT", d.tls_cert)
        tls_key = env_str(env, PREFIX + "TLS_KEY", d.tls_key)
        if bool(tls_cert) != bool(tls_key):
            raise SettingsError(PREFIX + "TLS_CERT", "set both P13N_HUB_TLS_CERT and P13N_HUB_TLS_KEY, or neither")
        for name, value in ((PREFIX + "TLS_CERT", tls_cert), (PREFIX + "TLS_KEY", tls_key)):
            if value and not Path(value).is_file():
                raise SettingsError(name, f"no such file {value!r}")
        lake_days = env_int(env, PREFIX + "RETENTION_LAKE_DAYS", d.retention_lake_days, minimum=1)
        warehouse_days = env_int(env, PREFIX + "RETENTION_WAREHOUSE_DAYS", d.retention_warehouse_days, minimum=1)
        if lake_days > warehouse_days:  # erasure finds lake rows through the warehouse
            raise SettingsError(PREFIX + "RETENTION_LAKE_DAYS", "must not exceed P13N_HUB_RETENTION_WAREHOUSE_DAYS")
        return cls(
            listen=env_host_port(env, PREFIX + "LISTEN", "127.0.0.1:8600"),
            nats_url=nats_url,
            data_dir=Path(env_str(env, PREFIX + "DATA_DIR", str(d.data_dir))),
            nats_retry_s=env_float(env, PREFIX + "NATS_RETRY_S", d.nats_retry_s, minimum=0.05),
            nats_ca=nats_ca,
            log_level=level,
            server=server,
            api_keys=tuple(k.strip() for k in env_str(env, PREFIX + "API_KEYS", "").split(",") if k.strip()),
            fetch_batch=env_int(env, PREFIX + "FETCH_BATCH", d.fetch_batch, minimum=1, maximum=1000),
            ingest_workers=env_int(env, PREFIX + "INGEST_WORKERS", d.ingest_workers, minimum=0, maximum=32),
            ingest_retry_s=env_float(env, PREFIX + "INGEST_RETRY_S", d.ingest_retry_s, minimum=0.01),
            audit_refusal_window_s=env_float(env, PREFIX + "AUDIT_REFUSAL_WINDOW_S", d.audit_refusal_window_s, minimum=0.1),
            pseudonym_key=env_str(env, PREFIX + "PSEUDONYM_KEY", d.pseudonym_key),
            crm_config=env_str(env, PREFIX + "CRM_CONFIG", d.crm_config),
            crm_interval_s=env_float(env, PREFIX + "CRM_INTERVAL_S", d.crm_interval_s, minimum=1.0),
            edge_stale_s=env_float(env, PREFIX + "EDGE_STALE_S", d.edge_stale_s, minimum=0.1),
            profile_sync_s=env_float(env, PREFIX + "PROFILE_SYNC_S", d.profile_sync_s, minimum=0.1),
            user_factors=env_str(env, PREFIX + "USER_FACTORS", d.user_factors),
            bundle_public_key=env_str(env, PREFIX + "BUNDLE_PUBLIC_KEY", d.bundle_public_key),
            tokens_file=env_str(env, PREFIX + "TOKENS_FILE", d.tokens_file),
            audit_key=env_str(env, PREFIX + "AUDIT_KEY", d.audit_key),
            pii_keys=env_str(env, PREFIX + "PII_KEYS", d.pii_keys),
            pii_keys_file=env_str(env, PREFIX + "PII_KEYS_FILE", d.pii_keys_file),
            retention_lake_days=lake_days,
            retention_warehouse_days=warehouse_days,
            retention_dead_letter_days=env_int(
                env, PREFIX + "RETENTION_DEAD_LETTER_DAYS", d.retention_dead_letter_days, minimum=1
            ),
            retention_consent_days=env_int(env, PREFIX + "RETENTION_CONSENT_DAYS", d.retention_consent_days, minimum=1),
            retention_interval_s=env_float(env, PREFIX + "RETENTION_INTERVAL_S", d.retention_interval_s, minimum=1.0),
            tls_cert=tls_cert,
            tls_key=tls_key,
        )

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


ENV_NAMES: dict[str, str] = {
    "listen": PREFIX + "LISTEN",
    "nats_url": PREFIX + "NATS_URL",
    "data_dir": PREFIX + "DATA_DIR",
    "nats_retry_s": PREFIX + "NATS_RETRY_S",
    "nats_ca": PREFIX + "NATS_CA",
    "log_level": PREFIX + "LOG_LEVEL",
    "server": PREFIX + "SERVER",
    "api_keys": PREFIX + "API_KEYS",
    "fetch_batch": PREFIX + "FETCH_BATCH",
    "ingest_workers": PREFIX + "INGEST_WORKERS",
    "ingest_retry_s": PREFIX + "INGEST_RETRY_S",
    "audit_refusal_window_s": PREFIX + "AUDIT_REFUSAL_WINDOW_S",
    "pseudonym_key": PREFIX + "PSEUDONYM_KEY",
    "crm_config": PREFIX + "CRM_CONFIG",
    "crm_interval_s": PREFIX + "CRM_INTERVAL_S",
    "edge_stale_s": PREFIX + "EDGE_STALE_S",
    "profile_sync_s": PREFIX + "PROFILE_SYNC_S",
    "user_factors": PREFIX + "USER_FACTORS",
    "bundle_public_key": PREFIX + "BUNDLE_PUBLIC_KEY",
    "tokens_file": PREFIX + "TOKENS_FILE",
    "audit_key": PREFIX + "AUDIT_KEY",
    "pii_keys": PREFIX + "PII_KEYS",
    "pii_keys_file": PREFIX + "PII_KEYS_FILE",
    "retention_lake_days": PREFIX + "RETENTION_LAKE_DAYS",
    "retention_warehouse_days": PREFIX + "RETENTION_WAREHOUSE_DAYS",
    "retention_dead_letter_days": PREFIX + "RETENTION_DEAD_LETTER_DAYS",
    "retention_consent_days": PREFIX + "RETENTION_CONSENT_DAYS",
    "retention_interval_s": PREFIX + "RETENTION_INTERVAL_S",
    "tls_cert": PREFIX + "TLS_CERT",
    "tls_key": PREFIX + "TLS_KEY",
}
