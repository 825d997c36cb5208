"""Shared fragments through a real nginx (SSI mode): slots that read only keyable inputs
are cached by nginx under the visitor's class cookie, so they reach the agent once per
class; per-visitor slots always reach it; and no visitor is ever shown a fragment
decided from another visitor's data — a tampered class, a changed consent or Global
Privacy Control are decided live for the visitor and never cached."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from p13n.procs import DEFAULT_TEMPLATES
from tests.conftest import AgentFactory, Nginx, NginxFactory, Origin
from tests.integration.helpers import DESKTOP_UA, Reply, fetch, metric

CATEGORY_ITEMS = {"dresses": "dr", "shoes": "sh", "jackets": "ja"}


@pytest.fixture
def shareable_templates(tmp_path: Path) -> Path:
    """The demo templates with the hero's hour-of-day variant removed: the hero then reads
    only the session's favourite category (filled into its text), device and country."""
    tpl = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, tpl)
    slots = json.loads((tpl / "slots.json").read_text())
    slots["hero"]["variants"] = [v for v in slots["hero"]["variants"] if v["id"] != "night-owl"]
    (tpl / "slots.json").write_text(json.dumps(slots))
    return tpl


class Visitor:
    """A browser: a cookie jar it sends to nginx and updates from every answer."""

    def __init__(self, nginx: Nginx) -> None:
        self.nginx = nginx
        self.jar: dict[str, str] = {}

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        return {"User-Agent": DESKTOP_UA, **({"Cookie": cookie} if cookie else {}), **(extra or {})}

    def _keep(self, reply: Reply) -> Reply:
        for header in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in header:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return reply

    def page(self, path: str = "/", extra: dict[str, str] | None = None) -> Reply:
        reply = fetch(self.nginx.url + path, self._headers(extra))
        assert reply.status == 200, reply.text
        return self._keep(reply)

    def browse(self, category: str, views: int = 3) -> None:
        events: list[dict[str, Any]] = [
            {
                "event_id": uuid.uuid4().hex,
                "type": "page_view",
                "url": f"https://shop.example/p/{CATEGORY_ITEMS[category]}0{i + 1}",
            }
            for i in range(views)
        ]
        reply = fetch(
            self.nginx.url + "/_p13n/collect",
            self._headers({"Content-Type": "application/json"}),
            method="POST",
            data=json.dumps({"events": events}).encode(),
        )
        assert reply.status == 202, reply.text
        self._keep(reply)


def counts(agent_url: str) -> dict[str, float]:
    text = fetch(agent_url + "/_p13n/metrics").text
    return {
        "filled": metric(text, "p13n_edge_shared_fragments_total", result="filled"),
        "live": metric(text, "p13n_edge_shared_fragments_total", result="live"),
        "hero": sum(metric(text, "p13n_edge_decisions_total", slot="hero", outcome=o) for o in ("variant", "default")),
        "recs": sum(metric(text, "p13n_edge_decisions_total", slot="recs", outcome=o) for o in ("recommend", "empty", "holdout")),
    }


def hero(reply: Reply) -> str:
    return reply.variants()[0]


def hero_html(reply: Reply) -> str:
    found = re.search(r'<section class="hero.*?</section>', reply.text, re.DOTALL)
    assert found is not None, reply.text
    return found.group(0)


def test_shareable_slots_are_cached_per_class_and_never_cross_visitors(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory, shareable_templates: Path
) -> None:
    agent = start_agent(ssi_origin.url, TEMPLATES_DIR=str(shareable_templates))
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url, geo_header="$http_x_test_country")

    alice = Visitor(nginx)
    first = alice.page()  # a new visitor: no class yet, every slot decided live
    assert "p13n_id" in alice.jar and "p13n_cls" not in alice.jar
    assert "first-visit" in first.variants()
    alice.browse("dresses")
    assert "p13n_cls" in alice.jar  # issued with the collect answer, as of her next page
    before = counts(agent.url)
    page = alice.page()
    assert hero(page) == "category-fan" and "More dresses, picked for you" in page.text
    after = counts(agent.url)
    assert after["filled"] - before["filled"] == 2  # hero and offer, decided from the class
    assert after["recs"] - before["recs"] == 1

    again = alice.page()  # hero and offer now come from nginx: the agent sees only recs
    assert hero(again) == "category-fan" and "More dresses" in again.text
    later = counts(agent.url)
    assert later["filled"] == after["filled"] and later["hero"] == after["hero"]
    assert later["recs"] - after["recs"] == 1  # a per-visitor slot is never cached

    bob = Visitor(nginx)  # another visitor with the same inputs: the same class, one cache entry
    bob.page()
    bob.browse("dresses")
    assert bob.jar["p13n_cls"] == alice.jar["p13n_cls"] and bob.jar["p13n_id"] != alice.jar["p13n_id"]
    seen = counts(agent.url)
    assert "More dresses" in bob.page().text
    assert counts(agent.url)["filled"] == seen["filled"]

    carol = Visitor(nginx)  # different inputs: her own class, her own fragment
    carol.page()
    carol.browse("shoes")
    assert carol.jar["p13n_cls"] != alice.jar["p13n_cls"]
    shown = carol.page()
    assert "More shoes" in hero_html(shown) and "dresses" not in hero_html(shown)
    # the country is nginx's own key part: the same class in Germany gets the DACH hero
    assert hero(carol.page(extra={"X-Test-Country": "DE"})) == "category-fan"  # fan comes first
    dan = Visitor(nginx)
    dan.page()
    dan.browse("jackets", views=1)  # not a fan yet: device and country decide
    assert hero(dan.page(extra={"X-Test-Country": "DE"})) == "dach-winter"
    assert hero(dan.page(extra={"X-Test-Country": "US"})) == "default"


def test_a_tampered_class_a_consent_change_and_gpc_are_decided_live_and_not_cached(
    ssi_origin: Origin, start_agent: AgentFactory, start_nginx_proxy: NginxFactory, shareable_templates: Path
) -> None:
    agent = start_agent(ssi_origin.url, TEMPLATES_DIR=str(shareable_templates))
    nginx = start_nginx_proxy("ssi", agent.port, ssi_origin.url)
    alice = Visitor(nginx)
    alice.page()
    alice.browse("dresses")
    assert "More dresses" in alice.page().text  # the dresses class is now in nginx's cache

    # eve browses jackets and presents a class claiming dresses (alice's payload, any
    # signature): refused, she gets her own live decision, and nothing is cached for it
    eve = Visitor(nginx)
    eve.page()
    eve.browse("jackets", views=3)
    version, payload, _ = alice.jar["p13n_cls"].split(".")
    forged = eve.jar["p13n_cls"].split(".")[2]
    eve.jar["p13n_cls"] = f"{version}.{payload}.{forged}"
    before = counts(agent.url)
    for _ in range(2):
        shown = eve.page()
        assert "More jackets" in hero_html(shown) and "dresses" not in hero_html(shown)
    after = counts(agent.url)
    assert after["filled"] == before["filled"] and after["live"] - before["live"] == 4  # 2 pages × hero, offer

    # alice withdraws personalization: the consent answer deletes her class; her old class
    # with the new consent cookie is a different key, and the agent refuses it
    old_class = alice.jar["p13n_cls"]
    reply = fetch(
        nginx.url + "/_p13n/consent",
        {**alice._headers({"Content-Type": "application/json"})},
        method="POST",
        data=json.dumps({"categories": ["necessary", "analytics"]}).encode(),
    )
    assert reply.status == 200, reply.text
    alice._keep(reply)
    assert "p13n_cls" not in alice.jar
    alice.jar["p13n_cls"] = old_class
    shown = alice.page()
    assert hero(shown) != "category-fan" and "More dresses" not in shown.text
    # and with Global Privacy Control the same class is not used either
    alice.jar["p13n_consent"] = "necessary.analytics.personalization"
    gpc = alice.page(extra={"Sec-GPC": "1"})
    assert hero(gpc) != "category-fan" and "More dresses" not in gpc.text
