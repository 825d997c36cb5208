"""Training a bundle whose recs slot asks for a model of its own, over a given catalog
(the sequence and semantic serving tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hub.training.train import TrainConfig, run_training
from models.bundle import Bundle, generate_key, load_public_key, open_bundle
from models.data import Interactions, write_interactions

REPO = Path(__file__).resolve().parents[2]


def train_with_slot_model(
    tmp_path: Path, data: Interactions, titles: dict[str, str], category: str, model: str, encoder: Path | None = None
) -> Bundle:
    """The demo templates with ``titles`` as the catalog (``/p/<id>`` links) and the recs
    slot set to ``model`` ("" keeps the bundle's choice); trained on ``data``."""
    write_interactions(tmp_path / "interactions.csv", data)
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    catalog = [
        {"id": i, "title": t, "category": category, "price": 1.0, "currency": "EUR", "url": f"/p/{i}"} for i, t in titles.items()
    ]
    (templates / "catalog.json").write_text(json.dumps(catalog))
    slots = json.loads((templates / "slots.json").read_text())
    if model:
        slots["recs"]["model"] = model
    (templates / "slots.json").write_text(json.dumps(slots))
    private, public = generate_key()
    (tmp_path / "key.pem").write_bytes(private)
    config = TrainConfig(
        out_dir=tmp_path / "out",
        key_file=tmp_path / "key.pem",
        interactions=tmp_path / "interactions.csv",
        templates=templates,
        tune=False,
        evaluate=False,
        encoder=encoder,
    )
    result = run_training(config, lambda _m: None)
    return open_bundle(result.bundle_path.read_bytes(), load_public_key(public))
