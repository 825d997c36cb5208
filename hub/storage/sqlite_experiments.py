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
other marts, so results lag the events by one refresh). The units go to a temporary
table (the reader's own) keyed by kind and id: anonymous units (a visitor id with no
user) and user units are built by separate statements, and each metric is computed in
one pass per event type and kind of unit over ``idx_events_metric``, which covers
every column a metric reads, so no pass touches the events table itself. A visitor id
and a user id that happen to be the same string stay two units.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hub.experiments.metrics import Metric
from hub.experiments.stats import Aggregate
from hub.storage.interface import ExperimentData, ExperimentSummary

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

INDEXES = (
    "DROP INDEX IF EXISTS idx_events_exposure",  # the exposures mart replaced it
    "DROP INDEX IF EXISTS idx_events_metric",  # the metric index without amounts (a revenue pass read every row)
    "CREATE INDEX IF NOT EXISTS idx_events_metric ON events (type, anonymous_id, user_id, ts, amount_minor)",
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


#: A visitor id's user: the smallest it was linked to (``identities``).
_LINKS = "SELECT anonymous_id, MIN(user_id) AS user_id FROM identities GROUP BY anonymous_id"
_UPSERT = (
    "ON CONFLICT (kind, unit) DO UPDATE SET vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax), "
    "first_jd = min(first_jd, excluded.first_jd)"
)
#: The experiment's units, in three statements that need no grouping: the mart's rows
#: arrive in visitor order, so an upsert keyed by the unit folds them as they come.
#: Anonymous units (kind 0): a visitor id with no user id and no link, nearly every row.
#: User units (kind 1): rows that name a user, and rows of a visitor linked to one.
_UNITS = (
    "INSERT INTO temp.units SELECT 0, x.visitor, x.variant, x.variant, julianday(x.first_ts) FROM marts.exposures x "
    "WHERE x.experiment = :experiment AND x.user_id = '' AND x.visitor != '' "
    "AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.anonymous_id = x.visitor) " + _UPSERT,
    "INSERT INTO temp.units SELECT 1, x.user_id, x.variant, x.variant, julianday(x.first_ts) FROM marts.exposures x "
    "WHERE x.experiment = :experiment AND x.user_id != '' " + _UPSERT,
    f"INSERT INTO temp.units SELECT 1, l.user_id, x.variant, x.variant, julianday(x.first_ts) FROM ({_LINKS}) l "
    "CROSS JOIN marts.exposures x ON x.experiment = :experiment AND x.visitor = l.anonymous_id AND x.user_id = '' "
    "WHERE true " + _UPSERT,
)


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
    return summaries(rows)


def summaries(rows: Sequence[tuple[Any, ...]]) -> list[ExperimentSummary]:
    """Experiments from (experiment, variant, exposures, first, last) rows."""
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
        wh.execute("PRAGMA temp_store = MEMORY")
        wh.execute(
            "CREATE TEMP TABLE units (kind INTEGER, unit TEXT, vmin TEXT, vmax TEXT, first_jd REAL, "
            "PRIMARY KEY (kind, unit)) WITHOUT ROWID"
        )
        for statement in _UNITS:
            wh.execute(statement, {"experiment": name})
        data = ExperimentData(name)
        # counted in one scan with a sum per variant (grouping a million units by a
        # string sorts them: 0.4 s of a 10M-exposure experiment's results)
        variants = sorted(str(v) for (v,) in wh.execute("SELECT DISTINCT vmin FROM temp.units"))
        counts = wh.execute(
            "SELECT " + ", ".join(["SUM(vmin = ? AND vmax = ?)"] * len(variants) + ["SUM(vmin != vmax)"]) + " FROM temp.units",
            [v for v in variants for _ in (0, 1)],
        ).fetchone()
        data.users = {v: int(n) for v, n in zip(variants, counts, strict=False) if n}
        data.multiple_exposures = int(counts[-1] or 0)
        first, last = wh.execute(
            "SELECT MIN(first_ts), MAX(last_ts) FROM marts.exposures WHERE experiment = ?", (name,)
        ).fetchone()
        data.first_exposure, data.last_exposure = first or "", last or ""
        if metrics and data.users:
            data.metrics = _metrics(wh, metrics, data.users)
        return data
    finally:
        wh.close()


def _metrics(wh: sqlite3.Connection, metrics: Sequence[Metric], users: dict[str, int]) -> dict[str, dict[str, Aggregate]]:
    """Per variant, each metric's sums over the units exposed to that variant only: its
    value after the first exposure (y) and in its CUPED days before (x). One pass per
    event type (and slot) and kind of unit: the events of that type joined to their
    units, grouped per unit, summed per variant. Anonymous units' events come in visitor
    order from ``idx_events_metric``, so their grouping needs no sort; user units' events
    (a user id, or a linked visitor id) are the few. Units without such events add
    zeros, so the users count comes from the units table."""
    out: dict[str, dict[str, Aggregate]] = {m.name: {} for m in metrics}
    for (event, slot), members in metric_groups(metrics).items():
        params, per_unit, sums = metric_columns(members, lambda name: f":{name}", "MIN")
        params.update(event=event, slot=slot)
        slot_filter = "AND json_extract(e.context, '$.slot') = :slot" if slot else ""
        columns = "julianday(e.ts) AS jd, e.amount_minor AS amount_minor"
        anonymous = f"""SELECT e.anonymous_id AS unit, 0 AS kind, {columns} FROM events e INDEXED BY idx_events_metric
  WHERE e.type = :event AND e.user_id IS NULL {slot_filter}"""
        of_users = f"""SELECT e.user_id AS unit, 1 AS kind, {columns} FROM events e INDEXED BY idx_events_user_id
  WHERE e.user_id IS NOT NULL AND e.type = :event {slot_filter}
  UNION ALL
  SELECT l.user_id, 1, {columns} FROM ({_LINKS}) l CROSS JOIN events e INDEXED BY idx_events_metric
  ON e.type = :event AND e.anonymous_id = l.anonymous_id AND e.user_id IS NULL WHERE true {slot_filter}"""
        found: dict[str, list[float]] = {}
        for events in (anonymous, of_users):
            sql = f"""SELECT variant, {sums} FROM (
  SELECT MIN(u.vmin) AS variant, {per_unit}
  FROM ({events}) m CROSS JOIN temp.units u ON u.kind = m.kind AND u.unit = m.unit
  WHERE u.vmin = u.vmax
  GROUP BY m.unit
) GROUP BY variant"""
            add_sums(found, wh.execute(sql, params), len(members))
        aggregates(out, found, users, members)
    return out


def add_sums(found: dict[str, list[float]], rows: Iterable[Sequence[Any]], members: int) -> None:
    """Add (variant, five sums per metric …) rows to ``found``'s per-variant sums."""
    for row in rows:
        acc = found.setdefault(str(row[0]), [0.0] * (5 * members))
        for k, v in enumerate(row[1:]):
            acc[k] += float(v or 0)


def aggregates(
    out: dict[str, dict[str, Aggregate]], found: dict[str, list[float]], users: dict[str, int], members: Sequence[Metric]
) -> None:
    """Each metric's :class:`Aggregate` per variant from the sums (units without events
    add zeros: the unit counts come from ``users``)."""
    for variant, n in users.items():
        row = found.get(str(variant), [0.0] * (5 * len(members)))
        for i, metric in enumerate(members):
            total, squares, pre_total, pre_squares, cross = row[5 * i : 5 * i + 5]
            out[metric.name][str(variant)] = Aggregate(
                int(n), total, squares, metric.kind == "conversion", pre_total, pre_squares, cross
            )


def metric_groups(metrics: Sequence[Metric]) -> dict[tuple[str, str], list[Metric]]:
    """The metrics by (event type, slot): one pass over the events for each group."""
    groups: dict[tuple[str, str], list[Metric]] = {}
    for metric in metrics:
        groups.setdefault((metric.event, metric.slot), []).append(metric)
    return groups


def metric_columns(members: Sequence[Metric], param: Callable[[str], str], least: str) -> tuple[dict[str, object], str, str]:
    """A group's parameters, per-unit columns (``y<i>`` after the first exposure, ``x<i>``
    in the CUPED days before) and per-variant sums, in a dialect: ``param(name)`` writes
    a named placeholder, ``least`` is the two-argument minimum."""
    params: dict[str, object] = {}
    per_unit: list[str] = []
    for i, metric in enumerate(members):
        params[f"window{i}"] = metric.window_hours / 24.0
        params[f"pre{i}"] = float(metric.cuped_days)
        value = "COALESCE(m.amount_minor, 0)" if metric.kind == "revenue" else "1"
        y = f"SUM(CASE WHEN m.jd >= u.first_jd AND m.jd < u.first_jd + {param(f'window{i}')} THEN {value} ELSE 0 END)"
        x = f"SUM(CASE WHEN m.jd < u.first_jd AND m.jd >= u.first_jd - {param(f'pre{i}')} THEN {value} ELSE 0 END)"
        if metric.kind == "conversion":
            y, x = f"{least}(1, {y})", f"{least}(1, {x})"
        per_unit.append(f"{y} AS y{i}, {x} AS x{i}")
    sums = ", ".join(f"SUM(y{i}), SUM(y{i} * y{i}), SUM(x{i}), SUM(x{i} * x{i}), SUM(x{i} * y{i})" for i in range(len(members)))
    return params, ", ".join(per_unit), sums
