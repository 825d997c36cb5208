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


#: What a lean edge install does not carry (docs/ARCHITECTURE.md): training libraries,
#: the graph builders, the hub's storage and HTTP client, and the hub itself.
EDGE_NEVER_LOADS = (
    "sklearn",
    "implicit",
    "matplotlib",
    "skl2onnx",
    "sqlite_utils",
    "psycopg",
    "httpx",
    "hub",
    "models.onnx_graphs",
)


def test_the_edge_never_loads_training_or_hub_code(trained_bundle) -> None:  # type: ignore[no-untyped-def]
    """The agent's app, a model bundle loaded and a decision made: the modules loaded
    by then include none of the training side (a subprocess, so this test run's own
    imports do not count)."""
    import json
    import subprocess
    import sys

    script = f"""
import json, sys
from pathlib import Path
from edge_agent.app import create_app
from edge_agent.settings import EdgeSettings
from edge_agent.model_runtime import load_models
create_app(EdgeSettings())
models = load_models({str(trained_bundle.path)!r}, {str(trained_bundle.public_key)!r}, 100)
models.recommend([(models.item_ids[0], 1.0)], [])
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    offenders = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in EDGE_NEVER_LOADS)]
    assert offenders == []
    assert "onnxruntime" in loaded  # the bundle really ran


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_hub_state_is_wired_in_one_direction() -> None:
    """The app factory wires the hub; nothing it wires imports it back, and the state
    module imports none of the modules that use the state (no cycle, even a lazy one)."""
    users = {"hub.app", "hub.api", "hub.guard", "hub.privacy_api", "hub.erasure_service"}
    state_imports = _imported_modules(REPO / "hub" / "state.py")
    assert not {m for m in state_imports if m in users or any(m.startswith(u + ".") for u in users)}
    back = {
        str(p.relative_to(REPO))
        for p in (REPO / "hub").rglob("*.py")
        if p.name not in ("app.py", "asgi.py") and "hub.app" in _imported_modules(p)
    }
    assert back == set()


#: The SQLite store's own handles: reaching for one outside hub/storage/ bypasses the
#: interface a PostgreSQL store implements.
SQLITE_HANDLES = {"warehouse", "marts", "reader", "lake", "lake_dir", "lock", "drop_lake_day", "events_deleted"}
#: Node-local files that stay SQLite whatever the store: the audit log is one hash chain
#: per hub process (docs/PRIVACY.md).
#: Files of the hub process itself, not the warehouse: the audit log, and the console's
#: sessions and sampled series (console.sqlite).
LOCAL_SQLITE = {"hub/audit.py", "hub/console/sessions.py", "hub/console/series.py"}


def _names_a_store(node: ast.expr) -> bool:
    """``storage``, ``store``, ``state.storage``, ``self.store``…: what holds a store."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name.endswith(("storage", "store"))


def test_only_the_store_speaks_sql() -> None:
    """Outside ``hub/storage/`` the hub imports neither sqlite3, sqlite_utils nor
    psycopg, names no store class and touches none of its connections: callers hold a
    ``HubStore`` (hub/storage/interface.py)."""
    offenders: dict[str, list[str]] = {}
    for path in sorted((REPO / "hub").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel.startswith("hub/storage/") or rel in LOCAL_SQLITE:
            continue
        found = []
        imported = _imported_modules(path)
        found += sorted(m for m in imported if m.split(".")[0] in ("sqlite3", "sqlite_utils", "psycopg"))
        found += sorted(
            m for m in imported if m.startswith("hub.storage.") and m.rsplit(".", 1)[-1].startswith(("Sqlite", "Postgres"))
        )
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Attribute) and node.attr in SQLITE_HANDLES and _names_a_store(node.value):
                found.append(f".{node.attr} (line {node.lineno})")
        if found:
            offenders[rel] = found
    assert offenders == {}


def test_both_stores_implement_the_interface() -> None:
    """Every method of HubStore and the ledgers exists on the SQLite and the PostgreSQL
    classes with the same parameters (mypy checks the types through ``open_store``)."""
    import inspect

    from hub.storage.interface import ErasureLedger, HubStore, TrainingLedger
    from hub.storage.postgres import PostgresStore
    from hub.storage.postgres_ledgers import PostgresErasureLedger, PostgresTrainingLedger
    from hub.storage.sqlite import SqliteStore
    from hub.storage.sqlite_erasures import SqliteErasureLedger
    from hub.storage.sqlite_training_runs import SqliteTrainingLedger

    for protocol, cls in (
        (HubStore, SqliteStore),
        (ErasureLedger, SqliteErasureLedger),
        (TrainingLedger, SqliteTrainingLedger),
        (HubStore, PostgresStore),
        (ErasureLedger, PostgresErasureLedger),
        (TrainingLedger, PostgresTrainingLedger),
    ):
        for name, member in vars(protocol).items():
            if name.startswith("_") or not callable(member):
                continue
            assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
            assert list(inspect.signature(getattr(cls, name)).parameters) == list(inspect.signature(member).parameters), name
