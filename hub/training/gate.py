"""Champion / challenger on a time-based holdout.

The most recent ``holdout_days`` of the window are held out. A subject with history
before the cutoff and new items after it is a holdout user: from the history (weighted
and decayed as for training, as of the cutoff), each bundle recommends ``k`` items the
way the edge does (``models.bundle_runtime``: fold-in of the history, ALS top-k, the
history excluded), and the items the subject went on to touch are the truth. The
challenger is trained on the data before the cutoff only; the live bundle (the
champion) is scored on the same users. The challenger passes when its nDCG@k is at
least ``(1 - tolerance)`` × the champion's. With no live bundle, or fewer than
``min_users`` holdout users, there is nothing to compare and the gate says so.

The cutoff is never earlier than the live bundle was made (``hub.training.cycle``): a
holdout the champion was trained on would favour it — measured at scale, two runs in a
row without that bound scored the live bundle 3× the challenger. With runs every
``holdout_days`` or more, the holdout is simply the most recent days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hub.storage import TrainingRows
from hub.training.from_hub import HubDataRules, interactions_from_rows
from models.bundle_runtime import BundleModels
from models.data import Interactions
from models.evaluation import ndcg_at_k, recall_at_k


@dataclass
class Holdout:
    cutoff: float
    #: subject → [(item, weight)] before the cutoff
    history: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    #: subject → items first touched after the cutoff
    truth: dict[str, set[str]] = field(default_factory=dict)


def split_by_time(rows: TrainingRows, rules: HubDataRules, cutoff: float) -> tuple[Interactions, Holdout]:
    """(interactions before ``cutoff``, the holdout after it)."""
    times = np.asarray(rows.times, dtype=np.float64)
    early = times < cutoff
    subjects = np.asarray(rows.subjects, dtype=object)
    items = np.asarray(rows.items, dtype=object)
    types = np.asarray(rows.types, dtype=object)
    before = TrainingRows(subjects[early].tolist(), items[early].tolist(), types[early].tolist(), times[early].tolist())
    late = np.flatnonzero(~early)
    after: dict[str, set[str]] = {}
    for subject, item, kind in zip(subjects[late].tolist(), items[late].tolist(), types[late].tolist(), strict=True):
        if rules.event_weights.get(kind):
            after.setdefault(subject, set()).add(item)
    data = interactions_from_rows(before, rules, cutoff)
    history: dict[str, list[tuple[str, float]]] = {}
    wanted = np.fromiter((u in after for u in data.users.tolist()), dtype=bool, count=len(data))
    for user, item, weight in zip(
        data.users[wanted].tolist(), data.items[wanted].tolist(), data.weights[wanted].tolist(), strict=True
    ):
        history.setdefault(user, []).append((item, weight))
    holdout = Holdout(cutoff)
    for subject, fresh_items in after.items():
        seen = {i for i, _ in history.get(subject, [])}
        fresh = fresh_items - seen
        if subject in history and fresh:
            holdout.history[subject] = history[subject]
            holdout.truth[subject] = fresh
    return data, holdout


def score(models: BundleModels, holdout: Holdout, k: int) -> dict[str, Any]:
    """nDCG@k and recall@k of ``models`` over the holdout users: the ``k`` items a
    recommend slot would show each of them (the model's, filled up by popularity)."""
    users = sorted(holdout.truth)
    if not users:
        return {"ndcg": 0.0, "recall": 0.0, "users": 0}
    ndcg = recall = 0.0
    for user in users:
        history = holdout.history[user]
        recs = models.ranked(history, [i for i, _ in history], k)
        ndcg += ndcg_at_k(recs, holdout.truth[user], k)
        recall += recall_at_k(recs, holdout.truth[user], k)
    return {"ndcg": round(ndcg / len(users), 6), "recall": round(recall / len(users), 6), "users": len(users)}


@dataclass
class Verdict:
    passed: bool
    reason: str
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "challenger": self.challenger,
            "champion": self.champion,
            "tolerance": self.tolerance,
        }


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, tolerance: float, min_users: int) -> Verdict:
    if champion is None:
        return Verdict(True, "no live bundle to compare with", challenger, None, tolerance)
    if challenger.get("note"):  # no challenger could be trained before the holdout
        return Verdict(True, f"nothing to compare: {challenger['note']}", challenger, champion, tolerance)
    if challenger["users"] < min_users:
        return Verdict(
            True,
            f"holdout too small to compare ({challenger['users']} users, fewer than {min_users})",
            challenger,
            champion,
            tolerance,
        )
    floor = champion["ndcg"] * (1.0 - tolerance)
    if challenger["ndcg"] >= floor:
        return Verdict(
            True,
            f"nDCG {challenger['ndcg']:.4f} vs live {champion['ndcg']:.4f} (floor {floor:.4f})",
            challenger,
            champion,
            tolerance,
        )
    return Verdict(
        False,
        f"worse than the live bundle: nDCG {challenger['ndcg']:.4f} < {floor:.4f} (live {champion['ndcg']:.4f}, tolerance {tolerance:.0%})",
        challenger,
        champion,
        tolerance,
    )
