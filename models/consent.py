"""Consent categories and how a request's signals resolve to them (sans-IO).

Categories: ``necessary`` (always), ``analytics``, ``personalization``, ``marketing``.
An explicit choice (the consent cookie) wins over the deployment default; the
browser signals ``Sec-GPC: 1`` and ``DNT: 1`` mean nothing beyond ``necessary``
whatever else is set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CATEGORIES = ("necessary", "analytics", "personalization", "marketing")
CONSENT_COOKIE = "p13n_consent"


def parse_choice(raw: str) -> frozenset[str] | None:
    """Parse a consent cookie value (``analytics.personalization``); None if absent/invalid."""
    if not raw:
        return None
    parts = {p.strip().lower() for p in raw.replace(",", ".").split(".") if p.strip()}
    if not parts <= set(CATEGORIES) | {"none"}:
        return None
    return frozenset((parts - {"none"}) | {"necessary"})


def resolve(headers: Mapping[str, str], cookies: Mapping[str, str], default: Iterable[str]) -> frozenset[str]:
    """Effective consent for one request (``headers`` keys lower-case)."""
    if headers.get("sec-gpc", "").strip() == "1" or headers.get("dnt", "").strip() == "1":
        return frozenset({"necessary"})
    choice = parse_choice(cookies.get(CONSENT_COOKIE, ""))
    if choice is not None:
        return choice
    return frozenset(set(default) | {"necessary"})


def may_identify(consent: frozenset[str]) -> bool:
    """A visitor cookie may be set only when something beyond ``necessary`` needs it."""
    return "personalization" in consent or "analytics" in consent
