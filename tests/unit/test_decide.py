"""The decision engine: variants, recommendations, escaping, deadlines, reasons."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from edge_agent.decide import decide_page
from models.content import BundleError, build_content, load_content

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_content(TEMPLATES)


def attrs(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"device": "desktop", "country": "", "hour": 12, "item": "", "new_visitor": False}
    base.update(kw)
    return base


def test_first_matching_variant_wins(doc: dict[str, Any]) -> None:
    bundle = load_content(doc)
    d = decide_page(bundle, attrs(device="mobile", country="DE"), [("hero", {})], 50)
    assert d.outcomes["hero"].detail == "mobile-app"
    d = decide_page(bundle, attrs(country="DE"), [("hero", {})], 50)
    assert d.outcomes["hero"].detail == "dach-winter"
    assert 'data-variant="dach-winter"' in (d.outcomes["hero"].html or "")


def test_default_when_nothing_matches(doc: dict[str, Any]) -> None:
    d = decide_page(load_content(doc), attrs(), [("hero", {})], 50)
    assert d.outcomes["hero"].reason == "default"


def test_no_default_and_no_match_falls_back(doc: dict[str, Any]) -> None:
    raw = copy.deepcopy(doc)
    del raw["slots"]["hero"]["default"]
    d = decide_page(load_content(raw), attrs(), [("hero", {})], 50)
    assert d.outcomes["hero"].html is None and d.outcomes["hero"].reason == "no_match"


def test_unknown_slot_and_missing_bundle_fall_back(doc: dict[str, Any]) -> None:
    d = decide_page(load_content(doc), attrs(), [("nope", {})], 50)
    assert d.outcomes["nope"].reason == "unknown_slot"
    d = decide_page(None, attrs(), [("hero", {})], 50)
    assert d.outcomes["hero"].reason == "no_bundle"


def test_deadline_turns_slots_into_fallbacks(doc: dict[str, Any]) -> None:
    d = decide_page(load_content(doc), attrs(), [("hero", {}), ("offer", {}), ("recs", {})], 0)
    assert {o.reason for o in d.outcomes.values()} == {"deadline"}
    assert d.fills() == {}


def test_recommendations_exclude_current_item_and_cap_categories(doc: dict[str, Any]) -> None:
    bundle = load_content(doc)
    top = bundle.popular[0]
    d = decide_page(bundle, attrs(item=top), [("recs", {"count": "6"})], 50)
    html = d.outcomes["recs"].html or ""
    assert f'data-p13n-item="{top}"' not in html
    ids = [part.split('"')[0] for part in html.split('data-p13n-item="')[1:]]
    assert len(ids) == 6
    cats = [bundle.items[i]["category"] for i in ids]
    assert max(cats.count(c) for c in set(cats)) <= 2


def test_catalog_data_is_html_escaped(doc: dict[str, Any]) -> None:
    raw = copy.deepcopy(doc)
    raw["catalog"] = [{"id": "x1", "title": '<script>alert(1)</script>"', "url": '" onmouseover="alert(2)', "popularity": 5}]
    d = decide_page(load_content(raw), attrs(), [("recs", {})], 50)
    html = d.outcomes["recs"].html or ""
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="&quot; onmouseover=&quot;alert(2)"' in html


def test_bad_bundles_are_rejected_with_a_location(doc: dict[str, Any]) -> None:
    raw = copy.deepcopy(doc)
    raw["slots"]["hero"]["variants"][0]["fragment"] = "missing"
    with pytest.raises(BundleError, match=r"slots\.hero\.variants\[0\]"):
        load_content(raw)
    raw = copy.deepcopy(doc)
    raw["slots"]["recs"]["count"] = 0
    with pytest.raises(BundleError, match="count"):
        load_content(raw)
    with pytest.raises(BundleError, match="format"):
        load_content({"format": "other"})


def test_page_contexts_expire_and_stay_bounded() -> None:
    from edge_agent.pages import PageContext, PageContexts

    contexts = PageContexts(ttl_s=1.0, max_entries=3)
    for i in range(5):
        contexts.put(f"r{i}", PageContext({}, frozenset(), "", False), now=100.0 + i * 0.1)
    assert len(contexts) == 3 and contexts.get("r0", now=100.5) is None and contexts.get("r4", now=100.5) is not None
    contexts.put("late", PageContext({}, frozenset(), "", False), now=102.0)
    assert len(contexts) == 1  # everything older than the TTL was dropped on insert
    assert contexts.get("late", now=103.5) is None


def test_rule_segments_are_computed_once_per_page_and_usable_in_slots(doc: dict[str, Any]) -> None:
    from edge_agent.pages import PageContext, decide_slots

    raw = copy.deepcopy(doc)
    raw["segments"]["big-spender"] = {"purchases": {"$gte": 3}}
    raw["slots"]["offer"]["variants"].insert(
        0, {"id": "vip", "when": {"segments": {"$in": ["big-spender"]}}, "fragment": "offer-default"}
    )
    bundle = load_content(raw)
    assert bundle.rule_segments(attrs(device="mobile", country="AT", purchases=5)) == ["dach", "mobile-shopper", "big-spender"]
    ctx = PageContext(attrs(purchases=4, country="CH"), frozenset(), "", False)
    decision = decide_slots(ctx, bundle, [("offer", {})], 50)
    assert ctx.attrs["segments"] == ["dach", "big-spender"]
    assert decision.outcomes["offer"].detail == "vip"
    with pytest.raises(BundleError, match="segments"):
        load_content({**raw, "segments": {"ok": "not a condition"}})


def reference_popular_fill(bundle: Any, exclude: set[str], count: int, cap: int) -> list[str]:
    """The plain definition: walk the whole popularity order, skipping full categories."""
    chosen: list[str] = []
    per_cat: dict[str, int] = {}
    for item_id in bundle.popular:
        if item_id in exclude:
            continue
        cat = str(bundle.items[item_id].get("category", ""))
        if per_cat.get(cat, 0) >= cap:
            continue
        per_cat[cat] = per_cat.get(cat, 0) + 1
        chosen.append(item_id)
        if len(chosen) == count:
            break
    return chosen


def test_popularity_fallback_skips_full_categories_without_walking_them(doc: dict[str, Any]) -> None:
    """Thousands of popular items in one category: the capped fallback takes the same
    items as walking the whole list would, in rank order, but jumps to the categories
    that still have room."""
    raw = copy.deepcopy(doc)
    shoes = [{"id": f"s{i:05d}", "title": f"Shoe {i}", "category": "shoes", "popularity": 100_000 - i} for i in range(5000)]
    rest = [
        {"id": f"{c[0]}{i}", "title": f"{c} {i}", "category": c, "popularity": 10 - i} for c in ("bags", "hats") for i in range(3)
    ]
    raw["catalog"] = shoes + rest
    bundle = load_content(raw)
    cap = bundle.slots["recs"].max_per_category
    assert cap
    for exclude_item, count in (("", 4), ("s00000", 6), ("b0", 5)):
        d = decide_page(bundle, attrs(item=exclude_item), [("recs", {"count": str(count)})], 50)
        html = d.outcomes["recs"].html or ""
        ids = [part.split('"')[0] for part in html.split('data-p13n-item="')[1:]]
        assert ids == reference_popular_fill(bundle, {exclude_item}, count, cap)
        assert sum(i.startswith("s") for i in ids) == cap


def test_popularity_fallback_is_remembered_per_exclusion_set_and_bounded(doc: dict[str, Any]) -> None:
    """Visitors without model candidates on the same page get the same fallback: it is
    computed once per (count, excluded items), and stays what the walk gives."""
    from edge_agent import decide

    bundle = load_content(doc)
    slot = bundle.slots["recs"]
    cap = slot.max_per_category
    first, second = bundle.popular[0], bundle.popular[1]
    for _ in range(2):
        for item in (first, second):
            d = decide_page(bundle, attrs(item=item), [("recs", {"count": "5"})], 50)
            html = d.outcomes["recs"].html or ""
            ids = [part.split('"')[0] for part in html.split('data-p13n-item="')[1:]]
            assert ids == reference_popular_fill(bundle, {item}, 5, cap)
            assert d.outcomes["recs"].detail == "popular"
    assert len(slot.popular_memo) == 2
    # a bought item changes the exclusions, so it is its own entry
    d = decide_page(bundle, attrs(item=first, bought_items=[second]), [("recs", {"count": "5"})], 50)
    assert f'data-p13n-item="{second}"' not in (d.outcomes["recs"].html or "")
    assert len(slot.popular_memo) == 3
    for i in range(decide.POPULAR_MEMO_ENTRIES + 10):
        slot.popular_memo[(i, frozenset())] = ""
        if len(slot.popular_memo) > decide.POPULAR_MEMO_ENTRIES:
            slot.popular_memo.popitem(last=False)
    decide_page(bundle, attrs(item=first), [("recs", {"count": "3"})], 50)
    assert len(slot.popular_memo) == decide.POPULAR_MEMO_ENTRIES


def test_the_personalization_holdout_sees_every_fallback_and_records_its_arm(doc: dict[str, Any]) -> None:
    from edge_agent.decide import holdout_exposure
    from edge_agent.pages import PageContext, decide_slots

    raw = copy.deepcopy(doc)
    raw["holdout"] = {"share": 0.5, "seed": "site-holdout"}
    bundle = load_content(raw)
    visitors = [f"visitor-{n:04d}" for n in range(200)]
    held = [v for v in visitors if bundle.holdout.holds(v)]
    shown = [v for v in visitors if not bundle.holdout.holds(v)]
    assert 70 < len(held) < 130
    slots = [("hero", {}), ("banner", {}), ("recs", {})]
    d = decide_page(bundle, attrs(country="DE"), slots, 50, visitor_id=held[0])
    assert {(o.html, o.reason, o.detail) for o in d.outcomes.values()} == {(None, "holdout", "personalization")}
    d = decide_page(bundle, attrs(country="DE"), slots, 50, visitor_id=shown[0])
    assert d.outcomes["hero"].detail == "dach-winter" and d.outcomes["recs"].reason == "recommend"
    assert holdout_exposure(bundle, held[0]) == {"type": "exposure", "experiment": "site-holdout", "variant": "holdout"}
    assert holdout_exposure(bundle, shown[0])["variant"] == "personalized"  # type: ignore[index]
    assert holdout_exposure(bundle, "") is None and holdout_exposure(load_content(doc), shown[0]) is None
    # one arm exposure per page, however many requests decide its slots (SSI includes)
    ctx = PageContext(attrs=attrs(), consent=frozenset({"analytics"}), visitor_id=shown[0], new_visitor=False)
    for name in ("hero", "banner", "recs"):
        decide_slots(ctx, bundle, [(name, {})], 50)
    arms = [e for e in ctx.exposures if e["experiment"] == "site-holdout"]
    assert arms == [{"type": "exposure", "experiment": "site-holdout", "variant": "personalized"}]


def test_forced_variations_show_what_qa_asks_and_record_no_exposure(doc: dict[str, Any]) -> None:
    from edge_agent.pages import build_context, forced_variations

    bundle = load_content(doc)
    exposures: list[dict[str, Any]] = []
    d = decide_page(bundle, attrs(), [("banner", {})], 50, visitor_id="v-1", exposures=exposures, forced={"banner": "bold"})
    assert d.outcomes["banner"].reason == "forced" and 'data-variant="bold"' in (d.outcomes["banner"].html or "")
    assert exposures == []
    d = decide_page(bundle, attrs(), [("banner", {})], 50, visitor_id="v-1", exposures=exposures, forced={"banner": "nope"})
    assert d.outcomes["banner"].reason in ("experiment", "holdout") and len(exposures) == 1  # unknown id: as usual
    assert forced_variations("banner:calm,bad entry,x:y", "p13n_force=banner:bold&other=1") == {"banner": "bold", "x": "y"}
    assert forced_variations("", "p13n_force=" + ",".join(f"s{n}:v" for n in range(20))) == {f"s{n}": "v" for n in range(8)}
    headers = {"cookie": "p13n_force=banner:bold; p13n_consent=analytics"}
    kwargs: dict[str, Any] = {"geo_header": "x-geo-country", "cookie_name": "p13n_id", "default_consent": ("necessary",)}
    assert build_context(headers, "/", page_query="", **kwargs).forced == {}  # off unless the setting allows it
    assert build_context(headers, "/", page_query="", allow_forcing=True, **kwargs).forced == {"banner": "bold"}
