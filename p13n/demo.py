"""``p13n demo``: the whole product on one machine, as child processes it owns.

nats-server → hub → demo origin → edge agent → a model bundle trained on generated
tastes and pushed over NATS → nginx (SSI mode) on the public port.
Without nginx on the machine the agent takes the public port in filter mode. When
everything answers it prints one ready line; SIGINT/SIGTERM stops every child.

Then the loop runs: a visitor who accepts the shop's consent banner and browses is
collected, and every half minute the hub retrains on what arrived and ships the new
bundle to the edge (``GET /v1/training/runs`` with the demo's admin token shows each run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

from edge_agent.nginx_config import NginxOptions
from p13n.procs import (
    DEFAULT_TEMPLATES,
    Child,
    ChildFailed,
    free_port,
    nginx_binary,
    p13n_command,
    spawn,
    start_nats_secured,
    start_nginx,
    wait_http,
)


class _Stop(Exception):
    pass


#: Seconds between the demo hub's training runs (each only when new events arrived).
DEMO_TRAINING_INTERVAL_S = 30


def _raise_stop(signum: int, frame: types.FrameType | None) -> None:
    raise _Stop()


def demo_admin_token(data_dir: Path) -> Path:
    """The demo's tokens file, with an admin token kept in ``admin.token`` (mode 600)."""
    from hub.auth import create_token

    tokens_file = data_dir / "hub-tokens.json"
    token_file = data_dir / "admin.token"
    if not token_file.exists() or not tokens_file.exists():
        tokens_file.unlink(missing_ok=True)
        token = create_token(tokens_file, "demo-admin", "admin")
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
    print(f"p13n demo: admin API token in {token_file}", file=sys.stderr)
    return tokens_file


def demo_keys(secrets_dir: Path) -> dict[str, str]:
    """The demo's own random keys (kept 0600 under its data directory, made once): it
    runs like a production install, never on the development defaults."""
    from hub.pii import new_key
    from models.secret_files import generated_secret, write_private

    pii_file = secrets_dir / "pii-keys"
    if not pii_file.exists():
        write_private(pii_file, f"demo:{new_key()}\n")
    return {
        "pseudonym": generated_secret(secrets_dir / "pseudonym.key"),
        "audit": generated_secret(secrets_dir / "audit.key"),
        "pii_file": str(pii_file),
    }


def run_demo(
    port: int, data_dir: Path, templates: Path, mode: str = "auto", training_interval_s: float = DEMO_TRAINING_INTERVAL_S
) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    use_nginx = mode == "ssi" or (mode == "auto" and nginx_binary() is not None)
    if mode == "ssi" and nginx_binary() is None:
        print("p13n demo: --mode ssi needs nginx on PATH", file=sys.stderr)
        return 2
    children: list[Child] = []
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        # NATS with the generated least-privilege users, as in production (docs/SECURITY.md)
        secured = start_nats_secured(data_dir / "nats", ["demo-edge"])
        children.append(secured.child)
        nats_url = secured.hub_url

        keys = data_dir / "keys"
        if not (keys / "bundle-signing.key").exists():
            _run(p13n_command("keys", "generate", str(keys)), "keys")
        hub_port = free_port()
        tokens_file = demo_admin_token(data_dir)
        keys_env = demo_keys(data_dir / "secrets")
        hub = spawn(
            "hub",
            p13n_command("hub", "serve"),
            logs,
            {
                "P13N_HUB_LISTEN": f"127.0.0.1:{hub_port}",
                "P13N_HUB_NATS_URL": nats_url,
                "P13N_HUB_DATA_DIR": str(data_dir / "hub"),
                "P13N_HUB_TOKENS_FILE": str(tokens_file),
                "P13N_HUB_PSEUDONYM_KEY": keys_env["pseudonym"],
                "P13N_HUB_AUDIT_KEY": keys_env["audit"],
                "P13N_HUB_PII_KEYS_FILE": keys_env["pii_file"],
                "P13N_HUB_BUNDLE_PUBLIC_KEY": str(keys / "bundle-signing.pub"),
                # the loop: retrain on the site's own consented traffic every half minute
                # once new events arrived; too few visitors to compare on a holdout, so
                # the gate lets the first bundles through and says so in each run
                "P13N_HUB_TRAINING_KEY": str(keys / "bundle-signing.key"),
                "P13N_HUB_TRAINING_INTERVAL_S": str(training_interval_s),
                "P13N_HUB_TRAINING_TUNE": "false",
                "P13N_HUB_TRAINING_MIN_SUBJECTS": "1",
                "P13N_HUB_TRAINING_MIN_INTERACTIONS": "3",
                "P13N_HUB_TRAINING_MIN_ITEMS": "3",
                # the console's charts and experiment results within a minute of browsing
                "P13N_HUB_CONSOLE_SAMPLE_S": "10",
                "P13N_HUB_CONSOLE_RESULTS_TTL_S": "30",
            },
        )
        children.append(hub)

        origin_port = free_port()
        origin_args = ["origin", "serve", "--port", str(origin_port), "--templates", str(templates)]
        if use_nginx:
            origin_args.append("--ssi")
        origin = spawn("origin", p13n_command(*origin_args), logs)
        children.append(origin)

        agent_port = free_port() if use_nginx else port
        edge = spawn(
            "edge",
            p13n_command("edge", "serve"),
            logs,
            {
                "P13N_EDGE_ID": "demo-edge",
                "P13N_EDGE_LISTEN": f"127.0.0.1:{agent_port}",
                "P13N_EDGE_ORIGIN": f"http://127.0.0.1:{origin_port}",
                "P13N_EDGE_DATA_DIR": str(data_dir / "edge"),
                "P13N_EDGE_TEMPLATES_DIR": str(templates),
                "P13N_EDGE_NATS_URL": secured.edge_urls["demo-edge"],
                # as on a real site: nothing is collected until the visitor chooses in the
                # shop's consent banner (templates/pages), and only a recorded choice that
                # includes personalization lets the hub learn from a visitor
                "P13N_EDGE_DEFAULT_CONSENT": "necessary",
                "P13N_EDGE_BUNDLE_PUBLIC_KEY": str(keys / "bundle-signing.pub"),
                "P13N_EDGE_PSEUDONYM_KEY": keys_env["pseudonym"],
            },
        )
        children.append(edge)

        wait_http(origin, f"http://127.0.0.1:{origin_port}/healthz")
        wait_http(edge, f"http://127.0.0.1:{agent_port}/_p13n/healthz")
        wait_http(hub, f"http://127.0.0.1:{hub_port}/v1/healthz", timeout_s=30)
        # train a small model bundle on generated tastes over the demo catalog and push it:
        # the edge receives it over NATS like any production edge. A demo started again
        # on its data directory finds its bundles in NATS: the live one stays (the hub's
        # training runs may have replaced the first), and nothing is pushed twice.
        admin_token = (data_dir / "admin.token").read_text().strip()
        stored = _bundles(f"http://127.0.0.1:{hub_port}", admin_token)
        if stored.get("current") is None:
            trained = _run(
                p13n_command(
                    "train",
                    "--generate",
                    "--no-tune",
                    "--templates",
                    str(templates),
                    "--key",
                    str(keys / "bundle-signing.key"),
                    "--out",
                    str(data_dir / "bundles"),
                    "--version",
                    str(stored.get("next_version", 1)),
                ),
                "train",
            )
            bundle = json.loads(trained)["bundle"]
            # through the hub's API with the demo's admin token, as an operator would
            _run(p13n_command("push", bundle, "--hub", f"http://127.0.0.1:{hub_port}"), "push", {"P13N_TOKEN": admin_token})
        _wait_model(edge, f"http://127.0.0.1:{agent_port}/_p13n/healthz")
        if use_nginx:
            opts = NginxOptions(
                mode="ssi", agent=f"127.0.0.1:{agent_port}", origin=f"http://127.0.0.1:{origin_port}", listen=f"127.0.0.1:{port}"
            )
            children.append(start_nginx(data_dir / "nginx-run", opts, worker_processes="1"))
        wait_http(None, f"http://127.0.0.1:{port}/")
        print(f"p13n demo ready: site=http://127.0.0.1:{port}/ hub=http://127.0.0.1:{hub_port}/", flush=True)
        print(
            f"p13n console: http://127.0.0.1:{hub_port}/console/ (sign in with the token in {data_dir / 'admin.token'})",
            flush=True,
        )
        while True:
            for child in children:
                if not child.alive():
                    raise ChildFailed(child.name, f"exited unexpectedly with {child.proc.returncode}", child.log())
            time.sleep(0.5)
    except _Stop:
        return 0
    except ChildFailed as e:
        print(f"p13n demo: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()


def _bundles(hub_url: str, token: str, timeout_s: float = 30.0) -> dict[str, object]:
    """The hub's ``GET /v1/bundles`` (retried while the hub connects to NATS)."""
    deadline = time.monotonic() + timeout_s
    while True:
        request = urllib.request.Request(hub_url + "/v1/bundles", headers={"authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                found: dict[str, object] = json.loads(resp.read())
                return found
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _run(argv: list[str], name: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise ChildFailed(name, f"exited with {done.returncode}", done.stderr)
    return done.stdout


def _wait_model(child: Child, health_url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ChildFailed(child.name, "exited while waiting for the model bundle", child.log())
        with urllib.request.urlopen(health_url, timeout=5) as resp:
            if json.loads(resp.read()).get("model_version") is not None:
                return
        time.sleep(0.2)
    raise ChildFailed(child.name, "did not load the pushed model bundle", child.log())


def default_templates() -> Path:
    return DEFAULT_TEMPLATES
