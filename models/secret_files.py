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


#: Process umask of the services and of the commands that write a data directory:
#: what they create is readable by their own user only (files 0600, directories 0700).
PRIVATE_UMASK = 0o077


def make_private(data_dir: Path, depth: int = 2) -> int:
    """Create ``data_dir`` 0700 and take group and other access from what is already
    in it (``depth`` levels: the data files and the lake's day files). Returns how many
    entries were tightened."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    changed = 0
    todo = [(data_dir, 0)]
    while todo:
        path, level = todo.pop()
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                path.chmod(mode & 0o700)
                changed += 1
            if path.is_dir() and not path.is_symlink() and level < depth:
                todo.extend((child, level + 1) for child in path.iterdir())
        except OSError:  # not ours to change (an operator's mount…): leave it
            continue
    return changed
