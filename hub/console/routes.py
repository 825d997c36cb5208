"""The console's routes (mounted by ``hub.app.routes`` before the catch-all)."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hub import api, privacy_api
from hub.console import pages as p
from hub.console.state import HERE
from hub.console.web import SECURITY_HEADERS, action, page, render

#: The console's static files: read once, served with their digest as ETag.
_STATIC = {"console.css": "text/css; charset=utf-8"}
_FILES = {name: (HERE / "static" / name).read_bytes() for name in _STATIC}


async def static(request: Request) -> Response:
    name = str(request.path_params["name"])
    if name not in _FILES:
        return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    body = _FILES[name]
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {**SECURITY_HEADERS, "etag": etag, "cache-control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_STATIC[name], headers=headers)


async def not_found(request: Request) -> Response:
    """A console path that is no page: an HTML 404 with the console's headers."""
    return render(request, "error.html", 404, title="Not found", message="There is no console page at this address.")


async def to_console(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)


def routes() -> list[Route]:
    models_done = p.done_to("/console/models", "activated")
    return [
        Route("/console", to_console, methods=["GET"]),
        Route("/console/static/{name}", static, methods=["GET"]),
        Route("/console/sign-in", p.sign_in_form, methods=["GET"]),
        Route("/console/sign-in", p.sign_in, methods=["POST"]),
        Route("/console/sign-out", p.sign_out, methods=["POST"]),
        Route("/console/", page("status.read", "console.overview", p.overview), methods=["GET"]),
        Route("/console/fleet", page("status.read", "console.fleet", p.fleet_page), methods=["GET"]),
        Route("/console/models", page("training.read", "console.models", p.models_page), methods=["GET"]),
        Route(
            "/console/models/runs/{run_id}/report",
            page("training.read", "training.report", p.run_report),
            methods=["GET"],
        ),
        Route(
            "/console/models/bundles/{version:int}/activate",
            action("bundles.activate", "bundles.activate", api.activate_bundle, models_done),
            methods=["POST"],
        ),
        Route(
            "/console/models/bundles/rollback",
            action("bundles.activate", "bundles.rollback", api.rollback_bundle, p.done_to("/console/models", "rolled_back")),
            methods=["POST"],
        ),
        Route(
            "/console/models/runs",
            action("training.run", "training.run", p.start_run_from_form, p.done_to("/console/models", "run_started")),
            methods=["POST"],
        ),
        Route("/console/experiments", page("experiments.read", "console.experiments", p.experiments_page), methods=["GET"]),
        Route(
            "/console/experiments/{name}",
            page("experiments.read", "experiments.results", p.experiment_page),
            methods=["GET"],
        ),
        Route("/console/data", page("data.read", "console.data", p.data_page), methods=["GET"]),
        Route(
            "/console/data/replay",
            action("deadletters.replay", "deadletters.replay", p.replay, p.replay_done),
            methods=["POST"],
        ),
        Route("/console/privacy", page("erasures.read", "console.privacy", p.privacy_page), methods=["GET"]),
        Route(
            "/console/privacy/erasures",
            action("subjects.erase", "subjects.erase", p.erase_from_form, p.erasure_done, target=p.erasure_target),
            methods=["POST"],
        ),
        Route(
            "/console/privacy/erasures/{request_id}",
            page("erasures.read", "erasures.read", p.erasure_page),
            methods=["GET"],
        ),
        Route(
            "/console/data/retention",
            action("retention.run", "retention.run", privacy_api.run_retention, p.done_to("/console/data", "retention")),
            methods=["POST"],
        ),
        Route("/console/{rest:path}", not_found, methods=["GET", "HEAD", "POST"]),
    ]
