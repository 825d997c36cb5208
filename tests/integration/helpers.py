"""Small HTTP helpers for integration tests (stdlib only, no client-side magic)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

MOBILE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def variants(self) -> list[str]:
        return re.findall(r'data-variant="([^"]+)"', self.text)


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET", data: bytes | None = None) -> Reply:
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())


def metric(metrics_text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text format (0 when absent)."""
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail the test when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def parent_of(pid: int) -> int | None:
    """The parent process id (``/proc``), or None once the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` alive now, children before grandchildren."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            parent = parent_of(int(proc.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(proc.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children.get(queue.pop(0), [])
        found += kids
        queue += kids
    return found


def session_model(bundle: Path) -> str:
    """How a bundle's decisions name the model it recommends sessions with ("als", or
    the item-based model's kind), read from its manifest."""
    import json
    import tarfile

    with tarfile.open(bundle) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        models = json.loads(member.read())["models"]
    return str(models["item"]["kind"]) if models.get("recommender") == "item" else "als"
