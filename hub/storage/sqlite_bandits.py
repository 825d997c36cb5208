"""A bandit's evidence kept up to date from the events that arrived since its last
update (see ``HubStore.bandit_evidence``), so the weight job reads only new events.

The results of an experiment (``sqlite_experiments``) rebuild every unit from the
exposures mart on each request: exact, and seconds for a million visitors. A bandit's
weights are recomputed every few minutes from one conversion metric, so its state is
kept instead, in the marts database:

- ``bandit_units``: one row per bandit, unit (kind 0: a visitor id with no user;
  kind 1: a user id) with its variant, whether it saw more than one (``mixed``: left
  out, as the results leave it out), its first exposure and whether it converted within
  the metric's window after it.
- ``bandit_marks``: per bandit, the metric the units were computed for and the events
  rowid reached. A changed metric (event, window, slot) starts the bandit over, from the
  first event; a new bandit whose experiment has no exposure among the events the marts
  have folded starts past them (so a bandit added to a large warehouse costs nothing).

Each update folds the events past the mark (read by rowid range, ``NOT INDEXED``: the
planner would otherwise walk every event of the type through an index), in slices of ``SLICE`` rows so the writer
lock is never held long: the slice's exposures of the bandit are upserted as units
(stitched as the marts stitch: the user an event names, else the smallest user its
visitor id is linked to, else the visitor id), units seen for the first time in the
slice are checked against the conversions already stored (an exposure can arrive after
the purchase that followed it), and the slice's conversions mark their units. Per
variant counts are a scan of the bandit's units (0.12 s for a million; an index on the
variant would cost every update more than it saves the count).

A visitor linked to a user after their exposures (the usual sign-in before a purchase)
has their anonymous unit moved into the user's when the identify event is folded, and
checked again against the user's conversions; a unit merged that way counts as
converted if either part had. Only a second, smaller user id linked to the same visitor
later is not followed (the results re-stitch every time). Erasure, retention and the subject export cover the
units like the other marts (``sqlite_subjects``, ``sqlite_retention``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hub.experiments.metrics import Metric

if TYPE_CHECKING:
    from hub.storage.sqlite import SqliteStore

#: Events folded per slice (the writer lock is released between slices).
SLICE = 50_000

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bandit_units (experiment TEXT NOT NULL, kind INTEGER NOT NULL, unit TEXT NOT NULL, "
    "variant TEXT NOT NULL, mixed INTEGER NOT NULL DEFAULT 0, first_jd REAL NOT NULL, converted INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (experiment, kind, unit)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS bandit_marks (experiment TEXT PRIMARY KEY, metric TEXT NOT NULL, rowid INTEGER NOT NULL)",
)

#: The slice's events of a kind with their unit (kind, id), stitched as the marts
#: stitch; the link is looked up once per event (MATERIALIZED keeps it from being
#: inlined into every use).
_STITCHED = """WITH x AS MATERIALIZED (SELECT e.user_id, e.anonymous_id, e.props, julianday(e.ts) AS jd,
  (SELECT MIN(i.user_id) FROM identities i WHERE i.anonymous_id = e.anonymous_id) AS linked
  FROM events e NOT INDEXED WHERE e.rowid > :lo AND e.rowid <= :hi AND {where})
SELECT CASE WHEN user_id IS NULL AND linked IS NULL THEN 0 ELSE 1 END AS kind,
  COALESCE(user_id, linked, anonymous_id) AS unit, props, jd FROM x"""

#: Visitor ids linked to a user by the slice's identify events: their anonymous units
#: become (or join) the user's unit, and are checked again for conversions below.
#: Visitor ids linked to a user by the slice's identify events (read once per slice
#: into ``temp.bandit_links``): their anonymous units become (or join) the user's
#: unit, and are checked again for conversions below.
_LINKS = (
    "DELETE FROM temp.bandit_links",
    """INSERT INTO temp.bandit_links SELECT visitor, user_id FROM (SELECT DISTINCT e.anonymous_id AS visitor,
  (SELECT MIN(i.user_id) FROM identities i WHERE i.anonymous_id = e.anonymous_id) AS user_id FROM events e NOT INDEXED
WHERE e.rowid > :lo AND e.rowid <= :hi AND e.type = 'identify' AND e.anonymous_id IS NOT NULL AND e.user_id IS NOT NULL)
WHERE user_id IS NOT NULL""",
)
_RESTITCH = (
    """INSERT INTO temp.bandit_seen SELECT 1, l.user_id, b.variant, b.first_jd FROM temp.bandit_links l
CROSS JOIN marts.bandit_units b ON b.experiment = :experiment AND b.kind = 0 AND b.unit = l.visitor""",
    """INSERT INTO marts.bandit_units (experiment, kind, unit, variant, mixed, first_jd, converted)
SELECT :experiment, 1, l.user_id, b.variant, b.mixed, b.first_jd, b.converted FROM temp.bandit_links l
CROSS JOIN marts.bandit_units b ON b.experiment = :experiment AND b.kind = 0 AND b.unit = l.visitor WHERE true
ON CONFLICT (experiment, kind, unit) DO UPDATE SET mixed = mixed OR excluded.mixed OR variant != excluded.variant,
  first_jd = min(first_jd, excluded.first_jd), converted = max(converted, excluded.converted)""",
    """DELETE FROM marts.bandit_units WHERE experiment = :experiment AND kind = 0
AND unit IN (SELECT visitor FROM temp.bandit_links)""",
)

_EXPOSURES = f"""INSERT INTO temp.bandit_seen
SELECT kind, unit, json_extract(props, '$.variant') AS variant, MIN(jd) FROM ({_STITCHED.format(where="e.type = 'exposure'")})
WHERE json_extract(props, '$.experiment') = :experiment AND variant IS NOT NULL AND unit IS NOT NULL
GROUP BY 1, 2, 3"""

_UPSERT = """INSERT INTO marts.bandit_units (experiment, kind, unit, variant, mixed, first_jd, converted)
SELECT :experiment, kind, unit, variant, 0, first_jd, 0 FROM temp.bandit_seen WHERE true ORDER BY kind, unit
ON CONFLICT (experiment, kind, unit) DO UPDATE SET mixed = mixed OR variant != excluded.variant,
  first_jd = min(first_jd, excluded.first_jd)"""

#: Units first seen (or first exposed earlier) in this slice, against the conversions
#: stored before it: by visitor id for anonymous units, by user id and linked visitor
#: ids for user units.
_EARLIER = """UPDATE marts.bandit_units AS b SET converted = 1 FROM temp.bandit_seen s
WHERE b.experiment = :experiment AND b.kind = s.kind AND b.unit = s.unit AND b.converted = 0 AND (
  (b.kind = 0 AND EXISTS (SELECT 1 FROM events e INDEXED BY idx_events_metric WHERE e.type = :event
     AND e.anonymous_id = b.unit AND e.user_id IS NULL AND e.rowid <= :lo {slot}
     AND julianday(e.ts) >= b.first_jd AND julianday(e.ts) < b.first_jd + :window))
  OR (b.kind = 1 AND (EXISTS (SELECT 1 FROM events e INDEXED BY idx_events_user_id WHERE e.user_id = b.unit
     AND e.type = :event AND e.rowid <= :lo {slot}
     AND julianday(e.ts) >= b.first_jd AND julianday(e.ts) < b.first_jd + :window)
   OR EXISTS (SELECT 1 FROM identities i CROSS JOIN events e INDEXED BY idx_events_metric ON e.type = :event
     AND e.anonymous_id = i.anonymous_id AND e.user_id IS NULL WHERE i.user_id = b.unit AND e.rowid <= :lo {slot}
     AND julianday(e.ts) >= b.first_jd AND julianday(e.ts) < b.first_jd + :window))))"""

#: The slice's conversions mark the units they belong to.
_CONVERSIONS = """UPDATE marts.bandit_units AS b SET converted = 1 FROM ({stitched}) c
WHERE b.experiment = :experiment AND b.kind = c.kind AND b.unit = c.unit AND b.converted = 0
  AND c.jd >= b.first_jd AND c.jd < b.first_jd + :window"""


def signature(metric: Metric) -> str:
    """What a bandit's kept units were computed for: a change starts it over."""
    return json.dumps({"event": metric.event, "window_hours": metric.window_hours, "slot": metric.slot}, sort_keys=True)


def parameters(experiment: str, metric: Metric) -> dict[str, object]:
    """The named parameters of the update's statements (the window in days)."""
    return {"experiment": experiment, "event": metric.event, "window": metric.window_hours / 24.0, "slot": metric.slot}


def bandit_evidence(storage: SqliteStore, experiment: str, metric: Metric, slice_rows: int = SLICE) -> dict[str, tuple[int, int]]:
    """Per variant: units exposed to it alone, and how many of them converted."""
    slot = "AND json_extract(e.context, '$.slot') = :slot" if metric.slot else ""
    earlier = _EARLIER.format(slot=slot)
    conversions = _CONVERSIONS.format(stitched=_STITCHED.format(where=f"e.type = :event {slot}"))
    params = parameters(experiment, metric)
    kept_for = signature(metric)
    while True:
        with storage.lock:
            wh = storage.warehouse
            row = wh.execute("SELECT metric, rowid FROM marts.bandit_marks WHERE experiment = ?", (experiment,)).fetchone()
            fresh = row is None or row[0] != kept_for  # a new bandit, or its metric changed: start over
            mark = 0 if fresh else int(row[1])
            if (
                fresh
                and wh.execute("SELECT 1 FROM marts.exposures WHERE experiment = ? LIMIT 1", (experiment,)).fetchone() is None
            ):
                # no exposure of it among the events the marts have folded: start past them
                mark = int((wh.execute("SELECT rowid FROM marts.watermarks WHERE name = 'events'").fetchone() or (0,))[0])
            top = wh.execute(
                "SELECT max(rowid) FROM (SELECT rowid FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?)", (mark, slice_rows)
            ).fetchone()[0]
            if top is None and not fresh:
                break
            wh.execute("BEGIN")
            try:
                if fresh:
                    wh.execute("DELETE FROM marts.bandit_units WHERE experiment = ?", (experiment,))
                if top is not None:
                    step = {**params, "lo": mark, "hi": top}
                    wh.execute("DELETE FROM temp.bandit_seen")
                    wh.execute(_LINKS[0])
                    wh.execute(_LINKS[1], step)
                    for statement in _RESTITCH:
                        wh.execute(statement, step)
                    wh.execute(_EXPOSURES, step)
                    wh.execute(_UPSERT, step)
                    wh.execute(earlier, step)
                    wh.execute(conversions, step)
                    wh.execute("DELETE FROM temp.bandit_seen")
                wh.execute(
                    "INSERT INTO marts.bandit_marks VALUES (?, ?, ?) ON CONFLICT (experiment) "
                    "DO UPDATE SET metric = excluded.metric, rowid = excluded.rowid",
                    (experiment, kept_for, top if top is not None else mark),
                )
                wh.execute("COMMIT")
            except BaseException:
                wh.execute("ROLLBACK")
                raise
            if top is None:
                break
    reader = storage.reader(storage.data_dir / "marts.sqlite")
    try:
        return {
            str(variant): (int(n), int(converted or 0))
            for variant, n, converted in reader.execute(
                "SELECT variant, COUNT(*), SUM(converted) FROM bandit_units WHERE experiment = ? AND mixed = 0 GROUP BY variant",
                (experiment,),
            )
        }
    finally:
        reader.close()
