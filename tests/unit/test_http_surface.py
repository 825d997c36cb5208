"""The agent's and hub's HTTP surface in-process: one error shape, health, metrics."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from edge_agent.app import create_app as create_edge
from edge_agent.settings import EdgeSettings
from hub.app import create_app as create_hub
from hub.settings import HubSettings

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def edge_client(tmp_path: Path, **kw: object) -> TestClient:
    settings = EdgeSettings(data_dir=tmp_path, templates_dir=TEMPLATES, origin="http://127.0.0.1:9", **kw)  # type: ignore[arg-type]
    return TestClient(create_edge(settings))


def test_unknown_agent_endpoint_uses_the_error_shape(tmp_path: Path) -> None:
    with edge_client(tmp_path) as c:
        r = c.get("/_p13n/nope")
    assert r.status_code == 404
    assert r.json() == {"error": {"status": 404, "reason": "not_found", "detail": "no agent endpoint at /_p13n/nope"}}


def test_unreachable_origin_is_a_502_with_the_error_shape(tmp_path: Path) -> None:
    with edge_client(tmp_path, origin_timeout_s=1.0) as c:
        r = c.get("/p/dr01")
    assert r.status_code == 502
    assert r.json()["error"]["reason"] == "origin_unavailable"


def test_health_and_metrics(tmp_path: Path) -> None:
    with edge_client(tmp_path) as c:
        health = c.get("/_p13n/healthz").json()
        c.get("/_p13n/slot/hero", headers={"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"})
        text = c.get("/_p13n/metrics").text
    # slot content from the templates but no model bundle yet: serving, and saying so
    assert health["status"] == "degraded" and health["problems"] == ["no_model"] and health["bundle_version"] == 1
    assert health["content_source"].startswith("templates:")
    assert 'p13n_edge_decisions_total{kind="variant",outcome="variant",slot="hero"} 1.0' in text
    assert "p13n_edge_rewrite_seconds_bucket" in text


def test_slot_fragment_falls_back_with_204_and_counts_the_reason(tmp_path: Path) -> None:
    with edge_client(tmp_path) as c:
        r = c.get("/_p13n/slot/unknown-slot")
        bad = c.get("/_p13n/slot/bad%20name")
        text = c.get("/_p13n/metrics").text
    assert r.status_code == 204 and r.content == b""
    assert bad.status_code == 204
    assert 'p13n_edge_fallbacks_total{reason="unknown_slot"} 2.0' in text


def test_a_slot_that_falls_back_answers_the_fallback_its_include_names(tmp_path: Path) -> None:
    """SSI includes name their fallback (``fb``): the agent answers it with a 200, so
    nginx never needs the stub for a decided fallback (it prints a stub twice when its
    request completes before an earlier include's: nginx issue 426)."""
    from edge_agent.slot_fallbacks import fallback_id
    from models.slots import scan

    home = scan((TEMPLATES / "pages" / "home.html").read_bytes())
    offer = next(s for s in home.slots if s.name == "offer")
    fb = fallback_id(offer.fallback)
    with edge_client(tmp_path) as c:  # a slot the content lacks falls back (reason unknown_slot)
        named = c.get(f"/_p13n/slot/gone?rid={'c' * 32}&fb={fb}")
        head = c.head(f"/_p13n/slot/gone?rid={'c' * 32}&fb={fb}")
        unknown = c.get(f"/_p13n/slot/gone?rid={'c' * 32}&fb=0123456789abcdef")
        bare = c.get(f"/_p13n/slot/gone?rid={'c' * 32}")
        text = c.get("/_p13n/metrics").text
    assert named.status_code == 200 and named.content == offer.fallback
    assert named.headers["cache-control"] == "private, no-store"  # never kept by nginx's fragment cache
    assert head.status_code == 200 and head.content == b""
    assert unknown.status_code == 204 and bare.status_code == 204  # an id it does not know: nginx's stub
    assert 'p13n_edge_fallbacks_total{reason="unknown_slot"} 4.0' in text


def test_broken_bundle_file_serves_fallbacks(tmp_path: Path) -> None:
    broken = tmp_path / "bundle.json"
    broken.write_text("{not json")
    with edge_client(tmp_path, bundle=str(broken)) as c:
        assert c.get("/_p13n/healthz").json()["bundle_version"] is None
        assert c.get("/_p13n/slot/hero").status_code == 204
        assert 'reason="no_bundle"' in c.get("/_p13n/metrics").text


def test_hub_reports_degraded_without_nats_and_uses_the_error_shape(tmp_path: Path) -> None:
    with TestClient(create_hub(HubSettings(nats_url="nats://127.0.0.1:9", nats_retry_s=5, data_dir=tmp_path))) as c:
        health = c.get("/v1/healthz")
        missing = c.get("/v1/nothing")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert missing.json() == {"error": {"status": 404, "reason": "not_found", "detail": "no hub endpoint at /v1/nothing"}}


def test_fragments_become_single_line_utf8_header_values() -> None:
    from edge_agent.ssi import header_safe, parse_query

    assert header_safe("<p>a\r\nb\nc</p> é") == "<p>a b c</p> é".encode()
    assert parse_query(b"rid=abc&count=4&note=a%20b+c&rid=other&flag") == {
        "rid": "abc",
        "count": "4",
        "note": "a b c",
        "flag": "",
    }


def test_a_visitor_without_a_session_is_looked_up_once_and_seen_once_they_act(tmp_path: Path) -> None:
    """Pages of a returning visitor who has no stored session read SQLite once, not
    per page; their first accepted event gives the next page their session."""
    visitor = "p13n_id=visitorWithoutSession0001"
    consent = "p13n_consent=necessary,analytics,personalization"
    headers = {"Cookie": f"{visitor}; {consent}", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    with edge_client(tmp_path) as c:
        state = c.app.state.edge  # type: ignore[attr-defined]
        reads: list[str] = []
        state.store.db.set_trace_callback(lambda sql: reads.append(sql) if "FROM sessions" in sql else None)
        for _ in range(3):
            assert c.get("/_p13n/decide?slots=hero&page=/p/sh01", headers=headers).status_code == 200
        assert len(reads) == 1
        asgi_headers = {k.lower(): v for k, v in headers.items()}
        assert state.page_context(asgi_headers, "/p/sh01").session is None
        event = {"event_id": "e" * 32, "type": "page_view", "url": "https://shop.example/p/sh01"}
        assert c.post("/_p13n/collect", json={"events": [event]}, headers=headers).status_code == 202
        session = state.page_context(asgi_headers, "/p/sh01").session
        assert session is not None and session["views"] >= 1


def test_one_round_trip_auth_keeps_no_page_context_and_include_auth_does(tmp_path: Path) -> None:
    """An auth call that decides every slot is the page's only agent request: keeping its
    context would only feed the garbage collector. The include-mode auth keeps it for
    the page's fragments."""
    headers = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", "X-P13N-Page": "/p/dr01"}
    with edge_client(tmp_path) as c:
        contexts = c.app.state.edge.contexts  # type: ignore[attr-defined]
        echo = c.get("/_p13n/auth?slots=hero,offer", headers={**headers, "X-Request-Id": "a" * 32})
        assert echo.status_code == 204 and "mobile-app" in echo.headers["x-p13n-slot-hero"]
        assert len(contexts) == 0
        assert c.get("/_p13n/auth", headers={**headers, "X-Request-Id": "b" * 32}).status_code == 204
        assert len(contexts) == 1
        fragment = c.get("/_p13n/slot/hero", headers={**headers, "X-Request-Id": "b" * 32})
        assert fragment.status_code == 200 and "mobile-app" in fragment.text
        metrics = c.get("/_p13n/metrics").text
    assert 'p13n_edge_page_contexts_total{how="reused"} 1.0' in metrics


def test_garbage_collections_are_timed_by_generation_while_the_agent_runs(tmp_path: Path) -> None:
    import gc
    import re

    before = len(gc.callbacks)
    with edge_client(tmp_path) as c:
        assert len(gc.callbacks) == before + 1
        gc.collect()  # a full collection
        text = c.get("/_p13n/metrics").text
    assert len(gc.callbacks) == before  # removed on shutdown: in-process apps do not pile up
    counts = dict(re.findall(r'p13n_edge_gc_pause_seconds_count\{generation="(\d)"\} (\S+)', text))
    assert set(counts) == {"0", "1", "2"} and float(counts["2"]) >= 1
    total = re.search(r'p13n_edge_gc_pause_seconds_sum\{generation="2"\} (\S+)', text)
    assert total is not None and float(total.group(1)) > 0


def test_set_cookie_writes_what_http_cookies_writes() -> None:
    """The fast path for plain values is byte-identical to ``SimpleCookie``; other values
    go through it (quoted)."""
    from http.cookies import SimpleCookie

    from edge_agent.pages import set_cookie

    def reference(name: str, value: str, max_age: int, secure: bool, http_only: bool) -> str:
        jar: SimpleCookie = SimpleCookie()
        jar[name] = value
        morsel = jar[name]
        morsel["path"], morsel["max-age"], morsel["samesite"] = "/", max_age, "Lax"
        if http_only:
            morsel["httponly"] = True
        if secure:
            morsel["secure"] = True
        return morsel.OutputString()

    values = ["abcDEF_-0123456789xyz", "1.W1siYSJdXQ.n2z_ArIgu83RljJM1Fr7EA", "analytics.personalization"]
    values += ["", "a b;c", "é", "a=b", '"q"', "!#$%&'*+-.^_`|~:"]
    for value in values:
        for secure in (False, True):
            for http_only in (False, True):
                assert set_cookie("p13n_x", value, 1800, secure, http_only) == reference("p13n_x", value, 1800, secure, http_only)
