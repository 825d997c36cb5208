"""The two deployables share code only through models/; models/ imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"edge_agent": {"hub", "p13n"}, "hub": {"edge_agent", "p13n"}, "models": {"edge_agent", "hub", "p13n"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_sides(package: str) -> None:
    offenders = {
        str(p.relative_to(REPO)): sorted(imported_roots(p) & FORBIDDEN[package])
        for p in (REPO / package).rglob("*.py")
        if imported_roots(p) & FORBIDDEN[package]
    }
    assert offenders == {}
