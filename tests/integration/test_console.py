"""The operator console in Chromium, against a real hub, NATS and edge: sign-in and
sign-out, every page with real data, what each role sees and may do (and the server
refusing a forged post), a rollback and an erasure driven from the console reaching the
edge, and the Content-Security-Policy holding against hostile text.

Screenshots of every page go to ``test-artifacts/console/`` (or ``$P13N_TEST_ARTIFACTS``)."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, AgentFactory, Hub, HubFactory, Origin, TrainedBundle
from tests.integration.helpers import fetch, wait_for
from tests.integration.test_bundle_sync import _train, health, p13n

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("P13N_TEST_ARTIFACTS", REPO / "test-artifacts")) / "console"
PAGES = ("", "fleet", "models", "experiments", "data", "privacy")
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def sign_in(browser: Any, hub: Hub, role: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.goto(hub.url + "/console/")
    assert page.url.endswith("/console/sign-in")  # signed out: the sign-in page
    page.fill("#token", hub.tokens[role])
    page.click("form[action='/console/sign-in'] button")
    page.wait_for_url(hub.url + "/console/")
    return page


def audit_actions(hub: Hub) -> list[tuple[str, str, int]]:
    entries = json.loads(fetch(hub.url + "/v1/audit?limit=1000", hub.auth("admin")).body)["entries"]
    return [(e["actor"], e["action"], int(e["status"])) for e in entries]


@pytest.fixture(scope="module")
def second_bundle(trained_bundle: TrainedBundle, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A version 2 bundle (trained once for the module)."""
    return str(_train(trained_bundle, tmp_path_factory.mktemp("v2"), "--version", "2")["bundle"])


@pytest.fixture
def fleet(
    nats_server: str,
    origin: Origin,
    trained_bundle: TrainedBundle,
    second_bundle: str,
    start_hub: HubFactory,
    start_agent: AgentFactory,
) -> tuple[Hub, Any]:
    """A hub with two stored bundles (v2 live) and an edge running v2."""
    key = str(trained_bundle.public_key)
    hub = start_hub(nats_server, BUNDLE_PUBLIC_KEY=key, CONSOLE_SAMPLE_S="1")
    edge = start_agent(origin.url, NATS_URL=nats_server, BUNDLE_PUBLIC_KEY=key, ID="edge-console")
    assert p13n(hub, "push", str(trained_bundle.path)).returncode == 0
    assert p13n(hub, "push", second_bundle).returncode == 0
    wait_for(lambda: health(edge.url)["model_version"] == 2, timeout_s=60)
    wait_for(lambda: hub_view(hub).get("model_version") == 2, timeout_s=30)
    return hub, edge


def hub_view(hub: Hub) -> dict[str, Any]:
    """What the hub last heard from the test's edge (its heartbeat)."""
    edges = json.loads(fetch(hub.url + "/v1/edges", hub.auth()).body)["edges"]
    found: dict[str, Any] = next((e for e in edges if e["edge_id"] == "edge-console"), {})
    return found


def test_an_operator_signs_in_sees_every_page_and_rolls_the_fleet_back(browser: Any, fleet: tuple[Hub, Any]) -> None:
    hub, edge = fleet
    # some traffic for the charts and the fleet's decision figures
    for _ in range(3):
        assert fetch(edge.url + "/").status == 200
    wait_for(lambda: (hub_view(hub).get("decisions") or {}).get("pages", 0) >= 3, timeout_s=30)
    page = sign_in(browser, hub, "operator")
    cookie = next(c for c in page.context.cookies() if c["name"] == "p13n_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert hub.tokens["operator"] not in json.dumps(page.context.cookies())  # the token is not kept in the browser
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in PAGES[:-1]:  # privacy is the privacy officer's (below: refused)
        response = page.goto(hub.url + "/console/" + name)
        assert response is not None and response.status == 200, name
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert page.locator("main h1").count() == 1
        page.screenshot(path=str(ARTIFACTS / f"operator-{name or 'overview'}.png"), full_page=True)
    # real data on the pages: the edge, its model bundle, both stored bundles
    page.goto(hub.url + "/console/fleet")
    row = page.locator("tr", has_text="edge-console")
    assert "v2" in row.inner_text() and "(live is" not in row.inner_text()
    assert "≤" in row.inner_text()  # the edge's decision time, from its heartbeat
    page.goto(hub.url + "/console/models")
    assert page.locator("tr.live th").inner_text() == "v2"
    assert page.get_by_role("button", name="Make v1 live").count() == 1
    # no privacy page for an operator: not in the navigation, and refused when asked
    assert page.locator("nav a", has_text="Privacy").count() == 0
    assert page.goto(hub.url + "/console/privacy").status == 403  # type: ignore[union-attr]

    page.goto(hub.url + "/console/models")
    page.get_by_role("button", name="Roll back to the previous live bundle").click()
    page.wait_for_url("**/console/models?done=rolled_back*")
    assert "Rolled back" in page.locator(".notice").inner_text()
    wait_for(lambda: health(edge.url)["model_version"] == 1, timeout_s=60)
    assert page.goto(hub.url + "/console/models") is not None and page.locator("tr.live th").inner_text() == "v1"
    assert ("test-operator", "bundles.rollback", 200) in audit_actions(hub)  # audited as the API call is

    # sign out: the old cookie is worth nothing afterwards
    old = cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/sign-in")
    replay = fetch(hub.url + "/console/models", {"cookie": f"p13n_console={old}"})
    assert 'action="/console/sign-in"' in replay.text and "Bundles" not in replay.text  # (urllib followed the 303)


def test_a_viewer_sees_no_actions_and_forged_posts_are_refused(browser: Any, fleet: tuple[Hub, Any]) -> None:
    hub, edge = fleet
    page = sign_in(browser, hub, "viewer", viewport={"width": 390, "height": 844})  # a phone
    nav = page.locator("nav a").all_inner_texts()
    assert nav == ["Overview", "Fleet"]  # only the pages the role may open
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-phone-overview.png"), full_page=True)
    assert page.goto(hub.url + "/console/models").status == 403  # type: ignore[union-attr]
    assert page.locator("button", has_text="live").count() == 0
    # a viewer's own session, its own form token: the server still refuses the rollback
    csrf = page.locator("form[action='/console/sign-out'] input[name=csrf]").get_attribute("value")
    forged = page.request.post(
        hub.url + "/console/models/bundles/rollback", form={"csrf": str(csrf)}, headers={"origin": hub.url}
    )
    assert forged.status == 403 and "may not" in forged.text()
    assert health(edge.url)["model_version"] == 2
    assert ("test-viewer", "bundles.rollback", 403) in audit_actions(hub)

    # an operator's session, but a post without the form token, or from another site
    operator = sign_in(browser, hub, "operator")
    no_token = operator.request.post(hub.url + "/console/models/bundles/rollback", form={}, headers={"origin": hub.url})
    assert no_token.status == 403 and "form token" in no_token.text()
    token = operator.locator("form[action='/console/sign-out'] input[name=csrf]").get_attribute("value")
    elsewhere = operator.request.post(
        hub.url + "/console/models/bundles/rollback", form={"csrf": str(token)}, headers={"origin": "http://evil.example"}
    )
    assert elsewhere.status == 403
    # and a real cross-site page submitting a form: the SameSite=Strict cookie stays home
    attacker = operator.context.new_page()
    attacker.set_content(
        f'<form method="post" action="{hub.url}/console/models/bundles/rollback"><input name="csrf" value="{token}"></form>'
    )
    attacker.evaluate("document.forms[0].submit()")
    attacker.wait_for_load_state()
    assert health(edge.url)["model_version"] == 2  # nothing moved
    # a keyboard user can reach and press the actions (tab order, no mouse)
    operator.goto(hub.url + "/console/models")
    operator.keyboard.press("Tab")
    assert operator.evaluate("document.activeElement.textContent") == "Skip to content"
    bad = browser.new_page()
    bad.goto(hub.url + "/console/sign-in")
    bad.fill("#token", "p13n_not-a-token")
    bad.click("form[action='/console/sign-in'] button")
    assert "not valid" in bad.locator(".problem").inner_text()


def test_an_erasure_started_in_the_console_completes_with_the_edges_ack(
    browser: Any, fleet: tuple[Hub, Any], start_agent: AgentFactory
) -> None:
    hub, _edge = fleet
    visitor = "visitorConsoleErase01"
    events = [{"event_id": f"ce{i}", "type": "page_view", "anonymous_id": visitor, "url": "https://s.example/"} for i in range(3)]
    # a hostile dead letter: its sample must render as text under the CSP
    events.append({"event_id": "ce-bad", "type": "page_view", "anonymous_id": visitor, "url": HOSTILE, "ts": HOSTILE})
    posted = fetch(
        hub.url + "/v1/events", {"x-api-key": API_KEY, "content-type": "application/json"}, "POST", json.dumps(events).encode()
    )
    assert posted.status in (200, 202), posted.text
    page = sign_in(browser, hub, "privacy_officer")
    page.goto(hub.url + "/console/privacy")
    page.fill("#subject", visitor)
    page.get_by_role("button", name="Erase everywhere").click()
    page.wait_for_url("**/console/privacy/erasures/er_*")

    def completed() -> bool:
        page.reload()
        return "completed" in page.locator("#erasure-status").inner_text()

    wait_for(completed, timeout_s=60)
    assert "acknowledged" in page.locator("tr", has_text="edge-console").inner_text()
    page.screenshot(path=str(ARTIFACTS / "privacy-erasure.png"), full_page=True)
    request_id = urllib.parse.urlsplit(page.url).path.rsplit("/", 1)[1]
    status = json.loads(fetch(hub.url + f"/v1/erasures/{request_id}", hub.auth("privacy_officer")).body)
    assert status["status"] == "completed" and status["edges"]["edge-console"]["status"] == "acknowledged"
    actions = audit_actions(hub)
    assert ("test-privacy_officer", "subjects.erase", 202) in actions
    assert not any(visitor in json.dumps(a) for a in actions)  # the audit names the erasure token, not the id
    page.goto(hub.url + "/console/privacy")
    assert "The chain verifies" in page.locator("#main").inner_text()


def test_hostile_text_renders_inert_and_the_policy_blocks_injected_script(browser: Any, fleet: tuple[Hub, Any]) -> None:
    hub, _edge = fleet
    bad = [
        {"event_id": "h1", "type": "page_view", "anonymous_id": "visitorHostile0001", "url": HOSTILE, "ts": "not a time"},
        # an experiment and variant named by whoever posts events: shown as text
        {"event_id": "hostile-exposure-1", "type": "exposure", "anonymous_id": "visitorHostile0002",
         "experiment": "<b>x</b>", "variant": '<img src=x onerror="window.__pwned=4">'},
    ]  # fmt: skip
    posted = fetch(
        hub.url + "/v1/events", {"x-api-key": API_KEY, "content-type": "application/json"}, "POST", json.dumps(bad).encode()
    )
    assert posted.status in (200, 202, 400), posted.text
    page = sign_in(browser, hub, "admin")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(hub.url + "/console/data")
    wait_for(lambda: page.reload() is not None and page.locator("details summary").count() > 0, timeout_s=30)
    page.locator("details summary").first.click()
    text = page.locator("main").inner_text()
    assert "<script>window.__pwned=1</script>" in text  # shown as text
    assert "visitorHostile0001" not in text  # samples are redacted
    assert page.evaluate("window.__pwned") is None and dialogs == []
    # a script that got into the page anyway (here: put there through the DevTools
    # protocol) does not run: the policy allows no script at all
    page.evaluate(
        """() => new Promise(done => {
            document.addEventListener('securitypolicyviolation', e => { window.__blocked = e.violatedDirective; done(); });
            const s = document.createElement('script'); s.textContent = 'window.__pwned = 3'; document.body.appendChild(s);
        })"""
    )
    assert page.evaluate("window.__pwned") is None
    assert str(page.evaluate("window.__blocked")).startswith("script-src")
    page.screenshot(path=str(ARTIFACTS / "data-hostile.png"), full_page=True)
    # the experiments list, once the marts have folded the hostile exposure
    wait_for(
        lambda: page.goto(hub.url + "/console/experiments") is not None and "<b>x</b>" in page.locator("main").inner_text(),
        timeout_s=30,
    )
    assert 'onerror="window.__pwned=4"' in page.locator("main").inner_text() and page.evaluate("window.__pwned") is None
