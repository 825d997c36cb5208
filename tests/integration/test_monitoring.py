"""The shipped monitoring against a live hub and edge, with the real Prometheus binary:
the metrics follow Prometheus' naming conventions (``promtool check metrics``) and
carry no visitor, user or item id; Prometheus scrapes both with the shipped rules
(1 s scrape and evaluation intervals), every recording rule returns data and every
rule evaluates without error; every dashboard query evaluates and names only metrics
the code exports; stopping the edge sends P13nEdgeDown pending at once and, a minute
without heartbeats later, P13nEdgeStale."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from p13n.procs import Child, free_port, spawn, wait_http
from tests.conftest import API_KEY, AgentFactory, HubFactory, Origin, require_binary
from tests.integration.helpers import fetch, wait_for
from tests.integration.ingest_helpers import page_view, post_events, wait_accepted

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
#: Every label name the hub and the edge use: each takes a bounded set of values
#: (routes, status classes, slots and their kinds from the bundle, reasons, outcomes,
#: experiments and variants from the bundle, edge ids from the fleet, job names).
BOUNDED_LABELS = {"route", "status", "slot", "kind", "outcome", "reason", "result", "how", "job_name", "edge", "le"}
BOUNDED_LABELS |= {"experiment", "variant"}
BOUNDED_LABELS |= {"generation"}  # the garbage collector's generations: 0, 1, 2
METRIC_NAME = re.compile(r"\bp13n_[a-z0-9_]+\b")


def exported(*texts: str) -> set[str]:
    """Every sample name the texts can carry: counters' ``_total``/``_created``,
    histograms' ``_bucket``/``_sum``/``_count``, whether or not a sample is there yet."""
    names: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
            names |= {s.name for s in family.samples}
    return names


def query(base: str, expr: str) -> dict[str, Any]:
    reply = fetch(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    body: dict[str, Any] = json.loads(reply.body)
    return body


def start_prometheus(binary: str, work: Path, hub_url: str, token: str, edge_url: str) -> tuple[Child, str]:
    """The shipped configuration with 1 s intervals, this test's token and targets."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "hub.token").write_text(token)
    (work / "targets").mkdir()
    # the shipped file-discovery format, pointing at this test's agent
    (work / "targets" / "edges.json").write_text(
        json.dumps([{"targets": [edge_url.removeprefix("http://")], "labels": {"edge": "edge-mon"}}])
    )
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    conf["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    conf["rule_files"] = [str(PROM / f) for f in conf["rule_files"]]
    hub_job, edge_job = conf["scrape_configs"]
    hub_job["authorization"]["credentials_file"] = str(work / "hub.token")
    hub_job["static_configs"] = [{"targets": [hub_url.removeprefix("http://")]}]
    edge_job["file_sd_configs"] = [{"files": [str(work / "targets" / "edges*.json")], "refresh_interval": "1s"}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(conf))
    port = free_port()
    child = spawn(
        "prometheus",
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        work,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(child, base + "/-/ready", timeout_s=60)
    return child, base


def test_prometheus_scrapes_the_hub_and_edge_with_the_shipped_rules_and_dashboards(
    nats_server: str, origin: Origin, start_hub: HubFactory, start_agent: AgentFactory, tmp_path: Path
) -> None:
    prometheus = require_binary("prometheus", shutil.which("prometheus"))
    promtool = require_binary("promtool", shutil.which("promtool"))
    hub = start_hub(nats_server, PROFILE_SYNC_S="0.5")
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-mon", STATUS_INTERVAL_S="0.5")
    visitors = [f"monvisitor{uuid.uuid4().hex[:14]}" for _ in range(12)]
    for v in visitors:
        cookie = {"Cookie": f"p13n_id={v}"}
        assert fetch(agent.url + "/", cookie).status == 200  # decisions, an exposure (the banner experiment)
        assert fetch(agent.url + "/p/dr01", cookie).status == 200
        assert post_events(agent.url, [page_view(), {**page_view(), "type": "click", "item_id": "dr01"}], cookie).status == 202
    email, user = "monitored.person@example.com", f"user-mon-{uuid.uuid4().hex[:8]}"
    identify = {"event_id": uuid.uuid4().hex, "type": "identify", "anonymous_id": visitors[0], "user_id": user,
                "traits": {"email": email}}  # fmt: skip
    reply = fetch(hub.url + "/v1/events", {"x-api-key": API_KEY, "content-type": "application/json"}, "POST",
                  json.dumps([identify, {"type": "page_view"}]).encode())  # fmt: skip
    assert reply.status == 202 and json.loads(reply.body)["rejected"] == 1, reply.text  # one dead letter
    wait_accepted(hub, 2 * len(visitors) + 1)
    hub_text = fetch(hub.url + "/metrics", hub.auth("viewer")).text
    edge_text = fetch(agent.url + "/_p13n/metrics").text

    # --- the metrics themselves -------------------------------------------------
    for text in (hub_text, edge_text):
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("p13n_"):
                continue  # the client library's process and platform metrics
            for sample in family.samples:
                assert set(sample.labels) <= BOUNDED_LABELS, (sample.name, sample.labels)
        for personal in (*visitors, user, email, "dr01"):
            assert personal not in text, f"{personal} appears in the metrics"
    assert 'p13n_edge_decisions_total{kind="experiment",outcome="experiment",slot="banner"}' in edge_text
    assert 'p13n_hub_events_total{outcome="accepted"}' in hub_text and "p13n_hub_dead_letters_total{reason=" in hub_text
    names = exported(hub_text, edge_text)

    # --- Prometheus with the shipped configuration and rules -------------------------
    child, base = start_prometheus(prometheus, tmp_path / "prometheus", hub.url, hub.tokens["viewer"], agent.url)
    try:

        def targets() -> dict[str, str]:
            active = json.loads(fetch(base + "/api/v1/targets").body)["data"]["activeTargets"]
            return {t["labels"]["job"]: t["health"] for t in active}

        wait_for(lambda: targets() == {"p13n-hub": "up", "p13n-edge": "up"}, timeout_s=30)
        groups = json.loads(fetch(base + "/api/v1/rules").body)["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        records = [r["name"] for r in rules if r["type"] == "recording"]
        assert len(records) == 11 and len([r for r in rules if r["type"] == "alerting"]) == 15
        wait_for(lambda: all(query(base, name)["data"]["result"] for name in records), timeout_s=60)
        groups = json.loads(fetch(base + "/api/v1/rules").body)["data"]["groups"]
        broken = {r["name"]: r.get("lastError") for g in groups for r in g["rules"] if r["health"] != "ok"}
        assert broken == {}, broken
        for rule in rules:
            unknown = set(METRIC_NAME.findall(rule["query"])) - names
            assert not unknown, f"rule {rule['name']} names metrics nobody exports: {unknown}"
        exposed = query(base, 'sum(p13n_edge_exposures_total{experiment="banner-2026-11"})')["data"]["result"]
        assert exposed and float(exposed[0]["value"][1]) == len(visitors)  # one exposure per visitor's page

        # --- every dashboard query ----------------------------------------------------
        panels = 0
        for path in sorted(DASHBOARDS.glob("*.json")):
            for panel in json.loads(path.read_text())["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
                    answer = query(base, expr)
                    assert answer["status"] == "success", (path.name, panel["title"], expr, answer)
                    unknown = set(METRIC_NAME.findall(expr)) - names
                    assert not unknown, f"{path.name} '{panel['title']}' names metrics nobody exports: {unknown}"
                    panels += 1
        assert panels >= 25

        # --- an edge goes away: Prometheus sees it at once, the hub after a minute ------
        agent.stop()

        def active(name: str) -> list[dict[str, Any]]:
            alerts = json.loads(fetch(base + "/api/v1/alerts").body)["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] in ("pending", "firing")]

        wait_for(lambda: bool(active("P13nEdgeDown")), timeout_s=30)
        (down,) = active("P13nEdgeDown")
        assert down["labels"]["severity"] == "critical" and down["labels"]["edge"] == "edge-mon"
        assert down["annotations"]["runbook"] == "docs/OPERATIONS.md#p13nedgedown"
        assert not active("P13nHubDown") and not active("P13nEdgeStale")
        # no heartbeat for over 60 s (the shipped threshold): the stale-edge alert
        wait_for(lambda: bool(active("P13nEdgeStale")), timeout_s=90)
        (stale,) = active("P13nEdgeStale")
        assert stale["labels"]["edge"] == "edge-mon" and stale["labels"]["job"] == "p13n-hub"
        assert not active("P13nHubDown")
    finally:
        child.stop()


def test_json_logs_are_one_object_a_line(origin: Origin, start_agent: AgentFactory, nats_server: str) -> None:
    """Every line the agent process writes, the HTTP server's included."""
    agent = start_agent(origin.url, NATS_URL=nats_server, ID="edge-json", LOG_FORMAT="json", LOG_LEVEL="info")
    assert fetch(agent.url + "/p/dr01").status == 200
    agent.stop()
    lines = [line for line in agent.child.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r["logger"] == "p13n.startup" for r in records)
    for r in records:
        assert {"time", "level", "component", "logger", "event"} <= set(r) and r["component"] == "edge"
        assert r["edge_id"] == "edge-json"
