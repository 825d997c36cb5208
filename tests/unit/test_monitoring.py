"""What ships in deploy/ for monitoring, checked with the real tools: the rules pass
``promtool check rules``, every alert's unit tests pass ``promtool test rules`` and
cover it both ways (fires when it should, quiet when it should not), every alert has
a severity, a ``for:`` and a runbook section in docs/OPERATIONS.md, the scrape
configuration is valid, the dashboards are well-formed and provisioned, and
docker-compose wires Prometheus and Grafana to them. Running Prometheus against a live
hub and edge: tests/integration/test_monitoring.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", shutil.which("promtool"))


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "rules" / "p13n-alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 15 rules found" in done.stdout and "SUCCESS: 11 rules found" in done.stdout


def test_every_alert_is_unit_tested_both_ways(promtool: str) -> None:
    tests = PROM / "tests" / "p13n-alerts.test.yml"
    done = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(tests.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names == fires, f"alerts never shown firing: {names - fires}"
    assert names == quiet, f"alerts never shown quiet: {names - quiet}"


def test_every_alert_has_a_severity_a_duration_and_a_runbook() -> None:
    operations = (REPO / "docs" / "OPERATIONS.md").read_text()
    headings = {m.lower() for m in re.findall(r"^#### (P13n\w+)$", operations, re.MULTILINE)}
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), name
        notes = rule["annotations"]
        assert notes["summary"] and len(notes["description"]) > 40, name
        assert notes["runbook"] == f"docs/OPERATIONS.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/OPERATIONS.md has no '#### {name}' section"


def test_the_scrape_configuration_is_valid(promtool: str, tmp_path: Path) -> None:
    """As shipped, with the token file and the rules beside it (promtool reads both)."""
    conf = tmp_path / "prometheus.yml"
    shutil.copytree(PROM / "rules", tmp_path / "rules")
    shutil.copytree(PROM / "targets", tmp_path / "targets")
    token = tmp_path / "hub-metrics.token"
    token.write_text("p13n_viewer_token")
    conf.write_text((PROM / "prometheus.yml").read_text().replace("/etc/prometheus/secrets/hub-metrics.token", str(token)))
    done = subprocess.run([promtool, "check", "config", str(conf)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    scrape = yaml.safe_load(conf.read_text())["scrape_configs"]
    assert [s["job_name"] for s in scrape] == ["p13n-hub", "p13n-edge"]
    assert scrape[1]["metrics_path"] == "/_p13n/metrics"
    for target in json.loads((PROM / "targets" / "edges.json").read_text()):
        assert target["targets"] and target["labels"]["edge"]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def test_dashboards_are_provisioned_and_use_the_provisioned_data_source() -> None:
    boards = dashboards()
    assert set(boards) == {"p13n-hub-pipeline", "p13n-edge-fleet", "p13n-personalization"}
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "p13n.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "p13n.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards/p13n"
    for name, board in boards.items():
        assert board["uid"] == name and board["panels"], name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for p in board["panels"]:
            assert p["datasource"]["uid"] == source["uid"] and p["targets"], (name, p["title"])
            for target in p["targets"]:
                assert target["datasource"]["uid"] == source["uid"] and target["expr"].strip()


def test_compose_runs_prometheus_and_grafana_on_the_shipped_files() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        svc = services[name]
        assert svc["profiles"] == ["monitoring"] and all(p.startswith("127.0.0.1:") for p in svc["ports"])
        for volume in svc["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./deploy/"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert mounts["./deploy/prometheus"] == "/etc/prometheus"
    grafana = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert grafana["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards/p13n"
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "p13n.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    # the agent's metrics are readable from the compose network Prometheus is on
    agent = services["edge-agent"]["environment"]
    subnet = yaml.safe_load((REPO / "docker-compose.yml").read_text())["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert subnet in agent["P13N_EDGE_METRICS_ALLOW"] and agent["P13N_EDGE_LISTEN"].startswith("0.0.0.0:")
