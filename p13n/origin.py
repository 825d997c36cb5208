"""The demo origin: a small fashion shop rendered from ``templates/``.

It stands for the site owner's own server. It serves tagged pages (filter mode) or
pages compiled to SSI (SSI mode) with ``Cache-Control: public, max-age=60`` so
shells are cacheable, plus a ``/healthz``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge_agent.ssi_compile import compile_template
from models.content import Fragment

SHELL_CACHE_CONTROL = "public, max-age=60"


def create_origin(templates_dir: Path, ssi: bool, gzip: bool = False, echo: bool = False) -> Starlette:
    """Demo origin over ``templates_dir``; ``ssi`` serves SSI-compiled pages, ``gzip``
    compresses responses (as many real origins do)."""
    catalog: list[dict[str, Any]] = json.loads((templates_dir / "catalog.json").read_text(encoding="utf-8"))
    items = {item["id"]: item for item in catalog}
    card = Fragment.compile("product-card", (templates_dir / "fragments" / "product-card.html").read_text(encoding="utf-8"))
    pages: dict[str, Fragment] = {}
    for name in ("home", "category", "product"):
        raw = (templates_dir / "pages" / f"{name}.html").read_bytes()
        if ssi:
            raw = compile_template(raw, f"pages/{name}.html", echo=echo)
        pages[name] = Fragment.compile(name, raw.decode("utf-8"))

    served = {"pages": 0}

    def html(text: str) -> Response:
        served["pages"] += 1
        return Response(text, media_type="text/html; charset=utf-8", headers={"cache-control": SHELL_CACHE_CONTROL})

    def not_found() -> Response:
        return Response("<!doctype html><h1>Not found</h1>", status_code=404, media_type="text/html")

    async def home(request: Request) -> Response:
        return html(pages["home"].render({}))

    async def category(request: Request) -> Response:
        cat = request.path_params["category"]
        chosen = [i for i in catalog if i["category"] == cat]
        if not chosen:
            return not_found()
        grid = "".join(card.render(i) for i in chosen)
        # the grid is trusted HTML built from escaped fields: substitute after escaping
        text = pages["category"].render({"category_title": cat.title(), "grid": "\x00GRID\x00"})
        return html(text.replace("\x00GRID\x00", grid))

    async def product(request: Request) -> Response:
        item = items.get(request.path_params["item_id"])
        if item is None:
            return not_found()
        return html(pages["product"].render(item))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "ssi": ssi, "pages_served": served["pages"]})

    async def app_page(request: Request) -> Response:
        return html("<!doctype html><title>App</title><h1>Get the Atelier app</h1>")

    async def api_items(request: Request) -> Response:
        return JSONResponse(catalog, headers={"cache-control": "public, max-age=60"})

    async def api_echo(request: Request) -> Response:
        body = await request.body()
        return Response(
            body,
            media_type=request.headers.get("content-type", "application/octet-stream"),
            headers={"x-echo-method": request.method},
        )

    async def private_page(request: Request) -> Response:
        text = pages["home"].render({})
        return Response(
            text,
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "private, max-age=60", "set-cookie": "origin_session=abc; Path=/"},
        )

    return Starlette(
        middleware=[Middleware(GZipMiddleware, minimum_size=500)] if gzip else [],
        routes=[
            Route("/api/items", api_items),
            Route("/api/echo", api_echo, methods=["POST", "PUT"]),
            Route("/account", private_page),
            Route("/", home),
            Route("/c/{category}", category),
            Route("/p/{item_id}", product),
            Route("/app", app_page),
            Route("/healthz", healthz),
        ],
    )


def app_from_env() -> Starlette:
    """Factory for the HTTP server: options arrive as ``P13N_ORIGIN_*`` variables."""
    import os

    return create_origin(
        Path(os.environ["P13N_ORIGIN_TEMPLATES"]),
        ssi=bool(os.environ.get("P13N_ORIGIN_SSI")),
        gzip=bool(os.environ.get("P13N_ORIGIN_GZIP")),
        echo=os.environ.get("P13N_ORIGIN_SSI") == "echo",
    )
