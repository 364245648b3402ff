"""End to end: a real ``batchserve`` process sends its spans over OTLP to a receiver on loopback.

The receivers (loadtest/otlp_receiver.py) speak OpenTelemetry's own protocol:
the collector's trace service over gRPC (opentelemetry-proto's servicer) and
``POST /v1/traces`` with a protobuf body over HTTP, each decoding what arrives
as a collector would.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from loadtest import otlp_receiver
from loadtest.otlp_receiver import Received
from loadtest.process import free_port, start_server
from tests.conftest import SUITE_CACHE, photo, wait_until
from tests.server.tracing.test_spans import CALLER_SPAN, CALLER_TRACE, TRACEPARENT

#: A real model in a real process: make test-fast skips these.
pytestmark = pytest.mark.slow


@pytest.fixture(params=["http/protobuf", "grpc"])
def receiver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    """A receiver, and the OTEL_* variables a served process needs to send to it."""
    port = free_port()
    received, stop = otlp_receiver.start(request.param, port)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", request.param)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "batchserve-e2e")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: sent soon, not after 5 s
    yield received
    stop()


def test_a_served_process_exports_its_request_and_batch_spans_over_otlp(
    receiver: Received,
) -> None:
    process, url, _ = start_server({
        "MODEL": "mobilenet_v3_small", "WEIGHTS": "random", "ENGINE": "torch",
        "PRECISION": "fp32", "COMPILE": "off", "CACHE_DIR": str(SUITE_CACHE),
    })  # fmt: skip
    try:
        info = httpx.get(f"{url}/info", timeout=30).json()
        assert info["tracing"].startswith("otlp ")
        answer = httpx.post(f"{url}/predict", files={"file": ("c.jpg", photo("cat.jpg"))},
                            headers={"traceparent": TRACEPARENT}, timeout=60)  # fmt: skip
        assert answer.status_code == 200
        wait_until(lambda: bool(receiver.named("inference")), timeout_s=60)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0  # a drained stop flushes what is left
    (request,) = receiver.named("POST /predict")
    assert request.trace_id == CALLER_TRACE.to_bytes(16, "big")
    assert request.parent_span_id == CALLER_SPAN.to_bytes(8, "big")
    assert request.kind == Span.SPAN_KIND_SERVER
    for name in ("upload", "preprocess", "queue"):
        (stage,) = receiver.named(name)
        assert (stage.trace_id, stage.parent_span_id) == (request.trace_id, request.span_id)
    batch = receiver.named("inference")[-1]
    assert [link.span_id for link in batch.links] == [request.span_id]
    resources = {attributes["service.name"] for attributes, _ in receiver.spans}
    assert resources == {"batchserve-e2e"}
