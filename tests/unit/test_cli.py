"""Every command has help and is listed in the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMANDS = [
    ["demo"],
    ["edge", "serve"],
    ["hub", "serve"],
    ["origin", "serve"],
    ["templates", "compile"],
    ["nginx-config"],
    ["keys", "generate"],
    ["train"],
    ["evaluate"],
    ["encoder", "install"],
    ["bundle", "verify"],
    ["catalog", "import"],
    ["crm", "sync"],
    ["push"],
    ["bundle", "activate"],
    ["bundle", "rollback"],
    ["lake", "export"],
    ["nats-config"],
    ["keys", "pii"],
    ["erase"],
    ["subject", "export"],
    ["erasure", "status"],
    ["audit", "verify"],
    ["tokens", "create"],
    ["tokens", "revoke"],
    ["pii", "rekey"],
    ["retention", "run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_command_has_help_and_is_documented(command: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "p13n", *command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: p13n " + " ".join(command) in out.stdout
    assert f"`p13n {' '.join(command)}" in (REPO / "README.md").read_text()


def test_invalid_settings_stop_the_agent_with_the_variable_named() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "p13n", "edge", "serve"],
        capture_output=True,
        text=True,
        env={"P13N_EDGE_LISTEN": "bogus", "PATH": ""},
    )
    assert out.returncode == 2 and "P13N_EDGE_LISTEN" in out.stderr


@pytest.mark.parametrize(("service", "variable"), [("hub", "P13N_HUB_PSEUDONYM_KEY"), ("edge", "P13N_EDGE_PSEUDONYM_KEY")])
def test_services_refuse_development_keys_outside_a_demo(service: str, variable: str, tmp_path: Path) -> None:
    env = {"PATH": "", f"P13N_{service.upper()}_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "p13n", service, "serve"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and variable in out.stderr and "P13N_ALLOW_DEV_KEYS" in out.stderr
    assert "Traceback" not in out.stderr
