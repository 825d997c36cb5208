"""Edge agent settings, read once from ``P13N_EDGE_*`` environment variables.

Every field is documented in docs/SETTINGS.md (a test keeps the two in step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.http_cache import DEFAULT_FORWARD_HEADERS
from models.pseudonym import DEV_PSEUDONYM_KEY
from models.settings_base import (
    LOG_LEVELS,
    SERVERS,
    SettingsError,
    env_bool,
    env_choice,
    env_float,
    env_host_port,
    env_int,
    env_list,
    env_networks,
    env_str,
)

PREFIX = "P13N_EDGE_"


@dataclass(frozen=True)
class EdgeSettings:
    """Validated edge agent configuration."""

    #: Stable id of this edge (NATS subjects and fleet status use it).
    edge_id: str = "edge-1"
    #: Address uvicorn binds.
    listen: tuple[str, int] = ("127.0.0.1", 8700)
    #: Base URL of the origin that serves shell pages (filter mode).
    origin: str = "http://127.0.0.1:8000"
    #: Directory for the edge's SQLite file.
    data_dir: Path = Path("./data/edge")
    #: Content bundle JSON to load at start; empty = build one from ``templates_dir``.
    bundle: str = ""
    #: Templates directory used when no bundle file is given.
    templates_dir: Path = Path("templates")
    #: Request header holding the visitor's ISO country code (set by nginx/CDN).
    geo_header: str = "x-geo-country"
    #: Request header holding a known user's id, set by the site's auth layer behind
    #: nginx (read only from a trusted proxy).
    user_header: str = "x-user-id"
    #: Shared secret (HS256) of the identity tokens the site backend signs; empty with
    #: no public key: ``identify`` tokens are refused.
    identity_secret: str = field(default="", repr=False)
    #: Public key (PEM file; RS256, ES256 or EdDSA) of the site backend's identity tokens.
    identity_public_key: str = ""
    #: Required ``iss`` of identity tokens (empty: not checked).
    identity_issuer: str = ""
    #: Required ``aud`` of identity tokens (empty: not checked).
    identity_audience: str = ""
    #: Longest lifetime (``exp`` from now) an identity token may have, in seconds.
    identity_max_age_s: float = 600.0
    #: Per-page decision deadline in milliseconds; past it, fallbacks render.
    decision_deadline_ms: float = 5.0
    #: Origin fetch timeout in seconds (filter mode); past it the agent answers 504.
    origin_timeout_s: float = 5.0
    #: Largest shell body the agent buffers to rewrite (bytes).
    max_page_bytes: int = 8 * 1024 * 1024
    #: Maximum number of shells kept in memory.
    shell_cache_entries: int = 512
    #: Most bytes of shells kept in memory (least recently used out first).
    shell_cache_bytes: int = 64 * 1024 * 1024
    #: Most shells kept in the SQLite cache (oldest out first; expired ones purged).
    shell_store_entries: int = 10_000
    #: Most bytes of shells kept in the SQLite cache.
    shell_store_bytes: int = 256 * 1024 * 1024
    #: Request headers forwarded to the origin when fetching a page (filter mode).
    forward_headers: tuple[str, ...] = DEFAULT_FORWARD_HEADERS
    #: Cookies that do not make a request private (analytics cookies…); removed from
    #: what the origin sees on page fetches, like the agent's own cookies.
    cache_ignored_cookies: tuple[str, ...] = ()
    #: Peers (IPs or networks) whose forwarding headers are trusted: geo country,
    #: user id, ``X-Forwarded-Proto``. nginx on the same host is the default.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    #: Peers (IPs or networks) allowed to read ``/_p13n/metrics`` (the generated nginx
    #: config also refuses it to visitors).
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    #: Origins (``https://www.shop.example``) allowed to send consent and events besides
    #: the site itself; every other site is refused (docs/SECURITY.md).
    allowed_origins: tuple[str, ...] = ()
    #: Seconds a page's decisions are kept for its SSI fragments (keyed by request id).
    decision_ttl_s: float = 5.0
    #: Add an ``X-P13N-Debug`` header explaining decisions.
    debug: bool = False
    #: NATS server URL (the edge works without it; sync arrives in later versions).
    nats_url: str = "nats://127.0.0.1:4222"
    #: Name of the visitor cookie.
    cookie_name: str = "p13n_id"
    #: Consent assumed when a visitor has made no choice (comma list of categories).
    default_consent: tuple[str, ...] = ("necessary",)
    #: Events the outbox may hold before collection answers 503 (backpressure).
    outbox_max_events: int = 200_000
    #: Events per NATS message when the outbox is drained.
    publish_batch: int = 500
    #: Deployment secret for pseudonyms (HMAC-SHA256); must equal the hub's.
    pseudonym_key: str = field(default=DEV_PSEUDONYM_KEY, repr=False)
    #: Signed model bundle (``bundle-vN.tar``) to load at start; empty = no models.
    model_bundle: str = ""
    #: ed25519 public key (PEM) that model bundles must be signed with.
    bundle_public_key: str = ""
    #: Seconds a visitor's live session survives without activity.
    session_ttl_s: float = 1800.0
    #: Live sessions (and synced profiles) kept in memory; SQLite holds the rest.
    sessions_in_memory: int = 25_000
    #: Seconds between status heartbeats to the hub.
    status_interval_s: float = 5.0
    #: CA certificate (PEM) to verify the NATS server with; set it to use ``tls://`` URLs.
    nats_ca: str = ""
    #: Log level of the service and its HTTP server.
    log_level: str = "warning"
    #: HTTP server: ``granian`` (default, measured faster) or ``uvicorn``.
    server: str = "granian"

    def development_keys(self) -> list[str]:
        """Settings left on a development default (``p13n edge serve`` refuses them
        unless ``P13N_ALLOW_DEV_KEYS=1``)."""
        return [PREFIX + "PSEUDONYM_KEY"] if self.pseudonym_key == DEV_PSEUDONYM_KEY else []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EdgeSettings:
        env = os.environ if environ is None else environ
        d = cls()
        consent = tuple(
            c.strip().lower()
            for c in env_str(env, PREFIX + "DEFAULT_CONSENT", ",".join(d.default_consent)).split(",")
            if c.strip()
        )
        unknown = set(consent) - {"necessary", "analytics", "personalization", "marketing"}
        if unknown:
            raise SettingsError(PREFIX + "DEFAULT_CONSENT", f"unknown categories {sorted(unknown)}")
        origin = env_str(env, PREFIX + "ORIGIN", d.origin).rstrip("/")
        if not origin.startswith(("http://", "https://")):
            raise SettingsError(PREFIX + "ORIGIN", f"expected an http(s) URL, got {origin!r}")
        edge_id = env_str(env, PREFIX + "ID", d.edge_id)
        if not edge_id or not all(c.isalnum() or c in "-_" for c in edge_id):
            raise SettingsError(PREFIX + "ID", "use letters, digits, '-' and '_' only")
        level = env_choice(env, PREFIX + "LOG_LEVEL", d.log_level, LOG_LEVELS)
        server = env_choice(env, PREFIX + "SERVER", d.server, SERVERS)
        nats_ca = env_str(env, PREFIX + "NATS_CA", d.nats_ca)
        identity_secret = env_str(env, PREFIX + "IDENTITY_SECRET", d.identity_secret)
        if identity_secret and len(identity_secret.encode()) < 32:
            raise SettingsError(PREFIX + "IDENTITY_SECRET", "use at least 32 bytes (RFC 7518 §3.2)")
        return cls(
            edge_id=edge_id,
            listen=env_host_port(env, PREFIX + "LISTEN", "127.0.0.1:8700"),
            origin=origin,
            data_dir=Path(env_str(env, PREFIX + "DATA_DIR", str(d.data_dir))),
            bundle=env_str(env, PREFIX + "BUNDLE", d.bundle),
            templates_dir=Path(env_str(env, PREFIX + "TEMPLATES_DIR", str(d.templates_dir))),
            geo_header=env_str(env, PREFIX + "GEO_HEADER", d.geo_header).lower(),
            user_header=env_str(env, PREFIX + "USER_HEADER", d.user_header).lower(),
            identity_secret=identity_secret,
            identity_public_key=env_str(env, PREFIX + "IDENTITY_PUBLIC_KEY", d.identity_public_key),
            identity_issuer=env_str(env, PREFIX + "IDENTITY_ISSUER", d.identity_issuer),
            identity_audience=env_str(env, PREFIX + "IDENTITY_AUDIENCE", d.identity_audience),
            identity_max_age_s=env_float(env, PREFIX + "IDENTITY_MAX_AGE_S", d.identity_max_age_s, minimum=1.0),
            decision_deadline_ms=env_float(env, PREFIX + "DECISION_DEADLINE_MS", d.decision_deadline_ms),
            origin_timeout_s=env_float(env, PREFIX + "ORIGIN_TIMEOUT_S", d.origin_timeout_s, minimum=0.01),
            max_page_bytes=env_int(env, PREFIX + "MAX_PAGE_BYTES", d.max_page_bytes, minimum=1024),
            shell_cache_entries=env_int(env, PREFIX + "SHELL_CACHE_ENTRIES", d.shell_cache_entries),
            shell_cache_bytes=env_int(env, PREFIX + "SHELL_CACHE_BYTES", d.shell_cache_bytes),
            shell_store_entries=env_int(env, PREFIX + "SHELL_STORE_ENTRIES", d.shell_store_entries),
            shell_store_bytes=env_int(env, PREFIX + "SHELL_STORE_BYTES", d.shell_store_bytes),
            forward_headers=env_list(env, PREFIX + "FORWARD_HEADERS", d.forward_headers),
            cache_ignored_cookies=env_list(env, PREFIX + "CACHE_IGNORED_COOKIES", d.cache_ignored_cookies, lower=False),
            trusted_proxies=env_networks(env, PREFIX + "TRUSTED_PROXIES", d.trusted_proxies),
            allowed_origins=env_list(env, PREFIX + "ALLOWED_ORIGINS", d.allowed_origins),
            metrics_allow=env_networks(env, PREFIX + "METRICS_ALLOW", d.metrics_allow),
            decision_ttl_s=env_float(env, PREFIX + "DECISION_TTL_S", d.decision_ttl_s, minimum=0.1),
            debug=env_bool(env, PREFIX + "DEBUG", d.debug),
            nats_url=env_str(env, PREFIX + "NATS_URL", d.nats_url),
            cookie_name=env_str(env, PREFIX + "COOKIE_NAME", d.cookie_name),
            default_consent=consent,
            nats_ca=nats_ca,
            log_level=level,
            server=server,
            outbox_max_events=env_int(env, PREFIX + "OUTBOX_MAX_EVENTS", d.outbox_max_events, minimum=1),
            publish_batch=env_int(env, PREFIX + "PUBLISH_BATCH", d.publish_batch, minimum=1, maximum=5000),
            pseudonym_key=env_str(env, PREFIX + "PSEUDONYM_KEY", d.pseudonym_key),
            model_bundle=env_str(env, PREFIX + "MODEL_BUNDLE", d.model_bundle),
            bundle_public_key=env_str(env, PREFIX + "BUNDLE_PUBLIC_KEY", d.bundle_public_key),
            session_ttl_s=env_float(env, PREFIX + "SESSION_TTL_S", d.session_ttl_s, minimum=1.0),
            sessions_in_memory=env_int(env, PREFIX + "SESSIONS_IN_MEMORY", d.sessions_in_memory, minimum=100),
            status_interval_s=env_float(env, PREFIX + "STATUS_INTERVAL_S", d.status_interval_s, minimum=0.1),
        )


#: Environment variable for each settings field (docs and docker-compose are checked against it).
ENV_NAMES: dict[str, str] = {
    "edge_id": PREFIX + "ID",
    "listen": PREFIX + "LISTEN",
    "origin": PREFIX + "ORIGIN",
    "data_dir": PREFIX + "DATA_DIR",
    "bundle": PREFIX + "BUNDLE",
    "templates_dir": PREFIX + "TEMPLATES_DIR",
    "geo_header": PREFIX + "GEO_HEADER",
    "user_header": PREFIX + "USER_HEADER",
    "identity_secret": PREFIX + "IDENTITY_SECRET",
    "identity_public_key": PREFIX + "IDENTITY_PUBLIC_KEY",
    "identity_issuer": PREFIX + "IDENTITY_ISSUER",
    "identity_audience": PREFIX + "IDENTITY_AUDIENCE",
    "identity_max_age_s": PREFIX + "IDENTITY_MAX_AGE_S",
    "decision_deadline_ms": PREFIX + "DECISION_DEADLINE_MS",
    "origin_timeout_s": PREFIX + "ORIGIN_TIMEOUT_S",
    "max_page_bytes": PREFIX + "MAX_PAGE_BYTES",
    "shell_cache_entries": PREFIX + "SHELL_CACHE_ENTRIES",
    "shell_cache_bytes": PREFIX + "SHELL_CACHE_BYTES",
    "shell_store_entries": PREFIX + "SHELL_STORE_ENTRIES",
    "shell_store_bytes": PREFIX + "SHELL_STORE_BYTES",
    "forward_headers": PREFIX + "FORWARD_HEADERS",
    "cache_ignored_cookies": PREFIX + "CACHE_IGNORED_COOKIES",
    "trusted_proxies": PREFIX + "TRUSTED_PROXIES",
    "allowed_origins": PREFIX + "ALLOWED_ORIGINS",
    "metrics_allow": PREFIX + "METRICS_ALLOW",
    "decision_ttl_s": PREFIX + "DECISION_TTL_S",
    "debug": PREFIX + "DEBUG",
    "nats_url": PREFIX + "NATS_URL",
    "cookie_name": PREFIX + "COOKIE_NAME",
    "default_consent": PREFIX + "DEFAULT_CONSENT",
    "nats_ca": PREFIX + "NATS_CA",
    "log_level": PREFIX + "LOG_LEVEL",
    "server": PREFIX + "SERVER",
    "outbox_max_events": PREFIX + "OUTBOX_MAX_EVENTS",
    "publish_batch": PREFIX + "PUBLISH_BATCH",
    "pseudonym_key": PREFIX + "PSEUDONYM_KEY",
    "model_bundle": PREFIX + "MODEL_BUNDLE",
    "bundle_public_key": PREFIX + "BUNDLE_PUBLIC_KEY",
    "session_ttl_s": PREFIX + "SESSION_TTL_S",
    "sessions_in_memory": PREFIX + "SESSIONS_IN_MEMORY",
    "status_interval_s": PREFIX + "STATUS_INTERVAL_S",
}
