"""Experiment bucketing: GrowthBook's semantics (checked against its SDK on the same
inputs), ramping coverage never moves a visitor, weights hold over 100k ids, namespaces
never overlap, the site-wide holdout."""

from __future__ import annotations

from collections import Counter

import pytest
from growthbook.core import chooseVariation, getBucketRanges, inNamespace
from hypothesis import given, settings
from hypothesis import strategies as st

from models.content import BundleError, load_content
from models.experiments import EXCLUDED, HOLDOUT, GlobalHoldout, assign, bucket_ranges, choose_variation, in_namespace

IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=24)
UNIT = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(count=st.integers(1, 6), coverage=st.floats(-0.5, 1.5, allow_nan=False), equal=st.booleans(), data=st.data())
def test_bucket_ranges_are_growthbooks(count: int, coverage: float, equal: bool, data: st.DataObject) -> None:
    # GrowthBook takes weights that sum to 1 (else it falls back to equal weights)
    weights = None
    if not equal:
        raw = data.draw(st.lists(st.integers(1, 100), min_size=count, max_size=count))
        weights = [w / sum(raw) for w in raw]
    ours = bucket_ranges(count, coverage, weights)
    theirs = getBucketRanges(count, coverage, weights)
    assert len(ours) == len(theirs)
    for (a0, a1), (b0, b1) in zip(ours, theirs, strict=True):
        assert abs(a0 - b0) < 1e-12 and abs(a1 - b1) < 1e-12
    point = data.draw(st.floats(0.0, 0.9999, allow_nan=False))
    if all(abs(point - edge) > 1e-9 for r in ours for edge in r):  # not on a boundary's rounding
        assert choose_variation(point, ours) == chooseVariation(point, [tuple(r) for r in theirs])


@given(visitor=IDS, name=st.sampled_from(["checkout", "home", "ns-1"]), start=st.floats(0, 0.9), width=st.floats(0.01, 1))
def test_namespaces_are_growthbooks(visitor: str, name: str, start: float, width: float) -> None:
    end = min(1.0, start + width)
    assert in_namespace(visitor, (name, start, end)) == inNamespace(visitor, (name, start, end))


def test_relative_weights_are_normalised() -> None:
    # our slots take relative weights ("weight": 1, 1, 2); GrowthBook would ignore
    # weights not summing to 1 and split evenly: docs/SLOTS.md says so
    assert bucket_ranges(3, 1.0, [1, 1, 2]) == [(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]
    assert bucket_ranges(2, 0.5, [1, 3]) == [(0.0, 0.125), (0.25, 0.625)]


@settings(max_examples=60)
@given(
    low=st.floats(0.0, 1.0),
    high=st.floats(0.0, 1.0),
    weights=st.lists(st.integers(1, 10), min_size=1, max_size=5),
    seed=IDS,
)
def test_ramping_coverage_never_moves_a_visitor_between_variations(
    low: float, high: float, weights: list[int], seed: str
) -> None:
    low, high = sorted((low, high))
    for n in range(300):
        visitor = f"visitor-{n}"
        before = assign(seed, visitor, weights, coverage=low)
        after = assign(seed, visitor, weights, coverage=high)
        assert before == EXCLUDED or before == after  # only "excluded" → a variation


def test_weights_hold_within_one_percent_over_100k_ids() -> None:
    weights = [1, 2, 3, 4]
    counts = Counter(assign("exp-weights", f"id-{n}", weights) for n in range(100_000))
    for index, w in enumerate(weights):
        assert abs(counts[index] / 100_000 - w / 10) < 0.01, counts
    half = Counter(assign("exp-weights", f"id-{n}", weights, coverage=0.5) for n in range(100_000))
    assert abs(half[EXCLUDED] / 100_000 - 0.5) < 0.01


def test_namespaces_never_overlap() -> None:
    a = [assign("exp-a", f"id-{n}", [1, 1], namespace=("checkout", 0.0, 0.5)) for n in range(20_000)]
    b = [assign("exp-b", f"id-{n}", [1, 1], namespace=("checkout", 0.5, 1.0)) for n in range(20_000)]
    both = sum(x != EXCLUDED and y != EXCLUDED for x, y in zip(a, b, strict=True))
    either = sum(x != EXCLUDED or y != EXCLUDED for x, y in zip(a, b, strict=True))
    assert both == 0 and either == 20_000  # two halves of one namespace: everyone in exactly one
    in_a = sum(x != EXCLUDED for x in a) / 20_000
    assert abs(in_a - 0.5) < 0.02


def test_full_coverage_keeps_the_assignments_of_older_bundles() -> None:
    # before the GrowthBook ranges, a visitor's point was scaled by coverage; at full
    # coverage both agree, so running experiments keep their visitors
    def legacy(seed: str, visitor: str, weights: list[float]) -> int:
        from models.targeting import bucket_hash

        point = (bucket_hash(seed, visitor, 2) or 0.0) * sum(weights)
        cumulative = 0.0
        for index, w in enumerate(weights):
            cumulative += w
            if point < cumulative:
                return index
        return len(weights) - 1

    for n in range(5_000):
        assert assign("banner", f"v{n}", [1, 1, 2]) == legacy("banner", f"v{n}", [1, 1, 2])


def test_hash_version_one_and_the_per_experiment_holdout() -> None:
    v1 = [assign("exp", f"id-{n}", [1, 1], hash_version=1) for n in range(2_000)]
    v2 = [assign("exp", f"id-{n}", [1, 1], hash_version=2) for n in range(2_000)]
    assert v1 != v2 and set(v1) == {0, 1}
    held = Counter(assign("exp", f"id-{n}", [1, 1], holdout=0.2) for n in range(20_000))
    assert abs(held[HOLDOUT] / 20_000 - 0.2) < 0.01


def test_the_global_holdout_holds_its_share_and_only_visitors_with_an_id() -> None:
    holdout = GlobalHoldout(0.1, "site-holdout")
    share = sum(holdout.holds(f"id-{n}") for n in range(50_000)) / 50_000
    assert abs(share - 0.1) < 0.005
    assert not holdout.holds("") and not GlobalHoldout().holds("id-1")
    assert [holdout.holds(f"id-{n}") for n in range(100)] == [holdout.holds(f"id-{n}") for n in range(100)]


def _doc(**extra: object) -> dict[str, object]:
    slot = {"kind": "experiment", "variants": [{"id": "a", "fragment": "f"}, {"id": "b", "fragment": "f"}]}
    return {"format": "p13n-content/1", "version": 1, "fragments": {"f": "<b>x</b>"}, "slots": {"s": slot}, **extra}


def test_content_validates_namespaces_hash_versions_and_the_holdout() -> None:
    good = load_content(_doc(holdout={"share": 0.05}))
    assert good.holdout.share == 0.05 and good.slots["s"].hash_version == 2 and good.slots["s"].namespace is None
    doc = _doc()
    doc["slots"]["s"].update(namespace=["checkout", 0, 0.5], hash_version=1)  # type: ignore[index]
    slot = load_content(doc).slots["s"]
    assert slot.namespace == ("checkout", 0.0, 0.5) and slot.hash_version == 1
    for bad, where in (
        ({"namespace": ["checkout", 0.5, 0.5]}, "slots.s.namespace"),
        ({"namespace": "checkout"}, "slots.s.namespace"),
        ({"hash_version": 3}, "slots.s.hash_version"),
        ({"hash_version": True}, "slots.s.hash_version"),
    ):
        doc = _doc()
        doc["slots"]["s"].update(bad)  # type: ignore[index]
        with pytest.raises(BundleError) as e:
            load_content(doc)
        assert e.value.where == where
    for holdout, where in (
        ({"share": 0.9}, "holdout.share"),
        ({"share": 0.1, "extra": 1}, "holdout"),
        ({"seed": ""}, "holdout.seed"),
    ):
        with pytest.raises(BundleError) as e:
            load_content(_doc(holdout=holdout))
        assert e.value.where == where
