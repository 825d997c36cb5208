"""``p13n demo``: ready line, a personalized page, and a clean stop with no orphans; run
with JSON logs, a session with a visitor, a signed-in user and an e-mail (their export
and erasure included) leaves none of them in any log of the demo."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from p13n.procs import free_port, nginx_binary
from tests.integration.experiment_helpers import consenting_visitor
from tests.integration.helpers import MOBILE_UA, fetch, wait_for
from tests.integration.ingest_helpers import page_view, post_events

READY = re.compile(r"^p13n demo ready: site=http://127\.0\.0\.1:(\d+)/ hub=http://127\.0\.0\.1:(\d+)/$")


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_demo_serves_and_stops_cleanly(tmp_path: Path, nginx_bin: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "p13n", "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "P13N_HUB_LOG_FORMAT": "json", "P13N_EDGE_LOG_FORMAT": "json", "P13N_HUB_LOG_LEVEL": "info"},
    )
    user, email = f"demo-user-{uuid.uuid4().hex[:10]}", f"logged.{uuid.uuid4().hex[:6]}@example.com"
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline().strip()  # type: ignore[union-attr]
                break
        match = READY.match(line)
        assert match, f"no ready line: {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
        assert int(match.group(1)) == port
        page = fetch(f"http://127.0.0.1:{port}/p/dr01", {"User-Agent": MOBILE_UA})
        assert page.status == 200 and page.variants()[0] == "mobile-app"
        assert "<p13n-slot" not in page.text and "<!--#" not in page.text
        console = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert console.startswith(f"p13n console: http://127.0.0.1:{match.group(2)}/console/ (sign in with the token in ")
        sign_in = fetch(f"http://127.0.0.1:{match.group(2)}/console/sign-in")
        assert sign_in.status == 200 and 'name="token"' in sign_in.text
        hub = fetch(f"http://127.0.0.1:{match.group(2)}/v1/healthz")
        assert hub.status == 200 and b'"connected"' in hub.body
        # the demo trained a bundle and pushed it over NATS: the edge reports it in its heartbeat
        fleet: dict[str, object] = {}
        for _ in range(100):
            admin = {"authorization": "Bearer " + (tmp_path / "demo" / "admin.token").read_text().strip()}
            fleet = {
                e["edge_id"]: e for e in json.loads(fetch(f"http://127.0.0.1:{match.group(2)}/v1/edges", admin).body)["edges"]
            }
            if fleet.get("demo-edge", {}).get("model_version") == 1:
                break
            time.sleep(0.1)
        assert fleet["demo-edge"]["model_version"] == 1, fleet
        visitor = session(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{match.group(2)}", admin, user, email)
        kids = children_of(proc.pid)
        assert len(kids) == (5 if nginx_binary() else 4)  # nats, hub, origin, edge (+ nginx)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        leftover = [k for k in kids if alive(k)]
        assert leftover == []
    finally:
        if proc.poll() is None:  # a failed assertion: let the demo stop its children first
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    assert not os.path.exists(tmp_path / "demo" / "nginx-run" / "nginx" / "nginx.pid")
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "demo").rglob("*.log")}  # nginx, NATS too
    assert {"hub.log", "edge.log"} <= set(logs)
    for name, text in logs.items():
        for personal in (visitor, user, email):
            assert personal not in text, f"{personal} in {name}"
    for name in ("hub.log", "edge.log"):
        records = [json.loads(line) for line in logs[name].splitlines() if line.strip()]
        assert any(r["logger"] == "p13n.startup" for r in records), name
        assert all(r["component"] == name[:-4] and r["time"] and r["level"] and "event" in r for r in records), name


def session(site: str, hub: str, admin: dict[str, str], user: str, email: str) -> str:
    """What a visitor and the privacy team do: consent on the banner, pages, events,
    sign-in with an e-mail (through the hub's API), the subject's export and erasure.
    Returns the visitor id the edge issued."""
    cookies, visitor = consenting_visitor(SimpleNamespace(url=site))
    cookie = {"Cookie": cookies}
    assert post_events(site, [page_view(), {**page_view(), "type": "click", "item_id": "dr01"}], cookie).status == 202
    for path in ("/", "/p/dr01", "/c/drinks", f"/p/{visitor}", "/_p13n/decide?page=http://["):
        fetch(site + path, cookie)
    identify = {"event_id": uuid.uuid4().hex, "type": "identify", "anonymous_id": visitor, "user_id": user,
                "traits": {"email": email, "name": "Logged Person"}}  # fmt: skip
    stored = fetch(hub + "/v1/events", {**admin, "content-type": "application/json"}, "POST", json.dumps([identify]).encode())
    assert stored.status == 202, stored.text

    def linked() -> bool:  # the export names the visitor's page views and click
        reply = fetch(f"{hub}/v1/subjects/{user}", admin)
        return reply.status == 200 and visitor in reply.text and '"click"' in reply.text

    wait_for(linked, timeout_s=30)
    assert fetch(f"{hub}/v1/subjects/{user}", admin, method="DELETE").status == 202
    return visitor
