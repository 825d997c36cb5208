"""The hub's storage behind one interface (:class:`HubStore`).

``interface`` says what the hub asks of its storage; ``sqlite`` and its
``sqlite_*`` modules are the SQLite implementation (lake files per day, warehouse,
marts), and ``postgres`` with its ``postgres_*`` modules the PostgreSQL one, for
several hub processes sharing one database (``P13N_HUB_DATABASE_URL``): the only code
in the hub that speaks SQL. :func:`open_store` picks one; callers never know which.
"""

from __future__ import annotations

from pathlib import Path

from hub.storage.interface import (
    ErasureLedger,
    HubStore,
    RekeyReport,
    RetentionCutoffs,
    RunInProgress,
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
    "RunInProgress",
    "StoreUnreadable",
    "SubjectIds",
    "TrainingLedger",
    "TrainingRows",
    "describe",
    "open_store",
    "redact_database_url",
]


def describe(data_dir: Path, database_url: str = "") -> str:
    """Where the tiers are, for logs: the database without its password, or the directory."""
    if not database_url:
        return f"SQLite in {data_dir}"
    return f"PostgreSQL {redact_database_url(database_url)}"


def redact_database_url(url: str) -> str:
    """A libpq URL or ``key=value`` string without its password."""
    import re

    from models.nats_log import redact_url

    if "://" in url:
        return redact_url(url)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def open_store(data_dir: Path, database_url: str = "") -> HubStore:
    """The store: PostgreSQL at ``database_url`` when given, else SQLite files under
    ``data_dir``; :class:`StoreUnreadable` when it is there but cannot be read."""
    if database_url:
        try:
            from hub.storage.postgres import PostgresStore
        except ImportError as e:  # psycopg is an extra
            raise StoreUnreadable("P13N_HUB_DATABASE_URL needs psycopg: pip install 'p13n[postgres]'") from e
        return PostgresStore(database_url)
    import sqlite3

    from hub.storage.sqlite import SqliteStore

    try:
        return SqliteStore(data_dir)
    except sqlite3.DatabaseError as e:
        raise StoreUnreadable(f"{data_dir}: {e}") from e
