"""The agent's runtime state, owned by the app lifespan and handed to handlers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

import aiohttp
from nats.aio.client import Client as NATS

from edge_agent.group_commit import GroupCommitter
from edge_agent.metrics import EdgeMetrics
from edge_agent.pages import PageContext, PageContexts, build_context
from edge_agent.rewrite import PreparedPage
from edge_agent.settings import EdgeSettings
from edge_agent.store import EdgeStore
from models.content import ContentBundle, build_content, load_content

log = logging.getLogger(__name__)

#: One year, the lifetime of the visitor cookie.
VISITOR_COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(slots=True)
class CachedShell:
    status: int
    headers: dict[str, str]
    page: PreparedPage
    expires: float


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
    started: float = field(default_factory=time.time)
    outbox_depth: int = 0
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    nc: NATS | None = None
    nats_connected: bool = False
    last_error: str = ""
    sdk: bytes = b""
    outbox_writer: GroupCommitter = field(init=False)

    def __post_init__(self) -> None:
        self.contexts = PageContexts(self.settings.decision_ttl_s)
        self.outbox_writer = GroupCommitter(self.store.outbox_add)
        self.metrics.bundle_version.set(self.bundle.version if self.bundle else -1)
        self.metrics.outbox_depth.set_function(lambda: self.outbox_depth)

    def page_context(self, headers: Mapping[str, str], page_path: str) -> PageContext:
        s = self.settings
        return build_context(
            headers,
            page_path,
            geo_header=s.geo_header,
            cookie_name=s.cookie_name,
            default_consent=s.default_consent,
        )

    def visitor_cookie(self, ctx: PageContext, secure: bool) -> str | None:
        """``Set-Cookie`` value for a newly identified visitor, else None."""
        if not ctx.new_visitor:
            return None
        jar: SimpleCookie = SimpleCookie()
        jar[self.settings.cookie_name] = ctx.visitor_id
        morsel = jar[self.settings.cookie_name]
        morsel["path"] = "/"
        morsel["max-age"] = VISITOR_COOKIE_MAX_AGE
        morsel["samesite"] = "Lax"
        morsel["httponly"] = True
        if secure:
            morsel["secure"] = True
        return morsel.OutputString()

    def remember_shell(self, key: str, shell: CachedShell) -> None:
        self.shells[key] = shell
        self.shells.move_to_end(key)
        while len(self.shells) > self.settings.shell_cache_entries:
            self.shells.popitem(last=False)
