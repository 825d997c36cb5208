"""``pip install p13n[edge]`` into a fresh virtual environment carries no training or hub
libraries, and the agent it installs serves decisions with a model bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from p13n.procs import DEFAULT_TEMPLATES, free_port, spawn, wait_http
from tests.conftest import REPO, TrainedBundle
from tests.integration.helpers import fetch, session_model


@pytest.mark.slow
def test_the_edge_extra_alone_runs_the_agent(tmp_path: Path, trained_bundle: TrainedBundle) -> None:
    venv = tmp_path / "edge-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{REPO}[edge]"], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    python = str(venv / "bin" / "python")
    for module in ("sklearn", "implicit", "matplotlib", "skl2onnx", "sqlite_utils", "httpx", "uvicorn"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
        assert probe.returncode != 0, f"{module} is installed with p13n[edge]"

    port = free_port()
    env = {
        "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
        "P13N_EDGE_DATA_DIR": str(tmp_path / "edge"),
        "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
        "P13N_EDGE_NATS_URL": f"nats://127.0.0.1:{free_port()}",  # none: the page path never waits on it
        "P13N_EDGE_MODEL_BUNDLE": str(trained_bundle.path),
        "P13N_EDGE_BUNDLE_PUBLIC_KEY": str(trained_bundle.public_key),
        "P13N_ALLOW_DEV_KEYS": "1",
        # as for every test agent (tests/conftest.py): what the page shows must not depend
        # on how busy the machine is (a cold first decision past 5 ms, a stall)
        "P13N_EDGE_DECISION_DEADLINE_MS": "1000",
        "P13N_EDGE_SHED_LAG_MS": "0",
    }
    agent = spawn("lean-edge", [str(venv / "bin" / "p13n"), "edge", "serve"], tmp_path, env)
    try:
        wait_http(agent, f"http://127.0.0.1:{port}/_p13n/healthz", timeout_s=30)
        health = json.loads(fetch(f"http://127.0.0.1:{port}/_p13n/healthz").body)
        assert health["status"] == "ok" and health["model_version"] == 1
        cookie = {"Cookie": "p13n_consent=analytics.personalization; p13n_id=leanVisitor0000000001"}
        views = [{"event_id": f"lean{i:08d}", "type": "page_view", "url": "https://s.example/p/dr0" + str(i)} for i in (1, 2)]
        fetch(
            f"http://127.0.0.1:{port}/_p13n/collect",
            {**cookie, "Content-Type": "application/json"},
            method="POST",
            data=json.dumps({"events": views}).encode(),
        )
        decided = json.loads(fetch(f"http://127.0.0.1:{port}/_p13n/decide?slots=hero,recs&page=/", cookie).body)
        assert decided["model_version"] == 1 and decided["slots"]["recs"]["html"], decided["slots"]["recs"]
        # the bundle's ONNX model ran in the lean install
        assert decided["slots"]["recs"]["detail"] == session_model(trained_bundle.path)
    finally:
        agent.stop()
