"""The hub's bundle store: signed model bundles in the ``p13n_models`` object store.

A version number names one bundle for the life of the hub: an upload is verified with
the hub's public key first, stored under ``bundle-vN.tar``, and refused when that name
already holds *different* bytes (the same bytes again are a no-op). So every edge that
runs "v3" runs the same bytes; edges also compare the pointer's sha256, not only the
number. Making a version live (push, activate, rollback) is :mod:`hub.fleet`'s pointer.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from models import nats_layout as L
from models.bundle import load_public_key, open_bundle

_NAME = re.compile(r"^bundle-v(\d+)\.tar$")


class VersionTaken(Exception):
    """The version is stored with other bytes; ``next_version`` is the first free one."""

    def __init__(self, version: int, stored_sha256: str, next_version: int) -> None:
        self.version, self.stored_sha256, self.next_version = version, stored_sha256, next_version
        super().__init__(
            f"bundle v{version} is already stored with other contents (sha256 {stored_sha256[:12]}…); versions "
            f"are never reused: train again with --version {next_version}"
        )


def bundle_name(version: int) -> str:
    return f"bundle-v{version}.tar"


def _sha256_hex(digest: str | None) -> str:
    """The hex sha256 of an object-store digest (``SHA-256=<base64url>``)."""
    if not digest or "=" not in digest:
        return ""
    return base64.urlsafe_b64decode(digest.split("=", 1)[1] + "==").hex()


async def stored(js: JetStreamContext) -> list[dict[str, Any]]:
    """Every stored bundle (version, name, sha256, bytes), oldest version first."""
    store = await js.object_store(L.MODELS_BUCKET)
    try:
        infos = await store.list(ignore_deletes=True)
    except NotFoundError:
        return []
    out = []
    for info in infos:
        m = _NAME.match(info.name or "")
        if m and not info.deleted:
            out.append({"version": int(m.group(1)), "name": info.name, "sha256": _sha256_hex(info.digest), "bytes": info.size})
    return sorted(out, key=lambda b: b["version"])


async def fetch(js: JetStreamContext, version: int) -> bytes | None:
    """The stored bytes of ``bundle-v{version}.tar``, or None."""
    store = await js.object_store(L.MODELS_BUCKET)
    try:
        obj = await store.get(bundle_name(version))
    except (ObjectNotFoundError, NotFoundError):
        return None
    return bytes(obj.data) if obj.data is not None else None


async def upload(js: JetStreamContext, data: bytes, public_key_pem: bytes) -> dict[str, Any]:
    """Verify and store ``data``; ``{"version", "name", "sha256", "bytes", "stored"}``
    (``stored`` False when these exact bytes were already there). Raises
    :class:`models.bundle.BundleRejected` or :class:`VersionTaken`."""
    opened = open_bundle(data, load_public_key(public_key_pem))
    name = bundle_name(opened.version)
    digest = hashlib.sha256(data).hexdigest()
    store = await js.object_store(L.MODELS_BUCKET)
    entry = {"version": opened.version, "name": name, "sha256": digest, "bytes": len(data)}
    try:
        info = await store.get_info(name)
    except (ObjectNotFoundError, NotFoundError):
        info = None
    if info is not None:
        existing = _sha256_hex(info.digest)
        if existing == digest:
            return {**entry, "stored": False}
        versions = [b["version"] for b in await stored(js)]
        raise VersionTaken(opened.version, existing, max(versions, default=0) + 1)
    await store.put(name, data)
    return {**entry, "stored": True}
