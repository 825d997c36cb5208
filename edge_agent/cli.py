"""Edge-side commands: ``templates compile`` and ``nginx-config``."""

from __future__ import annotations

import sys
from pathlib import Path

from models.slots import SLOT_NAME_RE, scan


def templates_compile(src: str, dst: str, echo: bool = False) -> int:
    from edge_agent.ssi_compile import CompileError, compile_tree

    try:
        report = compile_tree(Path(src), Path(dst), echo=echo)
    except CompileError as e:
        print(f"p13n templates compile: {e}", file=sys.stderr)
        return 1
    print(
        f"compiled {len(report.compiled)} template(s) with {report.slots} slot(s), copied {len(report.copied)} file(s) to {dst}"
    )
    return 0


def slot_names(spec: str) -> tuple[str, ...]:
    """``hero,offer`` or a templates directory/file whose slot names are collected."""
    if not spec:
        return ()
    path = Path(spec)
    if path.exists():
        files = (
            [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in (".html", ".htm", ".shtml"))
        )
        return tuple(sorted({slot.name for f in files for slot in scan(f.read_bytes()).slots}))
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    bad = [n for n in names if not SLOT_NAME_RE.match(n)]
    if bad:
        raise ValueError(f"invalid slot names {bad}")
    return names


def nginx_config(
    mode: str,
    agent: str,
    origin: str,
    listen: str,
    server_name: str,
    geo_header: str,
    cookie_name: str = "p13n_id",
    echo_slots: str = "",
    user_id_from: str = "",
    cache_path: str = "",
    slot_timeout_ms: int = 250,
) -> int:
    from edge_agent.nginx_config import DEFAULT_CACHE_DIR, ConfigError, NginxOptions, render_server

    try:
        opts = NginxOptions(
            mode=mode,
            agent=agent,
            origin=origin,
            listen=listen,
            server_name=server_name,
            geo_header=geo_header,
            user_id_from=user_id_from,
            cookie_name=cookie_name,
            echo_slots=slot_names(echo_slots),
            cache_dir=cache_path or DEFAULT_CACHE_DIR,
            slot_timeout_ms=slot_timeout_ms,
        )
        text = render_server(opts)
    except (ConfigError, ValueError) as e:
        print(f"p13n nginx-config: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
