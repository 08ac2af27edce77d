"""Prometheus metrics of the API, labelled by route template so ids do not explode cardinality."""

from __future__ import annotations

from importlib.metadata import version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.core.migrations import head_revision


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.stream_connections = Gauge(
            "event_stream_connections",
            "Open live event streams (WebSocket and SSE) of this process",
            registry=self.registry,
        )
        self.stream_dropped = Counter(
            "event_stream_dropped",
            "Live event streams dropped for falling more than STREAM_QUEUE_SIZE events behind",
            registry=self.registry,
        )

        # What runs since when: a deploy (or restart) and a migration show as changes of these.
        self.build = Gauge(
            "botmarket_build_info",
            "The running code: its version and the schema revision its migrations lead to",
            ["version", "schema_revision"],
            registry=self.registry,
        )
        self.build.labels(version("botmarket"), head_revision()).set(1)
        self.started = Gauge(
            "botmarket_started_timestamp_seconds",
            "Unix time at which this API process started serving",
            registry=self.registry,
        )
        self.started.set_to_current_time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
