"""A real Chromium loads a demo page through nginx, scrolls, clicks an item and leaves;
the warehouse ends up with exactly those events, typed and enriched. A pixel fires
from an <img>."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from tests.conftest import AgentFactory, HubFactory, NginxFactory, Origin
from tests.integration.ingest_helpers import wait_accepted, warehouse_rows


def test_browser_session_lands_in_the_warehouse_exactly(
    browser: object,
    nats_server: str,
    ssi_origin: Origin,
    start_agent: AgentFactory,
    start_hub: HubFactory,
    start_nginx_proxy: NginxFactory,
    tmp_path: Path,
) -> None:
    hub = start_hub(nats_server)
    # a generous decision budget: this test is about the SDK, and a page decided on a busy
    # machine past the default 5 ms shows the slots' fallbacks (no recommended item to click)
    agent = start_agent(ssi_origin.url, NATS_URL=nats_server, ID="edge-browser")
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url, geo_header='"fr"')  # as a CDN's country header would
    context = browser.new_context(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(nginx.url + "/p/dr01?utm_source=mail&utm_medium=email")
    page.wait_for_function("window.p13n !== undefined")
    page.mouse.wheel(0, 100_000)  # to the bottom: 25, 50, 75 and 100 %
    page.wait_for_timeout(300)
    page.click("article.product h1")  # inside [data-p13n-item="dr01"]
    # a recommended item: the click names the slot it was shown in (its click-through);
    # the link is kept from navigating so the page's other events stay as they are
    page.evaluate(
        "document.querySelectorAll('[data-slot=recs] a').forEach(a => a.addEventListener('click', e => e.preventDefault()))"
    )
    recommended = page.locator("[data-slot=recs] [data-p13n-item]").first
    recommended_id = recommended.get_attribute("data-p13n-item")
    recommended.click()
    page.wait_for_timeout(300)
    visitor = next(c["value"] for c in context.cookies() if c["name"] == "p13n_id")
    page.goto("about:blank")  # leave: pagehide sends time on page with a beacon
    wait_accepted(hub, 8, timeout_s=30)
    time.sleep(1.0)  # nothing more may arrive
    rows = warehouse_rows(hub.data_dir, "SELECT type, item_id, props, context, anonymous_id, url FROM events")
    kinds = Counter(r[0] for r in rows)
    assert kinds == Counter({"page_view": 1, "scroll": 4, "click": 2, "time_on_page": 1})
    depths = sorted(json.loads(r[2])["depth"] for r in rows if r[0] == "scroll")
    assert depths == [25, 50, 75, 100]
    clicks = {r[1]: json.loads(r[3]) for r in rows if r[0] == "click"}
    assert set(clicks) == {"dr01", recommended_id} and recommended_id != "dr01"
    assert "slot" not in clicks["dr01"] and clicks[recommended_id]["slot"] == "recs"
    (top,) = [r for r in rows if r[0] == "time_on_page"]
    assert 0 < json.loads(top[2])["seconds"] < 60
    for r in rows:
        ctx = json.loads(r[3])
        assert ctx["device"] == "desktop" and ctx["country"] == "FR" and ctx["utm_source"] == "mail", (r[0], ctx)
        assert isinstance(ctx["local_hour"], int) and r[4] == visitor
        assert r[5].endswith("/p/dr01")  # canonical: the UTM parameters are in the context
    context.close()


def test_pixel_fires_from_an_img(
    browser: object, nats_server: str, origin: Origin, start_agent: AgentFactory, start_hub: HubFactory
) -> None:
    hub = start_hub(nats_server)
    agent = start_agent(origin.url, NATS_URL=nats_server)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(agent.url + "/_p13n/healthz")
    page.set_content(f'<img id="px" src="{agent.url}/_p13n/px.gif?e=email_open&campaign=spring" width="1" height="1">')
    page.wait_for_function("document.getElementById('px').complete && document.getElementById('px').naturalWidth === 1")
    wait_accepted(hub, 1)
    ((kind, props),) = warehouse_rows(hub.data_dir, "SELECT type, props FROM events")
    assert kind == "email_open" and json.loads(props)["campaign"] == "spring"


def test_hostile_catalog_data_renders_inert(browser: object, tmp_path: Path, start_agent: AgentFactory) -> None:
    import shutil

    from p13n.procs import DEFAULT_TEMPLATES
    from tests.conftest import _start_origin

    templates = tmp_path / "tpl"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    catalog = json.loads((templates / "catalog.json").read_text())
    catalog[0].update(
        title='<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">',
        url='" onmouseover="window.__pwned = 3" x="',
        color="red;background:url(javascript:window.__pwned=4)",
        popularity=10_000,
    )
    # a URL attribute: script URLs (however spelled) never reach an href
    catalog[1].update(url="  JaVa\tScRiPt:window.__pwned = 5", popularity=9_999)
    shoe = next(i for i, item in enumerate(catalog) if item["category"] != catalog[0]["category"])
    catalog[shoe].update(url="data:text/html,<script>opener.__pwned = 6</script>", popularity=9_998)
    (templates / "catalog.json").write_text(json.dumps(catalog))
    origin = _start_origin(tmp_path / "o", ssi=False, templates=templates)
    try:
        agent = start_agent(origin.url, TEMPLATES_DIR=str(templates))
        page = browser.new_page()  # type: ignore[attr-defined]
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(agent.url + "/")
        card = page.locator(f'[data-p13n-item="{catalog[0]["id"]}"]')
        card.hover()
        page.wait_for_timeout(300)
        assert page.evaluate("window.__pwned") is None and dialogs == []
        assert "<script>window.__pwned = 1</script>" in card.inner_text()  # shown as text
        assert page.locator("script:has-text('__pwned')").count() == 0
        for item in (catalog[1], catalog[shoe]):
            link = page.locator(f'[data-p13n-item="{item["id"]}"] a')
            assert link.get_attribute("href") == "#"
            link.click()
            page.wait_for_timeout(200)
        assert page.evaluate("window.__pwned") is None and dialogs == []
        # the swatch's CSS value cannot open a url(): the hostile declaration is inert
        swatch = card.locator(".swatch")
        assert "url(" not in swatch.evaluate("e => getComputedStyle(e).backgroundImage")
    finally:
        origin.child.stop()
