"""Every hub endpoint × every role, and the audit log's tamper evidence.

The matrix walks the hub's real route table (so a new endpoint without a permission
fails here): no token and an unknown token get 401, a role without the permission
403, a role with it anything but 401/403. Every call lands in the audit log.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from hub.app import create_app, routes
from hub.audit import AuditLog, verify
from hub.auth import PERMISSIONS, ROLES, create_token
from hub.settings import HubSettings

#: Who may call what (the documented matrix, docs/PRIVACY.md); healthz is public.
MATRIX: dict[tuple[str, str], set[str]] = {
    ("GET", "/metrics"): set(ROLES),
    ("POST", "/v1/events"): {"operator", "admin"},
    ("GET", "/v1/stats"): set(ROLES),
    ("GET", "/v1/edges"): set(ROLES),
    ("DELETE", "/v1/edges/{edge_id}"): {"operator", "admin"},
    ("GET", "/v1/bundles"): set(ROLES),
    ("GET", "/v1/jobs"): set(ROLES),
    ("POST", "/v1/bundles"): {"operator", "admin"},
    ("POST", "/v1/bundles/rollback"): {"operator", "admin"},
    ("GET", "/v1/bundles/{version:int}"): {"operator", "admin"},
    ("POST", "/v1/bundles/{version:int}/activate"): {"operator", "admin"},
    ("GET", "/v1/marts/items"): {"analyst", "admin"},
    ("GET", "/v1/subjects/{subject}"): {"privacy_officer", "admin"},
    ("DELETE", "/v1/subjects/{subject}"): {"privacy_officer", "admin"},
    ("GET", "/v1/erasures/{request_id}"): {"privacy_officer", "admin"},
    ("POST", "/v1/retention/run"): {"operator", "admin"},
    ("GET", "/v1/audit"): {"privacy_officer", "admin"},
    ("GET", "/v1/training/runs"): {"analyst", "operator", "admin"},
    ("POST", "/v1/training/runs"): {"operator", "admin"},
    ("GET", "/v1/training/runs/{run_id}"): {"analyst", "operator", "admin"},
    ("GET", "/v1/training/runs/{run_id}/report.html"): {"analyst", "operator", "admin"},
    ("GET", "/v1/experiments"): {"analyst", "operator", "admin"},
    ("GET", "/v1/experiments/{name}/results"): {"analyst", "operator", "admin"},
    ("GET", "/v1/experiments/{name}/results.html"): {"analyst", "operator", "admin"},
}
CONCRETE = {
    "{edge_id}": "edge-x",
    "{version:int}": "3",
    "{subject}": "someone-123",
    "{request_id}": "er_0",
    "{run_id}": "0123456789ab",
}


def concrete(path: str) -> str:
    for k, v in CONCRETE.items():
        path = path.replace(k, v)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    tokens = {role: create_token(tmp_path / "tokens.json", f"t-{role}", role) for role in ROLES}
    settings = HubSettings(
        nats_url="nats://127.0.0.1:9", nats_retry_s=30, data_dir=tmp_path / "hub", tokens_file=str(tmp_path / "tokens.json")
    )
    with TestClient(create_app(settings)) as client:
        yield client, tokens, tmp_path / "hub"


def test_the_matrix_covers_every_route() -> None:
    declared = {
        (m, r.path)
        for r in routes()
        if isinstance(r, Route) and r.methods
        for m in r.methods
        if m != "HEAD" and "{rest" not in r.path and not r.path.startswith("/console")  # (tests/unit/test_console.py)
    }
    assert declared - {("GET", "/v1/healthz")} == set(MATRIX)
    assert set(PERMISSIONS) >= {"subjects.erase", "audit.read"}


def test_every_endpoint_checks_every_role_and_is_audited(hub: tuple[TestClient, dict[str, str], Path]) -> None:
    client, tokens, data_dir = hub
    calls = 0
    for (method, template), allowed in MATRIX.items():
        path = concrete(template)
        assert client.request(method, path).status_code == 401, (method, path)
        bogus = client.request(method, path, headers={"authorization": "Bearer p13n_not-a-real-token"})
        assert bogus.status_code == 401 and bogus.json()["error"]["reason"] == "unauthorized"
        calls += 2
        for role in ROLES:
            r = client.request(method, path, headers={"authorization": f"Bearer {tokens[role]}"}, content=b"[]")
            calls += 1
            if role in allowed:
                assert r.status_code not in (401, 403), (method, path, role, r.status_code)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code)
                assert r.json()["error"]["reason"] == "forbidden"
    assert client.get("/v1/healthz").status_code == 503  # public (and honest: no NATS here)
    # refusals are all audited (the second 401 of an endpoint within a minute joins an
    # aggregate written when the window closes); successful data-plane calls are not
    quiet = sum(1 for (m, t), allowed in MATRIX.items() if t in ("/metrics", "/v1/events") for _ in allowed)
    report = verify(data_dir / "audit.sqlite", HubSettings(data_dir=data_dir).audit_secret)
    assert report.ok and report.entries == calls - quiet - len(MATRIX)
    log = AuditLog(data_dir / "audit.sqlite", b"unused-for-reading")
    entries = log.entries(limit=10_000)
    log.close()
    erase = [e for e in entries if e["action"] == "subjects.erase" and e["status"] == 403]
    assert erase and all(e["target"].startswith("/v1/subjects/t1_") for e in erase)
    assert not any("someone-123" in e["target"] for e in entries)  # subject ids never reach the log


def test_revoked_token_stops_working(hub: tuple[TestClient, dict[str, str], Path], tmp_path: Path) -> None:
    import time

    from hub.auth import revoke_token

    client, tokens, _ = hub
    auth = {"authorization": f"Bearer {tokens['viewer']}"}
    assert client.get("/v1/edges", headers=auth).status_code != 401
    assert revoke_token(tmp_path / "tokens.json", "t-viewer")
    time.sleep(1.1)  # the file is re-checked at most once a second
    assert client.get("/v1/edges", headers=auth).status_code == 401


def _p13n(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p13n", *args], capture_output=True, text=True, env=env)


def test_audit_verify_detects_changed_and_removed_entries(tmp_path: Path) -> None:
    import os

    data = tmp_path / "hub"
    key = b"audit-test-key"
    log = AuditLog(data / "audit.sqlite", key)
    for i in range(6):
        log.append(f"user{i}", "admin", "stats.read", "/v1/stats", 200, {"i": i})
    log.close()
    env = {**os.environ, "P13N_HUB_AUDIT_KEY": key.decode(), "P13N_HUB_DATA_DIR": str(data)}
    clean = _p13n("audit", "verify", env=env)
    assert clean.returncode == 0 and '"ok": true' in clean.stdout and '"entries": 6' in clean.stdout
    head = clean.stdout.split('"head": "')[1].split('"')[0]

    # the table refuses edits (triggers); an attacker with the file drops them first
    db = sqlite3.connect(data / "audit.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("UPDATE audit SET status = 403 WHERE seq = 3")
    db.commit()
    changed = _p13n("audit", "verify", env=env)
    assert changed.returncode == 1 and "entry 3: content does not match its hash (changed)" in changed.stdout
    db.execute("UPDATE audit SET status = 200 WHERE seq = 3")
    db.execute("DELETE FROM audit WHERE seq = 4")
    db.commit()
    removed = _p13n("audit", "verify", env=env)
    assert removed.returncode == 1 and "entries 4..4 are missing" in removed.stdout
    assert "entry 5: does not follow the entry before it" in removed.stdout
    # a wrong key cannot vouch for the chain either
    restored = AuditLog(tmp_path / "fresh" / "audit.sqlite", key)
    restored.append("a", "admin", "x", "/", 200)
    restored.close()
    assert not verify(tmp_path / "fresh" / "audit.sqlite", b"another-key").ok
    # truncating the tail: caught by audit.head, or by a head recorded elsewhere
    db.execute("DELETE FROM audit WHERE seq >= 5")
    db.commit()
    db.close()
    truncated = _p13n("audit", "verify", "--head", head, env=env)
    assert truncated.returncode == 1 and "truncated" in truncated.stdout


def test_erasure_without_nats_is_refused_with_retry_after(hub: tuple[TestClient, dict[str, str], Path]) -> None:
    client, tokens, _ = hub
    r = client.delete("/v1/subjects/someone-123", headers={"authorization": f"Bearer {tokens['privacy_officer']}"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["error"]["reason"] == "nats_unavailable"  # nothing was deleted or suppressed


def test_a_broken_tokens_file_keeps_the_tokens_already_loaded(tmp_path: Path) -> None:
    import os
    import time

    from hub.auth import TokenStore

    path = tmp_path / "tokens.json"
    token = create_token(path, "ops", "operator")
    store = TokenStore(str(path))
    path.write_text("{ half written")
    os.utime(path, (1, 1))  # a new mtime: the store re-reads it…
    time.sleep(1.1)  # …at its next check, at most once a second
    principal = store.authenticate(f"Bearer {token}")
    assert principal is not None and principal.role == "operator"
    assert store.authenticate("Bearer p13n_unknown") is None


def test_failed_logins_are_refused_audited_and_aggregated(tmp_path: Path) -> None:
    settings = HubSettings(
        nats_url="nats://127.0.0.1:9",
        nats_retry_s=30,
        data_dir=tmp_path / "hub",
        tokens_file=str(tmp_path / "tokens.json"),
        api_keys=("ingest-key-0123456789",),
        audit_refusal_window_s=0.5,
    )
    viewer = create_token(tmp_path / "tokens.json", "t-viewer", "viewer")
    with TestClient(create_app(settings)) as client:
        # a non-ASCII key used to escape as a 500 without an audit row
        odd = client.post("/v1/events", headers={"x-api-key": "cl\u00e9-\u00fc".encode()}, content=b"[]")
        assert odd.status_code == 401 and odd.json()["error"]["reason"] == "unauthorized"
        for i in range(50):  # a brute force on the stats endpoint
            assert client.get("/v1/stats", headers={"authorization": f"Bearer guess-{i}"}).status_code == 401
        time.sleep(0.6)
        assert client.get("/v1/stats", headers={"authorization": "Bearer late-guess"}).status_code == 401
        metrics = client.get("/metrics", headers={"authorization": f"Bearer {viewer}"})
        assert "p13n_hub_auth_failures_total 52.0" in metrics.text
    log = AuditLog(settings.data_dir / "audit.sqlite", b"unused-for-reading")
    refusals = [e for e in log.entries(limit=1000) if e["status"] == 401]
    log.close()
    by_action = {(e["action"], e["detail"].get("repeated")) for e in refusals}
    assert ("events.write", None) in by_action
    assert ("stats.read", 49) in by_action  # 50 guesses: the first, then one entry counting the rest
    assert len(refusals) == 3 + 1  # events, stats first, stats aggregate, stats after the window


def test_the_tokens_file_is_never_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    create_token(path, "a", "admin")
    create_token(path, "b", "viewer")
    assert path.stat().st_mode & 0o777 == 0o600
    from hub.auth import revoke_token

    assert revoke_token(path, "a")
    assert path.stat().st_mode & 0o777 == 0o600  # revocation rewrote it world-readable before
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".tokens.json.*"))


def test_the_audit_key_is_not_derived_from_what_edges_hold(tmp_path: Path) -> None:
    import hashlib
    import hmac

    shared = "deployment-pseudonym-key-every-edge-has"
    one = HubSettings(data_dir=tmp_path / "a", pseudonym_key=shared).audit_secret
    two = HubSettings(data_dir=tmp_path / "b", pseudonym_key=shared).audit_secret
    legacy = hmac.new(shared.encode(), b"p13n-audit-chain", hashlib.sha256).digest()
    assert one != legacy and one != two  # an edge's secret cannot re-sign the hub's chain
    assert HubSettings(data_dir=tmp_path / "a", pseudonym_key=shared).audit_secret == one  # stable per hub
    assert (tmp_path / "a" / "audit-dev.key").stat().st_mode & 0o777 == 0o600
    assert HubSettings(data_dir=tmp_path / "c", audit_key="configured").audit_secret == b"configured"


def test_local_commands_that_change_tokens_or_data_are_audited(tmp_path: Path) -> None:
    import os

    data = tmp_path / "hub"
    tokens = tmp_path / "tokens.json"
    env = {**os.environ, "P13N_HUB_AUDIT_KEY": "local-audit-key", "P13N_HUB_DATA_DIR": str(data)}
    created = _p13n("tokens", "create", "--file", str(tokens), "--name", "ops", "--role", "operator", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert _p13n("tokens", "revoke", "--file", str(tokens), "--name", "ops", env=env).returncode == 0
    items = tmp_path / "items.json"
    items.write_text(json.dumps([{"id": "a1", "title": "A", "category": "c"}]))
    imported = _p13n("catalog", "import", str(items), "--data-dir", str(data), env=env)
    assert imported.returncode == 0, imported.stderr

    log = AuditLog(data / "audit.sqlite", b"unused-for-reading")
    entries = log.entries(limit=100)
    log.close()
    assert [(e["action"], e["role"], e["actor"].startswith("cli:")) for e in entries] == [
        ("tokens.create", "local", True),
        ("tokens.revoke", "local", True),
        ("catalog.import", "local", True),
    ]
    assert entries[0]["detail"] == {"name": "ops", "role": "operator"}
    assert token not in json.dumps(entries)  # the secret never reaches the log
    verified = _p13n("audit", "verify", env=env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["entries"] == 3

    # without the hub's audit key, nothing is signed with another key: said, not written
    bare = {k: v for k, v in env.items() if k != "P13N_HUB_AUDIT_KEY"}
    bare["P13N_HUB_DATA_DIR"] = str(tmp_path / "elsewhere")
    other = _p13n("tokens", "create", "--file", str(tokens), "--name", "ops2", "--role", "viewer", env=bare)
    assert other.returncode == 0 and "not audited" in other.stderr
    assert not (tmp_path / "elsewhere" / "audit.sqlite").exists()
