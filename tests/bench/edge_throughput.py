"""Edge throughput: plain nginx vs SSI mode vs filter mode on the demo product page.

Starts a demo origin (tagged and SSI-compiled), one edge agent, and three nginx servers:
plain static (the same page with fallbacks, unpersonalized), SSI mode and filter mode.
Loads each with wrk when installed (else a bounded Python load generator), prints a
table, and as its last line one JSON object with req/s, p50/p99 latency and the ratios
to plain nginx.

    python tests/bench/edge_throughput.py [--duration 10] [--connections 32] [--ceiling]

``--ceiling`` adds the SSI ceiling of this machine: the same SSI configurations in
front of an agent that does no work (``zero_work_agent.py``: the real agent's answers,
captured, served by the same server code) and in front of nginx itself answering them.

Everything listens on 127.0.0.1 and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge_agent.nginx_config import NginxOptions, render_main  # noqa: E402
from p13n.procs import (  # noqa: E402
    DEFAULT_TEMPLATES,
    Child,
    free_port,
    nginx_binary,
    p13n_command,
    spawn,
    start_nginx,
    wait_http,
    wait_port,
)

PAGE = "/p/dr01"
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
COOKIE = "p13n_id=benchvisitor0000000001"


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url: str, duration: int, connections: int, threads: int, script: str = "") -> dict[str, float]:
    """wrk's figures; ``script`` a Lua file shaping each request (e.g. rotating cookies)."""
    out = subprocess.run(
        [
            "wrk",
            *(["-s", script] if script else []),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"User-Agent: {UA}",
            "-H",
            f"Cookie: {COOKIE}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


async def _py_load(url: str, duration: int, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    bad = 0
    stop = time.perf_counter() + duration
    async with aiohttp.ClientSession(headers={"User-Agent": UA, "Cookie": COOKIE}) as session:

        async def worker() -> None:
            nonlocal bad
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        bad += 1
                latencies.append((time.perf_counter() - t) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50_ms": q[49], "p99_ms": q[98], "non_2xx": float(bad), "socket_errors": 0.0}


def load(url: str, duration: int, connections: int, threads: int) -> dict[str, float]:
    if shutil.which("wrk"):
        run_wrk(url, 2, connections, threads)  # warm-up
        return run_wrk(url, duration, connections, threads)
    asyncio.run(_py_load(url, 2, connections))
    return asyncio.run(_py_load(url, duration, connections))


def start_static_nginx(work: Path, page: bytes) -> tuple[Child, str]:
    root = work / "static-root"
    root.mkdir(parents=True)
    (root / "page.html").write_bytes(page)
    port = free_port()
    server = f"server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        root {root};\n        try_files /page.html =404;\n        default_type text/html;\n    }}\n}}\n"
    return _serve_nginx(work, "nginx-static", server, port, "auto"), f"http://127.0.0.1:{port}{PAGE}"


def _serve_nginx(work: Path, name: str, server: str, port: int, workers: str) -> Child:
    """nginx running one ``server`` block from its own prefix under ``work``."""
    prefix = work / name
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(render_main(server, str(prefix), workers, user="root" if os.geteuid() == 0 else ""))
    child = spawn(
        name,
        [nginx_binary() or "nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), "-g", "daemon off;"],
        work,
    )
    wait_port(child, port)
    return child


def capture_answers(agent: str, slots: tuple[str, ...]) -> dict[str, object]:
    """The real agent's SSI answers for the benchmark's visitor (auth with every slot, and
    each fragment), to replay without work. ``$`` becomes ``&#36;`` (nginx strings)."""
    headers = {"User-Agent": UA, "Cookie": COOKIE, "X-P13N-Page": PAGE}
    reply = urllib.request.urlopen(urllib.request.Request(f"http://{agent}/_p13n/auth?slots={','.join(slots)}", headers=headers))
    auth = [
        (k.lower(), v.replace("$", "&#36;"))
        for k, v in reply.headers.items()
        if k.lower().startswith("x-p13n-slot-") or k.lower() == "cache-control"
    ]
    bodies = {
        name: urllib.request.urlopen(urllib.request.Request(f"http://{agent}/_p13n/slot/{name}", headers=headers))
        .read()
        .decode("utf-8")
        .replace("$", "&#36;")
        for name in slots
    }
    return {"auth": auth, "slots": bodies}


def start_nginx_agent(work: Path, captured: dict[str, Any]) -> tuple[Child, str]:
    """nginx answering the agent's SSI endpoints with the captured answers (C speed)."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    port = free_port()
    auth = "".join(f"        add_header {k} {quoted(v)} always;\n" for k, v in captured["auth"])
    slots = "".join(
        f"    location = /_p13n/slot/{name} {{\n        default_type {quoted('text/html; charset=utf-8')};\n"
        f"        add_header cache-control private always;\n        return 200 {quoted(body)};\n    }}\n"
        for name, body in captured["slots"].items()
    )
    server = (
        f"server {{\n    listen 127.0.0.1:{port};\n    location = /_p13n/auth {{\n{auth}        return 204;\n    }}\n{slots}}}\n"
    )
    return _serve_nginx(work, "nginx-agent", server, port, "1"), f"127.0.0.1:{port}"


def ceiling_targets(
    work: Path, children: list[Child], agent: str, ssi_origin: str, echo_origin: str, slots: tuple[str, ...]
) -> dict[str, str]:
    """SSI and one-round-trip SSI in front of a zero-work agent and of nginx as the agent."""
    captured = capture_answers(agent, slots)
    capture = work / "captured.json"
    capture.write_text(json.dumps(captured))
    z_port = free_port()
    serve = f"from p13n.serve import run_factory; run_factory('zero_work_agent:app_from_env', '127.0.0.1', {z_port}, 'warning')"
    env = {"P13N_BENCH_CAPTURE": str(capture), "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)])}
    children.append(spawn("zero-work-agent", [sys.executable, "-c", serve], work, env))
    wait_port(children[-1], z_port)
    nginx_agent, nginx_agent_addr = start_nginx_agent(work, captured)
    children.append(nginx_agent)
    targets = {}
    for label, upstream in (("zero_work", f"127.0.0.1:{z_port}"), ("nginx_agent", nginx_agent_addr)):
        for mode, origin, echo in (("ssi", ssi_origin, ()), ("ssi_echo", echo_origin, slots)):
            port = free_port()
            children.append(
                start_nginx(
                    work / f"{mode}-{label}",
                    NginxOptions(mode="ssi", agent=upstream, origin=origin, listen=f"127.0.0.1:{port}", echo_slots=echo),
                )
            )
            targets[f"{mode}_{label}"] = f"http://127.0.0.1:{port}{PAGE}"
    return targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--also-uvicorn", action="store_true", help="also measure SSI and filter mode with the agent under uvicorn")
    ap.add_argument(
        "--ceiling", action="store_true", help="also measure SSI in front of a zero-work agent and of nginx as the agent"
    )
    ap.add_argument(
        "--hold", type=float, default=0, help="keep everything running this many seconds before loading (for profiling)"
    )
    args = ap.parse_args()
    if nginx_binary() is None:
        print("nginx is required (apt-get install nginx)", file=sys.stderr)
        return 2
    children: list[Child] = []
    work = Path(tempfile.mkdtemp(prefix="p13n-bench-"))
    try:
        o_port, s_port, a_port, e_port = free_port(), free_port(), free_port(), free_port()
        children.append(
            spawn("origin", p13n_command("origin", "serve", "--port", str(o_port), "--templates", str(DEFAULT_TEMPLATES)), work)
        )
        children.append(
            spawn(
                "origin-ssi",
                p13n_command("origin", "serve", "--port", str(s_port), "--templates", str(DEFAULT_TEMPLATES), "--ssi"),
                work,
            )
        )
        children.append(
            spawn(
                "origin-echo",
                p13n_command(
                    "origin", "serve", "--port", str(e_port), "--templates", str(DEFAULT_TEMPLATES), "--ssi", "--ssi-echo"
                ),
                work,
            )
        )
        origin, ssi_origin, echo_origin = f"http://127.0.0.1:{o_port}", f"http://127.0.0.1:{s_port}", f"http://127.0.0.1:{e_port}"
        agent = spawn(
            "edge",
            p13n_command("edge", "serve"),
            work,
            {
                "P13N_EDGE_LISTEN": f"127.0.0.1:{a_port}",
                "P13N_EDGE_WORKERS": "1",  # as its figures in docs/PERFORMANCE.md were measured
                "P13N_EDGE_ORIGIN": origin,
                "P13N_EDGE_DATA_DIR": str(work / "edge"),
                "P13N_ALLOW_DEV_KEYS": "1",
                "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
                "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
            },
        )
        children.append(agent)
        u_port = free_port()
        if args.also_uvicorn:
            children.append(
                spawn(
                    "edge-uvicorn",
                    p13n_command("edge", "serve"),
                    work,
                    {
                        "P13N_EDGE_LISTEN": f"127.0.0.1:{u_port}",
                        "P13N_EDGE_WORKERS": "1",  # as its figures in docs/PERFORMANCE.md were measured
                        "P13N_EDGE_ORIGIN": origin,
                        "P13N_EDGE_DATA_DIR": str(work / "edge-u"),
                        "P13N_ALLOW_DEV_KEYS": "1",
                        "P13N_EDGE_TEMPLATES_DIR": str(DEFAULT_TEMPLATES),
                        "P13N_EDGE_DEFAULT_CONSENT": "necessary,analytics,personalization",
                        "P13N_EDGE_SERVER": "uvicorn",
                    },
                )
            )
            wait_http(children[-1], f"http://127.0.0.1:{u_port}/_p13n/healthz")
        wait_http(children[0], origin + "/healthz")
        wait_http(children[1], ssi_origin + "/healthz")
        wait_http(children[2], echo_origin + "/healthz")
        wait_http(agent, f"http://127.0.0.1:{a_port}/_p13n/healthz")
        # the unpersonalized page: the tagged page with every slot showing its fallback
        from models.slots import scan

        raw = urllib.request.urlopen(origin + PAGE).read()
        static_child, static_url = start_static_nginx(work, scan(raw).render({}))
        children.append(static_child)
        ssi_port, filter_port, echo_port = free_port(), free_port(), free_port()
        slots = tuple(sorted({s.name for s in scan(raw).slots}))
        children.append(
            start_nginx(
                work / "ssi-echo",
                NginxOptions(
                    mode="ssi", agent=f"127.0.0.1:{a_port}", origin=echo_origin, listen=f"127.0.0.1:{echo_port}", echo_slots=slots
                ),
            )
        )
        children.append(
            start_nginx(
                work / "ssi",
                NginxOptions(mode="ssi", agent=f"127.0.0.1:{a_port}", origin=ssi_origin, listen=f"127.0.0.1:{ssi_port}"),
            )
        )
        children.append(
            start_nginx(
                work / "filter",
                NginxOptions(mode="filter", agent=f"127.0.0.1:{a_port}", origin=origin, listen=f"127.0.0.1:{filter_port}"),
            )
        )
        targets = {
            "plain_nginx": static_url,
            "ssi": f"http://127.0.0.1:{ssi_port}{PAGE}",
            "filter": f"http://127.0.0.1:{filter_port}{PAGE}",
            "ssi_echo": f"http://127.0.0.1:{echo_port}{PAGE}",
        }
        if args.also_uvicorn:
            us, uf = free_port(), free_port()
            children.append(
                start_nginx(
                    work / "ssi-u",
                    NginxOptions(mode="ssi", agent=f"127.0.0.1:{u_port}", origin=ssi_origin, listen=f"127.0.0.1:{us}"),
                )
            )
            children.append(
                start_nginx(
                    work / "filter-u",
                    NginxOptions(mode="filter", agent=f"127.0.0.1:{u_port}", origin=origin, listen=f"127.0.0.1:{uf}"),
                )
            )
            targets["ssi_uvicorn"] = f"http://127.0.0.1:{us}{PAGE}"
            targets["filter_uvicorn"] = f"http://127.0.0.1:{uf}{PAGE}"
        if args.ceiling:
            targets.update(ceiling_targets(work, children, f"127.0.0.1:{a_port}", ssi_origin, echo_origin, slots))
        for name, url in targets.items():  # every target answers the page before we load it
            body = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": UA, "Cookie": COOKIE})).read()
            assert b"<p13n-slot" not in body, name
            if name != "plain_nginx":
                assert b'data-variant="mobile-app"' in body, name
        if args.hold:
            print(json.dumps({"targets": targets, "agent": f"127.0.0.1:{a_port}"}), flush=True)
            time.sleep(args.hold)
        results = {name: load(url, args.duration, args.connections, args.threads) for name, url in targets.items()}
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = results["plain_nginx"]["rps"]
    print(f"{'target':<22} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'non-2xx':>8}")
    for name, r in results.items():
        print(
            f"{name:<22} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['rps'] / base:>6.2f} {r['non_2xx']:>8.0f}"
        )
    summary = {
        "bench": "edge_throughput",
        "page": PAGE,
        "page_bytes": len(body),
        "load_generator": "wrk" if shutil.which("wrk") else "python-aiohttp",
        "duration_s": args.duration,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        **{f"{name}_{k}": round(v, 3) for name, r in results.items() for k, v in r.items()},
        "ssi_ratio": round(results["ssi"]["rps"] / base, 3),
        "filter_ratio": round(results["filter"]["rps"] / base, 3),
        "ssi_echo_ratio": round(results["ssi_echo"]["rps"] / base, 3),
        **(
            {f"{n}_ratio": round(results[n]["rps"] / base, 3) for n in ("ssi_uvicorn", "filter_uvicorn")}
            if args.also_uvicorn
            else {}
        ),
        **(
            {
                f"{n}_ratio": round(results[n]["rps"] / base, 3)
                for n in ("ssi_zero_work", "ssi_echo_zero_work", "ssi_nginx_agent", "ssi_echo_nginx_agent")
            }
            if args.ceiling
            else {}
        ),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
