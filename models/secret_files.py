"""Files that hold secrets: written 0600, atomically, never world-readable even briefly."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a 0600 temporary file in the same directory
    (``mkstemp`` creates it 0600), flushed to disk, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generated_secret(path: Path, nbytes: int = 32) -> str:
    """The secret kept in ``path``, created (random, 0600) when missing."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(nbytes) + "\n")
    return path.read_text(encoding="utf-8").strip()
