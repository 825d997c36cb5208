"""Prometheus metrics of one edge agent (a registry per app, no globals).

With several worker processes (``P13N_EDGE_WORKERS``) every worker writes its counters
and histograms to files in the data directory (prometheus_client's multiprocess mode,
chosen by edge_agent/preload.py before any metric exists) and a scrape, whichever
worker answers it, sums them. Gauges then take a value per live worker and report the
one their ``multiprocess_mode`` names (the lowest bundle version, the highest loop lag…);
values computed at scrape time are set by each worker every second instead
(:meth:`EdgeMetrics.refresh`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, Metric

#: Fallback reasons every edge can meet (counted from 0 at start); others appear when met.
FALLBACK_REASONS = (
    "deadline",
    "error",
    "no_bundle",
    "unknown_slot",
    "holdout",
    "no_match",
    "empty",
    "no_visitor",
    "overload",
)


@dataclass
class EdgeMetrics:
    registry: CollectorRegistry
    requests: Counter
    decisions: Counter
    fallbacks: Counter
    rewrite_seconds: Histogram
    decision_seconds: Histogram
    origin_seconds: Histogram
    shell_cache: Counter
    bundle_version: Gauge
    page_contexts: Counter
    collected: Counter
    collect_rejections: Counter
    published: Counter
    publish_failures: Counter
    outbox_depth: Gauge
    bundles_refused: Counter
    profiles_applied: Counter
    erasures_applied: Counter
    identity_rejections: Counter
    tcf_invalid: Counter
    untrusted_headers: Counter
    visitors_issued: Counter
    exposures: Counter
    shared_fragments: Counter
    profile_sync_delay: Histogram
    nats_connected: Gauge
    data_dir_free_bytes: Gauge
    data_dir_size_bytes: Gauge
    loop_lag: Gauge
    gc_pauses: Histogram
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    #: counters and histograms are summed over the worker processes' files
    multiprocess: bool = False
    #: gauges computed when read: (gauge, how); set by :meth:`refresh` with several workers
    _live: list[tuple[Gauge, Callable[[], float]]] = field(default_factory=list, repr=False)
    #: the models' remembered-answer counts, as a counter fed by :meth:`refresh`
    _memo: tuple[Counter, Callable[[], dict[str, tuple[int, int]]], dict[tuple[str, str], int]] | None = None

    def summary(self) -> dict[str, Any]:
        """What the heartbeat carries for the hub's fleet view: pages decided, the decision
        time's median and 99th percentile (the upper bound of the histogram bucket that
        holds it, in ms; None before any page) and the fallbacks by reason."""
        families = self._families()
        buckets: list[tuple[float, float]] = []
        for family in families.get("p13n_edge_decision_seconds", []):
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((float(sample.labels["le"]), sample.value))
        buckets.sort()
        total = buckets[-1][1] if buckets else 0.0

        def quantile(q: float) -> float | None:
            if total <= 0:
                return None
            for bound, count in buckets:
                if count >= q * total:
                    return None if bound == float("inf") else round(bound * 1000, 3)
            return None

        fallbacks = {
            str(sample.labels["reason"]): int(sample.value)
            for family in families.get("p13n_edge_fallbacks", [])
            for sample in family.samples
            if sample.name.endswith("_total")
        }
        return {"pages": int(total), "p50_ms": quantile(0.5), "p99_ms": quantile(0.99), "fallbacks": fallbacks}

    def _families(self) -> dict[str, list[Metric]]:
        """This worker's decision time and fallbacks, or every worker's summed."""
        if self.multiprocess:
            found: list[Metric] = list(_merged().collect())
        else:
            found = [*self.decision_seconds.collect(), *self.fallbacks.collect()]
        out: dict[str, list[Metric]] = {}
        for family in found:
            out.setdefault(family.name, []).append(family)
        return out

    @classmethod
    def create(cls, multiprocess: bool = False) -> EdgeMetrics:
        reg = CollectorRegistry(auto_describe=True)
        fast = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
        return cls(
            registry=reg,
            requests=Counter(
                "p13n_edge_requests", "Requests handled, by route and status class", ["route", "status"], registry=reg
            ),
            decisions=Counter(
                "p13n_edge_decisions",
                "Slot decisions, by slot, slot kind (variant, experiment, bandit, recommend) and outcome",
                ["slot", "kind", "outcome"],
                registry=reg,
            ),
            fallbacks=Counter(
                "p13n_edge_fallbacks", "Slots or pages served with fallback content, by reason", ["reason"], registry=reg
            ),
            rewrite_seconds=Histogram(
                "p13n_edge_rewrite_seconds", "Time to decide and rewrite one page", buckets=fast, registry=reg
            ),
            decision_seconds=Histogram(
                "p13n_edge_decision_seconds", "Time to decide all slots of one page", buckets=fast, registry=reg
            ),
            origin_seconds=Histogram("p13n_edge_origin_seconds", "Origin fetch time (filter mode)", registry=reg),
            shell_cache=Counter("p13n_edge_shell_cache", "Shell cache lookups by result", ["result"], registry=reg),
            page_contexts=Counter(
                "p13n_edge_page_contexts", "Page contexts built or reused by SSI subrequests", ["how"], registry=reg
            ),
            collected=Counter("p13n_edge_events", "Collected events by outcome", ["outcome"], registry=reg),
            collect_rejections=Counter(
                "p13n_edge_collect_rejected", "Collect requests refused, by reason", ["reason"], registry=reg
            ),
            published=Counter("p13n_edge_events_published", "Events published to NATS", registry=reg),
            publish_failures=Counter("p13n_edge_publish_failures", "Failed NATS connects or publishes", registry=reg),
            bundles_refused=Counter(
                "p13n_edge_bundles_refused", "Model bundles refused (verification or loading failed)", registry=reg
            ),
            profiles_applied=Counter(
                "p13n_edge_profiles_applied", "Profile updates and purges applied from the hub", registry=reg
            ),
            erasures_applied=Counter("p13n_edge_erasures_applied", "Erasure orders applied from the hub", registry=reg),
            tcf_invalid=Counter(
                "p13n_edge_tcf_invalid",
                "TC and GPP strings that could not be read (treated as no consent), by reason (gpp_… for GPP)",
                ["reason"],
                registry=reg,
            ),
            identity_rejections=Counter(
                "p13n_edge_identity_rejected",
                "User id claims dropped or refused (no proof, bad, expired or long-lived token)",
                ["reason"],
                registry=reg,
            ),
            untrusted_headers=Counter(
                "p13n_edge_untrusted_headers_dropped",
                "Requests from an untrusted peer whose forwarding headers (geo, user, proto) were ignored",
                registry=reg,
            ),
            visitors_issued=Counter(
                "p13n_edge_visitor_ids_issued",
                "Visitor ids issued by a consent or collect call (consent given on a page served without one)",
                registry=reg,
            ),
            exposures=Counter(
                "p13n_edge_exposures",
                "Experiment and bandit exposures recorded (analytics consent), by experiment and variant",
                ["experiment", "variant"],
                registry=reg,
            ),
            shared_fragments=Counter(
                "p13n_edge_shared_fragments",
                "Shareable slots answered for nginx's fragment cache: filled (decided from the class cookie, "
                "cacheable) or live (no valid class: decided for the visitor, not cached); class cookies issued",
                ["result"],
                registry=reg,
            ),
            profile_sync_delay=Histogram(
                "p13n_edge_profile_sync_delay_seconds",
                "From the hub storing a profile change to this edge applying it",
                buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0),
                registry=reg,
            ),
            nats_connected=Gauge(
                "p13n_edge_nats_connected",
                "1 while connected to NATS (with several workers: while every worker is)",
                registry=reg,
                multiprocess_mode="livemin",
            ),
            data_dir_free_bytes=Gauge(
                "p13n_edge_data_dir_free_bytes",
                "Bytes free on the filesystem of the data directory",
                registry=reg,
                multiprocess_mode="livemin",
            ),
            data_dir_size_bytes=Gauge(
                "p13n_edge_data_dir_size_bytes",
                "Size in bytes of the filesystem of the data directory",
                registry=reg,
                multiprocess_mode="livemax",
            ),
            gc_pauses=Histogram(
                "p13n_edge_gc_pause_seconds",
                "Python garbage collections, by generation: how long each stopped the agent (2: full collections, "
                "whose length grows with the live sessions and remembered answers held)",
                ["generation"],
                buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
                registry=reg,
            ),
            loop_lag=Gauge(
                "p13n_edge_loop_lag_seconds",
                "Recent event-loop lag (how long requests wait to run); pages are shed above P13N_EDGE_SHED_LAG_MS "
                "(with several workers: the most lagging worker's)",
                registry=reg,
                multiprocess_mode="livemax",
            ),
            outbox_depth=Gauge(
                "p13n_edge_outbox_depth", "Events waiting in the outbox", registry=reg, multiprocess_mode="livemostrecent"
            ),
            bundle_version=Gauge(
                "p13n_edge_bundle_version",
                "Version of the live content bundle (with several workers: the oldest any worker serves)",
                registry=reg,
                multiprocess_mode="livemin",
            ),
            multiprocess=multiprocess,
        )

    def _child(self, metric: Counter, *labels: str) -> Any:
        # labels() takes a lock and builds a key each call; the hot path reuses children
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def init_labels(self) -> None:
        """Children for the label values every edge has, so rates and ratios start at 0
        rather than with the first occurrence (Prometheus' advice)."""
        for reason in FALLBACK_REASONS:
            self._child(self.fallbacks, reason)

    def watch_data_dir(self, data_dir: Path) -> None:
        """Free and total bytes of the data directory's filesystem, read at scrape time."""

        def usage(field: str) -> float:
            try:
                return float(getattr(shutil.disk_usage(data_dir), field))
            except OSError:  # gone or unreadable: the scrape still answers
                return float("nan")

        self.live(self.data_dir_free_bytes, lambda: usage("free"))
        self.live(self.data_dir_size_bytes, lambda: usage("total"))

    def live(self, gauge: Gauge, how: Callable[[], float]) -> None:
        """``gauge`` reads ``how()``: at scrape time, or every second with several workers."""
        if self.multiprocess:
            self._live.append((gauge, how))
        else:
            gauge.set_function(how)

    def refresh(self) -> None:
        """With several workers: set this worker's computed gauges and add its models'
        remembered-answer counts (a new bundle starts them from 0) to their counter."""
        for gauge, how in self._live:
            gauge.set(how())
        if self._memo is not None:
            counter, stats, last = self._memo
            for call, (hits, misses) in stats().items():
                for result, value in (("hit", hits), ("miss", misses)):
                    before = last.get((call, result), 0)
                    delta = value - before if value >= before else value
                    if delta:
                        self._child(counter, call, result).inc(delta)
                    last[(call, result)] = value

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's registry, or every worker's files summed."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.refresh()
        return generate_latest(_merged())

    def leave(self) -> None:
        """A worker stopping: its gauges leave the live workers' values."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def watch_gc(self) -> Callable[[str, dict[str, Any]], None]:
        """Time every garbage collection into ``gc_pauses``; returns the callback to add
        to ``gc.callbacks`` (and remove on shutdown)."""
        children = [self.gc_pauses.labels(str(g)) for g in range(3)]
        started = [0.0]

        def callback(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                children[min(int(info.get("generation", 2)), 2)].observe(time.perf_counter() - started[0])

        return callback

    def watch_model_memo(self, stats: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """Hits and misses of the live models' remembered answers, read at scrape time
        (a new bundle starts from 0: a counter reset)."""
        if self.multiprocess:
            counter = Counter("p13n_edge_model_memo", _MEMO_HELP, ["call", "result"], registry=self.registry)
            self._memo = (counter, stats, {})
            return
        self.registry.register(_MemoCollector(stats))

    def decision(self, slot: str, outcome: str, kind: str) -> None:
        # slot names in requests are untrusted: unknown ones share one label value
        if outcome == "unknown_slot":
            slot, kind = "_unknown", "unknown"
        self._child(self.decisions, slot, kind, outcome).inc()

    def exposure(self, experiment: str, variant: str) -> None:
        self._child(self.exposures, experiment, variant).inc()

    def fallback(self, reason: str) -> None:
        self._child(self.fallbacks, reason).inc()

    def request(self, route: str, status_class: str) -> None:
        self._child(self.requests, route, status_class).inc()

    def shell(self, result: str) -> None:
        self._child(self.shell_cache, result).inc()

    def context(self, how: str) -> None:
        self._child(self.page_contexts, how).inc()

    def events(self, outcome: str, n: int) -> None:
        if n:
            self._child(self.collected, outcome).inc(n)

    def collect_rejected(self, reason: str) -> None:
        self._child(self.collect_rejections, reason).inc()

    def shared(self, result: str) -> None:
        self._child(self.shared_fragments, result).inc()

    def visitor_issued(self) -> None:
        self.visitors_issued.inc()

    def identity_rejected(self, reason: str) -> None:
        self._child(self.identity_rejections, reason).inc()


def _merged() -> CollectorRegistry:
    """Every worker's metric files, summed (prometheus_client's multiprocess mode)."""
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


_MEMO_HELP = "Model calls answered from remembered answers (hit) or computed (miss), by call (P13N_EDGE_MODEL_MEMO_ENTRIES)"


class _MemoCollector:
    def __init__(self, stats: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("p13n_edge_model_memo", _MEMO_HELP, labels=["call", "result"])
        for call, (hits, misses) in sorted(self.stats().items()):
            family.add_metric([call, "hit"], hits)
            family.add_metric([call, "miss"], misses)
        yield family
