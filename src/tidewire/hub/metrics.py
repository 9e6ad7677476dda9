"""The hub's numbers, for ``GET /metrics`` in the Prometheus text format.

The hot path bumps plain integers on ``Metrics``; prometheus_client reads them
only when ``/metrics`` is scraped, and writes the exposition format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import PROXY_EVENTS

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)

_COUNTERS = {
    "connections": "WebSocket connections accepted",
    "messages_in": "client messages received",
    "messages_out": "messages sent to clients (replies and pushes)",
    "bytes_in": "bytes of client messages received",
    "bytes_out": "bytes of messages sent to clients",
    "publications": "publications accepted",
    "slow_consumers": "clients disconnected as slow consumers",
    "interrupted": "subscribers closed with 4003 after a gap in their channel's stream",
    "http_requests": "HTTP API requests answered",
}

PROXY_FAILURES = ("unreachable", "timeout", "broken", "status", "malformed", "invalid")


class Metrics:
    """Counters (ever increasing) and the gauges read from ``gauges``."""

    def __init__(self, gauges: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self.connections = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.publications = 0
        self.slow_consumers = 0
        self.interrupted = 0
        self.http_requests = 0
        self.proxy_calls: Counter[str] = Counter()  # event -> calls
        self.proxy_failures: Counter[tuple[str, str]] = Counter()  # (event, reason) -> calls
        self._gauges = gauges
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.latency = Histogram(
            "tidewire_hub_delivery_latency_seconds",
            "from a publication's acceptance to its frames being written to subscribers",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.proxy_latency = Histogram(
            "tidewire_hub_proxy_duration_seconds",
            "how long the backend took to answer a proxy call, failed ones included",
            ["event"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for name, text in _COUNTERS.items():
            counter = CounterMetricFamily(f"tidewire_hub_{name}", text)
            counter.add_metric([], getattr(self.metrics, name))
            yield counter
        calls = CounterMetricFamily(
            "tidewire_hub_proxy_calls", "calls to the backend proxy", labels=["event"]
        )
        failures = CounterMetricFamily(
            "tidewire_hub_proxy_failures",
            "proxy calls that got no usable answer (each answered 503 to the client)",
            labels=["event", "reason"],
        )
        for event in PROXY_EVENTS:
            calls.add_metric([event], self.metrics.proxy_calls[event])
            for reason in PROXY_FAILURES:
                failures.add_metric([event, reason], self.metrics.proxy_failures[event, reason])
        yield calls
        yield failures
        for name, (text, value) in self.metrics._gauges().items():
            gauge = GaugeMetricFamily(f"tidewire_hub_{name}", text)
            gauge.add_metric([], value)
            yield gauge
