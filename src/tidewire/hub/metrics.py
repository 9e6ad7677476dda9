"""The hub's numbers, for ``GET /metrics`` in the Prometheus text format.

The hot path bumps plain integers on ``Metrics``; prometheus_client reads them
only when ``/metrics`` is scraped, and writes the exposition format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
        self._gauges = gauges
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.latency = Histogram(
            "tidewire_hub_delivery_latency_seconds",
            "from a publication's acceptance to its frames being written to subscribers",
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
        for name, (text, value) in self.metrics._gauges().items():
            gauge = GaugeMetricFamily(f"tidewire_hub_{name}", text)
            gauge.add_metric([], value)
            yield gauge
