"""Consent from the platforms sites already run, in Chromium against a real edge, hub
and NATS: a stub CMP implementing ``__tcfapi`` (addEventListener, v2) that keeps its
TC string in ``euconsent-v2`` as CMPs do, Google Consent Mode ``gtag('consent', …)``
calls, a TC string already set on the first request, withdrawal, and GPC winning over
both. The consent records at the hub keep the source and the CMP's id and version, and
the access export shows them. (Each TC string case through collect, pixel, page and
decide is in test_consent_matrix.py.)"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from tests.conftest import AgentFactory, Hub, HubFactory, Origin
from tests.integration.helpers import fetch, wait_for
from tests.integration.ingest_helpers import warehouse_rows
from tests.unit.test_tcf import encode

#: A CMP stub per the TCF v2 CMP API: ``__tcfapi(command, version, callback)``;
#: ``addEventListener`` calls back with the current TC data and again on every change.
#: ``window.__cmp.choose(purposes, tcString)`` is the visitor clicking in its dialog.
CMP_STUB = """
(() => {
  const listeners = [];
  let data = {tcString: "", gdprApplies: true, eventStatus: "cmpuishown", cmpStatus: "loaded",
              purpose: {consents: {}, legitimateInterests: {}}, vendor: {consents: {}, legitimateInterests: {}}};
  const kept = localStorage.getItem("stub-cmp");  // a CMP remembers the choice: "tcloaded" on the next page
  if (kept) data = {...JSON.parse(kept), eventStatus: "tcloaded"};
  window.__tcfapi = (command, version, callback) => {
    if (version !== 2 || typeof callback !== "function") return;
    if (command === "addEventListener") { const id = listeners.push(callback); callback({...data, listenerId: id}, true); }
    else if (command === "getTCData") callback(data, true);
    else if (command === "ping") callback({gdprApplies: true, cmpLoaded: true, cmpStatus: "loaded"}, true);
  };
  window.__cmp = {
    choose(purposes, tcString) {
      const consents = {};
      for (let p = 1; p <= 10; p++) consents[p] = purposes.includes(p);
      data = {...data, tcString, eventStatus: "useractioncomplete", purpose: {consents, legitimateInterests: {}}};
      document.cookie = "euconsent-v2=" + tcString + "; path=/";
      localStorage.setItem("stub-cmp", JSON.stringify(data));
      listeners.forEach((cb, i) => cb({...data, listenerId: i + 1}, true));
    },
  };
})();
"""
GCM_PAGE = """
window.dataLayer = window.dataLayer || [];
window.gtag = function () { dataLayer.push(arguments); };
gtag("consent", "default", {analytics_storage: "denied", personalization_storage: "denied", ad_storage: "denied",
                            ad_user_data: "denied", ad_personalization: "denied"});
"""


def outbox_rows(data_dir: Any) -> int:
    db = sqlite3.connect(f"file:{data_dir / 'edge.sqlite3'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def consent_log(hub: Hub) -> list[tuple[str, list[str], str, dict[str, Any]]]:
    rows = warehouse_rows(hub.data_dir, "SELECT subject, categories, source, tcf FROM consent_log ORDER BY received_at")
    return [(s, json.loads(c), src, json.loads(t) if t else {}) for s, c, src, t in rows]


def cookie(context: Any, name: str) -> str:
    return next((c["value"] for c in context.cookies() if c["name"] == name), "")


def test_a_tcf_platform_drives_consent_from_first_click_to_withdrawal(
    browser: Any, nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-tcf", DEFAULT_CONSENT="necessary")
    context = browser.new_context()
    context.add_init_script(CMP_STUB)
    page = context.new_page()
    page.goto(agent.url + "/")
    page.wait_for_function("window.p13n !== undefined")
    time.sleep(0.3)
    assert cookie(context, "p13n_consent") == ""  # the CMP's dialog is open: no choice yet

    everything = encode(set(range(1, 11)), cmp_id=300, cmp_version=7)
    page.evaluate("tc => window.__cmp.choose([1,2,3,4,5,6,7,8,9,10], tc)", everything)
    wait_for(lambda: cookie(context, "p13n_consent") == "analytics.marketing.necessary.personalization", timeout_s=10)
    wait_for(lambda: cookie(context, "p13n_id") != "", timeout_s=10)
    visitor = cookie(context, "p13n_id")
    for item in ("sh01", "sh02"):
        page.goto(f"{agent.url}/p/{item}")
        page.wait_for_function("window.p13n !== undefined")
        page.evaluate("window.p13n.flush()")
    # every page: the CMP reports "tcloaded" with the same choice; nothing new is recorded
    page.reload()
    page.wait_for_function("window.p13n !== undefined")
    page.evaluate("window.p13n.flush()")

    # withdrawal in the CMP: nothing beyond necessary from here on
    nothing = encode(set(), cmp_id=300, cmp_version=8)
    page.evaluate("tc => window.__cmp.choose([], tc)", nothing)
    wait_for(lambda: cookie(context, "p13n_consent") == "necessary", timeout_s=10)
    page.goto(f"{agent.url}/p/sh03")
    page.wait_for_function("window.p13n !== undefined")
    page.evaluate("window.p13n.flush()")
    page.goto("about:blank")

    wait_for(lambda: len(consent_log(hub)) >= 2, timeout_s=30)
    time.sleep(1.0)
    log = consent_log(hub)
    assert [(s, c, src) for s, c, src, _ in log] == [
        (visitor, ["analytics", "marketing", "necessary", "personalization"], "tcf"),
        (visitor, ["necessary"], "tcf"),
    ]
    assert log[0][3] == {"cmp_id": 300, "cmp_version": 7, "policy_version": 4, "vendor_list_version": 80, "tc_string": everything}
    assert log[1][3]["cmp_version"] == 8 and log[1][3]["tc_string"] == nothing
    views = warehouse_rows(hub.data_dir, "SELECT url FROM events WHERE type = 'page_view' AND anonymous_id = ?", (visitor,))
    assert sorted(u.rsplit("/", 1)[-1] for (u,) in views) == ["", "sh01", "sh02", "sh02"]  # sh03 came after the withdrawal
    # the access export shows the records with the CMP's id and version
    export = json.loads(fetch(hub.url + f"/v1/subjects/{visitor}", hub.auth("privacy_officer")).body)
    assert [r["tcf"]["cmp_version"] for r in export["consents"]] == [7, 8]
    context.close()


def test_a_tc_string_set_before_the_first_request_is_followed_on_that_request(
    browser: Any, origin: Origin, start_agent: AgentFactory
) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", DEFAULT_CONSENT="necessary")
    context = browser.new_context()
    host = agent.url.split("//", 1)[1].split(":")[0]
    context.add_cookies([{"name": "euconsent-v2", "value": encode({1, 5, 6}), "domain": host, "path": "/"}])
    page = context.new_page()
    first = page.goto(agent.url + "/p/sh01")
    assert first is not None
    # personalization granted by the TC string: the first response already identifies
    assert cookie(context, "p13n_id") != ""
    page.wait_for_function("window.p13n !== undefined")
    # personalization without analytics: the SDK's events shape this visit on the edge
    # (session only) and are never stored
    for item in ("sh02", "sh03"):
        page.goto(f"{agent.url}/p/{item}")
        page.wait_for_function("window.p13n !== undefined")
        page.evaluate("window.p13n.flush()")
    wait_for(
        lambda: page.goto(agent.url + "/") is not None and page.locator(".hero").get_attribute("data-variant") == "category-fan"
    )
    assert outbox_rows(agent.data_dir) == 0 and cookie(context, "p13n_consent") == ""
    status = json.loads(fetch(agent.url + "/_p13n/consent", {"Cookie": f"euconsent-v2={encode({1, 5, 6})}"}).body)
    assert status["categories"] == ["necessary", "personalization"]
    context.close()


def test_consent_mode_updates_are_followed_and_gpc_wins(
    browser: Any, nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-gcm", DEFAULT_CONSENT="necessary")
    context = browser.new_context()
    context.add_init_script(GCM_PAGE)
    page = context.new_page()
    page.goto(agent.url + "/")
    page.wait_for_function("window.p13n !== undefined")
    time.sleep(0.3)
    assert cookie(context, "p13n_consent") == ""  # a default is not a choice
    page.evaluate("gtag('consent', 'update', {analytics_storage: 'granted', personalization_storage: 'granted'})")
    wait_for(lambda: cookie(context, "p13n_consent") == "analytics.necessary.personalization", timeout_s=10)
    page.evaluate("gtag('consent', 'update', {personalization_storage: 'denied'})")
    wait_for(lambda: cookie(context, "p13n_consent") == "analytics.necessary", timeout_s=10)

    # a browser with Global Privacy Control: whatever Consent Mode says, necessary only
    gpc = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    gpc.add_init_script("Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true});" + GCM_PAGE)
    other = gpc.new_page()
    other.goto(agent.url + "/")
    other.wait_for_function("window.p13n !== undefined")
    other.evaluate("gtag('consent', 'update', {analytics_storage: 'granted', personalization_storage: 'granted'})")
    wait_for(lambda: cookie(gpc, "p13n_consent") == "necessary", timeout_s=10)
    assert cookie(gpc, "p13n_id") == ""  # nothing needs an id

    wait_for(lambda: len(consent_log(hub)) >= 3, timeout_s=30)
    sources = [(c, src) for _, c, src, _ in consent_log(hub)]
    assert (["analytics", "necessary", "personalization"], "gcm") in sources
    assert (["analytics", "necessary"], "gcm") in sources
    assert (["necessary"], "gpc") in sources
    context.close()
    gpc.close()


def test_the_shop_banner_chooses_per_category_and_withdraws_from_any_page(
    browser: Any, origin: Origin, start_agent: AgentFactory
) -> None:
    agent = start_agent(origin.url, NATS_URL="nats://127.0.0.1:9", DEFAULT_CONSENT="necessary")
    context = browser.new_context()
    page = context.new_page()
    page.goto(agent.url + "/")
    page.wait_for_function("window.p13n !== undefined")
    page.click("#p13n-consent summary")  # choose per purpose
    page.check("#p13n-consent input[name=personalization]")
    page.click("#p13n-consent [data-consent=chosen]")
    wait_for(lambda: cookie(context, "p13n_consent") == "necessary.personalization", timeout_s=10)
    assert not page.is_visible("#p13n-consent") and cookie(context, "p13n_id") != ""
    # later, on another page: the link reopens the banner with the choice as it stands
    page.goto(agent.url + "/p/sh01")
    page.wait_for_function("window.p13n !== undefined")
    assert not page.is_visible("#p13n-consent")
    page.click("#p13n-privacy-choices")
    page.click("#p13n-consent summary")
    assert page.is_checked("#p13n-consent input[name=personalization]")
    assert not page.is_checked("#p13n-consent input[name=analytics]")
    page.click("#p13n-consent [data-consent=none]")  # withdraw
    wait_for(lambda: cookie(context, "p13n_consent") == "necessary", timeout_s=10)
    wait_for(lambda: cookie(context, "p13n_id") == "", timeout_s=10)  # the id cookie expires with the last purpose
    context.close()
