"""The admin API as the ``p13n`` commands call it: hub URL, token and CA from flags or
the environment (``P13N_HUB_URL``, ``P13N_TOKEN``, ``P13N_CA``), one JSON call, and one
line on stderr when it fails (an unreachable hub fails at once, never a traceback)."""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from typing import Any

DEFAULT_HUB = "http://127.0.0.1:8600"


def api_args(p: argparse.ArgumentParser) -> None:
    """The flags every admin-API command takes."""
    p.add_argument("--hub", default=os.environ.get("P13N_HUB_URL", DEFAULT_HUB), help="hub URL (P13N_HUB_URL)")
    p.add_argument("--token", default="", help="admin API token (default: P13N_TOKEN)")
    p.add_argument("--ca", default=os.environ.get("P13N_CA", ""), help="CA certificate that verifies an https hub (P13N_CA)")


def token(args: argparse.Namespace) -> str:
    return str(args.token or os.environ.get("P13N_TOKEN", ""))


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    data: bytes | None = None,
    content_type: str = "",
    timeout: float = 30,
    raw: bool = False,
) -> tuple[int, Any]:
    """(HTTP status, JSON body — the bytes with ``raw`` when the call succeeded); status
    0 when the hub did not answer."""
    import httpx

    headers = {"authorization": f"Bearer {token(args)}"}
    if content_type:
        headers["content-type"] = content_type
    try:
        resp = httpx.request(
            method, args.hub.rstrip("/") + path, headers=headers, content=data, timeout=timeout, verify=_verify(args.ca)
        )
    except httpx.HTTPError as e:
        return 0, {"error": {"reason": "unreachable", "detail": f"{args.hub}: {e}"}}
    except (OSError, ssl.SSLError) as e:  # e.g. an unreadable --ca
        return 0, {"error": {"reason": "unreachable", "detail": str(e)}}
    if raw and resp.status_code == 200:
        return resp.status_code, resp.content
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, {"error": {"reason": "not_json", "detail": resp.text[:200]}}


def _verify(ca: str) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca) if ca else True


def fail(command: str, status: int, body: Any) -> int:
    """Print the hub's reason in one line; exit status 1."""
    err = body.get("error", {}) if isinstance(body, dict) else {}
    print(f"p13n {command}: {status or 'no answer'} {err.get('reason', '')}: {err.get('detail', '')}", file=sys.stderr)
    return 1
