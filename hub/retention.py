"""Retention: delete what is older than each data class allows.

* lake — whole day files older than ``lake_days`` are removed;
* warehouse — events received more than ``warehouse_days`` ago, users not seen since,
  identity links first seen before; marts' user features without activity since;
* dead letters — older than ``dead_letter_days``;
* consent records — older than ``consent_days``.

:func:`run` takes ``now`` so tests (and a back-fill) drive it with their own clock; the
hub calls it every ``P13N_HUB_RETENTION_INTERVAL_S`` with the wall clock. The policy
becomes cutoffs here; the store deletes (``HubStore.delete_expired``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.storage import HubStore, RetentionCutoffs


@dataclass(frozen=True)
class RetentionPolicy:
    lake_days: int = 30
    warehouse_days: int = 395
    dead_letter_days: int = 30
    consent_days: int = 1095

    def cutoffs(self, now: datetime) -> RetentionCutoffs:
        """What is older than these goes, as of ``now`` (timezone-aware)."""
        return RetentionCutoffs(
            lake_day=(now - timedelta(days=self.lake_days)).date().isoformat(),
            warehouse=_iso(now - timedelta(days=self.warehouse_days)),
            dead_letters=_iso(now - timedelta(days=self.dead_letter_days)),
            consent=_iso(now - timedelta(days=self.consent_days)),
        )


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run(store: HubStore, policy: RetentionPolicy, now: datetime) -> dict[str, int]:
    """Apply the policy as of ``now`` (timezone-aware); returns what was deleted."""
    return store.delete_expired(policy.cutoffs(now))
