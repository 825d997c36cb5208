"""Sequence embeddings (models/sequence.py) and the next-item protocol
(models/next_item.py): sessions and splits by hand, metrics by hand, and on planted
chains the sequence model ranks what comes next better than co-occurrence (MRR)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hub.training.evaluate import evaluate_next_item
from models.data import Interactions, write_interactions
from models.history import HISTORY, history_vector
from models.next_item import leave_last_out, rank_metrics
from models.recommenders import Catalog
from models.sequence import SequenceModel, sessions
from models.synthetic import chain_walks


def rows(*events: tuple[str, str, float]) -> Interactions:
    users, items, times = zip(*events, strict=True)
    n = len(events)
    return Interactions(
        np.array(users, dtype=object), np.array(items, dtype=object), np.ones(n, dtype=np.float32), np.array(times)
    )


def test_sessions_cut_at_half_an_hour_collapse_repeats_and_drop_single_items() -> None:
    data = rows(
        ("u1", "a", 0.0), ("u1", "b", 60.0), ("u1", "b", 90.0), ("u1", "c", 120.0),  # one session, b repeated
        ("u1", "d", 120.0 + 1801), ("u1", "e", 120.0 + 1900),  # a gap: a second session
        ("u2", "z", 5.0),  # a single item: no order to learn
        ("u3", "y", 20.0), ("u3", "x", 10.0),  # out of file order: sorted by time
    )  # fmt: skip
    assert sorted(sessions(data)) == [["a", "b", "c"], ["d", "e"], ["x", "y"]]


def test_leave_last_out_holds_out_each_users_latest_and_says_what_it_skipped() -> None:
    data = rows(
        ("u1", "a", 1.0), ("u1", "b", 2.0), ("u1", "c", 3.0),  # case: c
        ("u2", "c", 1.0), ("u2", "c", 2.0),  # a repeat
        ("u3", "a", 1.0), ("u3", "new", 2.0),  # an item nobody had in training
        ("u4", "b", 1.0),  # a single interaction
    )  # fmt: skip
    cut = leave_last_out(data)
    assert cut.cases == {"u1": "c"}
    assert cut.skipped == {"single_interaction": 1, "repeat": 1, "cold_item": 1}
    assert len(cut.train) == len(data) - 3 and "new" not in cut.train.items.tolist()


def test_rank_metrics_by_hand() -> None:
    ranked = {"u1": ["x", "y", "z"], "u2": ["z", "x"], "u3": ["q"]}
    cases = {"u1": "y", "u2": "z", "u3": "x", "u4": "x"}  # ranks 2, 1, miss, no ranking
    assert rank_metrics(ranked, cases, 10) == pytest.approx({"hit_rate": 0.5, "mrr": (1 / 2 + 1) / 4})
    assert rank_metrics(ranked, cases, 1) == pytest.approx({"hit_rate": 0.25, "mrr": 0.25})


def test_the_history_vector_weighs_the_latest_items_most() -> None:
    vectors = np.eye(6, dtype=np.float32)
    v = history_vector(vectors, [0, 1, 2, 3, 4, 5])
    assert v is not None and v[0] == 0.0  # only the last HISTORY items count
    assert HISTORY == 5 and v[5] > v[4] > v[3] > v[2] > v[1] > 0
    assert history_vector(vectors, []) is None


def test_on_planted_chains_the_sequence_model_ranks_the_next_item_first_more_often() -> None:
    data = chain_walks(2000, chains=20, length=60, seed=3)
    report = evaluate_next_item(data, {}, 10, 42).report
    models = report["models"]
    assert report["cases"] > 1900
    assert models["word2vec"]["hit_rate"] > 0.7 and models["popularity"]["hit_rate"] < 0.05
    assert models["word2vec"]["mrr"] > 1.1 * models["als"]["mrr"]  # the order, not just the chain
    # deterministic: the same data, the same vectors
    cut = leave_last_out(data)
    catalog = Catalog.build(cut.train)
    first, second = SequenceModel(catalog, cut.train), SequenceModel(catalog, cut.train)
    assert np.array_equal(first.vectors, second.vectors)


def test_p13n_evaluate_runs_the_next_item_protocol(tmp_path: Path) -> None:
    csv = tmp_path / "walks.csv"
    write_interactions(csv, chain_walks(600, chains=10, length=30, seed=4))
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "evaluate", "--interactions", str(csv), "--protocol", "next-item", "--k", "5",
         "--html", str(tmp_path / "eval.html")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["protocol"] == "next-item" and report["k"] == 5
    assert set(report["models"]) == {"popularity", "als", "hybrid", "word2vec"}
    page = (tmp_path / "eval.html").read_text()
    assert "next-item protocol" in page and "<th>MRR@k</th>" in page and "data:image/png;base64," in page
    assert f"<th>word2vec</th><td>{report['models']['word2vec']['hit_rate']:.4f}</td>" in page
    alone = subprocess.run(
        [sys.executable, "-m", "p13n", "evaluate", "--protocol", "next-item", "--train", str(csv), "--test", str(csv)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert alone.returncode == 1 and "--protocol next-item takes --interactions FILE" in alone.stderr
