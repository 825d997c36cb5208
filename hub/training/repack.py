"""``p13n bundle repack``: new slot content on the models of an existing bundle.

Once a bundle carries ``content.json``, an edge serves *its* fragments, slot rules and
segments, not the templates directory. Changing a fragment or a rule must not need a
retraining run: repack opens a verified bundle, replaces only ``content.json`` with the
content built from the templates, and signs the result as a new version. Models, their
metrics and the feature spec are carried over byte for byte. A catalog change that
adds items or categories needs a retraining (the models do not know the new items).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hub.training.train import next_version
from models.bundle import build_bundle, load_private_key, load_public_key, open_bundle
from models.content import build_content


@dataclass(frozen=True)
class Repacked:
    path: Path
    version: int
    from_version: int


def repack(
    bundle_path: Path, public_key: Path, key_file: Path, templates: Path, out_dir: Path, version: int | None = None
) -> Repacked:
    """Write ``out_dir/bundle-vN.tar``; raises BundleRejected, OSError or ValueError."""
    opened = open_bundle(bundle_path.read_bytes(), load_public_key(public_key.read_bytes()))
    key = load_private_key(key_file.read_bytes())
    out_dir.mkdir(parents=True, exist_ok=True)
    new_version = version if version is not None else max(next_version(out_dir), opened.version + 1)
    if new_version < 1:
        raise ValueError(f"--version must be 1 or more, got {new_version}")
    files = dict(opened.files)
    files["content.json"] = json.dumps(build_content(templates, version=new_version), sort_keys=True).encode()
    manifest = opened.manifest
    models = {**manifest.get("models", {}), "content_repacked_from": opened.version}
    blob = build_bundle(
        files,
        version=new_version,
        spec=opened.feature_spec(),
        metrics=manifest.get("metrics", {}),
        models=models,
        private_key=key,
    )
    path = out_dir / f"bundle-v{new_version}.tar"
    tmp = path.with_suffix(".tar.tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
    return Repacked(path, new_version, opened.version)
