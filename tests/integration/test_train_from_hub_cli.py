"""``p13n train --from-hub``: a signed bundle from the hub's warehouse, as an operator
runs it; with too little data, nothing is trained and the reason is printed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.unit.test_train_from_hub import ev, grant, store_with

REPO = Path(__file__).resolve().parents[2]


def p13n(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p13n", *args], capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ}
    )


def test_train_from_the_warehouse_writes_a_bundle_that_verifies(tmp_path: Path) -> None:
    rnd = random.Random(7)
    visitors = [f"visitorCli{n:013d}" for n in range(120)]
    events = [grant(v) for v in visitors]
    events += [
        ev("click", v, rnd.uniform(0, 40), item_id=f"g{n % 4}-i{rnd.randrange(8)}")
        for n, v in enumerate(visitors)
        for _ in range(6)
    ]
    events += [ev("click", f"visitorNoChoice{n:08d}", 1, item_id="secret-item") for n in range(5)]  # not consented
    store_with(tmp_path / "hub", *events).close()
    assert p13n("keys", "generate", str(tmp_path / "keys")).returncode == 0
    key = str(tmp_path / "keys" / "bundle-signing.key")

    done = p13n(
        "train", "--from-hub", "--data-dir", str(tmp_path / "hub"), "--out", str(tmp_path / "out"), "--key", key, "--no-tune"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    checked = p13n("bundle", "verify", result["bundle"], "--public-key", str(tmp_path / "keys" / "bundle-signing.pub"))
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout
    assert '"left_out": {"no_choice": 5, "declined": 0, "erased": 0}' in done.stderr
    report = json.loads(Path(result["report"]).read_text())
    assert report["evaluation"]["models"]["als"]["users"] > 50
    items = subprocess.run(["tar", "-xOf", result["bundle"], "items.json"], capture_output=True, text=True, check=True).stdout
    assert "secret-item" not in items and "g0-i1" in items  # only consented visitors' items were learned

    few = p13n(
        "train",
        "--from-hub",
        "--data-dir",
        str(tmp_path / "hub"),
        "--out",
        str(tmp_path / "out2"),
        "--key",
        key,
        "--min-subjects",
        "500",
    )
    assert few.returncode == 3
    refused = json.loads(few.stdout)
    assert refused["trained"] is False and refused["reason"] == "120 subjects in the window, fewer than 500"
    assert refused["counts"]["events"] == 720 and refused["counts"]["subjects"] == 120 and refused["counts"]["items"] == 32
    assert "the live bundle stays" in few.stderr
    assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").glob("bundle-*"))
