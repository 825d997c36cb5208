"""Admin API tokens and roles (RBAC), checked on every endpoint but ``/v1/healthz``.

Tokens live in a JSON file (``P13N_HUB_TOKENS_FILE``) that holds each token's name,
role and SHA-256, never the token itself; ``p13n tokens create`` adds one and prints it
once. The file is re-read when it changes, so revoking a token needs no restart.

Roles are permission sets (docs/PRIVACY.md has the matrix):

* ``viewer`` — fleet and ingest status, metrics;
* ``analyst`` — viewer + aggregated marts;
* ``operator`` — viewer + server-side events, bundle activation, edges, retention runs;
* ``privacy_officer`` — viewer + subject access and erasure, erasure status, audit log;
* ``admin`` — everything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.secret_files import write_private

log = logging.getLogger(__name__)

ROLES = ("viewer", "analyst", "operator", "privacy_officer", "admin")
TOKEN_PREFIX = "p13n_"

_STATUS = frozenset(ROLES)
PERMISSIONS: dict[str, frozenset[str]] = {
    "status.read": _STATUS,
    "marts.read": frozenset({"analyst", "admin"}),
    "events.write": frozenset({"operator", "admin"}),
    "bundles.activate": frozenset({"operator", "admin"}),
    "bundles.download": frozenset({"operator", "admin"}),
    "edges.manage": frozenset({"operator", "admin"}),
    "retention.run": frozenset({"operator", "admin"}),
    "subjects.read": frozenset({"privacy_officer", "admin"}),
    "subjects.erase": frozenset({"privacy_officer", "admin"}),
    "erasures.read": frozenset({"privacy_officer", "admin"}),
    "audit.read": frozenset({"privacy_officer", "admin"}),
    "training.read": frozenset({"analyst", "operator", "admin"}),
    "experiments.read": frozenset({"analyst", "operator", "admin"}),
    "training.run": frozenset({"operator", "admin"}),
    # the console's data page (dead letters' redacted samples, tiers) and replaying them
    "data.read": frozenset({"analyst", "operator", "admin"}),
    "deadletters.replay": frozenset({"operator", "admin"}),
}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(path: Path, name: str, role: str) -> str:
    """Add a token for ``name`` with ``role`` to the file; returns the token (shown once)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not name or not all(c.isalnum() or c in "-_.@" for c in name):
        raise ValueError("a token name uses letters, digits and - _ . @")
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"tokens": []}
    if any(t["name"] == name for t in doc["tokens"]):
        raise ValueError(f"a token named {name!r} exists; revoke it first")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    doc["tokens"].append(
        {"name": name, "role": role, "sha256": token_digest(token), "created": datetime.now(UTC).isoformat(timespec="seconds")}
    )
    write_private(path, json.dumps(doc, indent=1) + "\n")
    return token


def revoke_token(path: Path, name: str) -> bool:
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"tokens": []}
    kept = [t for t in doc["tokens"] if t["name"] != name]
    if len(kept) == len(doc["tokens"]):
        return False
    doc["tokens"] = kept
    write_private(path, json.dumps(doc, indent=1) + "\n")
    return True


class TokenStore:
    """Token digest → principal, from the tokens file (re-read when its mtime changes)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._checked = 0.0
        self._by_digest: dict[str, Principal] = {}
        self._reload()

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._by_digest, self._mtime = {}, -1.0
            return
        if mtime == self._mtime:
            return
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:  # a half-written edit: keep the tokens we had
            log.error("tokens file %s unreadable (%s); keeping the previous tokens", self.path, e)
            return
        table = {}
        for t in doc.get("tokens", []):
            if t.get("role") in ROLES and isinstance(t.get("sha256"), str):
                table[t["sha256"]] = Principal(str(t["name"]), str(t["role"]))
        self._by_digest, self._mtime = table, mtime

    def authenticate(self, authorization: str) -> Principal | None:
        """The principal for an ``Authorization: Bearer …`` value, else None."""
        if not authorization.lower().startswith("bearer "):
            return None
        offered = authorization[7:].strip()
        if not offered:
            return None
        return self.by_digest(token_digest(offered))

    def by_digest(self, digest: str) -> Principal | None:
        """The principal whose token has this SHA-256 (a console session's), else None."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked > 1.0:
                self._checked = now
                self._reload()
            table = self._by_digest
        for known, principal in table.items():  # constant time per comparison
            if hmac.compare_digest(known, digest):
                return principal
        return None
