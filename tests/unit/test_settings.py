"""Settings: validation names the variable; every setting is documented; the compose
file only uses settings the code reads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from edge_agent.settings import ENV_NAMES as EDGE_ENV
from edge_agent.settings import EdgeSettings
from hub.settings import ENV_NAMES as HUB_ENV
from hub.settings import HubSettings
from models.settings_base import SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_env_name_tables_cover_every_field() -> None:
    assert set(EDGE_ENV) == {f.name for f in dataclasses.fields(EdgeSettings)}
    assert set(HUB_ENV) == {f.name for f in dataclasses.fields(HubSettings)}


def test_every_setting_is_documented() -> None:
    doc = (REPO / "docs" / "SETTINGS.md").read_text()
    documented = set(re.findall(r"`(P13N_[A-Z_]+)`", doc))
    assert set(EDGE_ENV.values()) | set(HUB_ENV.values()) <= documented
    assert documented <= set(EDGE_ENV.values()) | set(HUB_ENV.values()), "docs mention settings the code does not read"


def test_settings_are_read_from_the_environment() -> None:
    s = EdgeSettings.from_env(
        {
            "P13N_EDGE_LISTEN": "0.0.0.0:9000",
            "P13N_EDGE_DEBUG": "yes",
            "P13N_EDGE_DEFAULT_CONSENT": "analytics, personalization",
            "P13N_EDGE_GEO_HEADER": "CF-IPCountry",
        }
    )
    assert s.listen == ("0.0.0.0", 9000) and s.debug is True
    assert s.default_consent == ("analytics", "personalization")
    assert s.geo_header == "cf-ipcountry"
    assert EdgeSettings.from_env({}) == EdgeSettings()
    assert HubSettings.from_env({}) == HubSettings()


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"P13N_EDGE_LISTEN": "nowhere"}, "P13N_EDGE_LISTEN"),
        ({"P13N_EDGE_DECISION_DEADLINE_MS": "fast"}, "P13N_EDGE_DECISION_DEADLINE_MS"),
        ({"P13N_EDGE_DEBUG": "maybe"}, "P13N_EDGE_DEBUG"),
        ({"P13N_EDGE_DEFAULT_CONSENT": "necessary,tracking"}, "P13N_EDGE_DEFAULT_CONSENT"),
        ({"P13N_EDGE_ORIGIN": "origin:8000"}, "P13N_EDGE_ORIGIN"),
        ({"P13N_EDGE_ID": "edge 1"}, "P13N_EDGE_ID"),
        ({"P13N_EDGE_MAX_PAGE_BYTES": "10"}, "P13N_EDGE_MAX_PAGE_BYTES"),
    ],
)
def test_invalid_edge_setting_names_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as e:
        EdgeSettings.from_env(env)
    assert e.value.name == name and name in str(e.value)


def test_invalid_hub_setting_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="P13N_HUB_NATS_URL"):
        HubSettings.from_env({"P13N_HUB_NATS_URL": "http://x"})


def test_compose_services_use_known_settings_and_commands() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"nats", "hub", "origin", "edge-agent", "edge-nginx"} <= set(services)
    # NATS runs the generated least-privilege configuration; services log in with it
    assert services["nats"]["command"] == ["-c", "/run/secrets/nats.conf"] and services["nats"]["secrets"] == ["nats.conf"]
    assert services["hub"]["environment"]["P13N_HUB_NATS_URL"].startswith("nats://hub:${P13N_NATS_HUB_PASSWORD")
    assert services["edge-agent"]["environment"]["P13N_EDGE_NATS_URL"].startswith("nats://edge-1:${P13N_NATS_EDGE1_PASSWORD")
    known = set(EDGE_ENV.values()) | set(HUB_ENV.values())
    for name, svc in services.items():
        if not str(svc.get("image", "")).startswith("p13n-"):
            continue  # Prometheus and Grafana (tests/unit/test_monitoring.py)
        for var in svc.get("environment", {}):
            assert var in known, f"{name} sets {var}, which the code does not read"
    assert services["hub"]["command"] == ["p13n", "hub", "serve"]
    assert services["edge-agent"]["command"] == ["p13n", "edge", "serve"]
    # values parse with the real settings code
    EdgeSettings.from_env(services["edge-agent"]["environment"])
    HubSettings.from_env(services["hub"]["environment"])
    assert services["edge-nginx"]["network_mode"] == "service:edge-agent"
    # the shipped nginx config is exactly what the generator writes (it cannot drift)
    from edge_agent.nginx_config import NginxOptions, render_server

    conf = (REPO / "deploy" / "nginx-ssi.conf").read_text()
    assert conf == render_server(NginxOptions(mode="ssi", agent="127.0.0.1:8700", origin="http://origin:8000", listen="80"))


@pytest.mark.parametrize("role", ["edge", "hub"])
def test_the_docs_tables_are_the_declarations(role: str) -> None:
    """docs/SETTINGS.md holds exactly what ``p13n settings ROLE`` derives from the code."""
    from models.settings_base import markdown_table

    cls, prefix = (EdgeSettings, "P13N_EDGE_") if role == "edge" else (HubSettings, "P13N_HUB_")
    doc = (REPO / "docs" / "SETTINGS.md").read_text()
    table = doc.split(f"<!-- settings:{role}:", 1)[1].split("-->", 1)[1].split(f"<!-- /settings:{role} -->", 1)[0]
    assert table.strip() == markdown_table(cls, prefix).strip()


def test_secrets_stay_out_of_repr_and_every_setting_is_in_the_help() -> None:
    import subprocess
    import sys

    edge = EdgeSettings.from_env({"P13N_EDGE_PSEUDONYM_KEY": "edge-secret-value", "P13N_EDGE_IDENTITY_SECRET": "i" * 40})
    hub = HubSettings.from_env(
        {"P13N_HUB_AUDIT_KEY": "audit-secret-value", "P13N_HUB_PII_KEYS": "k1:AAAA", "P13N_HUB_API_KEYS": "machine-key-value"}
    )
    for secret in ("edge-secret-value", "i" * 40):
        assert secret not in repr(edge)
    for secret in ("audit-secret-value", "k1:AAAA", "machine-key-value"):
        assert secret not in repr(hub)
    assert hub.api_keys == ("machine-key-value",)  # keys keep their case
    for role, names in (("edge", EDGE_ENV), ("hub", HUB_ENV)):
        shown = subprocess.run(
            [sys.executable, "-m", "p13n", role, "serve", "--help"], capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0 and all(n in shown.stdout for n in names.values()), shown.stdout[-500:]
