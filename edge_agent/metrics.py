"""Prometheus metrics of one edge agent (a registry per app, no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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

    @classmethod
    def create(cls) -> EdgeMetrics:
        reg = CollectorRegistry(auto_describe=True)
        fast = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
        return cls(
            registry=reg,
            requests=Counter(
                "p13n_edge_requests", "Requests handled, by route and status class", ["route", "status"], registry=reg
            ),
            decisions=Counter("p13n_edge_decisions", "Slot decisions, by slot and outcome", ["slot", "outcome"], registry=reg),
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
            bundle_version=Gauge("p13n_edge_bundle_version", "Version of the live content bundle", registry=reg),
        )
