"""What the experiment and bandit tests share: a bundle with other slot content, and
consenting visitors who see pages and buy."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import TrainedBundle
from tests.integration.helpers import fetch


def repack(trained: TrainedBundle, templates: Path, out: Path) -> dict[str, Any]:
    """``p13n bundle repack``: the trained bundle's models with ``templates``' content."""
    key = str(trained.public_key)
    done = subprocess.run(
        [
            sys.executable, "-m", "p13n", "bundle", "repack", str(trained.path), "--templates", str(templates),
            "--key", str(Path(key).with_name("bundle-signing.key")), "--public-key", key, "--out", str(out),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def consenting_visitor(edge: Any) -> tuple[str, str]:
    """A new visitor who accepts analytics and personalization: (cookie header, visitor id)."""
    consent = fetch(
        edge.url + "/_p13n/consent",
        {"content-type": "application/json"},
        "POST",
        json.dumps({"categories": ["analytics", "personalization"], "source": "banner"}).encode(),
    )
    assert consent.status == 200, consent.body
    cookies = "; ".join(c.split(";", 1)[0] for c in consent.headers.get_all("set-cookie") or [])
    visitor = next(c.split("=", 1)[1] for c in cookies.split("; ") if c.startswith("p13n_id="))
    return cookies, visitor


def buy(edge: Any, cookies: str, amount: float) -> None:
    """The visitor's purchase, sent as the SDK sends it."""
    purchase = {
        "event_id": uuid.uuid4().hex,
        "type": "purchase",
        "order_id": uuid.uuid4().hex[:12],
        "items": [{"item_id": "dr01", "quantity": 1}],
        "total": {"amount": amount, "currency": "EUR"},
    }
    sent = fetch(
        edge.url + "/_p13n/collect",
        {"cookie": cookies, "content-type": "application/json"},
        "POST",
        json.dumps({"events": [purchase]}).encode(),
    )
    assert sent.status == 202, sent.body
