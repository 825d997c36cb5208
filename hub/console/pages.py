"""The console's pages and actions. Pages read what the API reads (the same view
functions); actions run the API's own handlers (``hub.console.web.action``)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from hub import api, experiments_api, fleet, privacy_api, training_api
from hub.audit import verify
from hub.auth import Principal, token_digest
from hub.console import charts
from hub.console.web import COOKIE, SECURITY_HEADERS, console_of, render, same_origin, session_of, with_headers
from hub.guard import refused
from hub.live_content import live_content
from hub.state import HubState
from models import nats_layout as L
from models.erasure import erasure_token

log = logging.getLogger(__name__)

#: Messages an action's redirect may show (``?done=code``): fixed texts, never the URL's.
NOTICES = {
    "activated": "The bundle is live; edges switch to it within seconds.",
    "rolled_back": "Rolled back: the previous bundle is live again.",
    "run_started": "Training run started; it appears below when it ends.",
    "retention": "Retention ran.",
    "replayed": "Dead letters replayed.",
    "erasure": "Erasure started: the hub's part is done, the edges' acknowledgements follow.",
}
MAX_SUBJECT_CHARS = 256


def _state(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


def _when(epoch: float | None) -> str:
    if not epoch:
        return "—"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _notice(request: Request) -> str:
    code = request.query_params.get("done", "")
    text = NOTICES.get(code, "")
    detail = request.query_params.get("n", "")
    if text and detail.isdigit():
        text += f" ({detail})"
    return text


async def _live(state: HubState) -> dict[str, Any] | None:
    if state.nc is None or not state.layout_ready:
        return None
    try:
        return await fleet.current_pointer(state.nc)
    except Exception as e:  # the page shows "none" rather than failing
        log.debug("live pointer unavailable: %s", e)
        return None


# ------------------------------------------------------------------ sign-in


async def sign_in_form(request: Request) -> Response:
    if session_of(request) is not None:
        return with_headers(RedirectResponse("/console/", status_code=303))
    return render(request, "sign_in.html", title="Sign in")


async def sign_in(request: Request) -> Response:
    state = _state(request)
    if not same_origin(request):
        return render(request, "sign_in.html", 403, title="Sign in", problem="Sign in from the console's own page.")
    form = await request.form()
    token = str(form.get("token", "")).strip()
    principal = state.tokens.authenticate("Bearer " + token) if 0 < len(token) <= 512 else None
    if principal is None:
        await refused(state, "console.sign_in", "/console/sign-in")
        return render(
            request, "sign_in.html", 401, title="Sign in", problem="That token is not valid (revoked, mistyped or expired)."
        )
    session_id, session = console_of(request).sessions.open(token_digest(token))
    await _audit(state, principal, "console.sign_in", 303)
    response = RedirectResponse("/console/", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(session.expires - time.time()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=bool(state.settings.tls_cert),
    )
    return response


async def sign_out(request: Request) -> Response:
    state = _state(request)
    found = session_of(request)
    cookie = request.cookies.get(COOKIE, "")
    form = await request.form()
    if found is not None:
        session, principal = found
        offered = str(form.get("csrf", "")).encode()
        if not same_origin(request) or not hmac.compare_digest(offered, session.csrf.encode()):
            return render(request, "error.html", 403, title="Refused", message="Sign out from the console's own page.")
        console_of(request).sessions.close_session(cookie)
        await _audit(state, principal, "console.sign_out", 303)
    response = RedirectResponse("/console/sign-in", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict", secure=bool(state.settings.tls_cert))
    return response


async def _audit(state: HubState, principal: Principal, action: str, status: int) -> None:
    await asyncio.to_thread(state.audit.append, principal.name, principal.role, action, "/console", status, {})


# ------------------------------------------------------------------ pages


async def overview(request: Request, principal: Principal) -> Response:
    state = _state(request)
    console = console_of(request)
    try:
        hours = max(1, min(336, int(request.query_params.get("hours", "6"))))
    except ValueError:
        hours = 6
    stats, edges, live = await asyncio.gather(api.stats_view(state), api.edges_view(state), _live(state))
    assert state.storage is not None
    runs, pending = await asyncio.gather(
        asyncio.to_thread(state.storage.training_runs.recent, 1), asyncio.to_thread(state.erasures.pending_count)
    )
    samples = await asyncio.to_thread(console.series.window, hours * 3600.0)
    times = [s["ts"] for s in samples]
    events_chart = charts.lines(
        "Events per sample",
        times,
        {
            "received": [s["received_delta"] for s in samples],
            "accepted": [s["accepted_delta"] for s in samples],
            "duplicates": [s["duplicates_delta"] for s in samples],
            "dead letters": [s["dead_letters_delta"] for s in samples],
        },
    )
    lag_chart = charts.lines(
        "Ingest backlog and edges",
        times,
        {
            "messages waiting": [s["pending"] for s in samples],
            "edges up": [s["edges_up"] for s in samples],
            "edges stale": [s["edges_stale"] for s in samples],
        },
    )
    recent = samples[-60:]
    last_run = dict(runs[0]) if runs else None
    if last_run:
        last_run["started_at_text"] = _when(last_run.get("started_at"))
    fleet_view = edges["edges"]
    return render(
        request,
        "overview.html",
        title="Overview",
        notice=_notice(request),
        stats=stats,
        dead_total=sum(stats["dead_letters"].values()),
        edges_up=sum(1 for e in fleet_view if not e["stale"]),
        edges_stale=sum(1 for e in fleet_view if e["stale"]),
        live=live,
        last_run=last_run,
        pending_erasures=pending,
        hours=hours,
        sample_s=state.settings.console_sample_s,
        events_chart=events_chart,
        lag_chart=lag_chart,
        event_rows=[
            (_when(s["ts"]), s["received_delta"], s["accepted_delta"], s["duplicates_delta"], s["dead_letters_delta"])
            for s in recent
        ],
        lag_rows=[(_when(s["ts"]), s["pending"], s["edges_up"], s["edges_stale"]) for s in recent],
    )


async def fleet_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    edges, live = await asyncio.gather(api.edges_view(state), _live(state))
    totals: dict[str, float] = {}
    for e in edges["edges"]:
        for reason, n in ((e.get("decisions") or {}).get("fallbacks") or {}).items():
            totals[reason] = totals.get(reason, 0) + n
    return render(
        request,
        "fleet.html",
        title="Fleet",
        edges=edges["edges"],
        stale=edges["stale"],
        stale_after=state.settings.edge_stale_s,
        live=live,
        fallback_chart=charts.bars("Fallbacks by reason", dict(sorted(totals.items(), key=lambda kv: -kv[1]))),
    )


async def models_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    assert state.storage is not None
    bundles: list[dict[str, Any]] | None = None
    live = None
    if state.nc is not None and state.layout_ready:
        try:
            view = await api.bundles_view(state)
            bundles, live = list(reversed(view["bundles"])), view["current"]
        except Exception as e:  # NATS away mid-request: the page says so
            log.info("bundles unavailable: %s", e)
    runs = await asyncio.to_thread(state.storage.training_runs.recent, 30)
    for r in runs:
        r["started_text"] = _when(r.get("started_at"))
    training = {
        "enabled": state.training.enabled,
        "interval_s": state.settings.training_interval_s,
        "running": state.training.running,
    }
    return render(
        request,
        "models.html",
        title="Models",
        notice=_notice(request),
        bundles=bundles,
        live=live,
        runs=runs,
        training=training,
    )


async def run_report(request: Request, principal: Principal) -> Response:
    """A training run's HTML report: no script; its inline styles and plot images are
    allowed on this page alone."""
    answer = await training_api.run_report_html(request)
    if answer.status_code != 200:
        return render(
            request, "error.html", answer.status_code, title="No report", message=_reason(answer), back="/console/models"
        )
    headers = dict(SECURITY_HEADERS)
    headers["content-security-policy"] = (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    )
    return HTMLResponse(bytes(answer.body), headers=headers)


async def experiments_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    assert state.storage is not None
    found = await asyncio.to_thread(state.storage.experiments)
    return render(
        request,
        "experiments.html",
        title="Experiments",
        experiments=found,
        bandits=await _bandits(state),
    )


async def _bandits(state: HubState) -> list[dict[str, Any]]:
    """Each bandit slot's weights over its last periods (the control bucket keeps 16)."""
    content = await live_content(state)
    if state.nc is None or not content:
        return []
    out = []
    kv = await state.nc.jetstream().key_value(L.CONTROL_BUCKET)
    for name, spec in (content.get("slots") or {}).items():
        if not (isinstance(spec, dict) and spec.get("kind") == "bandit"):
            continue
        seed = str(spec.get("seed", name))
        try:
            history = await kv.history(L.BANDIT_KEY_PREFIX + seed)
        except Exception:  # no weights yet
            continue
        periods = [json.loads(e.value) for e in history if e.value]
        if not periods:
            continue
        last = periods[-1]
        variants = list(last.get("weights", {}))
        times = [datetime.fromisoformat(p["computed_at"]).timestamp() for p in periods if p.get("computed_at")]
        chart = (
            charts.lines(f"Weights of {seed}", times, {v: [p["weights"].get(v, 0.0) for p in periods] for v in variants})
            if len(times) == len(periods)
            else charts.bars(f"Weights of {seed}", last.get("weights", {}))
        )
        out.append(
            {
                "seed": seed,
                "period": last.get("period"),
                "computed_at": last.get("computed_at"),
                "chart": chart,
                "rows": [
                    (v, f"{last['weights'][v]:.3f}", last.get("exposed", {}).get(v, 0), last.get("conversions", {}).get(v, 0))
                    for v in variants
                ],
            }
        )
    return out


async def experiment_page(request: Request, principal: Principal) -> Response:
    """An experiment's results: computed like the API's, kept for
    ``P13N_HUB_CONSOLE_RESULTS_TTL_S`` (over a large warehouse they take seconds), and
    recomputed at once on ``?refresh=1``."""
    state = _state(request)
    console = console_of(request)
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query_params.items()) if k != "refresh")
    key = (str(request.path_params["name"]), query)
    kept = console.results.get(key)
    now = time.time()
    # the experiment-snapshots job recomputes every TTL: twice that is still fresh enough
    fresh = 2 * state.settings.console_results_ttl_s
    if kept is not None and now - kept[0] < fresh and request.query_params.get("refresh") != "1":
        computed_at, out = kept
    else:
        found = await experiments_api.results_for(request)
        if isinstance(found, Response):
            return render(
                request, "error.html", found.status_code, title="No results", message=_reason(found), back="/console/experiments"
            )
        computed_at, out = now, found
        if len(console.results) > 100:
            console.results.clear()
        console.results[key] = (computed_at, out)
    return _experiment_html(request, out, computed_at)


def _experiment_html(request: Request, out: dict[str, Any], computed_at: float) -> Response:
    metrics = []
    control = out["design"]["control"]
    for m in out["metrics"]:
        rows, lifts = [], []
        for v, d in out["variants"].items():
            e = d["metrics"].get(m["name"], {})
            ci = e.get("ci") or [None, None]
            lift = e.get("lift")
            if v != control and "error" not in e:
                lifts.append((v, lift, ci[0], ci[1]))
            rows.append(
                (
                    v + (" (control)" if v == control else ""),
                    e.get("users", 0),
                    f"{e.get('mean', 0.0):.4g}",
                    f"{lift * 100:+.2f} %" if lift is not None and v != control and "error" not in e else e.get("error", "—"),
                    f"{ci[0] * 100:+.2f} % to {ci[1] * 100:+.2f} %"
                    if ci[0] is not None and v != control and "error" not in e
                    else "—",
                    f"{e['p_value']:.3g} ({e['p_value_holm']:.3g})"
                    if "p_value_holm" in e
                    else (f"{e['p_value']:.3g}" if "p_value" in e else "—"),
                    f"{e['chance_to_win'] * 100:.1f} %" if "chance_to_win" in e and v != control else "—",
                )
            )
        metrics.append(
            {
                "name": m["name"],
                "guardrail": m.get("guardrail", False),
                "chart": charts.intervals(f"Lift of {m['name']} against {control}", lifts),
                "rows": rows,
            }
        )
    out["control"] = control
    return render(
        request,
        "experiment.html",
        title=f"Experiment {out['experiment']}",
        result=out,
        metrics=metrics,
        method=out["method"],
        computed=_when(computed_at),
        age_s=round(time.time() - computed_at),
    )


async def data_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    storage = state.storage
    assert storage is not None
    rows, dead, lag = await asyncio.gather(
        asyncio.to_thread(storage.table_rows), asyncio.to_thread(storage.dead_letters), asyncio.to_thread(storage.marts_lag)
    )
    return render(
        request, "data.html", title="Data", notice=_notice(request), rows=rows, dead=dead, lag=lag, retention=_retention(state)
    )


async def privacy_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    assert state.storage is not None
    erasures, consent = await asyncio.gather(
        asyncio.to_thread(state.erasures.recent, 30), asyncio.to_thread(state.storage.consent_by_day, 14)
    )
    for e in erasures:
        e["requested_text"] = _when(e.get("requested_at"))
        e["acked"] = sum(1 for a in e["edges"].values() if a["status"] == "acknowledged")
    audit = await _audit_view(request, principal) if principal.may("audit.read") else None
    days = [c["day"] for c in consent]
    consent_chart = charts.lines(
        "Consent choices per day",
        [datetime.fromisoformat(d).replace(tzinfo=UTC).timestamp() for d in days],
        {k: [c[k] for c in consent] for k in ("choices", "analytics", "personalization", "marketing")},
    )
    return render(
        request,
        "privacy.html",
        title="Privacy",
        notice=_notice(request),
        erasures=erasures,
        consent_chart=consent_chart,
        consent_rows=[
            (c["day"], c["choices"], c["necessary"], c["analytics"], c["personalization"], c["marketing"]) for c in consent
        ],
        audit=audit,
        retention=_retention(state),
    )


def _retention(state: HubState) -> dict[str, Any]:
    jobs = {j["name"]: j for j in state.jobs.view()}
    retention_job = jobs.get("retention", {})
    policy = state.retention_policy
    return {
        "policy": [
            ("lake (event files)", policy.lake_days),
            ("warehouse", policy.warehouse_days),
            ("dead letters", policy.dead_letter_days),
            ("consent records", policy.consent_days),
        ],
        "last_run": _when(retention_job.get("last_success")) if retention_job.get("last_success") else None,
        "last_error": retention_job.get("last_error", ""),
    }


async def _audit_view(request: Request, principal: Principal) -> dict[str, Any]:
    """The chain's verification (in full on request; otherwise the entries added since
    the last full or partial check of this hub process) and the latest entries."""
    state = _state(request)
    console = console_of(request)
    key = state.settings.audit_secret
    path = state.settings.data_dir / "audit.sqlite"
    since = None if request.query_params.get("verify") == "full" else console.audit_verified
    report = await asyncio.to_thread(verify, path, key, None, since)
    if report.ok:
        console.audit_verified = (report.head_seq, report.head_hash)
    latest = await asyncio.to_thread(state.audit.entries, max(0, report.head_seq - 25), 25)
    return {
        "ok": report.ok,
        "problems": report.problems,
        "entries": report.entries,
        "head_seq": report.head_seq,
        "incremental": since is not None,
        "since": since[0] if since else 0,
        "latest": list(reversed(latest)),
    }


async def erasure_page(request: Request, principal: Principal) -> Response:
    state = _state(request)
    found = await asyncio.to_thread(state.erasures.status, str(request.path_params["request_id"]))
    if found is None:
        return render(
            request, "error.html", 404, title="Unknown request", message="No such erasure request.", back="/console/privacy"
        )
    found["requested_text"] = _when(found.get("requested_at"))
    return render(request, "erasure.html", title=f"Erasure {found['request_id']}", notice=_notice(request), e=found)


# ------------------------------------------------------------------ actions


def _reason(answer: Response) -> str:
    try:
        doc = json.loads(bytes(answer.body))
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict):
            return str(error.get("detail") or error.get("reason") or "refused")
        return str(doc.get("detail") or doc.get("reason") or "refused") if isinstance(doc, dict) else "refused"
    except ValueError:
        return "refused"


def done_to(path: str, code: str, number: str = "") -> Any:
    """An action's result: 303 to ``path`` with a fixed notice, or the API's error as a page."""

    async def done(request: Request, answer: Response) -> Response:
        if answer.status_code < 300:
            suffix = f"&n={quote(number)}" if number else ""
            if code == "activated":
                suffix = f"&n={int(request.path_params.get('version', 0))}"
            return RedirectResponse(f"{path}?done={code}{suffix}", status_code=303)
        return render(request, "error.html", answer.status_code, title="Not done", message=_reason(answer), back=path)

    return done


async def erasure_done(request: Request, answer: Response) -> Response:
    if answer.status_code < 300:
        request_id = json.loads(bytes(answer.body))["request_id"]
        return RedirectResponse(f"/console/privacy/erasures/{quote(request_id)}?done=erasure", status_code=303)
    return render(request, "error.html", answer.status_code, title="Not done", message=_reason(answer), back="/console/privacy")


async def erase_from_form(request: Request) -> Response:
    """The API's erasure, with the subject from the form instead of the path."""
    request.scope.setdefault("path_params", {})["subject"] = str(request.state.form.get("subject", ""))
    return await privacy_api.erase_subject(request)


def erasure_target(request: Request) -> str:
    """The audit target the API's erasure writes: the subject's erasure token, not the id."""
    state = _state(request)
    subject = str(request.state.form.get("subject", "")).strip()
    return "/v1/subjects/" + erasure_token(subject, state.settings.pseudonym_key.encode())


async def start_run_from_form(request: Request) -> Response:
    """The API's training run start, without a body (the form's fields are not its JSON)."""

    async def empty() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    return await training_api.start_run(Request(request.scope, empty))


async def replay(request: Request) -> Response:
    """Replay one reason's dead letters (``deadletters.replay``)."""
    state = _state(request)
    assert state.storage is not None
    reason = str(request.state.form.get("reason", ""))
    if not 0 < len(reason) <= 200:
        return JSONResponse({"error": {"reason": "bad_reason", "detail": "name one dead-letter reason"}}, status_code=400)
    report = await asyncio.to_thread(state.storage.replay_dead_letters, reason)
    request.state.audit.update(reason=reason, **report)
    return JSONResponse(report)


async def replay_done(request: Request, answer: Response) -> Response:
    if answer.status_code < 300:
        doc = json.loads(bytes(answer.body))
        return RedirectResponse(f"/console/data?done=replayed&n={int(doc.get('accepted', 0))}", status_code=303)
    return render(request, "error.html", answer.status_code, title="Not done", message=_reason(answer), back="/console/data")
