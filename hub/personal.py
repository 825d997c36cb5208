"""Personal data inside events, sealed before anything is stored.

An ``identify`` event's ``traits`` (e-mail, name, phone … whatever the site sends) are
personal data by definition. Before an event reaches the lake or the warehouse its
``traits`` object is replaced by ``{"sealed": "pii1:…"}`` — AES-256-GCM with the PII key
ring (:mod:`hub.pii`), the event id as associated data — so no tier holds them in
plaintext. A dead letter (an event or message that could not be stored) may hold
personal data anywhere, so its whole payload is sealed the same way; the erasure tokens
of the ids it names are kept beside it, so an erasure still finds it. The access export
opens both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from hub.pii import PiiCipher, PiiKeyError

SEALED = "sealed"
#: Keys whose string values name a subject, wherever they appear in a dead payload.
_ID_KEYS = ("user_id", "anonymous_id")
#: Associated data of sealed dead-letter payloads.
DEAD_LETTER_AAD = "dead_letter"


def _traits_aad(event_id: str) -> str:
    return f"traits:{event_id}"


def seal_traits(event: dict[str, Any], cipher: PiiCipher) -> None:
    """Replace a non-empty ``traits`` object by its sealed form (in place)."""
    traits = event.get("traits")
    if isinstance(traits, dict) and traits and set(traits) != {SEALED}:
        event["traits"] = {SEALED: cipher.encrypt(orjson.dumps(traits), _traits_aad(str(event.get("event_id", ""))))}


def open_traits(props: dict[str, Any], event_id: str, cipher: PiiCipher) -> None:
    """The inverse of :func:`seal_traits` on an event's props (in place); a value that
    does not open is replaced by the reason."""
    traits = props.get("traits")
    if isinstance(traits, dict) and set(traits) == {SEALED}:
        try:
            props["traits"] = orjson.loads(cipher.decrypt(str(traits[SEALED]), _traits_aad(event_id)))
        except (PiiKeyError, orjson.JSONDecodeError) as e:
            props["traits"] = {"error": str(e)}


def subject_ids(value: Any, depth: int = 0) -> Iterator[str]:
    """The string values of ``user_id``/``anonymous_id`` keys anywhere in ``value``."""
    if depth > 8:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _ID_KEYS and isinstance(v, str) and v:
                yield v
            elif isinstance(v, dict | list):
                yield from subject_ids(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from subject_ids(v, depth + 1)


def seal_payload(body: str, cipher: PiiCipher) -> str:
    """A dead letter's payload, sealed."""
    return cipher.encrypt(body.encode("utf-8", "surrogatepass"), DEAD_LETTER_AAD)


def open_dead_letter(value: str, cipher: PiiCipher) -> str:
    """A dead letter's payload as text (unsealed rows, from before sealing, as they are)."""
    if not value.startswith("pii1:"):
        return value
    try:
        return cipher.decrypt(value, DEAD_LETTER_AAD).decode("utf-8", "replace")
    except PiiKeyError as e:
        return f"<cannot open: {e}>"


def resealed_traits(doc: dict[str, Any], event_id: str, cipher: PiiCipher) -> bool:
    """Re-encrypt ``doc``'s sealed traits with the ring's first key; False when they are
    on it already (or there are none)."""
    traits = doc.get("traits")
    if not (isinstance(traits, dict) and set(traits) == {SEALED}):
        return False
    value = str(traits[SEALED])
    if cipher.key_id(value) == cipher.active_id:
        return False
    aad = _traits_aad(event_id)
    doc["traits"] = {SEALED: cipher.encrypt(cipher.decrypt(value, aad), aad)}
    return True
