"""``p13n push``, ``p13n bundle activate`` and ``p13n bundle rollback``: clients of the
hub's admin API, so every change of the live bundle is authorised (role ``operator``
or ``admin``), audited in the hub's chain and checked there (signature, a version never
reused for other bytes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hub.admin_client import call, fail


def push(args: argparse.Namespace) -> int:
    path: Path = args.bundle
    try:
        data = path.read_bytes()
    except OSError as e:
        return fail("push", 0, {"error": {"reason": "unreadable", "detail": f"{path}: {e.strerror}"}})
    if args.public_key is not None:  # a local check before the upload (the hub checks again)
        from models.bundle import BundleRejected, load_public_key, open_bundle

        try:
            open_bundle(data, load_public_key(args.public_key.read_bytes()))
        except (BundleRejected, OSError, ValueError) as e:
            return fail("push", 0, {"error": {"reason": "rejected_locally", "detail": str(e)}})
    query = "?activate=false" if args.no_activate else ""
    status, body = call(args, "POST", "/v1/bundles" + query, data, "application/x-tar", timeout=300)
    if status not in (200, 201):
        return fail("push", status, body)
    print(json.dumps(body))
    return 0


def pointer(args: argparse.Namespace) -> int:
    """``bundle activate VERSION`` / ``bundle rollback``."""
    command = args.bundle_command
    path = f"/v1/bundles/{args.version}/activate" if command == "activate" else "/v1/bundles/rollback"
    status, body = call(args, "POST", path, b"")
    if status != 200:
        return fail(f"bundle {command}", status, body)
    print(json.dumps(body))
    return 0


def listing(args: argparse.Namespace) -> int:
    """``bundle list``: stored versions, the live one, the next free version."""
    status, body = call(args, "GET", "/v1/bundles")
    if status != 200:
        return fail("bundle list", status, body)
    print(json.dumps(body, indent=1))
    return 0
