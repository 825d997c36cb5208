"""The console's plumbing: sessions to principals, CSRF and origin checks, security
headers, template rendering, and running a page or an action as the same guarded,
audited call the API makes (``hub.guard.run_as``)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub.auth import PERMISSIONS, Principal
from hub.console.sessions import Session
from hub.console.state import Console
from hub.guard import forbidden, refused, run_as

if TYPE_CHECKING:
    from hub.state import HubState

COOKIE = "p13n_console"
#: No script at all; styles and images only from the hub (the charts are inline SVG).
CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # same-origin: a form post keeps its Origin (no-referrer makes Chromium send "null",
    # which the origin check refuses); other sites get no referrer at all
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}
#: The console's pages: (path, title, permission), in the navigation's order.
PAGES = (
    ("/console/", "Overview", "status.read"),
    ("/console/fleet", "Fleet", "status.read"),
    ("/console/models", "Models", "training.read"),
    ("/console/experiments", "Experiments", "experiments.read"),
    ("/console/data", "Data", "data.read"),
    ("/console/privacy", "Privacy", "erasures.read"),
)

Page = Callable[[Request, Principal], Awaitable[Response]]


def console_of(request: Request) -> Console:
    state: HubState = request.app.state.hub
    assert state.console is not None
    return state.console


def session_of(request: Request) -> tuple[Session, Principal] | None:
    """The signed-in principal, from the session cookie and the tokens file as they are
    now; looked up once per request (the guard and the page's rendering both ask)."""
    if "console_session" in request.scope:
        found: tuple[Session, Principal] | None = request.scope["console_session"]
        return found
    state: HubState = request.app.state.hub
    session = console_of(request).sessions.get(request.cookies.get(COOKIE, ""))
    principal = state.tokens.by_digest(session.token_sha256) if session is not None else None
    found = (session, principal) if session is not None and principal is not None else None
    request.scope["console_session"] = found
    return found


def same_origin(request: Request) -> bool:
    """A form post must come from the console's own pages: its Origin (or, without one,
    its Referer) names this host. SameSite=Strict cookies are the other half."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    console = console_of(request)
    found = session_of(request) if "principal" not in context else None
    principal: Principal | None = context.pop("principal", None) or (found[1] if found else None)
    session: Session | None = context.pop("session", None) or (found[0] if found else None)
    nav = [(path, title) for path, title, permission in PAGES if principal is not None and principal.may(permission)]
    html = console.templates.get_template(template).render(
        principal=principal,
        csrf=session.csrf if session else "",
        nav=nav,
        path=request.url.path,
        may=(lambda permission: principal is not None and principal.may(permission)),
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def with_headers(response: Response) -> Response:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    return response


def page(permission: str, action: str, handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A console page: signed in (else to the sign-in page), allowed (else a 403 page,
    audited), then the handler, audited like the API's reads."""
    assert permission in PERMISSIONS

    async def endpoint(request: Request) -> Response:
        state: HubState = request.app.state.hub
        found = session_of(request)
        if found is None:
            return with_headers(RedirectResponse("/console/sign-in", status_code=303))
        session, principal = found
        if not principal.may(permission):
            await forbidden(state, principal, action, request.url.path, permission)
            return _refusal(request, principal, session, "Not allowed", f"Your role ({principal.role}) may not open this page.")

        async def run(req: Request) -> Response:
            return with_headers(await handler(req, principal))

        return await run_as(request, principal, run, action=action, target=request.url.path)

    return endpoint


STALE_FORM = "This form did not come from your console session (a missing or stale form token). Reload the page and try again."


def _refusal(request: Request, principal: Principal, session: Session, title: str, message: str) -> HTMLResponse:
    """The 403 page of a signed-in principal (already audited by the caller)."""
    return render(request, "error.html", 403, principal=principal, session=session, title=title, message=message)


Handler = Callable[[Request], Awaitable[Response]]
Done = Callable[[Request, Response], Awaitable[Response]]


def action(permission: str, name: str, handler: Handler, done: Done, target: Callable[[Request], str] | None = None) -> Handler:
    """A console form post: signed in, from the console's own origin with the session's
    CSRF token, allowed; then ``handler`` — the API's own — runs and is audited exactly
    as the API call would be, and ``done`` turns its JSON answer into a page."""
    assert permission in PERMISSIONS

    async def endpoint(request: Request) -> Response:
        state: HubState = request.app.state.hub
        found = session_of(request)
        if found is None:
            await refused(state, name, request.url.path)
            return render(request, "error.html", 401, title="Signed out", message="Sign in again to do this.")
        session, principal = found
        form = await request.form()
        request.state.form = form
        where = target(request) if target else request.url.path
        offered = str(form.get("csrf", ""))
        if not same_origin(request) or not hmac.compare_digest(offered.encode(), session.csrf.encode()):
            await forbidden(state, principal, name, where, "csrf")
            return _refusal(request, principal, session, "Refused", STALE_FORM)
        if not principal.may(permission):
            await forbidden(state, principal, name, where, permission)
            return _refusal(request, principal, session, "Not allowed", f"Your role ({principal.role}) may not do this.")
        answer = await run_as(request, principal, handler, action=name, target=where)
        return with_headers(await done(request, answer))

    return endpoint
