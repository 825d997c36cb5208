"""Wrap hub endpoints with authentication, the role check and the audit entry.

``guarded(permission, handler, action=…)`` gives a Starlette endpoint that answers 401
without a valid token, 403 when the role lacks the permission, and otherwise calls the
handler. Every admin call and every refusal is appended to the audit log with who
(401s aggregated per endpoint and window, so a brute force cannot grow the log),
role, action, target and status; a handler adds details through
``request.state.audit``. Paths naming a subject are logged with the subject's
erasure token instead of the id. A handler whose NATS call fails (server away, cluster
electing a leader) answers 503 ``nats_unavailable`` with ``retry-after``, audited.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import nats.errors
from starlette.requests import Request
from starlette.responses import Response

from hub.auth import Principal
from hub.responses import json_error
from models.erasure import erasure_token

if TYPE_CHECKING:
    from hub.state import HubState

Handler = Callable[[Request], Awaitable[Response]]


log = logging.getLogger(__name__)

#: Seconds a client waits before retrying a call NATS could not serve.
_RETRY = {"retry-after": "5"}

_CHALLENGE = {"www-authenticate": 'Bearer realm="p13n-hub"'}


def _api_key_ok(request: Request, keys: tuple[str, ...]) -> bool:
    offered = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not offered and auth.lower().startswith("bearer "):
        offered = auth[7:].strip()
    # bytes: compare_digest refuses str with non-ASCII characters (a 500 before)
    raw = offered.encode("utf-8", "surrogateescape")
    return bool(offered) and any(hmac.compare_digest(raw, k.encode()) for k in keys)


def target_of(request: Request, state: HubState, subject_param: str | None) -> str:
    if subject_param and subject_param in request.path_params:
        token = erasure_token(str(request.path_params[subject_param]), state.settings.pseudonym_key.encode())
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)
        return template.replace("{" + subject_param + "}", token)
    return request.url.path


def guarded(
    permission: str,
    handler: Handler,
    *,
    action: str,
    subject_param: str | None = None,
    audit_success: bool = True,
    api_keys_ok: bool = False,
) -> Handler:
    """The endpoint for ``handler``, allowed to roles holding ``permission``.

    ``api_keys_ok``: the ingest API keys (``P13N_HUB_API_KEYS``) are accepted too (as
    principal ``api-key``); ``audit_success=False`` logs only refusals (the data plane).
    """

    async def endpoint(request: Request) -> Response:
        state: HubState = request.app.state.hub
        principal = state.tokens.authenticate(request.headers.get("authorization", ""))
        if principal is None and api_keys_ok and _api_key_ok(request, state.settings.api_keys):
            principal = Principal("api-key", "operator")
        target = target_of(request, state, subject_param)
        if principal is None:
            await refused(state, action, target)
            return json_error(401, "unauthorized", "a valid token is required (Authorization: Bearer TOKEN)", _CHALLENGE)
        if not principal.may(permission):
            await forbidden(state, principal, action, target, permission)
            return json_error(403, "forbidden", f"role {principal.role!r} may not {permission}")
        return await run_as(request, principal, handler, action=action, target=target, audit_success=audit_success)

    return endpoint


async def forbidden(state: HubState, principal: Principal, action: str, target: str, permission: str) -> None:
    """Audit a refusal for want of a permission."""
    await _audit(state, principal, action, target, 403, {"permission": permission})


async def run_as(
    request: Request, principal: Principal, handler: Handler, *, action: str, target: str, audit_success: bool = True
) -> Response:
    """Run an allowed call as ``principal`` and audit it (the API's and the console's)."""
    state: HubState = request.app.state.hub
    request.state.principal = principal
    request.state.audit = {}
    try:
        response = await handler(request)
    except nats.errors.Error as e:  # a server away or a cluster electing: the caller retries
        log.warning("%s: NATS did not answer (%s: %s); answered 503", action, type(e).__name__, e)
        response = json_error(503, "nats_unavailable", f"NATS did not answer ({type(e).__name__}); retry later", _RETRY)
    if audit_success or response.status_code >= 400:
        await _audit(state, principal, action, target, response.status_code, request.state.audit)
    return response


ANONYMOUS = Principal("anonymous", "-")


async def refused(state: HubState, action: str, target: str) -> None:
    """Count a 401 and audit it, aggregated per endpoint and window (hub.refusals)."""
    state.auth_failures.inc()
    first, closed = state.refusals.admit(action)
    for closed_action, repeated in closed:
        await _audit(state, ANONYMOUS, closed_action, "-", 401, {"repeated": repeated, "window_s": state.refusals.window_s})
    if first:
        await _audit(state, ANONYMOUS, action, target, 401, {})


async def flush_refusals(state: HubState) -> None:
    """Audit the refusals still being counted (at shutdown)."""
    for action, repeated in state.refusals.drain():
        await _audit(state, ANONYMOUS, action, "-", 401, {"repeated": repeated, "window_s": state.refusals.window_s})


async def _audit(state: HubState, principal: Principal, action: str, target: str, status: int, detail: dict[str, Any]) -> None:
    await asyncio.to_thread(state.audit.append, principal.name, principal.role, action, target, status, detail)
