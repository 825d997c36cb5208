"""The operator console without a browser: every console route × every role (a page
is 200 or 403, an action is refused or reaches the API's handler), sign-in and sessions,
CSRF and origin checks, redacted dead-letter samples and their replay, the sampled
series. The browser tests are tests/integration/test_console.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from hub.app import create_app, routes
from hub.audit import verify
from hub.auth import ROLES, create_token
from hub.console.series import Series
from hub.console.sessions import SessionStore
from hub.settings import HubSettings
from hub.storage.sqlite_console import redact, sample_of
from tests.unit.test_train_from_hub import ev, store_with

BASE = "http://testserver"
#: Console routes → roles allowed (docs/CONSOLE.md); sign-in, sign-out and static are open.
MATRIX: dict[tuple[str, str], set[str]] = {
    ("GET", "/console/"): set(ROLES),
    ("GET", "/console/fleet"): set(ROLES),
    ("GET", "/console/models"): {"analyst", "operator", "admin"},
    ("GET", "/console/models/runs/{run_id}/report"): {"analyst", "operator", "admin"},
    ("POST", "/console/models/bundles/{version:int}/activate"): {"operator", "admin"},
    ("POST", "/console/models/bundles/rollback"): {"operator", "admin"},
    ("POST", "/console/models/runs"): {"operator", "admin"},
    ("GET", "/console/experiments"): {"analyst", "operator", "admin"},
    ("GET", "/console/experiments/{name}"): {"analyst", "operator", "admin"},
    ("GET", "/console/data"): {"analyst", "operator", "admin"},
    ("POST", "/console/data/replay"): {"operator", "admin"},
    ("POST", "/console/data/retention"): {"operator", "admin"},
    ("GET", "/console/privacy"): {"privacy_officer", "admin"},
    ("POST", "/console/privacy/erasures"): {"privacy_officer", "admin"},
    ("GET", "/console/privacy/erasures/{request_id}"): {"privacy_officer", "admin"},
}
OPEN = {("GET", "/console"), ("GET", "/console/static/{name}"), ("GET", "/console/sign-in"), ("POST", "/console/sign-in"),
        ("POST", "/console/sign-out"), ("GET", "/console/{rest:path}"), ("POST", "/console/{rest:path}")}  # fmt: skip


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    tokens = {role: create_token(tmp_path / "tokens.json", f"t-{role}", role) for role in ROLES}
    settings = HubSettings(
        nats_url="nats://127.0.0.1:9", nats_retry_s=30, data_dir=tmp_path / "hub", tokens_file=str(tmp_path / "tokens.json")
    )
    with TestClient(create_app(settings), base_url=BASE) as client:
        yield client, tokens, tmp_path / "hub"


def signed_in(client: TestClient, token: str) -> str:
    """Sign in; returns the session's form token."""
    client.cookies.clear()
    answer = client.post("/console/sign-in", data={"token": token}, headers={"origin": BASE}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie and "Secure" not in cookie
    page = client.get("/console/")
    marker = 'name="csrf" value="'
    return page.text.split(marker, 1)[1].split('"', 1)[0]


def concrete(template: str) -> str:
    return (
        template.replace("{version:int}", "1").replace("{run_id}", "0123456789ab").replace("{name}", "exp")
        .replace("{request_id}", "er_0")
    )  # fmt: skip


def test_the_console_matrix_covers_every_console_route() -> None:
    declared = {
        (m, r.path)
        for r in routes()
        if isinstance(r, Route) and r.methods and r.path.startswith("/console")
        for m in r.methods
        if m != "HEAD"
    }
    assert declared == set(MATRIX) | OPEN


def test_every_console_route_checks_every_role(hub: tuple[TestClient, dict[str, str], Path]) -> None:
    client, tokens, data_dir = hub
    # signed out: pages send to the sign-in page, actions are refused
    client.cookies.clear()
    for (method, template), _allowed in MATRIX.items():
        answer = client.request(method, concrete(template), data={}, headers={"origin": BASE}, follow_redirects=False)
        assert answer.status_code == (303 if method == "GET" else 401), template
    for role in ROLES:
        csrf = signed_in(client, tokens[role])
        nav = client.get("/console/").text
        for (method, template), allowed in MATRIX.items():
            answer = client.request(
                method, concrete(template), data={"csrf": csrf}, headers={"origin": BASE}, follow_redirects=False
            )
            if role in allowed:
                assert answer.status_code not in (401, 403), (role, method, template, answer.status_code)
            else:
                assert answer.status_code == 403, (role, method, template, answer.status_code)
            assert "default-src 'none'" in answer.headers["content-security-policy"]
            if method == "GET" and template.count("/") == 2:  # a page of the navigation
                assert (f'href="{template}"' in nav) == (role in allowed), (role, template)
    report = verify(data_dir / "audit.sqlite", HubSettings(data_dir=data_dir).audit_secret)
    assert report.ok and report.entries > len(MATRIX) * len(ROLES)  # every call audited, the chain intact


def test_an_unknown_console_address_is_an_html_404_under_the_policy(hub: tuple[TestClient, dict[str, str], Path]) -> None:
    client, _, _ = hub
    answer = client.get("/console/experiments/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "<script>" not in answer.text and "default-src 'none'" in answer.headers["content-security-policy"]


def test_forms_need_the_session_token_and_the_console_origin(hub: tuple[TestClient, dict[str, str], Path]) -> None:
    client, tokens, _ = hub
    csrf = signed_in(client, tokens["admin"])
    for data, headers in (
        ({}, {"origin": BASE}),  # no form token
        ({"csrf": "x" + csrf}, {"origin": BASE}),  # a wrong one
        ({"csrf": csrf}, {"origin": "http://evil.example"}),  # another site
        ({"csrf": csrf}, {"origin": "null"}),
        ({"csrf": csrf}, {}),  # no origin and no referer
    ):
        answer = client.post("/console/data/retention", data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403 and "form token" in answer.text
    ok = client.post("/console/data/retention", data={"csrf": csrf}, headers={"origin": BASE}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].startswith("/console/data?done=retention")
    # a bad token and a sign-in from another site are refused; the refusal is audited
    client.cookies.clear()
    bad = client.post("/console/sign-in", data={"token": "p13n_wrong"}, headers={"origin": BASE})
    assert bad.status_code == 401 and "not valid" in bad.text
    assert (
        client.post("/console/sign-in", data={"token": tokens["admin"]}, headers={"origin": "http://evil.example"}).status_code
        == 403
    )


def test_revoking_the_token_ends_its_sessions_and_sign_out_ends_the_cookie(
    hub: tuple[TestClient, dict[str, str], Path], tmp_path: Path
) -> None:
    from hub.auth import revoke_token

    client, tokens, _ = hub
    csrf = signed_in(client, tokens["viewer"])
    assert client.get("/console/fleet").status_code == 200
    cookie = client.cookies.get("p13n_console")
    assert revoke_token(tmp_path / "tokens.json", "t-viewer")
    time.sleep(1.1)  # the tokens file is re-read at most once a second
    assert client.get("/console/fleet", follow_redirects=False).status_code == 303
    csrf = signed_in(client, tokens["analyst"])
    cookie = client.cookies.get("p13n_console")
    out = client.post("/console/sign-out", data={"csrf": csrf}, headers={"origin": BASE}, follow_redirects=False)
    assert out.status_code == 303 and 'p13n_console=""' in out.headers["set-cookie"]
    client.cookies.set("p13n_console", str(cookie), path="/console")
    assert client.get("/console/models", follow_redirects=False).headers["location"] == "/console/sign-in"


def test_sessions_expire_and_store_only_digests(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "c.sqlite", lifetime_s=60)
    session_id, session = store.open("digest-of-token", now=1000.0)
    assert store.get(session_id, now=1059.0) == session and store.get(session_id, now=1060.0) is None
    assert store.get("", now=1000.0) is None and store.get("x" * 500, now=1000.0) is None
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("c.sqlite*"))
    assert session_id.encode() not in raw  # the cookie's value is never stored, only its digest
    assert hashlib.sha256(session_id.encode()).hexdigest().encode() in raw


def test_dead_letter_samples_are_redacted() -> None:
    doc = {"type": "x", "anonymous_id": "visitor1", "user_id": "u1", "traits": {"email": "a@b.example"},
           "props": {"note": "write to someone@mail.example", "nested": [{"email": "c@d.example"}]}}  # fmt: skip
    out = redact(doc)
    text = json.dumps(out)
    assert "visitor1" not in text and "u1" not in text and "@" not in text.replace("[e-mail]", "")
    assert out["type"] == "x" and out["props"]["note"] == "write to [e-mail]"
    assert sample_of("not json, mail me at x@y.example") == "not json, mail me at [e-mail]"
    assert len(sample_of(json.dumps({"a": "z" * 5000}))) <= 601


def test_replay_ingests_what_passes_now_and_dead_letters_the_rest_again(tmp_path: Path) -> None:
    store = store_with(tmp_path, ev("page_view", "visitorReplay000001", 1.0, url="https://s.example/"))
    try:
        good = {"event_id": "replay-good-0001", "type": "page_view", "anonymous_id": "visitorReplay000002",
                "url": "https://s.example/", "ts": "2026-12-01T00:00:00Z"}  # fmt: skip
        bad = {"event_id": "short", "type": "page_view", "anonymous_id": "visitorReplay000003"}
        with store.lock:
            store.warehouse.executemany(
                "INSERT INTO dead_letters (received_at, source, reason, detail, raw, subjects) VALUES (?, 'api', ?, '', ?, '')",
                [("2026-12-01T00:00:00Z", "contract_v1", json.dumps(e)) for e in (good, bad)]
                + [("2026-12-01T00:00:00Z", "contract_v1", "{not json")],
            )
            store.warehouse.commit()
        before = store.table_rows()["warehouse.events"]
        report = store.replay_dead_letters("contract_v1")
        assert report == {"rows": 2, "events": 2, "accepted": 1, "duplicates": 0, "dead_again": 1, "left_unreadable": 1}
        assert store.table_rows()["warehouse.events"] == before + 1
        reasons = {d["reason"]: d["count"] for d in store.dead_letters()}
        assert reasons["contract_v1"] == 1 and sum(reasons.values()) == 2  # the unreadable one stays, the bad one is back
        assert store.replay_dead_letters("contract_v1")["rows"] == 0  # the unreadable is never taken
    finally:
        store.close()


def test_the_series_gives_increases_between_samples(tmp_path: Path) -> None:
    series = Series(tmp_path / "c.sqlite")
    now = time.time()
    for i, received in enumerate((10, 25, 5)):  # the last: a counter that went down (a restore)
        series.record({"received": received, "edges_up": 2}, now=now - 30 + i * 10)
    window = series.window(3600, now=now)
    assert [s["received_delta"] for s in window] == [0, 15, 5] and window[-1]["edges_up"] == 2
    series.record({"received": 1}, now=now - 15 * 86400)  # older than 14 days: dropped at the next write
    series.record({"received": 6}, now=now)
    assert len(series.window(20 * 86400, now=now)) == 4
    series.close()
