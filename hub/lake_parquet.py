"""The lake as Parquet: each day file mirrored to ``TARGET/day=YYYY-MM-DD/events.parquet``.

Hive-style partitions by UTC day of receipt, so DuckDB
(``read_parquet('TARGET/*/*.parquet', hive_partitioning = true)``), Spark and anything
else reading Arrow datasets see one table with a ``day`` column. ``TARGET`` is a local
directory or any URI pyarrow's filesystems open (``s3://bucket/prefix`` with the usual
S3 settings in the environment).

A sync makes the target equal to the lake, partition by partition:

* a day whose lake file changed since the last sync (its SQLite file or write-ahead log
  has another size or modification time; on PostgreSQL, the day's count of inserted
  and deleted rows moved) is rewritten whole — that is how an erasure
  reaches the export: the erasure deletes the subject's rows from the day files, so those
  days change and their partitions are rewritten without them;
* a partition whose day file is gone (retention dropped it) is deleted;
* other partitions are left alone.

What was exported is recorded in ``TARGET/_p13n_lake.json`` (day → the file's state and
the rows written). A partition is written to a temporary name and then moved over the
old one, so a reader sees the old or the new rows, never half of them (on S3 the move
is a copy: a reader may briefly see both names).

The columns are the lake's own: ``event_id``, ``received_at``, ``edge`` and ``body`` (the
event as received, identify traits sealed: docs/PRIVACY.md).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from hub.state import HubState

MANIFEST = "_p13n_lake.json"
PARTITION_FILE = "events.parquet"
_DAY_FILE = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.sqlite$")
#: Rows read from a day file per Arrow batch.
BATCH_ROWS = 50_000


class ExportUnavailable(RuntimeError):
    """pyarrow is not installed (``pip install 'p13n[lake]'``)."""


@dataclass
class SyncReport:
    written: dict[str, int] = field(default_factory=dict)  # day → rows
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"written": self.written, "deleted": self.deleted, "unchanged": self.unchanged}


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.fs
        import pyarrow.parquet
    except ImportError as e:  # pragma: no cover - the lake extra is installed in tests
        raise ExportUnavailable("the Parquet lake export needs pyarrow: pip install 'p13n[lake]'") from e
    return pyarrow


def lake_days(lake_dir: Path) -> dict[str, list[int]]:
    """Day → the state of its lake file: [size, mtime_ns] of the file and of its WAL."""
    out: dict[str, list[int]] = {}
    for path in sorted(lake_dir.glob("events-*.sqlite")):
        m = _DAY_FILE.match(path.name)
        if not m:
            continue
        state: list[int] = []
        for p in (path, path.with_name(path.name + "-wal")):
            try:
                st = p.stat()
            except FileNotFoundError:
                state += [0, 0]
                continue
            # an empty WAL carries nothing (a reader may create one, a checkpoint empties
            # it after writing the pages into the file, whose own state then changes)
            state += [st.st_size, st.st_mtime_ns] if st.st_size else [0, 0]
        out[m.group(1)] = state
    return out


#: The lake's columns, every one a string.
COLUMNS = ("event_id", "received_at", "edge", "body")


class LakeSource(Protocol):
    """Where the lake's days are read from: its SQLite day files (:class:`LakeFiles`)
    or the PostgreSQL store's ``lake_events`` (hub/storage/postgres.py)."""

    def lake_days(self) -> dict[str, list[int]]:
        """Day → a state that changes whenever the day's rows do."""

    def read_lake_day(self, day: str, batch_rows: int) -> Iterator[list[tuple[str, str, str, str]]]: ...


class LakeFiles:
    """The SQLite lake: one file per day in ``lake_dir``."""

    def __init__(self, lake_dir: Path) -> None:
        self.lake_dir = lake_dir

    def lake_days(self) -> dict[str, list[int]]:
        return lake_days(self.lake_dir)

    def read_lake_day(self, day: str, batch_rows: int) -> Iterator[list[tuple[str, str, str, str]]]:
        from hub.storage.sqlite import read_lake_day

        return read_lake_day(self.lake_dir / f"events-{day}.sqlite", batch_rows)


def _batches(source: LakeSource, day: str, pa: Any) -> Iterator[Any]:
    schema = pa.schema([(name, pa.string()) for name in COLUMNS])
    for rows in source.read_lake_day(day, BATCH_ROWS):
        columns = list(zip(*rows, strict=True))
        yield pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], schema=schema)


def sync(lake: Path | LakeSource, target: str) -> SyncReport:
    """Make ``target`` mirror the lake (a lake directory, or a store holding it; see
    the module's docstring)."""
    source = LakeFiles(lake) if isinstance(lake, Path) else lake
    pa = _pyarrow()
    fs, root = pa.fs.FileSystem.from_uri(target if "://" in target else str(Path(target).resolve()))
    fs.create_dir(root, recursive=True)
    manifest_path = f"{root}/{MANIFEST}"
    try:
        with fs.open_input_stream(manifest_path) as f:
            manifest: dict[str, Any] = json.loads(f.read())
    except (FileNotFoundError, OSError):
        manifest = {}
    exported: dict[str, Any] = manifest.get("days", {})
    report = SyncReport()
    days = source.lake_days()
    for day, state in days.items():
        if exported.get(day, {}).get("state") == state:
            report.unchanged += 1
            continue
        partition = f"{root}/day={day}"
        fs.create_dir(partition, recursive=True)
        tmp, final = f"{partition}/.{PARTITION_FILE}.tmp", f"{partition}/{PARTITION_FILE}"
        rows = 0
        writer = None
        try:
            for batch in _batches(source, day, pa):
                if writer is None:
                    writer = pa.parquet.ParquetWriter(tmp, batch.schema, filesystem=fs, compression="zstd")
                writer.write_batch(batch)
                rows += batch.num_rows
            if writer is None:  # an empty day (all of it erased): an empty partition file
                empty = pa.schema([(name, pa.string()) for name in COLUMNS])
                writer = pa.parquet.ParquetWriter(tmp, empty, filesystem=fs, compression="zstd")
        finally:
            if writer is not None:
                writer.close()
        fs.move(tmp, final)
        exported[day] = {"state": state, "rows": rows}
        report.written[day] = rows
    for day in sorted(set(exported) - set(days)):  # retention dropped the day file
        if fs.get_file_info(f"{root}/day={day}").type != pa.fs.FileType.NotFound:
            fs.delete_dir(f"{root}/day={day}")
        del exported[day]
        report.deleted.append(day)
    if report.written or report.deleted or not manifest:
        with fs.open_output_stream(f"{manifest_path}.tmp") as f:
            f.write(json.dumps({"format": "p13n-lake-parquet/1", "days": exported}, sort_keys=True).encode())
        fs.move(f"{manifest_path}.tmp", manifest_path)
    return report


#: One sync at a time per hub process (the job, an erasure and retention all sync).
_LOCK = asyncio.Lock()


async def export(state: HubState) -> dict[str, Any] | None:
    """Sync the hub's lake to ``P13N_HUB_LAKE_EXPORT`` (None when it is not set)."""
    from hub.storage.sqlite import LAKE_DIR

    target = state.settings.lake_export
    if not target:
        return None
    storage = state.storage
    lake: Path | LakeSource = state.settings.data_dir / LAKE_DIR
    if storage is not None and getattr(storage, "lake_dir", lake) is None:  # the lake is in the store's database
        lake = cast(LakeSource, storage)
    async with _LOCK:
        report = await asyncio.to_thread(sync, lake, target)
    return report.as_dict()
