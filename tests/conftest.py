"""Fixtures that start real components: nats-server, nginx, the origin, the agent.

Every process is a child of the test session and is stopped at teardown. A test that
needs nginx (or Chromium) fails in CI (``CI=true``) when the binary is missing and
skips elsewhere with the reason.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.nginx_config import NginxOptions
from hub.storage import HubStore
from models.sentence_encoder import SentenceEncoder
from p13n.procs import (
    DEFAULT_TEMPLATES,
    Child,
    free_port,
    nginx_binary,
    p13n_command,
    spawn,
    start_nats,
    start_nginx,
    wait_http,
)
from tests.postgres_server import PostgresServer, binary_dir

REPO = Path(__file__).resolve().parent.parent
#: Conformance cases and sample data, copied into the project with their licences and
#: attribution (tests/fixtures/*/README.md) so a clone tests with nothing beside it.
FIXTURES = REPO / "tests" / "fixtures"

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the ingest fuzz covered (case counts, 5xx, unaccounted events)."""
    import sys

    fuzz = sys.modules.get("tests.integration.test_ingest_fuzz")
    line = fuzz.fuzz_summary() if fuzz is not None else ""
    if line:
        terminalreporter.write_line(line)


def require_binary(name: str, found: str | None) -> str:
    if found:
        return found
    if IN_CI:
        pytest.fail(f"{name} is required in CI but was not found (install it in .ci/run)")
    pytest.skip(f"{name} not installed (apt-get install {name})")


@pytest.fixture(scope="session")
def sentence_encoder() -> SentenceEncoder:
    """The sentence encoder ``make test`` installs (``p13n encoder install``) before the
    suite runs; without it the tests that need it fail with what to run."""
    from models.sentence_encoder import EncoderUnavailable, load

    try:
        return load()
    except EncoderUnavailable as e:
        pytest.fail(f"{e} (make test installs it: .venv/bin/p13n encoder install)")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_binary("nginx", nginx_binary())


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (Debian's package) for the session; tests take a fresh
    database each (``pg_url``)."""
    found = binary_dir()
    require_binary("postgresql", str(found) if found else None)
    assert found is not None
    server = PostgresServer(found).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return postgres.create(f"t{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgres"])
def hub_backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Hub settings for each storage backend in turn: ``start_hub(nats, **hub_backend)``."""
    return {"DATABASE_URL": request.getfixturevalue("pg_url")} if request.param == "postgres" else {}


StoreFactory = Callable[[Path], HubStore]


def sqlite_store(path: Path) -> HubStore:
    from hub.storage import open_store

    return open_store(path, "")


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Opens a new, empty hub store on each backend in turn (SQLite files at the path,
    or a new database on the session's PostgreSQL)."""
    if request.param == "sqlite":
        return sqlite_store
    server: PostgresServer = request.getfixturevalue("postgres")
    from hub.storage import open_store

    return lambda path: open_store(path, server.create(f"t{uuid.uuid4().hex[:16]}"))


@pytest.fixture(params=["sqlite", "postgres"])
def hub_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    """The hub's storage on each backend in turn (the same test runs on both)."""
    from hub.storage import open_store

    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    store = open_store(tmp_path / "hub", url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[str]:
    child, port = start_nats(tmp_path / "nats")
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        child.stop()


@dataclass
class Origin:
    url: str
    port: int
    child: Child


def _start_origin(work: Path, ssi: bool, templates: Path = DEFAULT_TEMPLATES) -> Origin:
    port = free_port()
    args = ["origin", "serve", "--port", str(port), "--templates", str(templates)]
    if ssi:
        args.append("--ssi")
    child = spawn("origin-ssi" if ssi else "origin", p13n_command(*args), work)
    wait_http(child, f"http://127.0.0.1:{port}/healthz")
    return Origin(f"http://127.0.0.1:{port}", port, child)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    o = _start_origin(tmp_path_factory.mktemp("origin"), ssi=False)
    yield o
    o.child.stop()


@pytest.fixture(scope="module")
def ssi_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    o = _start_origin(tmp_path_factory.mktemp("origin-ssi"), ssi=True)
    yield o
    o.child.stop()


@dataclass
class Agent:
    url: str
    port: int
    child: Child
    data_dir: Path

    def stop(self) -> None:
        self.child.stop()


AgentFactory = Callable[..., Agent]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[AgentFactory]:
    """Start ``p13n edge serve`` with settings given as keyword arguments."""
    started: list[Agent] = []

    def start(origin_url: str, port: int | None = None, **settings: str) -> Agent:
        port = port or free_port()
        data_dir = Path(settings["DATA_DIR"]) if "DATA_DIR" in settings else tmp_path / f"edge-{len(started)}"
        env = {
            "P13N_EDGE_LISTEN": f"127.0.0.1:{port}",
            "P13N_EDGE_ORIGIN": origin_url,
            "P13N_EDGE_DATA_DIR": str(data_dir),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
            "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
            # What a page shows must not depend on how busy the test machine is: a
            # cold first decision past the production 5 ms budget falls back. Tests of
            # the budget itself set it explicitly.
            "P13N_EDGE_DECISION_DEADLINE_MS": "1000",
            # nor on a stall of the test machine shedding pages: tests of shedding set it
            "P13N_EDGE_SHED_LAG_MS": "0",
            # One worker: several tests count what one process did (page contexts built,
            # the shell memory cache, sessions dropped from memory by an erasure), which
            # several workers split. tests/integration/test_workers.py runs several;
            # P13N_TEST_EDGE_WORKERS=2 runs every test's agent so (docs/ARCHITECTURE.md).
            "P13N_EDGE_WORKERS": os.environ.get("P13N_TEST_EDGE_WORKERS", "1"),
        }
        env.update({f"P13N_EDGE_{k.upper()}": v for k, v in settings.items()})
        child = spawn(f"edge-{len(started)}", p13n_command("edge", "serve"), tmp_path, env)
        agent = Agent(f"http://127.0.0.1:{port}", port, child, data_dir)
        started.append(agent)
        wait_http(child, agent.url + "/_p13n/healthz")
        return agent

    yield start
    for agent in started:
        agent.stop()


@dataclass
class Nginx:
    url: str
    port: int
    child: Child


NginxFactory = Callable[..., Nginx]


@pytest.fixture
def start_nginx_proxy(nginx_bin: str, tmp_path: Path) -> Iterator[NginxFactory]:
    started: list[Nginx] = []

    def start(mode: str, agent_port: int, origin_url: str, **options: str) -> Nginx:
        port = free_port()
        opts = NginxOptions(mode=mode, agent=f"127.0.0.1:{agent_port}", origin=origin_url, listen=f"127.0.0.1:{port}", **options)  # type: ignore[arg-type]
        child = start_nginx(tmp_path / f"nginx-{len(started)}", opts, worker_processes="1")
        n = Nginx(f"http://127.0.0.1:{port}", port, child)
        started.append(n)
        return n

    yield start
    for n in started:
        n.child.stop()


@pytest.fixture(scope="session")
def targeting_cases() -> dict[str, list[list[object]]]:
    path = FIXTURES / "conformance" / "targeting-cases.json"
    if not path.exists():
        pytest.fail(f"conformance cases not found at {path}")
    data: dict[str, list[list[object]]] = json.loads(path.read_text())
    return data


@dataclass
class Hub:
    url: str
    port: int
    child: Child
    data_dir: Path
    tokens: dict[str, str]
    #: The PostgreSQL database holding its tiers ("": SQLite files in ``data_dir``).
    database_url: str = ""

    def stop(self) -> None:
        self.child.stop()

    def auth(self, role: str = "admin") -> dict[str, str]:
        """Headers carrying the token of ``role`` (one token per role is created)."""
        return {"authorization": f"Bearer {self.tokens[role]}"}


def role_tokens(path: Path) -> dict[str, str]:
    """A tokens file with one token per role; returns role → token."""
    from hub.auth import ROLES, create_token

    return {role: create_token(path, f"test-{role}", role) for role in ROLES}


HubFactory = Callable[..., Hub]
API_KEY = "test-api-key-0123456789"


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[HubFactory]:
    """Start ``p13n hub serve`` against ``nats_url``; settings as keyword arguments."""
    started: list[Hub] = []

    def start(nats_url: str, port: int | None = None, data_dir: Path | None = None, **settings: str) -> Hub:
        port = port or free_port()
        data = data_dir or tmp_path / f"hub-{len(started)}"
        tokens_file = tmp_path / f"hub-tokens-{len(started)}.json"
        tokens = role_tokens(tokens_file)
        env = {
            "P13N_HUB_TOKENS_FILE": str(tokens_file),
            "P13N_HUB_LISTEN": f"127.0.0.1:{port}",
            "P13N_HUB_NATS_URL": nats_url,
            "P13N_HUB_DATA_DIR": str(data),
            "P13N_ALLOW_DEV_KEYS": "1",
            "P13N_HUB_NATS_RETRY_S": "0.1",
            "P13N_HUB_API_KEYS": API_KEY,
        }
        env.update({f"P13N_HUB_{k.upper()}": v for k, v in settings.items()})
        child = spawn(f"hub-{len(started)}", p13n_command("hub", "serve"), tmp_path, env)
        hub = Hub(f"http://127.0.0.1:{port}", port, child, data, tokens, settings.get("DATABASE_URL", ""))
        started.append(hub)
        wait_http(child, hub.url + "/v1/healthz", timeout_s=30)
        return hub

    yield start
    for hub in started:
        hub.stop()


@dataclass
class TrainedBundle:
    path: Path
    public_key: Path


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    """A real signed bundle trained on generated tastes over the demo catalog."""
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("bundle")
    subprocess.run([sys.executable, "-m", "p13n", "keys", "generate", str(d / "keys")], check=True, capture_output=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "p13n",
            "train",
            "--generate",
            "--templates",
            str(DEFAULT_TEMPLATES),
            "--key",
            str(d / "keys" / "bundle-signing.key"),
            "--out",
            str(d / "out"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return TrainedBundle(Path(json.loads(out.stdout)["bundle"]), d / "keys" / "bundle-signing.pub")
