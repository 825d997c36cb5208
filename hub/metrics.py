"""The hub's metrics read at scrape time: what the warehouse counted (events by outcome,
dead letters by reason), the fleet as heartbeats show it (last heartbeat, bundle version
and bundle error per edge), the oldest unfinished erasure, and the data directory's
disk. Alert and recording rules on them: deploy/prometheus/ (docs/OPERATIONS.md)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from hub.state import HubState

log = logging.getLogger(__name__)

#: Warehouse counters (hub/storage) → the ``outcome`` of ``p13n_hub_events_total``.
EVENT_OUTCOMES = {"received": "received", "accepted": "accepted", "duplicates": "duplicate", "suppressed": "suppressed"}


class HubCollector:
    def __init__(self, state: HubState) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._events()
        yield from self._fleet()
        oldest = GaugeMetricFamily(
            "p13n_hub_erasure_oldest_pending_timestamp_seconds",
            "When the oldest erasure request not yet acknowledged everywhere was made (0: none pending)",
        )
        try:
            value = self.state.erasures.oldest_pending() if hasattr(self.state, "erasures") else None
        except Exception as e:  # a scrape must not fail on a busy warehouse
            log.debug("oldest erasure unreadable: %s", e)
            value = None
        oldest.add_metric([], value or 0.0)
        yield oldest
        try:
            usage = shutil.disk_usage(self.state.settings.data_dir)
            free, total = float(usage.free), float(usage.total)
        except OSError:  # gone or unreadable: the scrape still answers
            free = total = float("nan")
        yield GaugeMetricFamily("p13n_hub_data_dir_free_bytes", "Bytes free on the filesystem of the data directory", value=free)
        yield GaugeMetricFamily(
            "p13n_hub_data_dir_size_bytes", "Size in bytes of the filesystem of the data directory", value=total
        )

    def _events(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "p13n_hub_events",
            "Events the warehouse was given (received), and what became of them (accepted, duplicate, suppressed: an erased subject's, dead_letter)",
            labels=["outcome"],
        )
        dead = CounterMetricFamily("p13n_hub_dead_letters", "Events kept as dead letters, by reason", labels=["reason"])
        counts: dict[str, int] = {}
        if self.state.storage is not None:
            try:
                counts = self.state.storage.counters()
            except Exception as e:
                log.debug("warehouse counters unreadable: %s", e)
        for name, outcome in EVENT_OUTCOMES.items():
            events.add_metric([outcome], float(counts.get(name, 0)))
        dead_total = 0
        for name, value in sorted(counts.items()):
            if name.startswith("dead:"):
                dead.add_metric([name[5:]], float(value))
                dead_total += value
        events.add_metric(["dead_letter"], float(dead_total))
        yield events
        yield dead

    def _fleet(self) -> Iterator[Metric]:
        seen = GaugeMetricFamily(
            "p13n_hub_edge_last_heartbeat_timestamp_seconds", "When the hub last heard an edge's heartbeat", labels=["edge"]
        )
        version = GaugeMetricFamily(
            "p13n_hub_edge_bundle_version", "Content bundle version an edge serves (-1: none)", labels=["edge"]
        )
        error = GaugeMetricFamily(
            "p13n_hub_edge_bundle_error", "1 when an edge reports that it refused or failed to load a bundle", labels=["edge"]
        )
        for edge_id, status in sorted(self.state.fleet.edges.items()):
            seen.add_metric([edge_id], float(status.get("received", 0.0)))
            live = status.get("bundle_version")
            version.add_metric([edge_id], float(live) if isinstance(live, int | float) else -1.0)
            error.add_metric([edge_id], 1.0 if status.get("bundle_error") else 0.0)
        yield seen
        yield version
        yield error
