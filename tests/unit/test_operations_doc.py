"""docs/OPERATIONS.md says what the code does: its events table is the contracts', the
nginx block it shows is the generator's, and every setting it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from edge_agent.settings import ENV_NAMES as EDGE_ENV
from hub.settings import ENV_NAMES as HUB_ENV
from models.contracts import reference_markdown

DOC = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()


def test_the_events_table_is_the_contracts() -> None:
    table = DOC.split("<!-- events-table:", 1)[1].split("-->", 1)[1].split("<!-- /events-table -->", 1)[0]
    assert table.strip() == reference_markdown().strip()


def test_every_setting_named_exists() -> None:
    named = set(re.findall(r"\bP13N_(?:EDGE|HUB)_[A-Z0-9_]+\b", DOC))
    known = set(EDGE_ENV.values()) | set(HUB_ENV.values())
    assert named and named <= known, sorted(named - known)
