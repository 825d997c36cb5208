"""Erasure tokens and the erasure order/acknowledgement documents (sans-IO).

An erased subject is named everywhere after the erasure by its **token**: a keyed
HMAC-SHA256 of the identifier under the deployment secret, in a separate domain from
pseudonyms (``t1_`` + 40 hex). A token lets the hub and every edge recognise the
subject again (suppression of late events, applying an order to local data) while the
stored record holds neither the raw id nor the pseudonym: nothing in the suppression
list, the erasure record or the NATS order can be read back into an identifier
without the key and a guess.

An order names tokens only, never an identifier, so the ``P13N_ERASURE`` stream can keep
it for edges that are offline without keeping personal data.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "t1_"
_DOMAIN = b"p13n-erasure\x00"
ORDER_KIND = "erasure.order/1"
ACK_KIND = "erasure.ack/1"


def erasure_token(identifier: str, key: bytes) -> str:
    """The subject's token for ``identifier`` (a pseudonym or an anonymous visitor id)."""
    if not key:
        raise ValueError("a key is required")
    digest = hmac.new(key, _DOMAIN + identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + digest[:40]


class Tokenizer:
    """Memoised :func:`erasure_token` for hot loops (ids repeat within a batch)."""

    def __init__(self, key: bytes, max_entries: int = 100_000) -> None:
        self.key = key
        self.max_entries = max_entries
        self._memo: dict[str, str] = {}

    def __call__(self, identifier: str) -> str:
        token = self._memo.get(identifier)
        if token is None:
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            token = self._memo[identifier] = erasure_token(identifier, self.key)
        return token

    def any_in(self, identifiers: Iterable[Any], tokens: set[str] | frozenset[str]) -> bool:
        """True when one of the non-empty string ``identifiers`` has a token in ``tokens``."""
        if not tokens:
            return False
        return any(isinstance(i, str) and i and self(i) in tokens for i in identifiers)


@dataclass(frozen=True)
class ErasureOrder:
    request_id: str
    tokens: tuple[str, ...]
    issued_at: float

    def to_doc(self) -> dict[str, Any]:
        return {"kind": ORDER_KIND, "request_id": self.request_id, "tokens": list(self.tokens), "issued_at": self.issued_at}

    @classmethod
    def from_doc(cls, doc: Any) -> ErasureOrder:
        if not isinstance(doc, dict) or doc.get("kind") != ORDER_KIND:
            raise ValueError("not an erasure order")
        request_id, tokens = doc.get("request_id"), doc.get("tokens")
        if not isinstance(request_id, str) or not request_id or not isinstance(tokens, list):
            raise ValueError("an erasure order needs request_id and tokens")
        if not all(isinstance(t, str) and t.startswith(TOKEN_PREFIX) for t in tokens):
            raise ValueError("erasure order tokens must be t1_ tokens")
        return cls(request_id, tuple(tokens), float(doc.get("issued_at") or 0.0))


def ack_doc(request_id: str, edge_id: str, deleted: dict[str, int], applied_at: float) -> dict[str, Any]:
    return {"kind": ACK_KIND, "request_id": request_id, "edge_id": edge_id, "deleted": deleted, "applied_at": applied_at}
