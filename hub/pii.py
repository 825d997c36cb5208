"""Encryption at rest for PII columns: AES-256-GCM with a key ring.

A keyring is ``id:base64key[,id:base64key…]`` (from ``P13N_HUB_PII_KEYS`` or the file
named by ``P13N_HUB_PII_KEYS_FILE``); the **first** key encrypts, every key decrypts.
A value is stored as ``pii1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>``; the row's
primary key is the associated data, so a ciphertext copied onto another row does not
decrypt. Rotation (docs/PRIVACY.md): put the new key first, keep the old one after it,
run ``p13n pii rekey``, then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

PREFIX = "pii1"
KEY_BYTES = 32
NONCE_BYTES = 12


class PiiKeyError(ValueError):
    """The key ring is missing, malformed, or cannot decrypt a value."""


def new_key() -> str:
    """A fresh 256-bit key, base64 (for ``p13n keys pii``)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def parse_keyring(text: str) -> list[tuple[str, bytes]]:
    ring: list[tuple[str, bytes]] = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        kid, sep, b64 = part.partition(":")
        if not sep or not kid or not kid.isalnum():
            raise PiiKeyError("each PII key is id:base64 with an alphanumeric id")
        try:
            key = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise PiiKeyError(f"PII key {kid!r} is not base64") from e
        if len(key) != KEY_BYTES:
            raise PiiKeyError(f"PII key {kid!r} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
        ring.append((kid, key))
    if not ring:
        raise PiiKeyError("no PII key configured")
    if len({kid for kid, _ in ring}) != len(ring):
        raise PiiKeyError("PII key ids must be unique")
    return ring


class PiiCipher:
    def __init__(self, ring: list[tuple[str, bytes]]) -> None:
        #: The key ring itself (handed to ingest worker processes, which build their own).
        self.ring = list(ring)
        self.active_id = ring[0][0]
        self._active = AESGCM(ring[0][1])
        self._keys = {kid: AESGCM(key) for kid, key in ring}

    @classmethod
    def from_settings(cls, keys: str, keys_file: str, data_dir: Path) -> PiiCipher:
        """From the configured ring; without one, a development key kept under
        ``data_dir`` (logged loudly: a key beside the data protects nothing)."""
        if keys_file:
            return cls(parse_keyring(Path(keys_file).read_text(encoding="utf-8")))
        if keys:
            return cls(parse_keyring(keys))
        dev = data_dir / "pii-dev.key"
        if not dev.exists():
            dev.parent.mkdir(parents=True, exist_ok=True)
            dev.write_text(f"dev:{new_key()}\n", encoding="utf-8")
            dev.chmod(0o600)
        log.warning("no P13N_HUB_PII_KEYS configured: PII is encrypted with a development key stored beside the data")
        return cls(parse_keyring(dev.read_text(encoding="utf-8")))

    def encrypt(self, plaintext: bytes, aad: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._active.encrypt(nonce, plaintext, aad.encode())
        return f"{PREFIX}:{self.active_id}:{base64.b64encode(nonce + sealed).decode()}"

    def key_id(self, value: str) -> str:
        parts = value.split(":", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise PiiKeyError("not an encrypted PII value")
        return parts[1]

    def decrypt(self, value: str, aad: str) -> bytes:
        kid = self.key_id(value)
        aes = self._keys.get(kid)
        if aes is None:
            raise PiiKeyError(f"PII key {kid!r} is not in the key ring")
        raw = base64.b64decode(value.split(":", 2)[2])
        try:
            return aes.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode())
        except InvalidTag as e:
            raise PiiKeyError("PII value does not decrypt (tampered, or moved from another row)") from e
