"""Experiment analysis in SQL over the SQLite warehouse (see ``HubStore.experiment``).

The unit of analysis is the visitor, stitched as the marts stitch: the user an event
names, else the user its anonymous id was linked to (the smallest, if several), else
the anonymous id. A unit's variant and first exposure come from its ``exposure``
events of the experiment; a unit exposed to more than one variant (two devices, a
changed experiment) is left out and counted. Metric events are joined per unit and
summed between the first exposure and the end of the metric's window (and over the
CUPED days before it); only per-variant sums leave SQLite.

Exposures are read from the **exposures mart** (``marts.exposures``: one row per
experiment, visitor id, user id and variant, folded by the marts refresh like the
other marts, so results lag the events by one refresh), stitched per visitor id; the
units go to a temporary table (the reader's own), and the metrics are computed in one
pass per event type over the metric events (``idx_events_type``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.experiments.metrics import Metric
from hub.experiments.stats import Aggregate
from hub.storage.interface import ExperimentData, ExperimentSummary

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

INDEXES = (
    "DROP INDEX IF EXISTS idx_events_exposure",  # the exposures mart replaced it
    "CREATE INDEX IF NOT EXISTS idx_events_type ON events (type, anonymous_id, user_id, ts)",
)

#: The exposures mart: one row per experiment, visitor id, user id and variant with
#: the first and last exposure and how many (10 exposures a visitor become one row).
EXPOSURES_MART = (
    "CREATE TABLE IF NOT EXISTS exposures (experiment TEXT NOT NULL, visitor TEXT NOT NULL, user_id TEXT NOT NULL, "
    "variant TEXT NOT NULL, first_ts TEXT, last_ts TEXT, n INTEGER, PRIMARY KEY (experiment, visitor, user_id, variant)) "
    "WITHOUT ROWID"
)
_FOLD = (
    "INSERT INTO marts.exposures SELECT json_extract(props, '$.experiment'), COALESCE(anonymous_id, ''), "
    "COALESCE(user_id, ''), json_extract(props, '$.variant'), MIN(ts), MAX(ts), COUNT(*) FROM events "
    "WHERE {where} AND type = 'exposure' AND json_extract(props, '$.experiment') IS NOT NULL "
    "AND json_extract(props, '$.variant') IS NOT NULL GROUP BY 1, 2, 3, 4 "
    "ON CONFLICT DO UPDATE SET first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts), "
    "n = n + excluded.n"
)
#: Folds the exposures among the events the marts refresh takes (rowid > ? AND <= ?).
FOLD_EXPOSURES = _FOLD.format(where="rowid > ? AND rowid <= ?")


def backfill_exposures(wh: sqlite3.Connection) -> None:
    """Fold every exposure the marts watermark already passed (a warehouse from before
    the exposures mart); later ones come with the refresh."""
    row = wh.execute("SELECT rowid FROM marts.watermarks WHERE name = 'events'").fetchone()
    if row and int(row[0]):
        with wh:
            wh.execute(_FOLD.format(where="rowid <= ?"), (int(row[0]),))


def _unit(rows: str) -> str:
    """The unit of a row of ``rows`` (an alias with ``user_id`` and ``anonymous_id``): its
    user, else the user its visitor id was linked to (the smallest), else the visitor id."""
    return (
        f"COALESCE({rows}.user_id, (SELECT MIN(i.user_id) FROM identities i WHERE i.anonymous_id = {rows}.anonymous_id), "
        f"{rows}.anonymous_id)"
    )


#: The experiment's units from the mart's rows (one look-up per visitor id, not per
#: exposure): first exposure, last, and how many variants each unit saw.
_UNITS = f"""INSERT INTO temp.units (unit, variant, first_jd, first_ts, last_ts, variants)
SELECT unit, MIN(variant), julianday(MIN(first_ts)), MIN(first_ts), MAX(last_ts), COUNT(DISTINCT variant) FROM (
  SELECT {_unit("x")} AS unit, x.variant AS variant, x.first_ts AS first_ts, x.last_ts AS last_ts
  FROM (SELECT NULLIF(visitor, '') AS anonymous_id, NULLIF(user_id, '') AS user_id, variant, first_ts, last_ts
        FROM marts.exposures WHERE experiment = :experiment) x
) WHERE unit IS NOT NULL GROUP BY unit"""


def _reader(storage: SqliteStore) -> sqlite3.Connection:
    """A read-only warehouse connection with the marts attached (read-only too)."""
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    wh.execute("ATTACH DATABASE ? AS marts", (f"file:{storage.data_dir / 'marts.sqlite'}?mode=ro",))
    return wh


def experiments(storage: SqliteStore) -> list[ExperimentSummary]:
    wh = _reader(storage)
    try:
        rows = wh.execute(
            "SELECT experiment, variant, SUM(n), MIN(first_ts), MAX(last_ts) FROM marts.exposures GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    finally:
        wh.close()
    out: dict[str, ExperimentSummary] = {}
    for name, variant, count, first, last in rows:
        if not name:
            continue
        summary = out.setdefault(name, ExperimentSummary(name, {}, first, last))
        summary.exposures[str(variant)] = int(count)
        summary.first_exposure = min(summary.first_exposure, first)
        summary.last_exposure = max(summary.last_exposure, last)
    return list(out.values())


def experiment(storage: SqliteStore, name: str, metrics: Sequence[Metric]) -> ExperimentData:
    wh = _reader(storage)
    try:
        wh.execute(
            "CREATE TEMP TABLE units (unit TEXT PRIMARY KEY, variant TEXT, first_jd REAL, first_ts TEXT, "
            "last_ts TEXT, variants INTEGER)"
        )
        wh.execute(_UNITS, {"experiment": name})
        data = ExperimentData(name)
        for variant, users, multiple, first, last in wh.execute(
            "SELECT variant, SUM(variants = 1), SUM(variants > 1), MIN(first_ts), MAX(last_ts) FROM temp.units GROUP BY variant"
        ):
            if int(users or 0):
                data.users[str(variant)] = int(users)
            data.multiple_exposures += int(multiple or 0)
            data.first_exposure = min(data.first_exposure or first, first)
            data.last_exposure = max(data.last_exposure, last)
        if metrics and data.users:
            data.metrics = _metrics(wh, metrics)
        return data
    finally:
        wh.close()


def _metrics(wh: sqlite3.Connection, metrics: Sequence[Metric]) -> dict[str, dict[str, Aggregate]]:
    """Per variant, each metric's sums over the units exposed to that variant only: its
    value after the first exposure (y) and in its CUPED days before (x). One pass per
    event type (and slot): the events of that type joined to their units, grouped per
    unit, summed per variant. Units without such events add zeros, so only the users
    count comes from the units table."""
    users = dict(wh.execute("SELECT variant, COUNT(*) FROM temp.units WHERE variants = 1 GROUP BY variant").fetchall())
    out: dict[str, dict[str, Aggregate]] = {m.name: {} for m in metrics}
    groups: dict[tuple[str, str], list[Metric]] = {}
    for metric in metrics:
        groups.setdefault((metric.event, metric.slot), []).append(metric)
    for (event, slot), members in groups.items():
        params: dict[str, object] = {"event": event, "slot": slot}
        per_unit: list[str] = []
        for i, metric in enumerate(members):
            params[f"window{i}"] = metric.window_hours / 24.0
            params[f"pre{i}"] = metric.cuped_days
            value = "COALESCE(m.amount_minor, 0)" if metric.kind == "revenue" else "1"
            y = f"SUM(CASE WHEN m.jd >= u.first_jd AND m.jd < u.first_jd + :window{i} THEN {value} ELSE 0 END)"
            x = f"SUM(CASE WHEN m.jd < u.first_jd AND m.jd >= u.first_jd - :pre{i} THEN {value} ELSE 0 END)"
            if metric.kind == "conversion":
                y, x = f"MIN(1, {y})", f"MIN(1, {x})"
            per_unit.append(f"{y} AS y{i}, {x} AS x{i}")
        sums = ", ".join(
            f"SUM(y{i}), SUM(y{i} * y{i}), SUM(x{i}), SUM(x{i} * x{i}), SUM(x{i} * y{i})" for i in range(len(members))
        )
        slot_filter = "AND json_extract(e.context, '$.slot') = :slot" if slot else ""
        sql = f"""WITH metric_events AS (
  SELECT {_unit("e")} AS unit, julianday(e.ts) AS jd, e.amount_minor AS amount_minor
  FROM events e INDEXED BY idx_events_type WHERE e.type = :event {slot_filter}
),
per_unit AS (
  SELECT u.variant AS variant, {", ".join(per_unit)}
  FROM metric_events m JOIN temp.units u ON u.unit = m.unit
  WHERE u.variants = 1
  GROUP BY m.unit
)
SELECT variant, {sums} FROM per_unit GROUP BY variant"""
        found = {str(row[0]): row[1:] for row in wh.execute(sql, params)}
        for variant, n in users.items():
            row = found.get(str(variant), (0,) * (5 * len(members)))
            for i, metric in enumerate(members):
                total, squares, pre_total, pre_squares, cross = (float(v or 0) for v in row[5 * i : 5 * i + 5])
                out[metric.name][str(variant)] = Aggregate(
                    int(n), total, squares, metric.kind == "conversion", pre_total, pre_squares, cross
                )
    return out
