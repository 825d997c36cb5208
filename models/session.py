"""Live session features: a visitor's accepted events folded into a small dict (sans-IO).

The edge updates the session the moment it accepts an event (not via the hub), so the
visitor's next page already reflects what they just did. A session is JSON-able:

``views, clicks, carts, purchases`` counts; ``category_views`` {category: n};
``recent`` [[item, weight], …] (newest last, at most :data:`MAX_RECENT`);
``bought`` [items]; ``last`` (epoch seconds); ``utm_source``, ``referrer_domain``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from models.weights import EVENT_WEIGHTS

#: Items remembered per session for recommendations.
MAX_RECENT = 20
MAX_BOUGHT = 50
#: Interaction weight per event type, as in training.
WEIGHTS = EVENT_WEIGHTS
_COUNTERS = {"page_view": "views", "click": "clicks", "add_to_cart": "carts", "purchase": "purchases"}


def new_session() -> dict[str, Any]:
    return {"views": 0, "clicks": 0, "carts": 0, "purchases": 0, "category_views": {}, "recent": [], "bought": [], "last": 0.0}


def page_item(path: str) -> str:
    """The catalog item a page shows (demo URL scheme ``/p/<id>``), else ``""``. The edge's
    sessions and the hub's training read product views the same way."""
    if path.startswith("/p/"):
        return path[3:].split("/", 1)[0]
    return ""


def url_item(url: str) -> str:
    """:func:`page_item` of a full URL (``""`` when it does not parse)."""
    try:
        return page_item(urlsplit(url).path)
    except ValueError:
        return ""


def event_items(event: Mapping[str, Any], page_item: Callable[[str], str]) -> list[str]:
    """Catalog items an event is about (a product page view counts for its item)."""
    kind = event.get("type")
    if kind == "purchase":
        return [str(line.get("item_id")) for line in event.get("items", []) if isinstance(line, dict) and line.get("item_id")]
    if isinstance(event.get("item_id"), str):
        return [event["item_id"]]
    if kind == "page_view" and isinstance(event.get("url"), str):
        item = page_item(event["url"])
        return [item] if item else []
    return []


def apply_event(
    session: dict[str, Any], event: Mapping[str, Any], category_of: Mapping[str, Any], page_item: Callable[[str], str], now: float
) -> None:
    """Fold one accepted event into ``session`` in place."""
    kind = str(event.get("type", ""))
    counter = _COUNTERS.get(kind)
    if counter:
        session[counter] = int(session.get(counter, 0)) + 1
    weight = WEIGHTS.get(kind)
    for item in event_items(event, page_item):
        if weight:
            recent = session.setdefault("recent", [])
            recent.append([item, weight])
            del recent[:-MAX_RECENT]
        category = category_of.get(item)
        if category and kind in ("page_view", "click"):
            cats = session.setdefault("category_views", {})
            cats[category] = int(cats.get(category, 0)) + 1
        if kind == "purchase":
            bought = session.setdefault("bought", [])
            if item not in bought:
                bought.append(item)
                del bought[:-MAX_BOUGHT]
    ctx = event.get("context") if isinstance(event.get("context"), Mapping) else {}
    for key in ("utm_source", "utm_campaign", "referrer_domain"):
        if isinstance(ctx, Mapping) and ctx.get(key):
            session[key] = ctx[key]
    session["last"] = now


def session_attributes(session: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes rules and models see: counts, category interest, favourite category."""
    cats: Mapping[str, int] = session.get("category_views") or {}
    favourite = max(cats, key=lambda c: (cats[c], c)) if cats else ""
    return {
        "views": int(session.get("views", 0)),
        "clicks": int(session.get("clicks", 0)),
        "carts": int(session.get("carts", 0)),
        "purchases": int(session.get("purchases", 0)),
        "category_views": dict(cats),
        "favourite_category": favourite,
        "favourite_views": int(cats.get(favourite, 0)) if favourite else 0,
        "recent_items": [i for i, _ in session.get("recent", [])],
        "bought_items": list(session.get("bought", [])),
        "utm_source": session.get("utm_source", ""),
        "referrer_domain": session.get("referrer_domain", ""),
    }
