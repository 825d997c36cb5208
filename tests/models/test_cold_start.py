"""The cold-start protocol (models/cold_start.py): the split and the metric by hand;
on a catalog whose text carries the planted groups, the content model places items
nobody has seen far above chance; ``p13n evaluate --protocol cold-start`` runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hub.training.evaluate import evaluate_cold_start
from models.cold_start import hold_out_items, recall_at_k
from models.data import Interactions, write_interactions
from models.sentence_encoder import SentenceEncoder
from models.synthetic import described_items, taste_groups, themed_items


def test_held_out_items_leave_training_entirely_and_truth_keeps_users_with_history() -> None:
    users = ["u1", "u1", "u2", "u2", "u3"]
    items = ["a", "b", "a", "c", "b"]
    data = Interactions(np.array(users, dtype=object), np.array(items, dtype=object), np.ones(5, dtype=np.float32),
                        np.arange(5, dtype=np.float64))  # fmt: skip
    cut = hold_out_items(data, share=1 / 3, seed=0)
    (cold,) = cut.cold
    assert cold not in cut.train.items.tolist() and len(cut.train) == len(data) - items.count(cold)
    # users who had the cold item and have history of their own
    expected = {u for u, i in zip(users, items, strict=True) if i == cold and u in set(cut.train.users.tolist())}
    assert set(cut.truth) == expected and all(v == {cold} for v in cut.truth.values())


def test_recall_by_hand() -> None:
    truth = {"u1": {"a", "b"}, "u2": {"c"}}
    ranked = {"u1": ["a", "x", "b"], "u2": ["x", "y"]}
    assert recall_at_k(ranked, truth, 2) == pytest.approx((1 / 2 + 0) / 2)
    assert recall_at_k(ranked, truth, 3) == pytest.approx((1 + 0) / 2)
    assert recall_at_k({}, {}, 10) == 0.0


def test_the_content_model_places_unseen_items_far_above_chance() -> None:
    report = evaluate_cold_start(
        taste_groups(1500, 400, 30_000, groups=8, seed=5), described_items(400, 8, seed=5), 10, 42
    ).report
    models = report["models"]
    assert report["cold_items"] == 80 and report["users"] > 1000
    assert models["random"]["recall"] == pytest.approx(report["expected_random_recall"], abs=0.03)
    assert models["content"]["recall"] > max(0.45, 3 * report["expected_random_recall"])


def test_p13n_evaluate_runs_the_cold_start_protocol(tmp_path: Path) -> None:
    write_interactions(tmp_path / "i.csv", taste_groups(500, 200, 8_000, groups=5, seed=6))
    with (tmp_path / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title"])
        for item in described_items(200, 5, seed=6).values():
            w.writerow([item.id, item.title])
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "evaluate", "--interactions", str(tmp_path / "i.csv"), "--items",
         str(tmp_path / "items.csv"), "--protocol", "cold-start", "--html", str(tmp_path / "cold.html")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["protocol"] == "cold-start" and report["cold_items"] == 40 and report["cold_items_described"] == 40
    assert report["models"]["content"]["recall"] > report["models"]["random"]["recall"]
    # the installed sentence encoder joins by default, with its throughput
    assert {"semantic", "content+semantic"} <= set(report["models"]) and report["encoding"]["items"] == 200
    assert report["encoding"]["items_per_s"] > 0
    page = (tmp_path / "cold.html").read_text()
    assert "cold-start protocol" in page and "<th>recall@k</th>" in page and "data:image/png;base64," in page
    assert "content+semantic" in page
    # an encoder asked for by name must be there
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "evaluate", "--interactions", str(tmp_path / "i.csv"), "--items",
         str(tmp_path / "items.csv"), "--protocol", "cold-start", "--encoder", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and "no sentence encoder in" in done.stderr and not done.stdout


def test_the_sentence_encoder_links_items_named_with_different_words(sentence_encoder: SentenceEncoder) -> None:
    """Plain-English themes (boots, sandals, sneakers…): TF-IDF links only items that
    share a word; the encoder knows what the words mean."""
    report = evaluate_cold_start(
        taste_groups(1500, 400, 30_000, groups=8, seed=5), themed_items(400, 8, seed=5), 10, 42, encoder=sentence_encoder
    ).report
    recall = {name: m["recall"] for name, m in report["models"].items()}
    assert recall["semantic"] > 1.4 * recall["content"] and recall["semantic"] > 3 * report["expected_random_recall"]
    assert recall["content"] < recall["content+semantic"] < recall["semantic"]
    assert report["encoding"]["items"] == 400
