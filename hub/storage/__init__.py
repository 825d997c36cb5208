"""The hub's storage behind one interface (:class:`HubStore`).

``interface`` says what the hub asks of its storage; ``sqlite`` and its
``sqlite_*`` modules are the SQLite implementation (lake files per day, warehouse,
marts), the only code in the hub that speaks SQL. :func:`open_store` is where a second
implementation (PostgreSQL, for several hubs) plugs in without callers changing.
"""

from __future__ import annotations

from pathlib import Path

from hub.storage.interface import (
    ErasureLedger,
    HubStore,
    RekeyReport,
    RetentionCutoffs,
    StoreUnreadable,
    SubjectIds,
    TrainingLedger,
    TrainingRows,
)

__all__ = [
    "ErasureLedger",
    "HubStore",
    "RekeyReport",
    "RetentionCutoffs",
    "StoreUnreadable",
    "SubjectIds",
    "TrainingLedger",
    "TrainingRows",
    "open_store",
]


def open_store(data_dir: Path) -> HubStore:
    """The store under ``data_dir`` (SQLite); :class:`StoreUnreadable` when its files
    are there but corrupt."""
    import sqlite3

    from hub.storage.sqlite import SqliteStore

    try:
        return SqliteStore(data_dir)
    except sqlite3.DatabaseError as e:
        raise StoreUnreadable(f"{data_dir}: {e}") from e
