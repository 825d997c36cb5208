"""The visitor's class cookie (``p13n_cls``): issued with each collect answer, read when
nginx asks for a shareable fragment it has not cached (edge_agent/shared_fragments.py).

A class is issued only to a visitor the agent may identify (analytics or
personalization consent), outside the personalization holdout, without a consent
platform's strings (nginx cannot key on those per-visitor strings), and while the live
bundle has shareable slots; otherwise an existing one is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from edge_agent.context import country
from edge_agent.pages import FORCE_NAME, parse_cookies, set_cookie
from edge_agent.shared_fragments import CLASS_COOKIE, ClassCodec, same_consent
from edge_agent.state import EdgeState
from models import consent as consent_rules

log = logging.getLogger(__name__)


def _cmp_strings(state: EdgeState, cookies: Mapping[str, str]) -> bool:
    s = state.settings
    return bool((s.tcf_cookie and cookies.get(s.tcf_cookie)) or (s.gpp_cookie and cookies.get(s.gpp_cookie)))


def issue(state: EdgeState, headers: Mapping[str, str]) -> bytes | None:
    """The ``Set-Cookie`` value that brings the request's class cookie up to date with the
    visitor's live context (``headers`` name the visitor), or None when it already is."""
    cookies = parse_cookies(headers.get("cookie", ""))
    current = cookies.get(CLASS_COOKIE, "")
    value = ""
    codec = state.shared
    bundle = state.bundle
    if codec is not None and bundle is not None and not _cmp_strings(state, cookies):
        try:
            # the class never carries the profile; only the segment model may read it
            segmenter = state.models if "segment" in codec.plan.inputs else None
            ctx = state.page_context(headers, "/", with_profile=segmenter is not None)
            if ctx.visitor_id and not bundle.holdout.holds(ctx.visitor_id):
                if segmenter is not None and "personalization" in ctx.consent:
                    ctx.attrs["segment"] = segmenter.segment(ctx.attrs)
                value = codec.issue(ctx.attrs) or ""
        except Exception:  # the collect answer never fails for it: no class, pages decided live
            log.warning("class cookie not issued", exc_info=True)
            value = ""
    if value == current:
        return None
    state.metrics.shared("issued" if value else "cleared")
    max_age = int(state.settings.session_ttl_s) if value else 0
    secure = headers.get("x-forwarded-proto") == "https"
    return set_cookie(CLASS_COOKIE, value, max_age, secure, http_only=True).encode("ascii")


def shared_attrs(state: EdgeState, codec: ClassCodec, headers: Mapping[str, str], page_query: str) -> dict[str, Any] | None:
    """The attributes a shareable slot is decided from: the class cookie's values, the
    request's country and the rule segments they imply. None when the request must be
    decided live: no class signed for the live bundle, a consent that differs from the
    class's, a consent platform's strings, or QA forcing a variation."""
    cookies = parse_cookies(headers.get("cookie", ""))
    carried = codec.read(cookies.get(CLASS_COOKIE, ""))
    bundle = state.bundle
    if carried is None or bundle is None or _cmp_strings(state, cookies):
        return None
    if state.settings.force_variations and (FORCE_NAME in cookies or FORCE_NAME in page_query):
        return None
    consent = consent_rules.resolve(headers, cookies, state.settings.default_consent, state.tcf)
    if not same_consent(carried.get("consent"), consent):
        return None
    attrs = {k: v for k, v in carried.items() if v is not None}  # absent, as in a live context
    attrs["country"] = country(headers, state.settings.geo_header)
    attrs["segments"] = bundle.rule_segments(attrs)
    return attrs
