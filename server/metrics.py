"""Prometheus metrics: declared once on a per-app registry, fed by the middleware and batcher.

The batcher knows nothing of Prometheus; :class:`Metrics` implements its
observer protocol and reads its statistics at scrape time.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from batcher import BatcherStatistics, BatchRecord, DropReason

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


#: The labels of ``batchserve_model_info``: what this instance serves, and how.
MODEL_INFO_LABELS = (
    "model", "version", "state", "weights", "engine", "engine_version", "device", "precision",
    "max_batch_size", "workers",
)  # fmt: skip


#: Every per-model metric's labels: the model's name and its version.
_MODEL = ("model", "version")


class Metrics:
    """Every ``batchserve_*`` metric, on its own registry so apps and tests stay isolated."""

    def __init__(
        self,
        *,
        batch_sizes: Iterable[int],
        endpoints: Iterable[str],
        grpc_methods: Iterable[str] = (),
        error_codes: Iterable[str],
        disconnect_stages: Iterable[str] = (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self._declare_http()
        self._declare_pipeline(tuple(float(size) for size in batch_sizes))
        self._declare_lifecycle()
        self._initialise(list(endpoints), list(error_codes), list(disconnect_stages))
        for method in grpc_methods:
            self.request_duration.labels(protocol="grpc", endpoint=method, model="", version="")

    def _declare_http(self) -> None:
        r = self.registry
        self.requests = Counter(
            "batchserve_requests",
            "Requests answered, HTTP and gRPC (model, version: what an inference request "
            "reached, else empty; status: HTTP's number or gRPC's code name)",
            ["protocol", "endpoint", "status", "model", "version"],
            registry=r,
        )
        self.images = Counter(
            "batchserve_images",
            "Images classified and answered",
            ["protocol", "endpoint", "model", "version"],
            registry=r,
        )
        self.request_duration = Histogram(
            "batchserve_request_duration_seconds",
            "Time from request arrival to the end of the response (HTTP) or the call (gRPC)",
            ["protocol", "endpoint", "model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "batchserve_inflight_requests", "Requests being handled now", registry=r
        )
        self.errors = Counter(
            "batchserve_errors", "Error responses by API error code", ["code"], registry=r
        )
        self.client_disconnects = Counter(
            "batchserve_client_disconnects",
            "Requests whose client left before the answer (status 499), by stage",
            ["stage"],
            registry=r,
        )

    def _declare_pipeline(self, batch_sizes: tuple[float, ...]) -> None:
        r = self.registry
        gauge = functools.partial(Gauge, labelnames=_MODEL, registry=r)
        self.queue_depth = gauge("batchserve_queue_depth", "Items waiting in the batcher")
        self.queue_capacity = gauge(
            "batchserve_queue_capacity", "Items the batcher queue holds before refusing"
        )
        self.workers_busy = gauge(
            "batchserve_workers_busy", "Inference workers running a batch now"
        )
        # Also a label of batchserve_model_info; as a value it can divide busy time.
        self.workers = gauge("batchserve_workers", "Inference workers configured")
        self.compute_seconds = Counter(
            "batchserve_compute_seconds",
            "Forward-pass time charged to the model: seconds x the share of the cores held",
            _MODEL,
            registry=r,
        )
        histogram = functools.partial(Histogram, labelnames=_MODEL, registry=r)
        self.queue_wait = histogram(
            "batchserve_queue_wait_seconds",
            "Time an item waited in the batcher before its batch started",
            buckets=_QUEUE_BUCKETS,
        )
        self.batch_size = histogram(
            "batchserve_batch_size",
            "Real items (images) per batch (no padding)",
            buckets=batch_sizes,
        )
        self.inference_duration = histogram(
            "batchserve_inference_duration_seconds",
            "One batched forward pass, softmax and top-k included",
            buckets=_STAGE_BUCKETS,
        )
        self.preprocess_duration = histogram(
            "batchserve_preprocess_duration_seconds",
            "Reading, decoding and transforming one upload",
            buckets=_STAGE_BUCKETS,
        )
        self.dropped = Counter(
            "batchserve_dropped",
            "Items that left the batcher without being computed",
            [*_MODEL, "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "batchserve_model_info",
            "The served model and its settings (value 1)",
            MODEL_INFO_LABELS,
            registry=r,
        )

    def _declare_lifecycle(self) -> None:
        r = self.registry
        self.loads = Counter(
            "batchserve_model_loads",
            "Model loads and reloads at run time (model control), by outcome",
            ["model", "outcome"],
            registry=r,
        )
        self.unloads = Counter(
            "batchserve_model_unloads",
            "Model unloads at run time, by outcome (drained, or timeout: requests still open)",
            ["model", "outcome"],
            registry=r,
        )
        self.load_duration = Histogram(
            "batchserve_model_load_duration_seconds",
            "Loading, checking and warming up a model at run time, until it serves or fails",
            ["model", "outcome"],
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )

    def observe_load(self, model: str, outcome: str, duration_s: float) -> None:
        """One load at run time: ``outcome`` is success or failure."""
        self.loads.labels(model=model, outcome=outcome).inc()
        self.load_duration.labels(model=model, outcome=outcome).observe(duration_s)

    def forget_model(self, model: str, version: int) -> None:
        """A version no longer served: its gauges go (they read its batcher); counters stay."""
        labels = (model, str(version))
        for gauge in (self.queue_depth, self.queue_capacity, self.workers_busy, self.workers):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

    def _initialise(self, endpoints: list[str], error_codes: list[str], stages: list[str]) -> None:
        # Labelled series exist from start-up so dashboards show zeros, not gaps.
        for endpoint in endpoints:
            self.request_duration.labels(protocol="http", endpoint=endpoint, model="", version="")
        for code in error_codes:
            self.errors.labels(code=code)
        for stage in stages:
            self.client_disconnects.labels(stage=stage)

    def for_model(self, name: str, version: int = 1) -> ModelMetrics:
        """The pipeline metrics of one model version (its labels), zeros published now."""
        return ModelMetrics(self, name, str(version))

    def count_images(
        self, model: str, version: str, endpoint: str, count: int, protocol: str = "http"
    ) -> None:
        """``count`` images of ``model``'s ``version`` answered through ``endpoint``."""
        labels = {"protocol": protocol, "endpoint": endpoint, "model": model, "version": version}
        self.images.labels(**labels).inc(count)

    def set_model_info(self, **labels: str) -> None:
        """Publish one model's description as the labels of ``batchserve_model_info``."""
        self.model_info.labels(**labels).set(1)

    def clear_model_info(self) -> None:
        """Forget every model's description (before a new start publishes them again)."""
        self.model_info.clear()

    def describe_models(self, served: Iterable[tuple[Any, str]]) -> None:
        """``batchserve_model_info`` anew: one series per (description, state) served.

        A description's fields of the labels' names are the labels; the served
        name is ``model``.
        """
        self.clear_model_info()
        named = [label for label in MODEL_INFO_LABELS if label not in ("model", "state")]
        for description, state in served:
            fields = {n: str(getattr(description, n)) for n in named}
            self.set_model_info(model=str(description.name), state=state, **fields)

    def observe_request(
        self,
        endpoint: str,
        status: int | str,
        duration_s: float,
        model: str = "",
        version: str = "",
        protocol: str = "http",
    ) -> None:
        """Count one answered request and its latency (model and version: what it reached).

        ``status`` is HTTP's number, or for gRPC the status code's name (``OK``, ``NOT_FOUND``).
        """
        labels = {"protocol": protocol, "endpoint": endpoint, "model": model, "version": version}
        self.requests.labels(status=str(status), **labels).inc()
        self.request_duration.labels(**labels).observe(duration_s)

    def exposition(self, accept_header: str) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (Prometheus text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept_header)
        return encoder(self.registry), content_type


class ModelMetrics:
    """One model version's view of the pipeline metrics: the batcher's observer, with its labels."""

    def __init__(self, metrics: Metrics, model: str, version: str = "1") -> None:
        self.model = model
        self.labels = {"model": model, "version": version}
        self._metrics = metrics
        self.preprocess_duration = metrics.preprocess_duration.labels(**self.labels)
        self._batch_size = metrics.batch_size.labels(**self.labels)
        self._inference_duration = metrics.inference_duration.labels(**self.labels)
        self._queue_wait = metrics.queue_wait.labels(**self.labels)
        self._compute_seconds = metrics.compute_seconds.labels(**self.labels)
        for reason in DropReason:
            metrics.dropped.labels(reason=reason.value, **self.labels)

    def watch_batcher(self, statistics: Callable[[], BatcherStatistics]) -> None:
        """Read queue depth and busy workers from the batcher at every scrape."""
        m, labels = self._metrics, self.labels
        m.queue_depth.labels(**labels).set_function(lambda: statistics().queue_depth)
        m.queue_capacity.labels(**labels).set_function(lambda: statistics().max_queue_size)
        m.workers_busy.labels(**labels).set_function(lambda: statistics().busy_workers)
        m.workers.labels(**labels).set_function(lambda: statistics().workers)

    def count_compute(self, seconds: float) -> None:
        """One forward pass's compute (the compute gate's charge), in machine-seconds."""
        self._compute_seconds.inc(seconds)

    def on_batch(self, record: BatchRecord) -> None:
        """Batcher observer hook: one call per batch."""
        self._batch_size.observe(record.size)
        self._inference_duration.observe(record.run_s)
        for wait in record.queue_waits_s:
            self._queue_wait.observe(wait)

    def on_drop(self, reason: DropReason) -> None:
        """Batcher observer hook: one call per item dropped without compute."""
        self._metrics.dropped.labels(reason=reason.value, **self.labels).inc()
