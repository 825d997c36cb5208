"""Pseudonymous identifiers: keyed HMAC-SHA256 with a deployment secret.

Edges turn a known user's raw id into its pseudonym before anything is stored; the hub,
holding the same secret, maps an erasure request for a raw id to the same pseudonym.
Not a bare hash: without the key, a pseudonym cannot be confirmed by guessing ids.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "p1_"  # versioned, so a key rotation can coexist with old pseudonyms
#: The key hub and edges fall back to in demos and tests; ``p13n … serve`` refuses it
#: unless ``P13N_ALLOW_DEV_KEYS=1`` (docs/SECURITY.md).
DEV_PSEUDONYM_KEY = "p13n-development-key-change-me"


def pseudonym(raw_id: str, key: bytes) -> str:
    if not key:
        raise ValueError("a pseudonymization key is required")
    digest = hmac.new(key, raw_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:40]


def is_pseudonym(value: str) -> bool:
    return (
        value.startswith(PREFIX) and len(value) == len(PREFIX) + 40 and all(c in "0123456789abcdef" for c in value[len(PREFIX) :])
    )


_VISITOR_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def valid_visitor_id(value: str) -> bool:
    """The shape of a visitor cookie id (random, URL-safe, 16 to 64 characters)."""
    return 16 <= len(value) <= 64 and set(value) <= _VISITOR_ALPHABET
