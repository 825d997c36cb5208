"""Experiment analysis in SQL over the SQLite warehouse (see ``HubStore.experiment``).

The unit of analysis is the visitor, stitched as the marts stitch: the user an event
names, else the user its anonymous id was linked to (the smallest, if several), else
the anonymous id. A unit's variant and first exposure come from its ``exposure``
events of the experiment; a unit exposed to more than one variant (two devices, a
changed experiment) is left out and counted. Metric events are joined per unit and
summed between the first exposure and the end of the metric's window (and over the
CUPED days before it); only per-variant sums leave SQLite.

Exposures are found through a partial index on the experiment's name
(``idx_events_exposure``); metric events through ``idx_events_type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.experiments.metrics import Metric
from hub.experiments.stats import Aggregate
from hub.storage.interface import ExperimentData, ExperimentSummary

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_events_exposure ON events "
    "(json_extract(props, '$.experiment'), anonymous_id, user_id, json_extract(props, '$.variant'), ts) "
    "WHERE type = 'exposure'",
    "CREATE INDEX IF NOT EXISTS idx_events_type ON events (type, anonymous_id, user_id, ts)",
)

_LINKS = "links AS (SELECT anonymous_id, MIN(user_id) AS user_id FROM identities GROUP BY anonymous_id)"
_UNITS = f"""{_LINKS},
exposed AS (
  SELECT COALESCE(e.user_id, l.user_id, e.anonymous_id) AS unit,
         json_extract(e.props, '$.variant') AS variant, MIN(e.ts) AS first_ts, MAX(e.ts) AS last_ts
  FROM events e LEFT JOIN links l ON l.anonymous_id = e.anonymous_id
  WHERE e.type = 'exposure' AND json_extract(e.props, '$.experiment') = :experiment
  GROUP BY 1, 2
),
units AS (
  SELECT unit, MIN(variant) AS variant, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts, COUNT(*) AS variants
  FROM exposed WHERE unit IS NOT NULL GROUP BY unit
)"""


def experiments(storage: SqliteStore) -> list[ExperimentSummary]:
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        rows = wh.execute(
            "SELECT json_extract(props, '$.experiment'), json_extract(props, '$.variant'), COUNT(*), MIN(ts), MAX(ts) "
            "FROM events WHERE type = 'exposure' GROUP BY 1, 2 ORDER BY 1, 2"
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
    wh = storage.reader(storage.data_dir / "warehouse.sqlite")
    try:
        data = ExperimentData(name)
        for variant, users, multiple, first, last in wh.execute(
            f"WITH {_UNITS} SELECT variant, SUM(variants = 1), SUM(variants > 1), MIN(first_ts), MAX(last_ts) "
            "FROM units GROUP BY variant",
            {"experiment": name},
        ):
            if int(users or 0):
                data.users[str(variant)] = int(users)
            data.multiple_exposures += int(multiple or 0)
            data.first_exposure = min(data.first_exposure or first, first)
            data.last_exposure = max(data.last_exposure, last)
        for metric in metrics:
            data.metrics[metric.name] = _metric(wh, name, metric)
        return data
    finally:
        wh.close()


def _metric(wh: object, name: str, metric: Metric) -> dict[str, Aggregate]:
    value = {"conversion": "1", "count": "1", "revenue": "COALESCE(m.amount_minor, 0)"}[metric.kind]
    post = f"SUM(CASE WHEN m.ts >= u.first_ts AND m.ts < strftime('%Y-%m-%dT%H:%M:%fZ', u.first_ts, :window) THEN {value} ELSE 0 END)"
    pre = f"SUM(CASE WHEN m.ts < u.first_ts AND m.ts >= strftime('%Y-%m-%dT%H:%M:%fZ', u.first_ts, :pre) THEN {value} ELSE 0 END)"
    if metric.kind == "conversion":
        post, pre = f"MIN(1, {post})", f"MIN(1, {pre})"
    slot = "AND json_extract(e.context, '$.slot') = :slot" if metric.slot else ""
    sql = f"""WITH {_UNITS},
metric_events AS (
  SELECT COALESCE(e.user_id, l.user_id, e.anonymous_id) AS unit, e.ts, e.amount_minor
  FROM events e LEFT JOIN links l ON l.anonymous_id = e.anonymous_id
  WHERE e.type = :event {slot}
),
per_unit AS (
  SELECT u.variant AS variant, COALESCE({post}, 0) AS y, COALESCE({pre}, 0) AS x
  FROM units u LEFT JOIN metric_events m ON m.unit = u.unit
  WHERE u.variants = 1
  GROUP BY u.unit
)
SELECT variant, COUNT(*), SUM(y), SUM(y * y), SUM(x), SUM(x * x), SUM(x * y) FROM per_unit GROUP BY variant"""
    params = {
        "experiment": name,
        "event": metric.event,
        "slot": metric.slot,
        "window": f"+{metric.window_hours * 3600:.0f} seconds",
        "pre": f"-{metric.cuped_days * 86400:.0f} seconds",
    }
    out: dict[str, Aggregate] = {}
    for variant, users, total, squares, pre_total, pre_squares, cross in wh.execute(sql, params):  # type: ignore[attr-defined]
        out[str(variant)] = Aggregate(
            int(users),
            float(total or 0),
            float(squares or 0),
            metric.kind == "conversion",
            float(pre_total or 0),
            float(pre_squares or 0),
            float(cross or 0),
        )
    return out
