"""Experiment results and bandit evidence on PostgreSQL: the SQL of
``sqlite_experiments`` and ``sqlite_bandits`` (read their docstrings for the method),
in PostgreSQL's dialect. Where SQLite folds rows one by one through an upsert,
PostgreSQL refuses to update one row twice in a statement, so each statement here
groups by the unit first (a unit seen with two variants is then marked mixed, as the
row-by-row fold marks it). Bandit marks are transaction ids, as the marts watermark
(hub/storage/postgres.py): a slice is the events of finished transactions
``[lo, hi)``, and "before the slice" is ``txid < lo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hub.experiments.metrics import Metric
from hub.experiments.stats import Aggregate
from hub.storage.interface import ExperimentData, ExperimentSummary
from hub.storage.sqlite_bandits import SLICE, parameters, signature
from hub.storage.sqlite_experiments import add_sums, aggregates, metric_columns, metric_groups, summaries

if TYPE_CHECKING:
    from hub.storage.postgres import PostgresStore


def julian(column: str) -> str:
    """SQLite's ``julianday(column)`` (an ISO time) in PostgreSQL."""
    return f"(extract(epoch FROM ({column})::timestamptz)::float8 / 86400.0 + 2440587.5)"


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS exposures (experiment text NOT NULL, visitor text NOT NULL, user_id text NOT NULL, "
    "variant text NOT NULL, first_ts text, last_ts text, n bigint, PRIMARY KEY (experiment, visitor, user_id, variant))",
    "CREATE TABLE IF NOT EXISTS bandit_units (experiment text NOT NULL, kind integer NOT NULL, unit text NOT NULL, "
    "variant text NOT NULL, mixed integer NOT NULL DEFAULT 0, first_jd float8 NOT NULL, converted integer NOT NULL DEFAULT 0, "
    "PRIMARY KEY (experiment, kind, unit))",
    "CREATE TABLE IF NOT EXISTS bandit_marks (experiment text PRIMARY KEY, metric text NOT NULL, mark bigint NOT NULL)",
)

_PROP = "(props::jsonb ->> '{}')"
#: Folds the exposures among the events of finished transactions in [lo, hi).
FOLD_EXPOSURES = (
    f"INSERT INTO exposures SELECT {_PROP.format('experiment')}, COALESCE(anonymous_id, ''), COALESCE(user_id, ''), "
    f"{_PROP.format('variant')}, MIN(ts), MAX(ts), COUNT(*) FROM events "
    f"WHERE txid >= %s AND txid < %s AND type = 'exposure' AND {_PROP.format('experiment')} IS NOT NULL "
    f"AND {_PROP.format('variant')} IS NOT NULL GROUP BY 1, 2, 3, 4 "
    "ON CONFLICT (experiment, visitor, user_id, variant) DO UPDATE SET first_ts = LEAST(exposures.first_ts, excluded.first_ts), "
    "last_ts = GREATEST(exposures.last_ts, excluded.last_ts), n = exposures.n + excluded.n"
)

_LINKS = "SELECT anonymous_id, MIN(user_id) AS user_id FROM identities GROUP BY anonymous_id"
_UNIT_UPSERT = (
    "ON CONFLICT (kind, unit) DO UPDATE SET vmin = LEAST(units.vmin, excluded.vmin), "
    "vmax = GREATEST(units.vmax, excluded.vmax), first_jd = LEAST(units.first_jd, excluded.first_jd)"
)
_JD_FIRST = julian("x.first_ts")
_UNITS = (
    f"INSERT INTO units SELECT 0, x.visitor, MIN(x.variant), MAX(x.variant), MIN({_JD_FIRST}) FROM exposures x "
    "WHERE x.experiment = %(experiment)s AND x.user_id = '' AND x.visitor <> '' "
    "AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.anonymous_id = x.visitor) GROUP BY x.visitor " + _UNIT_UPSERT,
    f"INSERT INTO units SELECT 1, x.user_id, MIN(x.variant), MAX(x.variant), MIN({_JD_FIRST}) FROM exposures x "
    "WHERE x.experiment = %(experiment)s AND x.user_id <> '' GROUP BY x.user_id " + _UNIT_UPSERT,
    f"INSERT INTO units SELECT 1, l.user_id, MIN(x.variant), MAX(x.variant), MIN({_JD_FIRST}) FROM ({_LINKS}) l "
    "JOIN exposures x ON x.experiment = %(experiment)s AND x.visitor = l.anonymous_id AND x.user_id = '' "
    "GROUP BY l.user_id " + _UNIT_UPSERT,
)


def experiments(storage: PostgresStore) -> list[ExperimentSummary]:
    with storage.reading() as db:
        rows = db.execute(
            "SELECT experiment, variant, SUM(n), MIN(first_ts), MAX(last_ts) FROM exposures GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    return summaries(rows)


def experiment(storage: PostgresStore, name: str, metrics: Sequence[Metric]) -> ExperimentData:
    with storage.reading() as db, db.transaction():
        db.execute(
            "CREATE TEMP TABLE units (kind integer, unit text, vmin text, vmax text, first_jd float8, "
            "PRIMARY KEY (kind, unit)) ON COMMIT DROP"
        )
        for statement in _UNITS:
            db.execute(statement, {"experiment": name})
        data = ExperimentData(name)
        variants = sorted(str(v) for (v,) in db.execute("SELECT DISTINCT vmin FROM units").fetchall())
        counts = db.execute(
            "SELECT "
            + ", ".join(
                ["count(*) FILTER (WHERE vmin = %s AND vmax = %s)"] * len(variants) + ["count(*) FILTER (WHERE vmin <> vmax)"]
            )
            + " FROM units",
            [v for v in variants for _ in (0, 1)],
        ).fetchone()
        assert counts is not None
        data.users = {v: int(n) for v, n in zip(variants, counts, strict=False) if n}
        data.multiple_exposures = int(counts[-1] or 0)
        first, last = db.execute("SELECT MIN(first_ts), MAX(last_ts) FROM exposures WHERE experiment = %s", (name,)).fetchone()  # type: ignore[misc]
        data.first_exposure, data.last_exposure = first or "", last or ""
        if metrics and data.users:
            data.metrics = _metrics(db, metrics, data.users)
        return data


def _metrics(db: Any, metrics: Sequence[Metric], users: dict[str, int]) -> dict[str, dict[str, Aggregate]]:
    """See ``sqlite_experiments._metrics``."""
    out: dict[str, dict[str, Aggregate]] = {m.name: {} for m in metrics}
    for (event, slot), members in metric_groups(metrics).items():
        params, per_unit, sums = metric_columns(members, lambda name: f"%({name})s", "LEAST")
        params.update(event=event, slot=slot)
        slot_filter = "AND (e.context::jsonb ->> 'slot') = %(slot)s" if slot else ""
        columns = f"{julian('e.ts')} AS jd, e.amount_minor AS amount_minor"
        anonymous = f"""SELECT e.anonymous_id AS unit, 0 AS kind, {columns} FROM events e
  WHERE e.type = %(event)s AND e.user_id IS NULL {slot_filter}"""
        of_users = f"""SELECT e.user_id AS unit, 1 AS kind, {columns} FROM events e
  WHERE e.user_id IS NOT NULL AND e.type = %(event)s {slot_filter}
  UNION ALL
  SELECT l.user_id, 1, {columns} FROM ({_LINKS}) l JOIN events e
  ON e.type = %(event)s AND e.anonymous_id = l.anonymous_id AND e.user_id IS NULL WHERE true {slot_filter}"""
        found: dict[str, list[float]] = {}
        for events in (anonymous, of_users):
            sql = f"""SELECT variant, {sums} FROM (
  SELECT MIN(u.vmin) AS variant, {per_unit}
  FROM ({events}) m JOIN units u ON u.kind = m.kind AND u.unit = m.unit
  WHERE u.vmin = u.vmax
  GROUP BY m.unit
) per_unit GROUP BY variant"""
            add_sums(found, db.execute(sql, params).fetchall(), len(members))
        aggregates(out, found, users, members)
    return out


# ---------------------------------------------------------------------- bandits
_SESSION = (
    "CREATE TEMP TABLE IF NOT EXISTS bandit_seen (kind integer, unit text, variant text, first_jd float8) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS bandit_links (visitor text, user_id text) ON COMMIT DELETE ROWS",
)
_LINKED = "(SELECT MIN(i.user_id) FROM identities i WHERE i.anonymous_id = e.anonymous_id)"
_STITCHED = f"""WITH x AS MATERIALIZED (SELECT e.user_id, e.anonymous_id, e.props, {julian("e.ts")} AS jd,
  {_LINKED} AS linked FROM events e WHERE e.txid >= %(lo)s AND e.txid < %(hi)s AND {{where}})
SELECT CASE WHEN user_id IS NULL AND linked IS NULL THEN 0 ELSE 1 END AS kind,
  COALESCE(user_id, linked, anonymous_id) AS unit, props, jd FROM x"""
_LINKS_OF_SLICE = f"""INSERT INTO bandit_links SELECT visitor, user_id FROM (SELECT DISTINCT e.anonymous_id AS visitor,
  {_LINKED} AS user_id FROM events e
WHERE e.txid >= %(lo)s AND e.txid < %(hi)s AND e.type = 'identify' AND e.anonymous_id IS NOT NULL AND e.user_id IS NOT NULL) v
WHERE user_id IS NOT NULL"""
_RESTITCH = (
    """INSERT INTO bandit_seen SELECT 1, l.user_id, b.variant, b.first_jd FROM bandit_links l
JOIN bandit_units b ON b.experiment = %(experiment)s AND b.kind = 0 AND b.unit = l.visitor""",
    """INSERT INTO bandit_units (experiment, kind, unit, variant, mixed, first_jd, converted)
SELECT %(experiment)s, 1, l.user_id, MIN(b.variant),
  CASE WHEN MAX(b.mixed) = 1 OR MIN(b.variant) <> MAX(b.variant) THEN 1 ELSE 0 END, MIN(b.first_jd), MAX(b.converted)
FROM bandit_links l JOIN bandit_units b ON b.experiment = %(experiment)s AND b.kind = 0 AND b.unit = l.visitor
GROUP BY l.user_id
ON CONFLICT (experiment, kind, unit) DO UPDATE SET
  mixed = CASE WHEN bandit_units.mixed = 1 OR excluded.mixed = 1 OR bandit_units.variant <> excluded.variant THEN 1 ELSE 0 END,
  first_jd = LEAST(bandit_units.first_jd, excluded.first_jd), converted = GREATEST(bandit_units.converted, excluded.converted)""",
    """DELETE FROM bandit_units WHERE experiment = %(experiment)s AND kind = 0
AND unit IN (SELECT visitor FROM bandit_links)""",
)
_EXPOSURES = f"""INSERT INTO bandit_seen
SELECT kind, unit, props::jsonb ->> 'variant', MIN(jd) FROM ({_STITCHED.format(where="e.type = 'exposure'")}) s
WHERE (props::jsonb ->> 'experiment') = %(experiment)s AND (props::jsonb ->> 'variant') IS NOT NULL AND unit IS NOT NULL
GROUP BY 1, 2, 3"""
_UPSERT = """INSERT INTO bandit_units (experiment, kind, unit, variant, mixed, first_jd, converted)
SELECT %(experiment)s, kind, unit, MIN(variant), CASE WHEN MIN(variant) <> MAX(variant) THEN 1 ELSE 0 END, MIN(first_jd), 0
FROM bandit_seen GROUP BY kind, unit ORDER BY kind, unit
ON CONFLICT (experiment, kind, unit) DO UPDATE SET
  mixed = CASE WHEN bandit_units.mixed = 1 OR excluded.mixed = 1 OR bandit_units.variant <> excluded.variant THEN 1 ELSE 0 END,
  first_jd = LEAST(bandit_units.first_jd, excluded.first_jd)"""
_JD = julian("e.ts")
_EARLIER = f"""UPDATE bandit_units AS b SET converted = 1 FROM (SELECT DISTINCT kind, unit FROM bandit_seen) s
WHERE b.experiment = %(experiment)s AND b.kind = s.kind AND b.unit = s.unit AND b.converted = 0 AND (
  (b.kind = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.type = %(event)s
     AND e.anonymous_id = b.unit AND e.user_id IS NULL AND e.txid < %(lo)s {{slot}}
     AND {_JD} >= b.first_jd AND {_JD} < b.first_jd + %(window)s))
  OR (b.kind = 1 AND (EXISTS (SELECT 1 FROM events e WHERE e.user_id = b.unit
     AND e.type = %(event)s AND e.txid < %(lo)s {{slot}}
     AND {_JD} >= b.first_jd AND {_JD} < b.first_jd + %(window)s)
   OR EXISTS (SELECT 1 FROM identities i JOIN events e ON e.type = %(event)s
     AND e.anonymous_id = i.anonymous_id AND e.user_id IS NULL WHERE i.user_id = b.unit AND e.txid < %(lo)s {{slot}}
     AND {_JD} >= b.first_jd AND {_JD} < b.first_jd + %(window)s))))"""
_CONVERSIONS = """UPDATE bandit_units AS b SET converted = 1 FROM ({stitched}) c
WHERE b.experiment = %(experiment)s AND b.kind = c.kind AND b.unit = c.unit AND b.converted = 0
  AND c.jd >= b.first_jd AND c.jd < b.first_jd + %(window)s"""


def bandit_evidence(
    storage: PostgresStore, experiment: str, metric: Metric, slice_rows: int = SLICE
) -> dict[str, tuple[int, int]]:
    """Per variant: units exposed to it alone, and how many of them converted (see
    ``sqlite_bandits``). One process updates a bandit at a time (an advisory lock)."""
    from hub.storage.postgres import XMIN, slice_end

    slot = "AND (e.context::jsonb ->> 'slot') = %(slot)s" if metric.slot else ""
    earlier = _EARLIER.format(slot=slot)
    conversions = _CONVERSIONS.format(stitched=_STITCHED.format(where=f"e.type = %(event)s {slot}"))
    params = parameters(experiment, metric)
    kept_for = signature(metric)
    while True:
        with storage.writing() as db, db.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (f"bandit:{experiment}",))
            for statement in _SESSION:
                cur.execute(statement)
            row = cur.execute("SELECT metric, mark FROM bandit_marks WHERE experiment = %s", (experiment,)).fetchone()
            fresh = row is None or row[0] != kept_for  # a new bandit, or its metric changed: start over
            mark = 0 if fresh or row is None else int(row[1])
            if fresh and cur.execute("SELECT 1 FROM exposures WHERE experiment = %s LIMIT 1", (experiment,)).fetchone() is None:
                # no exposure of it among the events the marts have folded: start past them
                mark = int((cur.execute("SELECT mark FROM watermarks WHERE name = 'events'").fetchone() or (0,))[0])
            top = int(cur.execute(f"SELECT {XMIN}").fetchone()[0])  # type: ignore[index]
            hi = slice_end(cur, mark, top, slice_rows)
            more = cur.execute("SELECT 1 FROM events WHERE txid >= %s AND txid < %s LIMIT 1", (mark, hi)).fetchone() is not None
            if not more and not fresh:
                break
            if fresh:
                cur.execute("DELETE FROM bandit_units WHERE experiment = %s", (experiment,))
            if more:
                step = {**params, "lo": mark, "hi": hi}
                cur.execute(_LINKS_OF_SLICE, step)
                for statement in _RESTITCH:
                    cur.execute(statement, step)
                cur.execute(_EXPOSURES, step)
                cur.execute(_UPSERT, step)
                cur.execute(earlier, step)
                cur.execute(conversions, step)
                cur.execute("DELETE FROM bandit_seen")
                cur.execute("DELETE FROM bandit_links")
            cur.execute(
                "INSERT INTO bandit_marks VALUES (%s, %s, %s) ON CONFLICT (experiment) "
                "DO UPDATE SET metric = excluded.metric, mark = excluded.mark",
                (experiment, kept_for, hi if more else mark),
            )
            if not more or hi >= top:
                break
    with storage.reading() as db:
        return {
            str(variant): (int(n), int(converted or 0))
            for variant, n, converted in db.execute(
                "SELECT variant, COUNT(*), SUM(converted) FROM bandit_units WHERE experiment = %s AND mixed = 0 GROUP BY variant",
                (experiment,),
            ).fetchall()
        }
