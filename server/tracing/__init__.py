"""OpenTelemetry traces of requests and batches: optional, off unless asked for.

``pip install 'batchserve[tracing]'``, then ``BATCHSERVE_TRACING=true`` or any
``OTEL_EXPORTER_OTLP_ENDPOINT`` turns it on; the standard ``OTEL_*`` variables
say where spans go and which are kept (docs/tracing.md). Off, nothing of the
extra (OpenTelemetry's SDK and exporters) is imported and each place a span
would start costs one ``None`` check.

The web layer opens a server span per HTTP request and gRPC call
(:class:`Tracing`); the model unit adds the request's ``upload``,
``preprocess`` and ``queue`` spans through its :class:`RequestTrace`, and one
``inference`` span per forward pass linked to every request in the batch.
"""

from __future__ import annotations

from server.tracing.facade import (
    RequestTrace,
    Tracing,
    TracingUnavailableError,
    check,
    record_batch,
    record_queue,
    stage,
    wanted,
)

__all__ = [
    "RequestTrace",
    "Tracing",
    "TracingUnavailableError",
    "check",
    "record_batch",
    "record_queue",
    "stage",
    "wanted",
]
