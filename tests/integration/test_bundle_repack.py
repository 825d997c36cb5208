"""Changing slot content without retraining: ``p13n bundle repack`` puts the edited
templates on an existing bundle's models as a new signed version, and an edge serving
it shows the new fragment."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from models.bundle import load_public_key, open_bundle
from p13n.procs import DEFAULT_TEMPLATES
from tests.conftest import AgentFactory, Origin, TrainedBundle
from tests.integration.helpers import fetch


def test_repack_changes_content_and_keeps_the_models(
    trained_bundle: TrainedBundle, origin: Origin, start_agent: AgentFactory, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    for hero in (templates / "fragments").glob("hero-*.html"):  # whichever variant a visitor gets
        hero.write_text(hero.read_text().replace('<section class="hero', '<section data-campaign="winter-sale" class="hero', 1))
    key = trained_bundle.public_key.parent / "bundle-signing.key"
    done = subprocess.run(
        [
            sys.executable, "-m", "p13n", "bundle", "repack", str(trained_bundle.path),
            "--templates", str(templates), "--key", str(key), "--public-key", str(trained_bundle.public_key),
            "--out", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    public = load_public_key(trained_bundle.public_key.read_bytes())
    old = open_bundle(trained_bundle.path.read_bytes(), public)
    new = open_bundle(Path(result["bundle"]).read_bytes(), public)
    assert new.version == result["version"] == old.version + 1 and result["models_from"] == old.version
    for name in old.files:  # every model file byte for byte; only the content differs
        same = hashlib.sha256(old.files[name]).digest() == hashlib.sha256(new.files[name]).digest()
        assert same == (name != "content.json"), name
    assert new.manifest["metrics"] == old.manifest["metrics"]

    edge = start_agent(origin.url, MODEL_BUNDLE=result["bundle"], BUNDLE_PUBLIC_KEY=str(trained_bundle.public_key))
    health = json.loads(fetch(edge.url + "/_p13n/healthz").body)
    assert health["model_version"] == new.version and health["content_source"] == f"model bundle v{new.version}"
    decided = json.loads(fetch(edge.url + "/_p13n/decide?slots=hero&page=/").body)
    assert 'data-campaign="winter-sale"' in decided["slots"]["hero"]["html"]

    # a bundle that does not verify is not repacked
    bad = subprocess.run(
        [
            sys.executable, "-m", "p13n", "bundle", "repack", "/dev/null", "--templates", str(templates),
            "--key", str(key), "--public-key", str(trained_bundle.public_key), "--out", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "p13n bundle repack:" in bad.stderr
