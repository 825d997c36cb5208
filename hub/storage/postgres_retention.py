"""Retention in the PostgreSQL tiers: what is older than each cutoff is deleted, each
data class in its own transaction (a failure leaves that class whole and the others
done). Whole lake days go at once, as the SQLite lake drops whole files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.storage.interface import RetentionCutoffs
from hub.storage.postgres_experiments import julian

if TYPE_CHECKING:
    from hub.storage.postgres import PostgresStore

#: (result name, statement, which cutoff) per data class.
_DELETES = (
    ("warehouse.events", "DELETE FROM events WHERE received_at < %s", "warehouse"),
    ("warehouse.dead_letters", "DELETE FROM dead_letters WHERE received_at < %s", "dead_letters"),
    ("warehouse.consent_log", "DELETE FROM consent_log WHERE received_at < %s", "consent"),
    ("warehouse.users", "DELETE FROM users WHERE last_seen < %s", "warehouse"),
    ("warehouse.identities", "DELETE FROM identities WHERE first_seen < %s", "warehouse"),
    ("marts.user_features", "DELETE FROM user_features WHERE last_ts < %s", "warehouse"),
    ("marts.exposures", "DELETE FROM exposures WHERE last_ts < %s", "warehouse"),
    ("marts.bandit_units", f"DELETE FROM bandit_units WHERE first_jd < {julian('%s')}", "warehouse"),
)


def delete_expired(storage: PostgresStore, cut: RetentionCutoffs) -> dict[str, int]:
    out: dict[str, int] = {}
    with storage.writing() as db:
        days = [r[0] for r in db.execute("SELECT DISTINCT day FROM lake_changes WHERE day < %s", (cut.lake_day,)).fetchall()]
        db.execute("DELETE FROM lake_events WHERE day < %s", (cut.lake_day,))
        db.execute("DELETE FROM lake_changes WHERE day < %s", (cut.lake_day,))
        out["lake.files"] = len(days)
    for name, statement, which in _DELETES:
        with storage.writing() as db:
            out[name] = max(db.execute(statement, (getattr(cut, which),)).rowcount, 0)
    return out
