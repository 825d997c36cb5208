"""Bandit slots: Thompson sampling weights, their floor, and a simulation with known
conversion rates (regret against an even split, the best arm's share)."""

from __future__ import annotations

import random

import pytest

from models.bandit import BanditWeights, choose, thompson


def test_weights_follow_the_evidence_and_keep_a_floor() -> None:
    w = thompson([10, 10, 60], [1000, 1000, 1000], min_share=0.05, seed=1)
    assert sum(w) == pytest.approx(1.0) and w[2] > 0.85 and min(w) >= 0.05
    even = thompson([0, 0], [0, 0], min_share=0.1, seed=2)
    assert even == pytest.approx([0.5, 0.5], abs=0.02)  # no data: a coin
    with pytest.raises(ValueError, match="more than"):
        thompson([0, 0, 0], [1, 1, 1], min_share=0.4)
    with pytest.raises(ValueError, match="between 0"):
        thompson([5], [3])


def test_visitors_keep_their_variant_within_a_period() -> None:
    weights = BanditWeights("b", {"x": 0.2, "y": 0.8}, period=3)
    first = [choose("b", f"v{n}", ["x", "y"], weights) for n in range(2000)]
    assert first == [choose("b", f"v{n}", ["x", "y"], weights) for n in range(2000)]
    assert abs(sum(first) / 2000 - 0.8) < 0.03
    assert set(choose("b", f"v{n}", ["x", "y"], None) for n in range(50)) == {0, 1}  # nothing shipped: even
    assert BanditWeights.from_json(weights.as_json()) == weights
    with pytest.raises(ValueError):
        BanditWeights.from_json({"weights": {"x": 2}})


def test_simulated_visitors_regret_under_half_an_even_split() -> None:
    rates = {"calm": 0.04, "bold": 0.05, "bright": 0.07}
    arms = list(rates)
    best = max(rates.values())
    rnd = random.Random(7)
    conversions = dict.fromkeys(arms, 0)
    exposed = dict.fromkeys(arms, 0)
    weights: BanditWeights | None = None
    regret = 0.0
    visitors = 100_000
    for period in range(100):  # the hub recomputes every 1,000 visitors
        for n in range(1000):
            arm = arms[choose("sim", f"visitor-{period}-{n}", arms, weights)]
            exposed[arm] += 1
            conversions[arm] += rnd.random() < rates[arm]
            regret += best - rates[arm]
        shares = thompson([conversions[a] for a in arms], [exposed[a] for a in arms], min_share=0.02, draws=5000, seed=period)
        weights = BanditWeights("sim", dict(zip(arms, shares, strict=True)), period + 1)
    even = visitors * (best - sum(rates.values()) / len(rates))
    print(f"bandit regret {regret:.0f} vs even split {even:.0f} ({regret / even:.0%}); final weights {weights}")
    assert regret <= 0.5 * even
    assert weights is not None and max(weights.weights, key=weights.weights.__getitem__) == "bright"
    assert exposed["bright"] == max(exposed.values())
