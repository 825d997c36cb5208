"""Edge agent settings, read once from ``P13N_EDGE_*`` environment variables.

Each setting is declared once, below: default, meaning, variable, parsing, secrecy.
The loader, docs/SETTINGS.md's table and ``p13n edge serve --help`` are derived from
these declarations (``models.settings_base``); a test fails when the docs differ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.http_cache import DEFAULT_FORWARD_HEADERS
from models import tcf
from models.pseudonym import DEV_PSEUDONYM_KEY
from models.settings_base import (
    SettingsError,
    env_list,
    env_names,
    env_networks,
    env_str,
    load,
    log_format,
    log_level,
    names_as_given,
    server,
    setting,
)

PREFIX = "P13N_EDGE_"
#: Consent categories a default may name.
CONSENT_CATEGORIES = ("necessary", "analytics", "personalization", "marketing")


def _edge_id(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise SettingsError(name, "use letters, digits, '-' and '_' only")
    return value


def _origin(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(name, f"expected an http(s) URL, got {value!r}")
    return value


def _lower(env: Mapping[str, str], name: str, default: str) -> str:
    return env_str(env, name, default).lower()


def _identity_secret(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    if value and len(value.encode()) < 32:
        raise SettingsError(name, "use at least 32 bytes (RFC 7518 §3.2)")
    return value


def _consent(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = env_list(env, name, default)
    unknown = set(value) - set(CONSENT_CATEGORIES)
    if unknown:
        raise SettingsError(name, f"unknown categories {sorted(unknown)}")
    return value


def _tcf_purposes(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    try:
        unknown = set(tcf.parse_purposes(value)) - set(CONSENT_CATEGORIES) - {"necessary"}
    except ValueError as e:
        raise SettingsError(name, str(e)) from e
    if unknown:
        raise SettingsError(name, f"unknown categories {sorted(unknown)}")
    return value


def _gcm_map(env: Mapping[str, str], name: str, default: str) -> str:
    value = env_str(env, name, default)
    for part in (p for p in value.split(";") if p.strip()):
        category, _, keys = part.partition(":")
        if category.strip() not in CONSENT_CATEGORIES or not keys.strip():
            raise SettingsError(name, f"expected category:consent_type,consent_type;…, got {part!r}")
    return value


#: Consent Mode v2 consent types → our categories (all of a category's types granted).
DEFAULT_GCM_MAP = (
    "analytics:analytics_storage;personalization:personalization_storage;marketing:ad_storage,ad_user_data,ad_personalization"
)
DEFAULT_TCF_PURPOSES = ";".join(f"{k}:{','.join(map(str, sorted(v)))}" for k, v in tcf.DEFAULT_PURPOSES.items())


@dataclass(frozen=True)
class EdgeSettings:
    """Validated edge agent configuration."""

    edge_id: str = setting(
        "edge-1",
        "Stable id of this edge: its NATS subjects and fleet status use it. Letters, digits, `-`, `_`.",
        env="ID",
        parse=_edge_id,
    )
    listen: tuple[str, int] = setting(
        ("127.0.0.1", 8700),
        "`HOST:PORT` the agent binds. nginx talks to it; keep it on loopback or a private interface.",
    )
    origin: str = setting(
        "http://127.0.0.1:8000",
        "Base URL of the origin that serves shell pages (filter mode).",
        parse=_origin,
    )
    data_dir: Path = setting(
        Path("data/edge"),
        "Directory of the edge's SQLite file (`edge.sqlite3`, WAL).",
    )
    bundle: str = setting(
        "",
        "Content bundle JSON to load at start. Empty: build one from `P13N_EDGE_TEMPLATES_DIR`. A bundle that cannot be loaded leaves the agent serving fallbacks (reason `no_bundle`), never refusing pages.",
    )
    templates_dir: Path = setting(
        Path("templates"),
        "Templates directory (`slots.json`, `fragments/`, `catalog.json`) used when no bundle file is given.",
    )
    geo_header: str = setting(
        "x-geo-country",
        "Request header with the visitor's ISO country code, set by your CDN or nginx (`p13n nginx-config --geo-header`). Never trust a client-supplied value in production: let nginx overwrite it.",
        parse=_lower,
    )
    user_header: str = setting(
        "x-user-id",
        "Request header with the logged-in user's id, set by the site's own auth layer behind nginx (`p13n nginx-config --user-id-from $var`). Read only from a trusted proxy; nginx overwrites a visitor's copy. With it, every event of the request is attributed to that user.",
        parse=_lower,
    )
    identity_secret: str = setting(
        "",
        "Shared secret (HS256, at least 32 bytes) of the identity tokens the site backend signs for `p13n.identify(token)`: a JWT whose `sub` is the user id. Without it (and without a public key) identify tokens are refused; a bare `user_id` a visitor sends is never believed (docs/SECURITY.md).",
        parse=_identity_secret,
        secret=True,
    )
    identity_public_key: str = setting(
        "",
        "Instead of a secret: the site backend's public key (PEM file) for RS256, ES256 or EdDSA identity tokens.",
    )
    identity_issuer: str = setting(
        "",
        "Required `iss` claim of identity tokens (empty: not checked).",
    )
    identity_audience: str = setting(
        "",
        "Required `aud` claim of identity tokens (empty: not checked).",
    )
    identity_max_age_s: float = setting(
        600.0,
        "Identity tokens must expire (`exp`) within this many seconds: short-lived, so a leaked token is worth little.",
        minimum=1.0,
    )
    decision_deadline_ms: float = setting(
        5.0,
        "Per-page decision budget in milliseconds. Slots not decided in time render their fallback (reason `deadline`).",
    )
    origin_timeout_s: float = setting(
        5.0,
        "Origin fetch timeout (filter mode).",
        minimum=0.01,
    )
    max_page_bytes: int = setting(
        8388608,
        "Largest (decoded) shell the agent buffers to rewrite; larger pages stream through untouched (reason `page_too_large`).",
        minimum=1024,
    )
    shell_cache_entries: int = setting(
        512,
        "Shells kept scanned in memory (filter mode), least recently used out first.",
    )
    shell_cache_bytes: int = setting(
        67108864,
        "Most bytes of shells in memory (64 MB): the memory bound whatever the pages weigh.",
    )
    shell_store_entries: int = setting(
        10000,
        "Most shells in the SQLite cache; expired ones are purged every minute, the oldest go first beyond the bound (a flood of distinct URLs cannot grow the disk).",
    )
    shell_store_bytes: int = setting(
        268435456,
        "Most bytes of shells in the SQLite cache (256 MB).",
    )
    forward_headers: tuple[str, ...] = setting(
        DEFAULT_FORWARD_HEADERS,
        "Request headers a page fetch forwards to the origin (filter mode); the agent sets `X-Forwarded-For` and `X-Forwarded-Host` itself. An unlisted header cannot change a page every visitor shares (unkeyed-header cache poisoning): if the origin's page depends on a header you add here, the origin must name it in `Vary`. Non-GET requests are proxied with all end-to-end headers and never cached.",
    )
    cache_ignored_cookies: tuple[str, ...] = setting(
        (),
        "Cookie names (e.g. `_ga,_gid`) that do not make a request private. Any other site cookie, or an `Authorization` header, makes the request private: answered by the origin, never from or into the shared cache. Ignored cookies and the agent's own are not sent to the origin on page fetches.",
        parse=names_as_given,
    )
    trusted_proxies: tuple[str, ...] = setting(
        ("127.0.0.1/32", "::1/128"),
        "Peers whose forwarding headers the agent believes: the geo header, the user header (docs/SECURITY.md) and `X-Forwarded-Proto`. From any other peer they are ignored. nginx on the same host is the default; `p13n nginx-config` also overwrites them, so a visitor's copy never reaches the agent.",
        parse=env_networks,
    )
    metrics_allow: tuple[str, ...] = setting(
        ("127.0.0.1/32", "::1/128"),
        "Peers allowed to read `/_p13n/metrics` (others get 403). The generated nginx config answers 404 for it, so visitors never see the agent's metrics; scrape the agent's own port.",
        parse=env_networks,
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        "Origins (e.g. `https://www.shop.example`) allowed to `POST /_p13n/consent` and `/_p13n/collect` besides the site itself. Requests another site makes (`Sec-Fetch-Site: cross-site`/`same-site`, or an `Origin` naming another host) get a 403 `cross_site`: no site can choose consent or send events for our visitors.",
    )
    shed_lag_ms: float = setting(
        20.0,
        "Shed load past this event-loop lag in milliseconds: while requests wait longer than this to run, pages get every slot's fallback at once (reason `overload`) instead of queueing; collection is never shed. 0 never sheds (edge_agent/overload.py).",
        minimum=0.0,
    )
    decision_ttl_s: float = setting(
        5.0,
        "How long a page's context is kept for its SSI fragments (keyed by nginx `$request_id`).",
        minimum=0.1,
    )
    debug: bool = setting(
        False,
        "Add an `X-P13N-Debug` header explaining each decision (bundle version, per-slot reason, microseconds), and to every agent answer an `X-P13N-Worker` header naming the worker process that gave it.",
    )
    nats_url: str = setting(
        "nats://127.0.0.1:4222",
        "NATS server the edge syncs with (comma list for a cluster or leaf node). Per-edge credentials go in the URL: `nats://edge-1:PASSWORD@nats:4222` (`p13n nats-config` creates matching users). The page path never waits on NATS.",
    )
    cookie_name: str = setting(
        "p13n_id",
        "Name of the first-party visitor cookie (set only when consent allows).",
    )
    bandit_poll_s: float = setting(
        10.0,
        "Seconds between reads of the bandit slots' weights the hub computes (docs/EXPERIMENTS.md).",
        minimum=0.1,
    )
    force_variations: bool = setting(
        False,
        "Let QA force an experiment's variation with `?p13n_force=slot:variant` on the page URL or a `p13n_force` cookie of the same form (comma list). Forced decisions record no exposure. Off in production: anyone could choose their variation.",
    )
    default_consent: tuple[str, ...] = setting(
        ("necessary",),
        "Consent assumed before the visitor chooses, comma-separated from `necessary`, `analytics`, `personalization`, `marketing`. The strict default suits opt-in jurisdictions; `Sec-GPC: 1`/`DNT: 1` always mean `necessary` only.",
        parse=_consent,
    )
    tcf_cookie: str = setting(
        "euconsent-v2",
        "Cookie in which the site's IAB TCF consent platform keeps its TC string; read on every request, so the first page already follows a choice made before the SDK loaded (docs/PRIVACY.md has the order of signals). Empty: TC strings are not read.",
    )
    tcf_purposes: str = setting(
        DEFAULT_TCF_PURPOSES,
        "TCF purposes each category needs, every one consented: `category:purpose,…;…` (docs/PRIVACY.md explains the defaults). The SDK maps `__tcfapi` updates with the same table.",
        parse=_tcf_purposes,
    )
    tcf_vendor_id: int = setting(
        0,
        "Your IAB vendor id, when you are registered: a TC string then grants categories only if it also consents to that vendor. 0: purposes only (first-party processing).",
        minimum=0,
    )
    gpp_cookie: str = setting(
        "__gpp",
        "Cookie in which the site's consent platform keeps its IAB GPP string: its US National section's opt-out of sale, sharing or targeted advertising withholds `marketing`, its GPC flag everything beyond `necessary` (docs/PRIVACY.md). Empty: GPP strings are not read.",
    )
    gcm_map: str = setting(
        DEFAULT_GCM_MAP,
        "Google Consent Mode v2 consent types each category needs, every one granted: `category:type,…;…`. The SDK applies `gtag('consent', …)` defaults and updates with it.",
        parse=_gcm_map,
    )
    outbox_max_events: int = setting(
        200000,
        'Events the outbox may hold while NATS is unreachable; beyond it `/_p13n/collect` answers 503 with `Retry-After` (counted in `p13n_edge_collect_rejected_total{reason="outbox_full"}`), never dropping silently.',
        minimum=1,
    )
    publish_batch: int = setting(
        500,
        "Events per NATS message when the outbox drains (1–5000).",
        minimum=1,
        maximum=5000,
    )
    pseudonym_key: str = setting(
        DEV_PSEUDONYM_KEY,
        "Deployment secret for pseudonyms (keyed HMAC-SHA256 of known user ids). Must be the same on the hub and every edge; the built-in value is for demos and is logged as a warning.",
        secret=True,
        shown="*(development key)*",
    )
    model_bundle: str = setting(
        "",
        "A signed model bundle (`p13n train`) to load at start: cluster segments, ALS recommendations with session fold-in, and its `content.json` (slots, catalog) replacing the templates. A bundle that fails verification is refused and logged; the agent serves without models.",
    )
    bundle_public_key: str = setting(
        "",
        "The ed25519 public key (PEM file) bundles must be signed with; required with `P13N_EDGE_MODEL_BUNDLE`. When set, the edge also follows bundles pushed over NATS (`p13n push`) and, without NATS, starts from the last bundle it accepted.",
    )
    shared_fragment_ttl_s: float = setting(
        60.0,
        "SSI mode: seconds nginx may keep a shareable slot's fragment (a `variant` slot reading only device, consent, session counts, segment, country…), keyed on the visitor's class cookie instead of the visitor, so it never reaches the agent; also the longest a fragment of the previous bundle can show after a swap. 0: no class cookies, every fragment decided per visitor (docs/SLOTS.md, *Fragments nginx shares*).",
        minimum=0.0,
    )
    session_ttl_s: float = setting(
        1800.0,
        "A visitor's live session (counts, category interest, recent items) expires after this long without activity.",
        minimum=1.0,
    )
    sessions_in_memory: int = setting(
        25000,
        "Live sessions (and, separately, synced profiles) kept in memory, least recently used first out; SQLite answers the rest with a primary-key read. With several workers each keeps its share (this divided by `P13N_EDGE_WORKERS`). The agent's memory is mostly this (docs/PERFORMANCE.md).",
        minimum=100,
    )
    model_memo_entries: int = setting(
        10000,
        "Answers each model call (segment, session recommendations, next items, profile recommendations) keeps by its exact inputs, least recently used first out: a reload, or a page whose visitor did nothing new, costs a look-up instead of model work. About 1 KB each; a new bundle starts empty; an erasure empties it; each worker keeps its own; 0 turns it off (docs/PERFORMANCE.md).",
        minimum=0,
    )
    status_interval_s: float = setting(
        5.0,
        "Seconds between status heartbeats on `p13n.edges.status.<edge>` (the hub's `GET /v1/edges`).",
        minimum=0.1,
    )
    nats_ca: str = setting(
        "",
        "CA certificate (PEM) that verifies the NATS server; use with `tls://` URLs.",
    )
    log_level: str = setting(
        "warning",
        "`critical`, `error`, `warning`, `info`, `debug` or `trace`.",
        parse=log_level,
    )
    log_format: str = setting(
        "text",
        "`text` (a line per record: time, level, logger, message) or `json` (one object a line: `time`, `level`, `component`, `edge_id`, `logger`, `event`; docs/OPERATIONS.md). No log line carries personal data either way.",
        parse=log_format,
    )
    workers: int = setting(
        0,
        "Worker processes serving the agent's port; 0: one per core. They share the loaded models (forked after loading), write sessions through to SQLite so any worker's next page reflects the last event, and each applies erasures and new bundles; one of them publishes events and follows the hub (docs/OPERATIONS.md, *Sizing an edge*). `uvicorn` serves one.",
        minimum=0,
        maximum=64,
    )
    server: str = setting(
        "granian",
        "HTTP server running the agent: `granian` (Rust; about twice the request rate, see PERFORMANCE.md) or `uvicorn` (uvloop + httptools).",
        parse=server,
    )

    @property
    def worker_count(self) -> int:
        """``workers``, with 0 resolved to the cores this process may run on."""
        if self.workers:
            return self.workers
        return min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 64)

    def development_keys(self) -> list[str]:
        """Settings left on a development default (``p13n edge serve`` refuses them
        unless ``P13N_ALLOW_DEV_KEYS=1``)."""
        return [PREFIX + "PSEUDONYM_KEY"] if self.pseudonym_key == DEV_PSEUDONYM_KEY else []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EdgeSettings:
        env: Any = os.environ if environ is None else environ
        return load(cls, PREFIX, env)


#: Environment variable for each settings field (docs and docker-compose are checked against it).
ENV_NAMES: dict[str, str] = env_names(EdgeSettings, PREFIX)
