"""``p13n keys generate / train / bundle verify / evaluate`` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from p13n.procs import DEFAULT_TEMPLATES
from tests.conftest import FIXTURES


def p13n(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p13n", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    out = p13n("keys", "generate", str(d))
    assert out.returncode == 0, out.stderr
    assert (d / "bundle-signing.key").stat().st_mode & 0o077 == 0  # private key not readable by others
    assert p13n("keys", "generate", str(d)).returncode == 1  # never overwritten
    return d


def test_train_writes_signed_increasing_bundles_and_a_report(keys: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    args = [
        "train",
        "--generate",
        "--templates",
        str(DEFAULT_TEMPLATES),
        "--key",
        str(keys / "bundle-signing.key"),
        "--out",
        str(out_dir),
    ]
    first = p13n(*args)
    assert first.returncode == 0, first.stderr
    assert "[p13n] tuning ALS" in first.stderr and "[p13n] signing bundle v1" in first.stderr  # progress is shown
    result = json.loads(first.stdout)
    assert result["version"] == 1
    second = json.loads(p13n(*args).stdout)
    assert second["version"] == 2
    verified = p13n("bundle", "verify", second["bundle"], "--public-key", str(keys / "bundle-signing.pub"))
    assert verified.returncode == 0
    manifest = json.loads(verified.stdout)
    assert manifest["ok"] and manifest["version"] == 2
    assert {"segments.onnx", "als_topk.onnx", "content_topk.onnx", "text.onnx", "content.json"} <= set(manifest["files"])
    report = json.loads(Path(second["report"]).read_text())
    assert set(report["evaluation"]["models"]) == {"popularity", "als", "ease", "content", "hybrid"}
    chosen = report["evaluation"]["chosen"]
    # the served model is the better of ALS and EASE on validation, and the manifest says so
    better = max(chosen["validation"], key=chosen["validation"].get)
    assert chosen["recommender"] == ("als" if better == "als" else "item")
    assert manifest["recommender"] == chosen["recommender"]
    assert ("item_topk.onnx" in manifest["files"]) == (chosen["recommender"] == "item")
    html = Path(second["html"]).read_text()
    assert html.count("data:image/png;base64,") == 4 and 'alt="silhouette by k"' in html and 'alt="KMeans elbow"' in html


def test_tampered_bundle_fails_verification(keys: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    res = json.loads(p13n("train", "--generate", "--key", str(keys / "bundle-signing.key"), "--out", str(out_dir)).stdout)
    data = bytearray(Path(res["bundle"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    out = p13n("bundle", "verify", str(bad), "--public-key", str(keys / "bundle-signing.pub"))
    assert out.returncode == 1 and json.loads(out.stdout)["ok"] is False


def retail_csvs(tmp_path: Path) -> tuple[Path, Path]:
    """The shared Online Retail sample (CC BY 4.0, UCI id 352) as our CSV formats, Latin-1."""
    src = FIXTURES / "data" / "online-retail-sample.csv"
    interactions = tmp_path / "interactions.csv"
    items = tmp_path / "items.csv"
    with (
        src.open(encoding="latin-1") as f,
        interactions.open("w", newline="", encoding="latin-1") as fi,
        items.open("w", newline="", encoding="latin-1") as ft,
    ):
        wi, wt = csv.writer(fi), csv.writer(ft)
        wi.writerow(["user_id", "item_id", "weight", "timestamp", "country"])
        wt.writerow(["item_id", "title", "unused"])
        seen = set()
        for row in csv.DictReader(f):
            if row["InvoiceNo"].startswith("C") or not row["CustomerID"]:
                continue
            wi.writerow([row["CustomerID"], row["StockCode"], max(1, int(row["Quantity"])), row["InvoiceDate"], row["Country"]])
            if row["StockCode"] not in seen:
                seen.add(row["StockCode"])
                wt.writerow([row["StockCode"], row["Description"], "x"])
    return interactions, items


def test_evaluate_on_real_data_with_a_time_split(tmp_path: Path) -> None:
    interactions, items = retail_csvs(tmp_path)
    recs = tmp_path / "recs.csv"
    out = p13n(
        "evaluate",
        "--interactions",
        str(interactions),
        "--items",
        str(items),
        "--split",
        "time",
        "--k",
        "10",
        "--recommendations-out",
        str(recs),
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["models"]) == {"popularity", "als", "ease", "content", "hybrid"}
    for metrics in report["models"].values():
        assert set(metrics) >= {"precision", "recall", "ndcg", "map", "coverage"}
        assert 0.0 <= metrics["ndcg"] <= 1.0
    assert report["split"] == "time" and report["test_users"] > 50
    with recs.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"model", "user_id", "rank", "item_id"}
    assert {r["model"] for r in rows} == {"popularity", "als", "ease", "content", "hybrid"}


def test_evaluate_with_given_train_and_test_files(tmp_path: Path) -> None:
    from models.data import write_interactions
    from models.evaluation import split
    from models.synthetic import taste_groups

    train, test = split(taste_groups(300, 100, 6000, groups=5, seed=2), "random", 0.7, 1)
    write_interactions(tmp_path / "train.csv", train)
    write_interactions(tmp_path / "test.csv", test)
    out = p13n("evaluate", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["split"] == "given" and report["models"]["als"]["ndcg"] > report["models"]["popularity"]["ndcg"]
    assert p13n("evaluate", "--train", str(tmp_path / "train.csv")).returncode == 2
