"""CRM sync against a real, flaky HTTP server this test starts; catalog import."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.crm import CrmConfig, CrmError, CrmSync
from hub.pii import PiiCipher, new_key
from hub.storage.sqlite import SqliteStore
from models.pseudonym import pseudonym
from p13n.procs import free_port
from tests.conftest import FIXTURES

CIPHER = PiiCipher([("k1", base64.b64decode(new_key()))])

PROFILES = [
    {
        "id": f"c{i}",
        "email": f"user{i}@example.com",
        "tier": "gold" if i % 3 == 0 else "silver",
        "updated_at": f"2026-11-{10 + i % 15:02d}T00:00:00Z",
    }
    for i in range(23)
]


class FlakyCrm:
    """Cursor-paginated profiles; page 2 fails once with 500, page 3 answers 429 once
    and one request hangs past the client timeout. Honours updated_since and ETag."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.failed: set[str] = set()
        self.profiles = list(PROFILES)

    def app(self) -> Starlette:
        async def profiles(request: Request) -> Response:
            if request.headers.get("authorization") != "Bearer crm-token":
                return JSONResponse({"error": "no"}, status_code=401)
            q = dict(request.query_params)
            self.calls.append(q)
            cursor = int(q.get("cursor", "0"))
            per_page = int(q.get("per_page", "10"))
            if cursor == 10 and "500" not in self.failed:
                self.failed.add("500")
                return JSONResponse({"error": "boom"}, status_code=500)
            if cursor == 20 and "429" not in self.failed:
                self.failed.add("429")
                return Response(status_code=429, headers={"retry-after": "1"})
            if cursor == 20 and "slow" not in self.failed:
                self.failed.add("slow")
                time.sleep(1.5)
            since = q.get("updated_since", "")
            chosen = [p for p in self.profiles if p["updated_at"] > since] if since else self.profiles
            page = chosen[cursor : cursor + per_page]
            nxt = str(cursor + per_page) if cursor + per_page < len(chosen) else None
            body = json.dumps({"data": page, "next_cursor": nxt}, sort_keys=True)
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'  # per page, as CRMs do
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304)
            return Response(body, media_type="application/json", headers={"etag": etag})

        return Starlette(routes=[Route("/profiles", profiles)])


@pytest.fixture
def crm() -> Iterator[tuple[FlakyCrm, str]]:
    fake = FlakyCrm()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield fake, f"http://127.0.0.1:{port}/profiles"
    server.should_exit = True
    thread.join(5)


def config(url: str, **kw: Any) -> CrmConfig:
    return CrmConfig.from_json(
        {
            "url": url,
            "auth_header": "Authorization: Bearer crm-token",
            "page_size": 10,
            "timeout_s": 1.0,
            "mapping": {"tier": "tier", "email": "email"},
            **kw,
        }
    )


def test_sync_survives_5xx_429_and_timeouts_then_goes_incremental(crm: tuple[FlakyCrm, str], tmp_path: Path) -> None:
    fake, url = crm
    storage = SqliteStore(tmp_path)
    waits: list[float] = []
    sync = CrmSync(config(url), storage, b"k", CIPHER, sleep=lambda s: waits.append(s) or time.sleep(min(s, 0.05)))
    try:
        report = sync.run_once()
        assert report.profiles == 23 and report.pages == 3
        assert report.retries == 3 and report.rate_limited == 1
        assert 1.0 in waits  # Retry-After honoured
        users = dict(storage.warehouse.execute("SELECT user_id, attributes FROM users").fetchall())
        assert len(users) == 23
        assert json.loads(users[pseudonym("c3", b"k")]) == {"tier": "gold"}  # PII is not among the attributes
        (sealed,) = storage.warehouse.execute("SELECT pii FROM users WHERE user_id = ?", (pseudonym("c3", b"k"),)).fetchone()
        assert json.loads(CIPHER.decrypt(sealed, aad=pseudonym("c3", b"k"))) == {"email": "user3@example.com"}
        assert "c3" not in users  # ids are pseudonymized
        # nothing changed: one request, nothing fetched
        fake.calls.clear()
        again = sync.run_once()
        assert again.profiles == 0 and len(fake.calls) == 1
        # one profile changes: only it is fetched, thanks to updated_since
        fake.profiles[5] = {**fake.profiles[5], "tier": "platinum", "updated_at": "2026-12-01T00:00:00Z"}
        fake.calls.clear()
        third = sync.run_once()
        assert third.profiles == 1 and fake.calls[0]["updated_since"] == "2026-11-24T00:00:00Z"
        row = storage.warehouse.execute("SELECT attributes FROM users WHERE user_id = ?", (pseudonym("c5", b"k"),)).fetchone()
        assert json.loads(row[0])["tier"] == "platinum"
    finally:
        sync.close()
        storage.close()


def test_etag_makes_an_unchanged_crm_a_304(crm: tuple[FlakyCrm, str], tmp_path: Path) -> None:
    fake, url = crm
    fake.failed |= {"500", "429", "slow"}
    storage = SqliteStore(tmp_path)
    sync = CrmSync(config(url, updated_since_param=""), storage, b"k", CIPHER, sleep=lambda s: None)
    try:
        assert sync.run_once().profiles == 23
        fake.calls.clear()
        again = sync.run_once()  # every page answers 304: nothing is transferred
        assert again.not_modified and again.profiles == 0 and len(fake.calls) == 3
        # a change on the last page only: the unchanged first pages do not hide it
        fake.profiles[21] = {**fake.profiles[21], "tier": "platinum"}
        fake.calls.clear()
        third = sync.run_once()
        assert not third.not_modified and third.profiles == 3 and len(fake.calls) == 3
        row = storage.warehouse.execute("SELECT attributes FROM users WHERE user_id = ?", (pseudonym("c21", b"k"),)).fetchone()
        assert json.loads(row[0])["tier"] == "platinum"
    finally:
        sync.close()
        storage.close()


def test_sync_gives_up_clearly_when_the_crm_stays_down(tmp_path: Path) -> None:
    storage = SqliteStore(tmp_path)
    sync = CrmSync(config(f"http://127.0.0.1:{free_port()}/profiles", max_retries=2), storage, b"k", CIPHER, sleep=lambda s: None)
    try:
        with pytest.raises(CrmError, match="gave up after 2 retries"):
            sync.run_once()
    finally:
        sync.close()
        storage.close()


def test_bad_crm_config_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown CRM settings"):
        CrmConfig.from_json({"url": "http://x", "colour": "red"})
    with pytest.raises(ValueError, match="http"):
        CrmConfig.from_json({"url": "ftp://x"})


def test_catalog_import_of_the_real_retail_sample(tmp_path: Path) -> None:
    src = FIXTURES / "data" / "online-retail-sample.csv"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "p13n",
            "catalog",
            "import",
            str(src),
            "--data-dir",
            str(tmp_path),
            "--map",
            "id=StockCode,title=Description,price=UnitPrice",
            "--currency",
            "GBP",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["imported"] > 3000 and report["skipped"].get("duplicate_id", 0) > 0
    db = sqlite3.connect(tmp_path / "warehouse.sqlite")
    (count,) = db.execute("SELECT count(*) FROM items").fetchone()
    assert count == report["imported"]
    title, price, currency = db.execute("SELECT title, price_minor, currency FROM items WHERE item_id = '85123A'").fetchone()
    assert title == "WHITE HANGING HEART T-LIGHT HOLDER" and currency == "GBP" and isinstance(price, int)


def test_catalog_import_json_and_errors(tmp_path: Path) -> None:
    items = tmp_path / "items.json"
    items.write_text(
        json.dumps(
            [
                {"id": "a", "title": "Scarf", "tags": ["wool", "red"], "price": "12.5"},
                {"id": "b"},
                {"title": "no id"},
                {"id": "c", "title": "Hat", "price": "cheap"},
            ]
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "p13n", "catalog", "import", str(items), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report == {"imported": 1, "skipped": {"missing_title": 1, "missing_id": 1, "bad_price": 1}}
    db = sqlite3.connect(tmp_path / "warehouse.sqlite")
    assert db.execute("SELECT tags, price_minor, currency FROM items").fetchall() == [("wool red", 1250, "EUR")]
    bad = subprocess.run(
        [sys.executable, "-m", "p13n", "catalog", "import", str(items), "--data-dir", str(tmp_path), "--map", "colour=x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "bad mapping" in bad.stderr


def test_crm_pii_is_encrypted_at_rest_and_the_key_rotates(crm: tuple[FlakyCrm, str], tmp_path: Path) -> None:
    """The real `p13n crm sync`: no plaintext PII in any file of the hub's data
    directory; `p13n pii rekey` moves every value to a new key."""
    import os

    _, url = crm
    cfg = tmp_path / "crm.json"
    cfg.write_text(
        json.dumps(
            {
                "url": url,
                "auth_header": "Authorization: Bearer crm-token",
                "page_size": 10,
                "timeout_s": 1.0,
                "mapping": {"tier": "tier", "email": "email"},
            }
        )
    )
    k1 = subprocess.run(
        [sys.executable, "-m", "p13n", "keys", "pii", "--id", "k1"], capture_output=True, text=True
    ).stdout.strip()
    k2 = subprocess.run(
        [sys.executable, "-m", "p13n", "keys", "pii", "--id", "k2"], capture_output=True, text=True
    ).stdout.strip()
    assert k1.startswith("k1:") and len(base64.b64decode(k1[3:])) == 32
    data = tmp_path / "hub"
    env = {**os.environ, "P13N_HUB_PII_KEYS": k1, "P13N_HUB_PSEUDONYM_KEY": "k"}
    out = subprocess.run(
        [sys.executable, "-m", "p13n", "crm", "sync", "--config", str(cfg), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["profiles"] == 23
    plaintexts = [p["email"].encode() for p in PROFILES] + [b"@example.com"]
    for path in data.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert not [p for p in plaintexts if p in blob], f"plaintext PII in {path}"

    def stored_key_ids() -> set[str]:
        db = sqlite3.connect(data / "warehouse.sqlite")
        try:
            return {v.split(":")[1] for (v,) in db.execute("SELECT pii FROM users")}
        finally:
            db.close()

    assert stored_key_ids() == {"k1"}
    rotated = subprocess.run(
        [sys.executable, "-m", "p13n", "pii", "rekey", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env={**env, "P13N_HUB_PII_KEYS": f"{k2},{k1}"},
    )
    assert rotated.returncode == 0 and json.loads(rotated.stdout)["reencrypted"] == 23, rotated.stderr
    assert stored_key_ids() == {"k2"}
    # the old key can go: the new one alone reads everything (the access export decrypts)
    storage = SqliteStore(data)
    try:
        only_k2 = PiiCipher([("k2", base64.b64decode(k2[3:]))])
        doc = storage.export_subject(storage.resolve_subject("c3", b"k"), only_k2)
        assert doc["users"][0]["pii"] == {"email": "user3@example.com"} and doc["users"][0]["attributes"] == {"tier": "gold"}
        only_k1 = PiiCipher([("k1", base64.b64decode(k1[3:]))])
        assert (
            "not in the key ring" in storage.export_subject(storage.resolve_subject("c3", b"k"), only_k1)["users"][0]["pii_error"]
        )
    finally:
        storage.close()
