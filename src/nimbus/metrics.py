"""Prometheus metrics: what ran, what it cost, what was refused, what runs now.

Counters are updated on the invoke path through cached label children (a dict
lookup and an add); gauges of instances and queued events are read from the
pools and the queue only when ``/metrics`` is scraped. The registry is the
platform's own, not the process-global default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._invocations = Counter(
            "nimbus_invocations",
            "Invocations that ran, by outcome (succeeded: the handler returned; failed: it "
            "raised, timed out, crashed or could not start)",
            ["namespace", "function", "version", "outcome"],
            registry=self.registry,
        )
        self._cold = Counter(
            "nimbus_cold_starts",
            "Invocations that waited for a new instance to initialise",
            ["namespace", "function"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "nimbus_invocation_duration_seconds",
            "Time the handler ran, per invocation",
            ["namespace", "function"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._gb_seconds = Counter(
            "nimbus_billed_gb_seconds",
            "Metering: billed duration times configured memory, in GB-seconds",
            ["namespace", "function"],
            registry=self.registry,
        )
        self._throttles = Counter(
            "nimbus_throttles",
            "Invocations refused with 429, by error code (instances, reserved concurrency, "
            "namespace quota or rate)",
            ["namespace", "function", "code"],
            registry=self.registry,
        )
        stream_labels = ["namespace", "function", "trigger"]
        self._stream_messages = Counter(
            "nimbus_stream_messages",
            "Entries of message-queue (redis-stream) triggers, by outcome (consumed: read from "
            "the stream, retries included; acked; failed: an attempt failed; dead_lettered)",
            [*stream_labels, "outcome"],
            registry=self.registry,
        )
        self._stream_errors = Counter(
            "nimbus_stream_errors",
            "Errors of message-queue triggers' consumers talking to their broker "
            "(unreachable, refused); each is followed by a reconnection with backoff",
            stream_labels,
            registry=self.registry,
        )
        self._stream_lag = Gauge(
            "nimbus_stream_lag",
            "Entries of a trigger's stream not yet delivered to its consumer group",
            stream_labels,
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def invoked(
        self,
        namespace: str,
        function: str,
        version: str,
        *,
        ok: bool,
        cold: bool,
        duration_ms: float,
        billed_ms: int,
        memory_mb: int,
    ) -> None:
        outcome = "succeeded" if ok else "failed"
        self._child(self._invocations, namespace, function, version, outcome).inc()
        if cold:
            self._child(self._cold, namespace, function).inc()
        self._child(self._duration, namespace, function).observe(duration_ms / 1000)
        self._child(self._gb_seconds, namespace, function).inc(billed_ms / 1000 * memory_mb / 1024)

    def throttled(self, namespace: str, function: str, code: str) -> None:
        self._child(self._throttles, namespace, function, code).inc()

    def stream_messages(
        self, namespace: str, function: str, trigger: str, outcome: str, count: int = 1
    ) -> None:
        self._child(self._stream_messages, namespace, function, trigger, outcome).inc(count)

    def stream_error(self, namespace: str, function: str, trigger: str) -> None:
        self._child(self._stream_errors, namespace, function, trigger).inc()

    def stream_lag(self, namespace: str, function: str, trigger: str, lag: int | None) -> None:
        """The trigger's lag now; None forgets it (unknown, or the trigger is gone)."""
        if lag is None:
            with contextlib.suppress(KeyError):
                self._stream_lag.remove(namespace, function, trigger)
        else:
            self._stream_lag.labels(namespace, function, trigger).set(lag)

    def watch(self, collect: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        """Gauges computed at scrape time (instances, queued events)."""

        class _Live(Collector):
            def collect(self) -> Iterator[GaugeMetricFamily]:
                yield from collect()

        self.registry.register(_Live())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
