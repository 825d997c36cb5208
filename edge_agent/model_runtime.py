"""Loading a bundle file at the edge: verified, then opened as
:class:`models.bundle_runtime.BundleModels`."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from models.bundle import load_public_key, open_bundle
from models.bundle_runtime import BundleModels

log = logging.getLogger(__name__)


def load_models(bundle_path: str, public_key_path: str) -> BundleModels:
    """Verify and open a bundle file; raises on anything that does not check out."""
    key = load_public_key(Path(public_key_path).read_bytes())
    data = Path(bundle_path).read_bytes()
    models = BundleModels(open_bundle(data, key))
    models.sha256 = hashlib.sha256(data).hexdigest()
    return models
