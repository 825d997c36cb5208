"""The decision engine: bundle + attributes → what each slot of a page shows (sans-IO).

One call decides every slot of a page. Each slot's outcome carries a reason code, so
fallbacks are counted and explained. A deadline bounds the work: slots not decided in
time render their fallback with reason ``deadline``. No exception escapes: a failing
slot falls back with reason ``error``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.bandit import BanditWeights, choose
from models.bundle_runtime import BundleModels
from models.content import ContentBundle, SlotDef
from models.experiments import EXCLUDED, HOLDOUT, assign

#: The arm of visitors outside the personalization holdout, in its exposures.
PERSONALIZED = "personalized"

log = logging.getLogger(__name__)

#: Reason codes a slot can end with (metrics label values; keep the set closed).
#: Popularity-fallback bodies remembered per recommend slot (one per product page, say).
POPULAR_MEMO_ENTRIES = 1024  # ~1 KB each

FALLBACK_REASONS = (
    "no_bundle",
    "unknown_slot",
    "no_match",
    "deadline",
    "error",
    "empty",
    "holdout",
    "no_visitor",
    "overload",
)


@dataclass(frozen=True, slots=True)
class SlotOutcome:
    """``html`` is None when the slot renders its fallback; ``reason`` says why."""

    html: str | None
    reason: str
    detail: str = ""


@dataclass(slots=True)
class PageDecision:
    outcomes: dict[str, SlotOutcome] = field(default_factory=dict)
    bundle_version: int = -1
    elapsed_us: float = 0.0

    def fills(self) -> dict[str, str]:
        return {name: o.html for name, o in self.outcomes.items() if o.html is not None}

    def explain(self) -> str:
        """Compact text for the debug header."""
        parts = [f"{n}={o.reason}" + (f":{o.detail}" if o.detail else "") for n, o in self.outcomes.items()]
        return f"bundle={self.bundle_version}; us={self.elapsed_us:.0f}; " + "; ".join(parts)


def _variant(slot: SlotDef, attrs: Mapping[str, Any]) -> SlotOutcome:
    for v in slot.variants:
        if v.test is None or v.test(attrs):
            return SlotOutcome(v.fragment.render(attrs), "variant", v.id)
    if slot.default is not None:
        return SlotOutcome(slot.default.render(attrs), "default")
    return SlotOutcome(None, "no_match")


def _recommend(
    slot: SlotDef,
    bundle: ContentBundle,
    attrs: Mapping[str, Any],
    overrides: Mapping[str, str],
    models: BundleModels | None,
    session: Mapping[str, Any] | None,
) -> SlotOutcome:
    if slot.test is not None and not slot.test(attrs):
        return SlotOutcome(None, "no_match")
    assert slot.item is not None
    count = slot.count
    raw_count = overrides.get("count", "")
    if raw_count.isdigit():
        count = max(1, min(int(raw_count), 50))
    exclude = {attrs.get("item", ""), *attrs.get("bought_items", ())}
    source = "popular"
    candidates: list[str] = []
    if models is not None and session and session.get("recent"):
        if slot.model in models.vector_models:
            candidates = models.recommend_next([i for i, _ in session["recent"]], sorted(exclude), slot.model)
            if candidates:
                source = slot.model
        if not candidates:
            candidates = models.recommend([(i, float(w)) for i, w in session["recent"]], sorted(exclude))
            if candidates:
                source = models.session_model
    elif models is not None and isinstance(attrs.get("profile"), Mapping) and attrs["profile"].get("factors"):
        candidates = models.recommend_for(attrs["profile"]["factors"], sorted(exclude))  # a known user, no session yet
        if candidates:
            source = "als-profile"
    memo_key = (count, frozenset(exclude)) if not candidates else None
    if memo_key is not None:  # the popularity fallback alone: the same body for the same exclusions
        body = slot.popular_memo.get(memo_key)
        if body is not None:
            slot.popular_memo.move_to_end(memo_key)
            return SlotOutcome(body, "recommend", source)
    per_cat: dict[str, int] = {}
    chosen: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    cap = slot.max_per_category

    def take(item_id: str) -> None:
        seen.add(item_id)
        item = bundle.items[item_id]
        if cap:
            cat = str(item.get("category", ""))
            if per_cat.get(cat, 0) >= cap:
                return
            per_cat[cat] = per_cat.get(cat, 0) + 1
        chosen.append(item)

    for item_id in candidates:
        if len(chosen) >= count:
            break
        if item_id not in exclude and item_id not in seen and item_id in bundle.items:
            take(item_id)
    if len(chosen) < count:
        _fill_from_popular(bundle, count, cap, exclude, seen, per_cat, chosen, take)
    if not chosen:
        return SlotOutcome(None, "empty")
    body = "".join(slot.cards[item["id"]] for item in chosen)
    if slot.wrapper is not None:
        body = slot.wrapper.render({}).replace("<!--items-->", body)
    if memo_key is not None:
        memo = slot.popular_memo
        memo[memo_key] = body
        if len(memo) > POPULAR_MEMO_ENTRIES:
            memo.popitem(last=False)
    return SlotOutcome(body, "recommend", source)


def _fill_from_popular(
    bundle: ContentBundle,
    count: int,
    cap: int,
    exclude: set[str],
    seen: set[str],
    per_cat: dict[str, int],
    chosen: list[Mapping[str, Any]],
    take: Callable[[str], None],
) -> None:
    """The popularity fallback. With a per-category cap it merges the categories that
    still have room by overall rank, so a full category is never walked item by item
    (a catalog whose most popular thousands share one category cost milliseconds)."""
    if not cap or not bundle.popular_by_category:
        for item_id in bundle.popular:
            if len(chosen) >= count:
                return
            if item_id not in exclude and item_id not in seen:
                take(item_id)
        return
    rank = bundle.popularity_rank
    cursors = {cat: 0 for cat, ids in bundle.popular_by_category.items() if per_cat.get(cat, 0) < cap and ids}
    while len(chosen) < count and cursors:
        cat = min(cursors, key=lambda c: rank[bundle.popular_by_category[c][cursors[c]]])
        ids = bundle.popular_by_category[cat]
        item_id = ids[cursors[cat]]
        cursors[cat] += 1
        if cursors[cat] >= len(ids):
            del cursors[cat]
        if item_id in exclude or item_id in seen:
            continue
        take(item_id)
        if per_cat.get(cat, 0) >= cap:
            cursors.pop(cat, None)


def _experiment(
    slot: SlotDef,
    attrs: Mapping[str, Any],
    visitor_id: str,
    exposures: list[dict[str, Any]] | None,
    forced: str | None = None,
) -> SlotOutcome:
    if forced is not None:  # QA: shown as asked, never counted as an exposure
        for variant in slot.variants:
            if variant.id == forced:
                return SlotOutcome(variant.fragment.render(attrs), "forced", f"{slot.seed}:{variant.id}")
    if not visitor_id:
        return SlotOutcome(None, "no_visitor")  # no consent to identify: nobody to keep in a bucket
    choice = assign(slot.seed, visitor_id, slot.weights, slot.coverage, slot.holdout, slot.namespace, slot.hash_version)
    if choice == EXCLUDED:
        outcome = (
            SlotOutcome(slot.default.render(attrs), "default", "excluded")
            if slot.default
            else SlotOutcome(None, "no_match", "excluded")
        )
        return outcome
    variant_id = HOLDOUT if choice == HOLDOUT else slot.variants[int(choice)].id
    if exposures is not None:
        exposures.append({"type": "exposure", "experiment": slot.seed, "variant": variant_id, "slot": slot.name})
    if choice == HOLDOUT:
        return SlotOutcome(None, "holdout", slot.seed)
    return SlotOutcome(slot.variants[int(choice)].fragment.render(attrs), "experiment", f"{slot.seed}:{variant_id}")


def _bandit(
    slot: SlotDef,
    attrs: Mapping[str, Any],
    visitor_id: str,
    exposures: list[dict[str, Any]] | None,
    forced: str | None,
    weights: BanditWeights | None,
) -> SlotOutcome:
    if forced is not None:
        for variant in slot.variants:
            if variant.id == forced:
                return SlotOutcome(variant.fragment.render(attrs), "forced", f"{slot.seed}:{variant.id}")
    if not visitor_id:
        return SlotOutcome(None, "no_visitor")
    variant = slot.variants[choose(slot.seed, visitor_id, [v.id for v in slot.variants], weights)]
    if exposures is not None:
        exposures.append({"type": "exposure", "experiment": slot.seed, "variant": variant.id, "slot": slot.name})
    return SlotOutcome(variant.fragment.render(attrs), "bandit", f"{slot.seed}:{variant.id}")


def slot_kind(bundle: ContentBundle | None, name: str) -> str:
    """The kind of a slot of the bundle (``variant``, ``experiment``, ``bandit``,
    ``recommend``; ``unknown`` when the bundle has no such slot), for metrics."""
    slot = bundle.slots.get(name) if bundle is not None else None
    return slot.kind if slot is not None else "unknown"


def holdout_exposure(bundle: ContentBundle | None, visitor_id: str, held: bool | None = None) -> dict[str, Any] | None:
    """The exposure naming the visitor's arm of the personalization holdout (``holdout``
    or ``personalized``; ``held`` when already known), when the bundle has one; recorded
    once per page."""
    if bundle is None or bundle.holdout.share <= 0 or not visitor_id:
        return None
    arm = HOLDOUT if (bundle.holdout.holds(visitor_id) if held is None else held) else PERSONALIZED
    return {"type": "exposure", "experiment": bundle.holdout.seed, "variant": arm}


def decide_page(
    bundle: ContentBundle | None,
    attrs: Mapping[str, Any],
    slots: Iterable[tuple[str, Mapping[str, str]]],
    deadline_ms: float,
    models: BundleModels | None = None,
    visitor_id: str = "",
    exposures: list[dict[str, Any]] | None = None,
    session: Mapping[str, Any] | None = None,
    forced: Mapping[str, str] | None = None,
    bandits: Mapping[str, BanditWeights] | None = None,
    held: bool | None = None,
) -> PageDecision:
    """Decide every ``(slot name, tag attributes)`` of a page within ``deadline_ms``.

    A visitor in the bundle's personalization holdout gets every slot's fallback (reason
    ``holdout``, detail ``personalization``) unless QA forces a variation (the page
    records the visitor's arm: :func:`holdout_exposure`). ``held``: whether the visitor is
    in it, when the page already knows (None: found here)."""
    start = time.perf_counter()
    limit = start + deadline_ms / 1000.0
    decision = PageDecision(bundle_version=bundle.version if bundle else -1)
    if held is None:
        held = bundle is not None and bundle.holdout.holds(visitor_id)
    for name, overrides in slots:
        if name in decision.outcomes:
            continue
        if bundle is None:
            decision.outcomes[name] = SlotOutcome(None, "no_bundle")
            continue
        if time.perf_counter() > limit:
            decision.outcomes[name] = SlotOutcome(None, "deadline")
            continue
        slot = bundle.slots.get(name)
        if slot is None:
            decision.outcomes[name] = SlotOutcome(None, "unknown_slot")
            continue
        force = forced.get(name) if forced else None
        if held and force is None:
            decision.outcomes[name] = SlotOutcome(None, "holdout", "personalization")
            continue
        try:
            if slot.kind == "variant":
                outcome = _variant(slot, attrs)
            elif slot.kind == "experiment":
                outcome = _experiment(slot, attrs, visitor_id, exposures, force)
            elif slot.kind == "bandit":
                outcome = _bandit(slot, attrs, visitor_id, exposures, force, bandits.get(slot.seed) if bandits else None)
            else:
                outcome = _recommend(slot, bundle, attrs, overrides, models, session)
        except Exception:  # a broken definition must not break the page
            log.warning("slot %s failed", name, exc_info=True)
            outcome = SlotOutcome(None, "error")
        if time.perf_counter() > limit:
            outcome = SlotOutcome(None, "deadline")
        decision.outcomes[name] = outcome
    decision.elapsed_us = (time.perf_counter() - start) * 1e6
    return decision
