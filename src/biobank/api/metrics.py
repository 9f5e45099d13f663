"""Prometheus metrics of one app (a registry of its own, so several apps can run in a test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Request counts and latencies by route template, and ingest outcomes.

    Labels are route *templates* (``/dicomweb/studies/{study}``), never paths or query
    strings: those carry UIDs and search values.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "biobank_http_requests_total",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "biobank_http_request_duration_seconds",
            "HTTP request latency by route template (until the response starts)",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=self.registry,
        )
        self.items = Counter(
            "biobank_ingest_items_total",
            "Instances received over STOW-RS or C-STORE, by outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "biobank_http_requests_in_flight", "Requests being served", registry=self.registry
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


__all__ = ["Metrics"]
