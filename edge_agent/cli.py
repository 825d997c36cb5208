"""Edge-side commands: ``templates compile`` and ``nginx-config``."""

from __future__ import annotations

import sys
from pathlib import Path


def templates_compile(src: str, dst: str) -> int:
    from edge_agent.ssi_compile import CompileError, compile_tree

    try:
        report = compile_tree(Path(src), Path(dst))
    except CompileError as e:
        print(f"p13n templates compile: {e}", file=sys.stderr)
        return 1
    print(
        f"compiled {len(report.compiled)} template(s) with {report.slots} slot(s), copied {len(report.copied)} file(s) to {dst}"
    )
    return 0


def nginx_config(
    mode: str, agent: str, origin: str, listen: str, server_name: str, geo_header: str, cookie_name: str = "p13n_id"
) -> int:
    from edge_agent.nginx_config import ConfigError, NginxOptions, render_server

    try:
        text = render_server(
            NginxOptions(
                mode=mode,
                agent=agent,
                origin=origin,
                listen=listen,
                server_name=server_name,
                geo_header=geo_header,
                cookie_name=cookie_name,
            )
        )
    except ConfigError as e:
        print(f"p13n nginx-config: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
