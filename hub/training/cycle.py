"""One turn of the learning loop, from the warehouse to a bundle ready to ship.

1. read the window's training rows (consented, not erased: ``HubStore.training_rows``);
2. hold out the most recent days — never earlier than the live bundle was made, so
   the holdout is what it has not seen —; train a challenger on the rest; score it and
   the live bundle on the holdout the way the edge decides (``hub.training.gate``);
3. when the gate passes (or ``force``), train the bundle to ship on the whole window
   with the challenger's hyperparameters, as a new version.

Nothing here makes a bundle live: the caller pushes ``bundle_path`` (the hub's job, or
``p13n train --from-hub --push``). A failed or rejected run leaves nothing but scratch
files, which are removed; a bundle file appears only complete (written, then renamed).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.storage import HubStore
from hub.training import from_hub, gate
from hub.training.from_hub import HubDataRules, NotEnoughData
from hub.training.train import TrainConfig, run_training
from models.bundle import Bundle, load_private_key, open_bundle
from models.bundle_runtime import BundleModels

Progress = Callable[[str], None]


@dataclass
class CycleConfig:
    out_dir: Path
    key_file: Path
    rules: HubDataRules = field(default_factory=HubDataRules)
    #: the most recent days, held out to compare challenger and champion
    holdout_days: float = 1.0
    #: the challenger passes at ≥ (1 - tolerance) × the champion's nDCG
    tolerance: float = 0.05
    #: fewer holdout users than this and there is nothing to compare
    gate_min_users: int = 20
    templates: Path | None = None
    k: int = 10
    seed: int = 42
    tune: bool = True
    #: clusterings tried for segments (models.clusters.ALL_KINDS)
    segment_kinds: tuple[str, ...] = ("kmeans", "gmm")
    version: int | None = None
    #: ship even when the gate fails (an operator's decision, audited by the caller)
    force: bool = False
    #: the sentence encoder's directory (None: where ``p13n encoder install`` puts it)
    encoder: Path | None = None


@dataclass
class CycleResult:
    #: ``passed`` (a bundle to ship), ``forced`` (shipped although the gate failed),
    #: ``rejected`` (worse than the live one) or ``skipped`` (too little data)
    outcome: str
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    version: int | None = None
    bundle_path: str = ""
    report_path: str = ""
    html_path: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _timed(timings: dict[str, float], step: str, started: float) -> float:
    now = time.perf_counter()
    timings[step] = round(now - started, 3)
    return now


def run_cycle(
    store: HubStore, config: CycleConfig, champion: bytes | None, now: datetime, progress: Progress | None = None
) -> CycleResult:
    say = progress or (lambda _m: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    start = from_hub.since(config.rules, now)
    say(f"reading the warehouse since {start}")
    rows = store.training_rows(start)
    t = _timed(timings, "read", t)
    try:
        everything = from_hub.prepare(rows, config.rules, now, start)
    except NotEnoughData as e:
        return CycleResult("skipped", str(e), {"since": start, **e.counts}, timings)
    say(f"window: {everything.summary}")
    public_key = load_private_key(config.key_file.read_bytes()).public_key()
    live = _open(champion, public_key, say)
    content_doc = (
        live.json("content.json") if live is not None and "content.json" in live.files and config.templates is None else None
    )
    cutoff = now - timedelta(days=config.holdout_days)
    if live is not None:  # only what the live bundle has not seen is a fair holdout
        cutoff = max(cutoff, datetime.fromisoformat(str(live.manifest["created"])))
    before, holdout = gate.split_by_time(rows, config.rules, cutoff.timestamp())
    scratch = Path(tempfile.mkdtemp(prefix="p13n-challenger-"))
    tuned = None
    try:
        t = _timed(timings, "split", t)
        challenger_scores: dict[str, Any] = {"ndcg": 0.0, "recall": 0.0, "users": 0}
        challenger_data = None
        if live is not None:  # with nothing live there is nothing to compare with
            try:
                challenger_data = from_hub.prepare_interactions(before, everything, config.rules)
            except NotEnoughData as e:
                challenger_scores["note"] = str(e)
        if challenger_data is not None:
            say(f"training the challenger on {len(before)} interactions before {cutoff.isoformat(timespec='seconds')}")
            result = run_training(
                _train_config(config, scratch, challenger_data, 1, None, content_doc, None), lambda m: say(f"challenger: {m}")
            )
            tuned = result.tuned
            t = _timed(timings, "train_challenger", t)
            challenger_scores = gate.score(
                BundleModels(open_bundle(result.bundle_path.read_bytes(), public_key)), holdout, config.k
            )
        champion_scores = None
        if live is not None:
            champion_scores = gate.score(BundleModels(live), holdout, config.k)
        t = _timed(timings, "score", t)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    verdict = gate.decide(challenger_scores, champion_scores, config.tolerance, config.gate_min_users)
    say(f"gate: {'passed' if verdict.passed else 'failed'}: {verdict.reason}")
    if not verdict.passed and not config.force:
        return CycleResult("rejected", verdict.reason, everything.summary, timings, verdict.as_dict())
    say("training the bundle to ship on the whole window")
    gated = {"time_holdout": challenger_scores} if challenger_scores.get("users") else None
    final = run_training(_train_config(config, config.out_dir, everything, config.version, tuned, content_doc, gated), say)
    _timed(timings, "train", t)
    return CycleResult(
        "passed" if verdict.passed else "forced",
        verdict.reason,
        everything.summary,
        timings,
        verdict.as_dict(),
        final.version,
        str(final.bundle_path),
        str(final.report_path),
        str(final.html_path),
        gated or {},
    )


def _open(champion: bytes | None, public_key: Any, say: Progress) -> Bundle | None:
    """The live bundle, opened (its creation time bounds the holdout, its slots and
    catalog are carried over); None when there is none or it cannot be opened."""
    if champion is None:
        return None
    try:
        return open_bundle(champion, public_key)
    except Exception as e:
        say(f"the live bundle cannot be opened ({type(e).__name__}: {e})")
        return None


def _train_config(
    config: CycleConfig,
    out_dir: Path,
    data: from_hub.HubData,
    version: int | None,
    tuned: Any,
    content_doc: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
) -> TrainConfig:
    return TrainConfig(
        out_dir=out_dir,
        key_file=config.key_file,
        templates=config.templates,
        k=config.k,
        seed=config.seed,
        tune=config.tune,
        segment_kinds=tuple(config.segment_kinds),
        version=version,
        hub_data=data,
        tuned=tuned,
        content_doc=content_doc,
        evaluate=False,  # the gate scores on the time holdout; a random split would repeat it
        metrics=metrics,
        encoder=config.encoder,
    )
