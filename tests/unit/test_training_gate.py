"""The learning loop's gate (hub/training/cycle.py, gate.py) with real bundles over the
real SQLite store: a first run ships, a better challenger passes, a worse one is
rejected and nothing is written, ``force`` ships it anyway, and too little data skips."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from hub.storage import HubStore
from hub.training.cycle import CycleConfig, CycleResult, run_cycle
from hub.training.from_hub import HubDataRules
from hub.training.gate import decide
from models.bundle import generate_key
from tests.conftest import StoreFactory
from tests.unit.test_train_from_hub import NOW, ev, grant, store_with

GROUPS, PER_GROUP, VISITORS = 4, 10, 160
RULES = HubDataRules(window_days=60, half_life_days=30, min_interactions=50, min_subjects=20, min_items=10)


def item(group: int, j: int) -> str:
    return f"item{(group * PER_GROUP + j) * 7 % (GROUPS * PER_GROUP):02d}"  # ids say nothing of the group


def events(taste_before: bool, seed: int) -> list[tuple[dict[str, Any], str]]:
    """Visitors of four taste groups; history (days 2–30) in their taste or random,
    then, in the hour after the tests' clock, new items of their taste."""
    rnd = random.Random(seed)
    out = []
    for n in range(VISITORS):
        v, g = f"visitorGate{n:012d}", n % GROUPS
        out.append(grant(v, 40))
        liked = rnd.sample(range(PER_GROUP), PER_GROUP)
        for j in liked[:6]:
            target = item(g, j) if taste_before else item(rnd.randrange(GROUPS), rnd.randrange(PER_GROUP))
            out.append(ev("click", v, rnd.uniform(2, 30), item_id=target))
        for j in liked[6:8]:
            out.append(ev("click", v, -rnd.uniform(0.1, 0.9) / 24, item_id=item(g, j)))  # after the live bundle
    return out


def config(tmp_path: Path, **extra: Any) -> CycleConfig:
    keys = tmp_path / "keys"
    if not keys.exists():
        keys.mkdir()
        private, _ = generate_key()
        (keys / "signing.key").write_bytes(private)
    return CycleConfig(
        **{
            "out_dir": tmp_path / "out",
            "key_file": keys / "signing.key",
            "rules": RULES,
            "tune": False,
            "gate_min_users": 20,
            **extra,
        }
    )


def cycle(store: HubStore, cfg: CycleConfig, champion: bytes | None) -> CycleResult:
    """A run an hour after the tests' clock: the last hour's clicks came after any
    bundle these tests make, so they are a holdout the live bundle has not seen."""
    return run_cycle(store, cfg, champion, NOW + timedelta(hours=1))


def test_a_first_run_ships_and_a_better_challenger_passes(tmp_path: Path, new_store: StoreFactory) -> None:
    noise = store_with(tmp_path / "noise", *events(taste_before=False, seed=1), new=new_store)
    first = cycle(noise, config(tmp_path, version=1), None)
    assert first.outcome == "passed" and first.reason == "no live bundle to compare with"
    assert Path(first.bundle_path).is_file() and first.version == 1
    assert set(first.timings) == {"read", "split", "score", "train"}  # no challenger: nothing live to compare

    taste = store_with(tmp_path / "taste", *events(taste_before=True, seed=2), new=new_store)
    better = cycle(taste, config(tmp_path, version=2), Path(first.bundle_path).read_bytes())
    assert better.outcome == "passed", better.reason
    assert set(better.timings) == {"read", "split", "train_challenger", "score", "train"}
    gate = better.gate
    assert gate is not None and gate["champion"] is not None
    assert gate["challenger"]["users"] >= 100
    assert gate["challenger"]["ndcg"] > 2 * gate["champion"]["ndcg"]
    noise.close()
    taste.close()


def test_a_worse_challenger_is_rejected_and_force_ships_it(tmp_path: Path, new_store: StoreFactory) -> None:
    """A window set far too short (three days of a month of history): the challenger
    learns from a sliver of what the live bundle learned from, scores worse on the same
    holdout users, and is not shipped."""
    taste = store_with(tmp_path / "taste", *events(taste_before=True, seed=3), new=new_store)
    champion = cycle(taste, config(tmp_path, version=1), None)
    live = Path(champion.bundle_path).read_bytes()

    short = HubDataRules(window_days=3, half_life_days=30, min_interactions=10, min_subjects=10, min_items=5)
    rejected = cycle(taste, config(tmp_path, version=2, rules=short), live)
    assert rejected.outcome == "rejected" and rejected.reason.startswith("worse than the live bundle"), rejected.reason
    assert rejected.bundle_path == "" and not (tmp_path / "out" / "bundle-v2.tar").exists()
    assert rejected.gate is not None and rejected.gate["challenger"]["ndcg"] < rejected.gate["champion"]["ndcg"]

    forced = cycle(taste, config(tmp_path, version=2, rules=short, force=True), live)
    assert forced.outcome == "forced" and (tmp_path / "out" / "bundle-v2.tar").is_file()
    taste.close()


def test_too_little_data_skips_and_writes_nothing(tmp_path: Path, new_store: StoreFactory) -> None:
    v = "visitorGateFew000000001"
    store = store_with(tmp_path / "few", grant(v), ev("click", v, 1, item_id="one"), new=new_store)
    result = cycle(store, config(tmp_path), None)
    assert result.outcome == "skipped" and "fewer than" in result.reason
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    store.close()


def test_the_verdict_rules() -> None:
    scores = {"ndcg": 0.30, "recall": 0.5, "users": 50}
    assert decide(scores, {"ndcg": 0.31, "users": 50}, 0.05, 20).passed  # within 5 %
    assert not decide(scores, {"ndcg": 0.40, "users": 50}, 0.05, 20).passed
    small = {"ndcg": 0.0, "recall": 0.0, "users": 3}
    verdict = decide(small, {"ndcg": 0.4, "users": 3}, 0.05, 20)
    assert verdict.passed and "too small to compare" in verdict.reason


def test_the_runs_segment_kinds_reach_the_clustering(tmp_path: Path) -> None:
    """``P13N_HUB_TRAINING_SEGMENT_KINDS`` → the child's CycleConfig → the TrainConfig a
    run trains with (models/clusters.py fits exactly those kinds: tests/models)."""
    import pytest

    from hub.settings import HubSettings
    from hub.training.cycle import _train_config
    from hub.training.from_hub import HubData
    from models.settings_base import SettingsError

    settings = HubSettings.from_env({"P13N_HUB_TRAINING_SEGMENT_KINDS": "KMeans, dbscan"})
    assert settings.training_segment_kinds == ("kmeans", "dbscan")
    assert HubSettings.from_env({}).training_segment_kinds == ("kmeans", "gmm")
    with pytest.raises(SettingsError, match="P13N_HUB_TRAINING_SEGMENT_KINDS"):
        HubSettings.from_env({"P13N_HUB_TRAINING_SEGMENT_KINDS": "kmeans,optics"})
    cfg = config(tmp_path, segment_kinds=list(settings.training_segment_kinds))  # as the child receives it
    train = _train_config(cfg, tmp_path, HubData.__new__(HubData), 3, None, None, None)
    assert tuple(train.segment_kinds) == ("kmeans", "dbscan")
