"""What the console keeps beside the hub's state: sessions and the sampled series
(``console.sqlite``), the page templates, the audit chain's last verified entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.console.series import Series
from hub.console.sessions import SessionStore

HERE = Path(__file__).parent


@dataclass
class Console:
    """What the console keeps beside the hub's state (``console.sqlite``)."""

    sessions: SessionStore
    series: Series
    templates: Environment
    audit_verified: tuple[int, str] | None = None
    #: Experiment results the pages showed: (name, query) → (computed at, results).
    results: dict[tuple[str, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def open(cls, data_dir: Path, lifetime_s: float) -> Console:
        path = data_dir / "console.sqlite"
        env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return cls(SessionStore(path, lifetime_s), Series(path), env)

    def close(self) -> None:
        self.sessions.close()
        self.series.close()
