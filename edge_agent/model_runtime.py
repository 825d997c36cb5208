"""Loading a bundle at the edge: verified, then opened as
:class:`models.bundle_runtime.BundleModels` that remember their answers."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from models.bundle import load_public_key, open_bundle
from models.bundle_runtime import BundleModels
from models.process import release_free_memory

log = logging.getLogger(__name__)


def open_models(data: bytes, public_key_path: str, memo_entries: int) -> BundleModels:
    """Verify and open a bundle's bytes; raises on anything that does not check out.
    The models keep ``memo_entries`` answers per call (``P13N_EDGE_MODEL_MEMO_ENTRIES``)."""
    key = load_public_key(Path(public_key_path).read_bytes())
    models = BundleModels(open_bundle(data, key))
    models.sha256 = hashlib.sha256(data).hexdigest()
    models.remember(memo_entries)
    release_free_memory()  # the parse's temporaries (models/process.py)
    return models


def load_models(bundle_path: str, public_key_path: str, memo_entries: int) -> BundleModels:
    """:func:`open_models` over a bundle file."""
    return open_models(Path(bundle_path).read_bytes(), public_key_path, memo_entries)
