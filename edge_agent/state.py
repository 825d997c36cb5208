"""The agent's runtime state, owned by the app lifespan and handed to handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nats.aio.client import Client as NATS

from edge_agent import session_sync
from edge_agent.coherence import OWNER_FILE, Coherence, OwnerLock
from edge_agent.group_commit import GroupCommitter
from edge_agent.identity import IdentityVerifier
from edge_agent.metrics import EdgeMetrics
from edge_agent.overload import LoadShedder
from edge_agent.pages import PageContext, PageContexts, build_context, new_visitor_id, request_visitor_id, set_cookie
from edge_agent.rewrite import PreparedPage
from edge_agent.session_sync import Pending
from edge_agent.settings import EdgeSettings
from edge_agent.shared_fragments import ClassCodec, plan
from edge_agent.store import EdgeStore
from models import tcf
from models.bandit import BanditWeights
from models.bundle_runtime import BundleModels
from models.consent import CONSENT_COOKIE, CmpPolicy
from models.content import ContentBundle, build_content, load_content
from models.secret_files import generated_secret
from models.session import new_session, session_attributes

log = logging.getLogger(__name__)

#: One year, the lifetime of the visitor cookie.
VISITOR_COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(slots=True)
class CachedShell:
    status: int
    headers: dict[str, str]
    page: PreparedPage
    expires: float
    #: The raw headers every page from this shell starts with (built on first use).
    page_headers: list[tuple[bytes, bytes]] | None = None
    #: (request header, value) pairs of the response's ``Vary`` when it was stored: the
    #: copy answers only requests with the same values (RFC 9111 §4.1)
    vary: tuple[tuple[str, str], ...] = ()
    #: Bytes of the shell's body (the memory cache is bounded by bytes)
    size: int = 0

    def matches(self, request: Mapping[str, str]) -> bool:
        return all(request.get(name, "") == value for name, value in self.vary)


def class_key(settings: EdgeSettings) -> str:
    """The edge's own key: it signs class cookies (edge_agent/shared_fragments.py) and,
    with several workers, derives first-time visitors' ids (edge_agent/pages.py). Made on
    first use and kept in the data directory so a restart keeps the cookies valid."""
    return generated_secret(settings.data_dir / "class-cookie.key")


def load_bundle(settings: EdgeSettings) -> ContentBundle:
    """The content bundle from the configured file, else built from ``templates_dir``."""
    if settings.bundle:
        with open(settings.bundle, encoding="utf-8") as f:
            return load_content(json.load(f))
    return load_content(build_content(settings.templates_dir))


@dataclass
class EdgeState:
    settings: EdgeSettings
    store: EdgeStore
    metrics: EdgeMetrics
    bundle: ContentBundle | None
    http: aiohttp.ClientSession | None = None
    contexts: PageContexts = field(init=False)
    shells: OrderedDict[str, CachedShell] = field(default_factory=OrderedDict)
    #: Bytes of the shells in ``shells``
    shell_bytes: int = 0
    _own_cookies: frozenset[str] | None = None
    started: float = field(default_factory=time.time)
    outbox_depth: int = 0
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    nc: NATS | None = None
    nats_connected: bool = False
    last_error: str = ""
    sdk: bytes = b""
    outbox_writer: GroupCommitter = field(init=False)
    models: BundleModels | None = None
    sessions: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    dirty_sessions: set[str] = field(default_factory=set)
    #: Visitors known to have no stored session (as bounded as ``sessions``): a
    #: returning visitor without one costs a dict look-up per page, not a SQLite read.
    #: Coherent because sessions are only created through :meth:`session` here (with
    #: several workers, each entry holds the visitor's stamp, as ``session_stamps`` does).
    sessionless: OrderedDict[str, int] = field(default_factory=OrderedDict)
    #: With several workers (edge_agent/coherence.py): the shared file, the owner lock,
    #: the stamp each session and profile in memory was read at, events applied in
    #: memory and not yet written (edge_agent/session_sync.py), the erasure epoch seen.
    coherence: Coherence | None = None
    owner_lock: OwnerLock | None = None
    session_stamps: dict[str, int] = field(default_factory=dict)
    profile_stamps: dict[str, int] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    seen_epoch: int = 0
    #: live sessions (and, apart, profiles) this process keeps in memory: with several
    #: workers each keeps its share of ``P13N_EDGE_SESSIONS_IN_MEMORY`` (SQLite has the
    #: rest); remembered model answers stay per worker (splitting them cost 1.5x the CPU
    #: per request: docs/PERFORMANCE.md)
    memory_share: int = 0
    _categories: tuple[ContentBundle, dict[str, str]] | None = None
    bundle_error: str = ""
    #: Where the slot content comes from: ``templates:DIR``, ``file:PATH`` or
    #: ``model bundle vN`` (a bundle's content replaces the templates until the next bundle)
    content_source: str = ""
    profiles_cache: OrderedDict[str, dict[str, Any] | None] = field(default_factory=OrderedDict)
    #: The pages' slot fallbacks by id, answered in SSI mode (edge_agent/slot_fallbacks.py)
    fallbacks: dict[str, bytes] = field(default_factory=dict)
    #: Bandit slots' weights from the hub, by seed (edge_agent/bandit_sync.py)
    bandits: dict[str, BanditWeights] = field(default_factory=dict)

    identity: IdentityVerifier = field(init=False)
    overload: LoadShedder = field(init=False)
    #: the live bundle and what it lets nginx share (edge_agent/shared_fragments.py)
    _shared: tuple[ContentBundle, ClassCodec | None] | None = None
    _class_key: bytes = b""
    #: with several workers: the key deriving a first-time visitor's id from the page's request id
    _worker_key: bytes = b""

    def __post_init__(self) -> None:
        s = self.settings
        self.identity = IdentityVerifier(
            s.identity_secret, s.identity_public_key, s.identity_issuer, s.identity_audience, s.identity_max_age_s
        )
        self.contexts = PageContexts(self.settings.decision_ttl_s)
        self.memory_share = s.sessions_in_memory
        if s.shared_fragment_ttl_s > 0:  # signs class cookies; kept so a restart keeps them valid
            self._class_key = class_key(s).encode("ascii")
        self.overload = LoadShedder(s.shed_lag_ms / 1000)
        self.metrics.live(self.metrics.loop_lag, lambda: self.overload.lag_s)
        self.metrics.watch_model_memo(lambda: self.models.memo_stats() if self.models is not None else {})
        self.outbox_writer = GroupCommitter(lambda rows, now, _: self.store.outbox_add(rows, now))
        self.metrics.bundle_version.set(self.bundle.version if self.bundle else -1)
        self.metrics.live(
            self.metrics.outbox_depth, lambda: self.coherence.outbox if self.coherence is not None else self.outbox_depth
        )
        self.metrics.live(self.metrics.nats_connected, lambda: float(self.nc is not None and self.nc.is_connected))
        self.metrics.watch_data_dir(s.data_dir)
        self.metrics.init_labels()
        self.tcf = CmpPolicy(
            s.tcf_cookie,
            tcf.parse_purposes(s.tcf_purposes),
            s.tcf_vendor_id,
            lambda r: self.metrics.tcf_invalid.labels(r).inc(),
            s.gpp_cookie,
        )

    def page_context(
        self,
        headers: Mapping[str, str],
        page_path: str,
        page_query: str = "",
        with_profile: bool = True,
        request_id: str = "",
    ) -> PageContext:
        """The request's context; ``with_profile=False`` skips the synced profile (a
        SQLite read) for callers that never look at it. ``request_id``: nginx's number
        for the page, which with several workers names a first-time visitor."""
        s = self.settings
        new_id = new_visitor_id
        if request_id and self.coherence is not None:
            key = self._worker_key

            def new_id() -> str:
                return request_visitor_id(key, request_id)

        ctx = build_context(
            headers,
            page_path,
            geo_header=s.geo_header,
            cookie_name=s.cookie_name,
            default_consent=s.default_consent,
            tcf=self.tcf,
            page_query=page_query,
            allow_forcing=s.force_variations,
            new_id=new_id,
        )
        # live behaviour and the synced profile are read only with personalization consent
        if ctx.visitor_id and not ctx.new_visitor and "personalization" in ctx.consent:
            session = self.session(ctx.visitor_id, create=False)
            if session is not None:
                ctx.session = session
                ctx.attrs.update(session_attributes(session))
            profile = self.profile(ctx.visitor_id) if with_profile else None
            if profile is not None:
                ctx.attrs["profile"] = profile
        return ctx

    def recovered(self, source: str) -> None:
        """``source`` (``erasure``, ``profiles``, ``publish``…) works again: its last
        error, if it is the one shown, is over."""
        if self.last_error.startswith(source + ":"):
            self.last_error = ""

    def profile(self, subject: str) -> dict[str, Any] | None:
        """The synced profile of ``subject`` (LRU in memory over SQLite)."""
        coh = self.coherence
        if subject in self.profiles_cache and (coh is None or self.profile_stamps.get(subject) == coh.stamp(subject)):
            self.profiles_cache.move_to_end(subject)
            return self.profiles_cache[subject]
        if coh is not None:
            self.profile_stamps[subject] = coh.stamp(subject)  # before the read: a later write shows
        profile = self.store.get_profile(subject)  # a primary-key read
        self.profiles_cache[subject] = profile
        self.profiles_cache.move_to_end(subject)
        while len(self.profiles_cache) > self.memory_share:
            gone, _ = self.profiles_cache.popitem(last=False)
            self.profile_stamps.pop(gone, None)
        return profile

    # ------------------------------------------------------------------ sessions
    def session(self, visitor_id: str, create: bool) -> dict[str, Any] | None:
        """The visitor's live session: memory first, then SQLite (after a restart)."""
        now = time.time()
        session = self.sessions.get(visitor_id)
        coh = self.coherence
        stamp = 0
        if coh is not None:  # another worker may have written it since it was read
            stamp = coh.stamp(visitor_id)
            if session is not None and self.session_stamps.get(visitor_id) != stamp and visitor_id not in self.pending:
                session = None
        if session is not None and now - float(session.get("last", 0)) > self.settings.session_ttl_s:
            session = None
            self.sessions.pop(visitor_id, None)
        if session is None:
            if not create and self.sessionless.get(visitor_id) == stamp:
                return None
            session = self.store.get_session(visitor_id, now)  # a primary-key read: microseconds
            if session is None:
                if not create:
                    self.sessionless[visitor_id] = stamp
                    if len(self.sessionless) > self.memory_share:
                        self.sessionless.popitem(last=False)
                    return None
                session = new_session()
            self.sessionless.pop(visitor_id, None)
            self.sessions[visitor_id] = session
            if coh is not None:
                self.session_stamps[visitor_id] = stamp
        self.sessions.move_to_end(visitor_id)
        while len(self.sessions) > self.memory_share:
            evicted, data = self.sessions.popitem(last=False)
            if evicted in self.dirty_sessions or evicted in self.pending:  # keep it: it is written soon
                self.sessions[evicted] = data
                break
            self.session_stamps.pop(evicted, None)
        return session

    def forget_subjects(self, erased: Callable[[str], bool]) -> int:
        """Drop erased visitors' live sessions and cached profiles from memory, and the
        models' remembered answers (a profile's factors are among their keys)."""
        if self.models is not None:
            self.models.forget()
        victims = [vid for vid in self.sessions if erased(vid)]
        for vid in victims:
            self.sessions.pop(vid, None)
            self.dirty_sessions.discard(vid)
        for subject in [s for s in self.profiles_cache if erased(s)]:
            self.profiles_cache.pop(subject, None)
        for vid in [v for v in self.sessionless if erased(v)]:
            self.sessionless.pop(vid, None)
        return len(victims)

    def forget_all(self) -> None:
        """Another worker applied an erasure or a profile purge: drop every cached
        session, profile and remembered answer (sessions with events not yet written
        stay: they are written next, erased subjects' filtered out by the store)."""
        if self.models is not None:
            self.models.forget()
        for vid in [v for v in self.sessions if v not in self.pending]:
            del self.sessions[vid]
        self.session_stamps.clear()
        self.profiles_cache.clear()
        self.profile_stamps.clear()
        self.sessionless.clear()

    def join_workers(self, path: Path) -> None:
        """Work beside other worker processes through the shared file at ``path``."""
        self._worker_key = class_key(self.settings).encode("ascii")
        self.memory_share = max(100, self.settings.sessions_in_memory // self.settings.worker_count)
        self.coherence = Coherence(path)
        self.coherence.join()
        self.coherence.serving(self.models.version if self.models else None)
        self.seen_epoch = self.coherence.epoch
        self.owner_lock = OwnerLock(self.settings.data_dir / OWNER_FILE)
        self.owner_lock.try_acquire()  # the first worker up takes it; the others wait for it
        self.outbox_writer = session_sync.committer(self)

    @property
    def owner(self) -> bool:
        """Whether this worker does the edge's once-only work (always, when alone)."""
        return self.owner_lock is None or self.owner_lock.held

    async def become_owner(self) -> None:
        """Return once this worker does the edge's once-only work (at once when alone)."""
        if self.owner_lock is not None:
            await self.owner_lock.acquire()

    def swapped(self, version: int) -> None:
        """A new model bundle is live here. With several workers the owner asks the
        server's parent to load it and replace the workers, so they share it again
        (edge_agent/preload.py); the others only serve it until they are replaced."""
        coh = self.coherence
        if coh is None:
            return
        coh.serving(version)
        if not self.owner or coh.parent_version == version:
            return
        coh.parent_version = version  # asked once per version, even if the parent fails to load it
        log.info("bundle v%d: asking the server to restart its workers on it", version)
        os.kill(os.getppid(), signal.SIGHUP)

    def leave_workers(self) -> None:
        if self.coherence is not None:
            self.coherence.close()
        if self.owner_lock is not None:
            self.owner_lock.close()
        self.metrics.leave()

    def session_rows(self) -> list[tuple[str, str, float]]:
        """Dirty sessions as rows for SQLite (and clears the dirty set)."""
        ttl = self.settings.session_ttl_s
        rows = []
        for vid in self.dirty_sessions:
            data = self.sessions.get(vid)
            if data is not None:
                rows.append((vid, json.dumps(data), float(data.get("last", 0)) + ttl))
        self.dirty_sessions.clear()
        return rows

    def visitor_cookie(self, ctx: PageContext, secure: bool) -> str | None:
        """``Set-Cookie`` value for a newly identified visitor, else None."""
        if not ctx.new_visitor:
            return None
        return self.visitor_cookie_for(ctx.visitor_id, secure)

    def visitor_cookie_for(self, visitor_id: str, secure: bool) -> str:
        """``Set-Cookie`` value naming ``visitor_id`` (HttpOnly, a year, SameSite=Lax)."""
        return set_cookie(self.settings.cookie_name, visitor_id, VISITOR_COOKIE_MAX_AGE, secure, http_only=True)

    @property
    def shared(self) -> ClassCodec | None:
        """The live bundle's shareable slots and class cookie codec (None: nothing to share,
        or sharing turned off)."""
        bundle = self.bundle
        if bundle is None or not self._class_key:
            return None
        cached = self._shared
        if cached is None or cached[0] is not bundle:
            share = plan(bundle)
            cached = (bundle, ClassCodec(share, self._class_key) if share is not None else None)
            self._shared = cached
        return cached[1]

    @property
    def category_of(self) -> dict[str, str]:
        """Item id → category, from the live content bundle (cached per bundle)."""
        bundle = self.bundle
        if bundle is None:
            return {}
        cached = self._categories
        if cached is None or cached[0] is not bundle:
            cached = (bundle, {i: str(item.get("category", "")) for i, item in bundle.items.items()})
            self._categories = cached
        return cached[1]

    def remember_shell(self, key: str, shell: CachedShell) -> None:
        """Keep a shell in memory, within the entry and byte bounds (LRU)."""
        old = self.shells.pop(key, None)
        if old is not None:
            self.shell_bytes -= old.size
        if shell.size > self.settings.shell_cache_bytes:
            return
        self.shells[key] = shell
        self.shell_bytes += shell.size
        while len(self.shells) > self.settings.shell_cache_entries or self.shell_bytes > self.settings.shell_cache_bytes:
            self.shell_bytes -= self.shells.popitem(last=False)[1].size

    @property
    def forward_headers(self) -> frozenset[str]:
        """Request headers a page fetch forwards to the origin."""
        return frozenset(self.settings.forward_headers)

    @property
    def own_cookies(self) -> frozenset[str]:
        """Cookies that do not make a page request private: the agent's own and the
        operator's ignored ones (never sent to the origin on page fetches)."""
        cached = self._own_cookies
        if cached is None:
            cached = self._own_cookies = frozenset(
                (self.settings.cookie_name, CONSENT_COOKIE, *self.settings.cache_ignored_cookies)
            )
        return cached
