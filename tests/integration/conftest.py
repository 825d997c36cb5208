"""Fixtures shared by the integration tests: a real Chromium through Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import require_binary

CHROMIUM = "/usr/bin/chromium"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[object]:
    require_binary("chromium", CHROMIUM if os.path.exists(CHROMIUM) else None)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # the UA on the command line: beacons sent while a page unloads bypass per-page overrides
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--user-agent={DESKTOP}"])
        try:
            yield b
        finally:
            b.close()
