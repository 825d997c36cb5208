"""Ranking metrics against hand-computed cases, and the splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.data import Interactions
from models.evaluation import ap_at_k, ndcg_at_k, precision_at_k, recall_at_k, score, split

REC = ["a", "b", "c", "d"]
REL = {"b", "d", "z"}


def test_precision_and_recall_by_hand() -> None:
    assert precision_at_k(REC, REL, 4) == pytest.approx(2 / 4)
    assert recall_at_k(REC, REL, 4) == pytest.approx(2 / 3)
    assert precision_at_k(REC, REL, 2) == pytest.approx(1 / 2)


def test_ndcg_by_hand() -> None:
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant items
    assert ndcg_at_k(REC, REL, 4) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["b", "d", "z"], REL, 3) == pytest.approx(1.0)


def test_average_precision_by_hand() -> None:
    # precision at the hits: rank 2 → 1/2, rank 4 → 2/4; normalised by min(|rel|, k) = 3
    assert ap_at_k(REC, REL, 4) == pytest.approx((0.5 + 0.5) / 3)
    assert ap_at_k(["x"], set(), 1) == 0.0


def test_score_averages_over_users_and_counts_coverage() -> None:
    s = score({"u1": ["a", "b"], "u2": ["a", "c"]}, {"u1": {"b"}, "u2": {"x"}}, 2, 10)
    assert s.precision == pytest.approx((0.5 + 0) / 2)
    assert s.recall == pytest.approx((1 + 0) / 2)
    assert s.coverage == pytest.approx(3 / 10)
    assert s.users == 2


def data(n: int = 400) -> Interactions:
    rng = np.random.default_rng(0)
    users = np.array([f"u{i % 20}" for i in range(n)], dtype=object)
    items = np.array([f"i{rng.integers(0, 30)}" for _ in range(n)], dtype=object)
    return Interactions(users, items, np.ones(n, dtype=np.float32), np.arange(n, dtype=np.float64))


def test_random_split_keeps_the_ratio_and_is_seeded() -> None:
    train, test = split(data(), "random", 0.75, 1)
    assert len(train) + len(test) == 400 and 250 < len(train) < 350
    again, _ = split(data(), "random", 0.75, 1)
    assert list(again.items) == list(train.items)


def test_time_split_puts_each_users_latest_interactions_in_test() -> None:
    d = data()
    train, test = split(d, "time", 0.75, 1)
    for user in set(test.users):
        assert test.timestamps[test.users == user].min() > train.timestamps[train.users == user].max()


def test_stratified_item_split_keeps_every_item_in_train() -> None:
    train, test = split(data(), "stratified-item", 0.5, 1)
    assert set(test.items) <= set(train.items)


def test_bad_split_arguments() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        split(data(), "by-moon", 0.5, 1)
    with pytest.raises(ValueError, match="ratio"):
        split(data(), "random", 1.5, 1)


def test_event_column_maps_to_configurable_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models.data import load_interactions

    path = tmp_path / "events.csv"
    path.write_bytes(b"user_id,item_id,event\nu1,i1,view\nu1,i2,PURCHASE\nu2,i1,add_to_cart\nu2,i3,unknown\n")
    default = load_interactions(path)
    assert default.weights.tolist() == [1.0, 8.0, 4.0]  # the unknown event is skipped
    custom = load_interactions(path, {"view": 2.0, "purchase": 20.0, "add_to_cart": 5.0})
    assert custom.weights.tolist() == [2.0, 20.0, 5.0]


def test_latin1_files_are_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from models.data import load_items

    path = tmp_path / "items.csv"
    path.write_bytes("item_id,title,extra\n1,CAF\xc9 MUG,x\n".encode("latin-1"))
    assert load_items(path)[0].title == "CAFÉ MUG"
