"""``GET/POST /_p13n/consent``: read or set the visitor's consent choice.

POST ``{"categories": ["analytics", "personalization"], "source": "banner"}``
(``necessary`` is implied; ``source`` optional): sets the ``p13n_consent`` cookie,
records a ``consent`` event (the proof of the choice, stored whatever the choice),
issues the visitor cookie when the choice allows one and the visitor has none yet (the
record and every later event are tied to it), and when nothing beyond ``necessary``
remains, expires the visitor cookie. ``Sec-GPC: 1`` / ``DNT: 1`` still win: the effective consent
returned is then ``necessary`` only. GET returns the effective consent.
"""

from __future__ import annotations

import re
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edge_agent.collect import MAX_BODY_BYTES, issue_visitor, prepare_events, store
from edge_agent.csrf import cross_site_reason
from edge_agent.pages import parse_cookies, set_cookie
from edge_agent.responses import json_error
from edge_agent.shared_fragments import CLASS_COOKIE
from edge_agent.state import VISITOR_COOKIE_MAX_AGE, EdgeState
from models import consent as consent_rules
from models.http_body import read_body

#: Where a choice was made (banner, sdk, cmp, …), as the consent record keeps it.
_SOURCE = re.compile(r"[A-Za-z0-9_-]{1,32}")


async def consent(request: Request) -> Response:
    state: EdgeState = request.app.state.edge
    cookies = parse_cookies(request.headers.get("cookie", ""))
    if request.method == "GET":
        effective = consent_rules.resolve(request.headers, cookies, state.settings.default_consent, state.tcf)
        return JSONResponse(
            {"categories": sorted(effective), "explicit": consent_rules.CONSENT_COOKIE in cookies},
            headers={"cache-control": "no-store"},
        )
    refused = cross_site_reason(request.headers, frozenset(state.settings.allowed_origins))
    if refused:  # another site cannot choose for our visitors
        state.metrics.collect_rejected("cross_site")
        return json_error(403, "cross_site", refused)
    body = await read_body(request, MAX_BODY_BYTES)
    try:
        doc = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return json_error(400, "malformed_json", 'expected {"categories": [...]}')
    categories = doc.get("categories") if isinstance(doc, dict) else None
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return json_error(400, "bad_categories", 'expected {"categories": [...]} with category names')
    unknown = sorted({c.lower() for c in categories} - set(consent_rules.CATEGORIES))
    if unknown:
        return json_error(400, "unknown_category", f"unknown categories {unknown}; known: {list(consent_rules.CATEGORIES)}")
    source = doc.get("source", "api")
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        return json_error(400, "bad_source", "source: up to 32 letters, digits, '_' or '-'")
    chosen = sorted({"necessary", *(c.lower() for c in categories)})
    secure = request.headers.get("x-forwarded-proto") == "https"
    value = ".".join(chosen)
    # record the choice as given, with the visitor id it applies to: a visitor who opts
    # in without an id yet gets one now, so this record and every later event name them
    chosen_headers = {**request.headers, "cookie": f"{consent_rules.CONSENT_COOKIE}={value}; {request.headers.get('cookie', '')}"}
    event_headers, issued = issue_visitor(state, chosen_headers)
    record: dict[str, object] = {"event_id": uuid.uuid4().hex, "type": "consent", "categories": chosen, "source": source}
    tc = state.tcf.record(cookies)
    if tc is not None:  # the CMP's own record beside the choice (audit: which CMP, which version)
        record["tcf"] = tc
    _, accepted = prepare_events(state, [record], event_headers)
    if not await store(state, accepted):
        return json_error(503, "outbox_full", "the edge is buffering too many events; retry later")
    # the new choice as the next request will carry it, beside the CMP's TC string if any
    effective = consent_rules.resolve(
        request.headers, {**cookies, consent_rules.CONSENT_COOKIE: value}, state.settings.default_consent, state.tcf
    )
    response = JSONResponse({"categories": sorted(effective), "recorded": len(accepted)}, headers={"cache-control": "no-store"})
    response.headers.append(
        "set-cookie", set_cookie(consent_rules.CONSENT_COOKIE, value, VISITOR_COOKIE_MAX_AGE, secure, http_only=False)
    )
    if issued is not None and consent_rules.may_identify(frozenset(effective)):
        response.headers.append("set-cookie", issued.decode("latin-1"))
    if CLASS_COOKIE in cookies:  # it carried the old consent: the next collect issues the new class
        response.headers.append("set-cookie", set_cookie(CLASS_COOKIE, "", 0, secure, http_only=True))
    if not consent_rules.may_identify(frozenset(effective)) and state.settings.cookie_name in cookies:
        response.headers.append("set-cookie", set_cookie(state.settings.cookie_name, "", 0, secure, http_only=True))
    return response
