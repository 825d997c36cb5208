"""Fragments nginx may cache and share between visitors (SSI mode).

A ``variant`` slot whose conditions and fragments read only *keyable* inputs is a pure
function of them. Each visitor holds a signed **class cookie** (``p13n_cls``) carrying the
values of the visitor-side inputs the bundle's shareable slots read (device, consent,
session counts, cluster segment…), computed from the visitor's live context and
refreshed whenever their events arrive (``/_p13n/collect``). nginx keys its fragment
cache on the slot, its include parameters, that cookie and the request-side inputs it
sees itself (geo header, consent cookie, ``Sec-GPC``, ``DNT``); see
``edge_agent/nginx_config.py``.

Correctness by construction: on a miss the agent decides a shareable slot **from the
class and those request inputs alone**, never from the visitor's live context, and only
a class it signed for the live bundle whose consent matches the request's is used. So
whatever nginx stores under a key is what anyone presenting that key would get: no
visitor sees a fragment decided from another visitor's data. Anything else (no or a
stale class, QA forcing, a consent platform's strings, the holdout, a fallback outcome)
is decided live and answered ``no-store``.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from models.content import ContentBundle, Fragment, SlotDef

#: The class cookie's name.
CLASS_COOKIE = "p13n_cls"
#: Visitor-side attributes a class may carry (docs/SLOTS.md lists every attribute).
VISITOR_INPUTS = frozenset(
    {
        "device",
        "consent",
        "new_visitor",
        "segment",
        "views",
        "clicks",
        "carts",
        "purchases",
        "favourite_category",
        "favourite_views",
        "utm_source",
        "referrer_domain",
    }
)
#: Request-side attributes nginx puts in the cache key itself.
REQUEST_INPUTS = frozenset({"country"})
#: Derived at fill time from the others (rule segments), when their conditions allow.
DERIVED_INPUTS = frozenset({"segments"})
_LOGICAL = ("$or", "$and", "$nor")
#: Longest class cookie value accepted or issued.
MAX_CLASS_CHARS = 1024
_MAC_BYTES = 16


def condition_reads(condition: Any) -> set[str]:
    """Top-level attribute names a condition document reads."""
    out: set[str] = set()
    if not isinstance(condition, Mapping):
        return out
    for key, value in condition.items():
        if key in _LOGICAL and isinstance(value, list):
            for part in value:
                out |= condition_reads(part)
        elif key == "$not":
            out |= condition_reads(value)
        else:
            out.add(str(key).split(".", 1)[0])
    return out


def fragment_reads(fragment: Fragment | None) -> set[str]:
    """Attribute names a fragment's placeholders fill from."""
    if fragment is None:
        return set()
    return {fragment.pieces[i].split(".", 1)[0] for i in range(1, len(fragment.pieces), 2)}


def slot_reads(slot: SlotDef) -> set[str]:
    out = condition_reads(slot.when) | fragment_reads(slot.default)
    for variant in slot.variants:
        out |= condition_reads(variant.when) | fragment_reads(variant.fragment)
    return out


@dataclass(frozen=True)
class SharePlan:
    """What a bundle lets nginx share: the slots, and the visitor inputs a class carries."""

    version: int
    slots: frozenset[str]
    inputs: tuple[str, ...]


def plan(bundle: ContentBundle | None) -> SharePlan | None:
    """The bundle's shareable slots (None when it has none)."""
    if bundle is None:
        return None
    keyable = VISITOR_INPUTS | REQUEST_INPUTS
    segment_reads: set[str] = set()
    for condition in bundle.segment_conditions.values():
        segment_reads |= condition_reads(condition)
    segments_keyable = segment_reads <= keyable
    slots: set[str] = set()
    inputs: set[str] = {"consent"}
    for name, slot in bundle.slots.items():
        if slot.kind != "variant":
            continue
        reads = slot_reads(slot)
        if "segments" in reads:
            if not segments_keyable:
                continue
            reads = (reads - DERIVED_INPUTS) | segment_reads
        if reads <= keyable:
            slots.add(name)
            inputs |= reads & VISITOR_INPUTS
    if not slots:
        return None
    return SharePlan(bundle.version, frozenset(slots), tuple(sorted(inputs)))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ClassCodec:
    """Signs and reads class cookies for one bundle's plan (HMAC-SHA256 with the agent's
    key, truncated to 128 bits)."""

    def __init__(self, share: SharePlan, key: bytes) -> None:
        self.plan = share
        self._key = key

    def _mac(self, signed: bytes) -> str:
        return _b64(hmac.digest(self._key, signed, "sha256")[:_MAC_BYTES])

    def issue(self, attrs: Mapping[str, Any]) -> str | None:
        """The class of a visitor with ``attrs`` as of their next request (not new)."""
        values: list[Any] = []
        for name in self.plan.inputs:
            if name == "new_visitor":
                values.append(False)
            elif name == "consent":
                values.append(sorted(attrs.get("consent") or ()))
            else:
                values.append(attrs.get(name))
        payload = _b64(orjson.dumps(values))
        signed = f"{self.plan.version}.{payload}"
        text = f"{signed}.{self._mac(signed.encode('ascii'))}"
        return text if len(text) <= MAX_CLASS_CHARS else None

    def read(self, cookie: str) -> dict[str, Any] | None:
        """The attributes a class cookie carries; None unless this agent signed it for
        the live bundle."""
        if not cookie or len(cookie) > MAX_CLASS_CHARS:
            return None
        signed, _, mac = cookie.rpartition(".")
        version, _, payload = signed.partition(".")
        if version != str(self.plan.version) or not hmac.compare_digest(mac, self._mac(signed.encode("ascii", "replace"))):
            return None
        try:
            values = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(values, list) or len(values) != len(self.plan.inputs):
            return None
        return dict(zip(self.plan.inputs, values, strict=True))


def same_consent(carried: Any, current: Iterable[str]) -> bool:
    return isinstance(carried, list) and carried == sorted(current)
