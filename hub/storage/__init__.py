"""The hub's storage behind one interface (:class:`HubStore`).

``interface`` says what the hub asks of its storage; ``sqlite`` and its
``sqlite_*`` modules are the SQLite implementation (lake files per day, warehouse,
marts), the only code in the hub that speaks SQL. :func:`open_store` is where a second
implementation (PostgreSQL, for several hubs) plugs in without callers changing.
"""

from __future__ import annotations

from pathlib import Path

from hub.storage.interface import ErasureLedger, HubStore, RekeyReport, RetentionCutoffs, SubjectIds, TrainingLedger, TrainingRows

__all__ = [
    "ErasureLedger",
    "HubStore",
    "RekeyReport",
    "RetentionCutoffs",
    "SubjectIds",
    "TrainingLedger",
    "TrainingRows",
    "open_store",
]


def open_store(data_dir: Path) -> HubStore:
    """The store under ``data_dir`` (SQLite)."""
    from hub.storage.sqlite import SqliteStore

    return SqliteStore(data_dir)
