"""Per-page-view context: attributes computed once, slot outcomes memoised.

In SSI mode nginx asks for each slot in its own subrequest; they share the page's
request id, so the context (and every decided slot) is looked up, not recomputed.
The cache is bounded in size and time.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from edge_agent.context import request_attributes
from edge_agent.decide import PageDecision, SlotOutcome, decide_page, holdout_exposure
from models import consent as consent_rules
from models.bandit import BanditWeights
from models.bundle_runtime import BundleModels
from models.content import ContentBundle
from models.pseudonym import valid_visitor_id

#: Upper bound on page contexts kept for SSI fragments.
MAX_PAGE_CONTEXTS = 50_000


#: Cookie values written as they are (the characters ``http.cookies`` leaves unquoted).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:]+")


def set_cookie(name: str, value: str, max_age: int, secure: bool, http_only: bool) -> str:
    """A ``Set-Cookie`` value: path /, SameSite=Lax; max-age 0 deletes it. Attributes in
    ``http.cookies``' order; a plain value (visitor ids, classes, consent) is written out
    directly (``SimpleCookie`` costs ~20 µs a call, on the collect path for the class)."""
    if _PLAIN_VALUE.fullmatch(value):
        flags = ("; HttpOnly" if http_only else "") + f"; Max-Age={max_age}; Path=/; SameSite=Lax"
        return f"{name}={value}{flags}" + ("; Secure" if secure else "")
    jar: SimpleCookie = SimpleCookie()
    jar[name] = value
    morsel = jar[name]
    morsel["path"] = "/"
    morsel["max-age"] = max_age
    morsel["samesite"] = "Lax"
    if http_only:
        morsel["httponly"] = True
    if secure:
        morsel["secure"] = True
    return morsel.OutputString()


def parse_cookies(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` request header (RFC 6265 §5.4 cookie-string).

    Lenient like browsers: pairs without ``=`` are skipped, the first occurrence of a
    name wins, surrounding double quotes are removed. Never raises.
    """
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, sep, value = pair.partition("=")
        if not sep:
            continue
        name = name.strip()
        if not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


@dataclass(slots=True)
class PageContext:
    attrs: dict[str, Any]
    consent: frozenset[str]
    visitor_id: str
    new_visitor: bool
    decision: PageDecision = field(default_factory=PageDecision)
    expires: float = 0.0
    session: dict[str, Any] | None = None
    exposures: list[dict[str, Any]] = field(default_factory=list)
    #: slot → variant id forced for QA (only with ``P13N_EDGE_FORCE_VARIATIONS``)
    forced: dict[str, str] = field(default_factory=dict)
    #: whether the visitor is in the personalization holdout (None until the page's first
    #: decision, which also records the arm)
    held: bool | None = None


def new_visitor_id() -> str:
    """A fresh random visitor id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def request_visitor_id(key: bytes, request_id: str) -> str:
    """The id a first-time visitor gets on the page nginx numbered ``request_id``: the
    same in every worker process, so a page's auth call and its fragment requests name
    one visitor whichever workers take them (keyed, as random as the request id)."""
    digest = hmac.digest(key, b"visitor:" + request_id.encode("latin-1", "replace"), "sha256")
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def build_context(
    headers: Mapping[str, str],
    page_path: str,
    *,
    geo_header: str,
    cookie_name: str,
    default_consent: tuple[str, ...],
    tcf: consent_rules.CmpPolicy | None = None,
    page_query: str = "",
    allow_forcing: bool = False,
    new_id: Callable[[], str] = new_visitor_id,
) -> PageContext:
    """Request headers (lower-case keys) → the page's context and visitor identity;
    ``new_id`` names a visitor seen for the first time."""
    cookies = parse_cookies(headers.get("cookie", ""))
    consent = consent_rules.resolve(headers, cookies, default_consent, tcf)
    attrs = request_attributes(headers, page_path, geo_header)
    visitor_id = ""
    new_visitor = False
    if consent_rules.may_identify(consent):
        visitor_id = cookies.get(cookie_name, "")
        if not valid_visitor_id(visitor_id):
            visitor_id = new_id()
            new_visitor = True
    attrs["consent"] = sorted(consent)
    attrs["new_visitor"] = new_visitor
    ctx = PageContext(attrs=attrs, consent=consent, visitor_id=visitor_id, new_visitor=new_visitor)
    if allow_forcing:
        ctx.forced = forced_variations(cookies.get(FORCE_NAME, ""), page_query)
    return ctx


#: Query parameter and cookie naming forced variations (``slot:variant,…``).
FORCE_NAME = "p13n_force"
_FORCED = re.compile(r"^[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_.-]{1,64}$")
MAX_FORCED = 8


def forced_variations(cookie: str, query: str) -> dict[str, str]:
    """Slot → variant id from the cookie, then the page's query (which wins); malformed
    entries are ignored."""
    out: dict[str, str] = {}
    values = [cookie] + [v for k, v in parse_qsl(query[:2048], keep_blank_values=False) if k == FORCE_NAME]
    for value in values:
        for entry in value.split(",")[:MAX_FORCED]:
            entry = entry.strip()
            if _FORCED.match(entry):
                slot, variant = entry.split(":", 1)
                out[slot] = variant
    return dict(list(out.items())[:MAX_FORCED])


def decide_slots(
    ctx: PageContext,
    bundle: ContentBundle | None,
    slots: Sequence[tuple[str, Mapping[str, str]]],
    deadline_ms: float,
    models: BundleModels | None = None,
    bandits: Mapping[str, BanditWeights] | None = None,
    shed: bool = False,
) -> PageDecision:
    """Decide the slots this context has not decided yet; return the page decision.
    With ``shed`` (the agent is overloaded: edge_agent/overload.py) they fall back at
    once with reason ``overload``."""
    todo = [(n, a) for n, a in slots if n not in ctx.decision.outcomes]
    if todo and shed:
        for name, _ in todo:
            ctx.decision.outcomes[name] = SlotOutcome(None, "overload")
        return ctx.decision
    if todo and "segments" not in ctx.attrs:  # once per page view
        if models is not None and "personalization" in ctx.consent:
            try:
                ctx.attrs["segment"] = models.segment(ctx.attrs)
            except Exception:  # a broken model must not break the page
                ctx.attrs["segment"] = ""
        ctx.attrs["segments"] = bundle.rule_segments(ctx.attrs) if bundle is not None else []
    if todo and ctx.held is None:  # once per page, however many requests decide its slots
        ctx.held = bundle is not None and bundle.holdout.holds(ctx.visitor_id)
        arm = holdout_exposure(bundle, ctx.visitor_id, ctx.held)
        if arm is not None:
            ctx.exposures.append(arm)
    if todo:
        part = decide_page(
            bundle,
            ctx.attrs,
            todo,
            deadline_ms,
            models=models,
            visitor_id=ctx.visitor_id,
            exposures=ctx.exposures,
            session=ctx.session,
            forced=ctx.forced,
            bandits=bandits,
            held=ctx.held,
        )
        ctx.decision.outcomes.update(part.outcomes)
        ctx.decision.bundle_version = part.bundle_version
        ctx.decision.elapsed_us += part.elapsed_us
    return ctx.decision


class PageContexts:
    """LRU + TTL map from request id to :class:`PageContext`."""

    def __init__(self, ttl_s: float, max_entries: int = MAX_PAGE_CONTEXTS) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._items: OrderedDict[str, PageContext] = OrderedDict()

    def get(self, rid: str, now: float | None = None) -> PageContext | None:
        ctx = self._items.get(rid)
        if ctx is None:
            return None
        if ctx.expires < (now if now is not None else time.monotonic()):
            del self._items[rid]
            return None
        return ctx

    def put(self, rid: str, ctx: PageContext, now: float | None = None) -> None:
        moment = now if now is not None else time.monotonic()
        ctx.expires = moment + self.ttl_s
        self._items[rid] = ctx
        self._items.move_to_end(rid)
        # entries are in expiry order: drop expired ones from the front (few per call),
        # so the map holds only live pages and the garbage collector has less to scan
        items = self._items
        while items:
            oldest = next(iter(items.values()))
            if oldest.expires >= moment and len(items) <= self.max_entries:
                break
            items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
