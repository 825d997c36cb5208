"""``p13n train --from-hub``: a signed bundle from the hub's warehouse, as an operator
runs it; with too little data, nothing is trained and the reason is printed."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from models.sentence_encoder import SentenceEncoder
from p13n.procs import DEFAULT_TEMPLATES
from tests.unit.test_train_from_hub import ev, grant, store_with

REPO = Path(__file__).resolve().parents[2]


def p13n(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p13n", *args], capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ}
    )


def consented_clicks(prefix: str, visitors: int, each: int, seed: int) -> list[dict[str, Any]]:
    """Consent grants and ``each`` clicks per visitor on items ``g<group>-i<n>`` (four
    taste groups of eight items) over the past 40 days."""
    rnd = random.Random(seed)
    ids = [f"{prefix}{n:013d}" for n in range(visitors)]
    events = [grant(v) for v in ids]
    events += [
        ev("click", v, rnd.uniform(0, 40), item_id=f"g{n % 4}-i{rnd.randrange(8)}")
        for n, v in enumerate(ids)
        for _ in range(each)
    ]
    return events


def test_train_from_the_warehouse_writes_a_bundle_that_verifies(tmp_path: Path) -> None:
    events = consented_clicks("visitorCli", 120, 6, seed=7)
    events += [ev("click", f"visitorNoChoice{n:08d}", 1, item_id="secret-item") for n in range(5)]  # not consented
    store_with(tmp_path / "hub", *events).close()
    assert p13n("keys", "generate", str(tmp_path / "keys")).returncode == 0
    key = str(tmp_path / "keys" / "bundle-signing.key")

    done = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "out"), "--key", key, "--no-tune"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["outcome"] == "passed" and result["reason"] == "no live bundle to compare with"
    checked = p13n("bundle", "verify", result["bundle_path"], "--public-key", str(tmp_path / "keys" / "bundle-signing.pub"))
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout
    assert result["summary"]["left_out"] == {"no_choice": 5, "declined": 0, "erased": 0}
    report = json.loads(Path(result["report_path"]).read_text())
    assert report["evaluation"]["chosen"]["als"]["factors"] == 5  # 32 items: one factor per six
    assert report["evaluation"]["models"] == {} and "training gate" in report["evaluation"]["skipped"]
    items = subprocess.run(
        ["tar", "-xOf", result["bundle_path"], "items.json"], capture_output=True, text=True, check=True
    ).stdout
    assert "secret-item" not in items and "g0-i1" in items  # only consented visitors' items were learned

    # again, against the bundle just made as the live one: scored on the last day's holdout
    again = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "out"), "--key", key,
        "--no-tune", "--champion", result["bundle_path"], "--gate-min-users", "1", "--holdout-days", "15",
    )  # fmt: skip
    second = json.loads(again.stdout.splitlines()[-1])
    assert again.returncode in (0, 4), again.stderr[-2000:]
    # the live bundle was made after every event: nothing it has not seen to compare on
    assert second["gate"]["champion"] is not None and second["gate"]["champion"]["users"] == 0
    assert "to compare" in second["reason"] and again.returncode == 0

    few = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "out2"), "--key", key,
        "--min-subjects", "500",
    )  # fmt: skip
    assert few.returncode == 3
    refused = json.loads(few.stdout)
    assert refused["outcome"] == "skipped" and refused["reason"].startswith(
        "not enough data: 120 subjects in the window, fewer than 500"
    )
    assert refused["summary"]["events"] == 720 and refused["summary"]["subjects"] == 120 and refused["summary"]["items"] == 32
    assert "the live bundle stays" in few.stderr
    assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").glob("bundle-*"))


def test_a_corrupt_warehouse_trains_nothing_and_says_why(tmp_path: Path) -> None:
    visitors = [f"visitorBad{n:014d}" for n in range(40)]
    events = [grant(v) for v in visitors]
    events += [ev("click", v, 1 + k, item_id=f"i{(n + k) % 7}") for n, v in enumerate(visitors) for k in range(6)]
    store_with(tmp_path / "hub", *events).close()
    assert p13n("keys", "generate", str(tmp_path / "keys")).returncode == 0
    key = str(tmp_path / "keys" / "bundle-signing.key")
    live = tmp_path / "live.tar"
    trained = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "first"), "--key", key,
        "--no-tune", "--min-subjects", "1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    live.write_bytes(Path(json.loads(trained.stdout.splitlines()[-1])["bundle_path"]).read_bytes())
    before = live.read_bytes()

    warehouse = tmp_path / "hub" / "warehouse.sqlite"
    data = bytearray(warehouse.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = bytes(0xA5 for _ in range(len(data) - page))  # every page but the schema's: garbage
    warehouse.write_bytes(bytes(data))

    failed = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "second"), "--key", key,
        "--no-tune", "--min-subjects", "1", "--champion", str(live),
    )  # fmt: skip
    assert failed.returncode == 1
    assert "the warehouse cannot be read" in failed.stderr and "malformed" in failed.stderr
    assert "Traceback" not in failed.stderr and "the live bundle stays" in failed.stderr
    assert not list(tmp_path.glob("second/bundle-*"))
    assert live.read_bytes() == before


def test_a_semantic_slot_gets_the_catalogs_text_vectors_from_a_warehouse_run(
    tmp_path: Path, sentence_encoder: SentenceEncoder
) -> None:
    store_with(tmp_path / "hub", *consented_clicks("visitorSem", 60, 5, seed=8)).close()
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    slots = json.loads((templates / "slots.json").read_text())
    slots["recs"]["model"] = "semantic"
    (templates / "slots.json").write_text(json.dumps(slots))
    described = len(json.loads((templates / "catalog.json").read_text()))
    assert p13n("keys", "generate", str(tmp_path / "keys")).returncode == 0
    done = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "out"),
        "--key", str(tmp_path / "keys" / "bundle-signing.key"), "--no-tune", "--templates", str(templates),
        "--encoder", str(sentence_encoder.directory),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedding" in done.stderr and "item texts (all-MiniLM-L6-v2" in done.stderr
    bundle = json.loads(done.stdout.splitlines()[-1])["bundle_path"]
    manifest = json.loads(subprocess.run(["tar", "-xOf", bundle, "manifest.json"], capture_output=True, check=True).stdout)
    assert "sem_topk.onnx" in manifest["files"]
    # the templates' catalog is described; the warehouse's g*-i* items are ids only
    assert manifest["models"]["semantic"]["items_with_vectors"] == described
