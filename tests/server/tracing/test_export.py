"""End to end: a real ``batchserve`` process sends its spans over OTLP to a receiver on loopback.

The receivers are OpenTelemetry's own protocol: the collector's trace service
over gRPC (opentelemetry-proto's servicer) and ``POST /v1/traces`` with a
protobuf body over HTTP, each decoding what arrives as a collector would.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from loadtest.process import free_port, start_server
from tests.conftest import SUITE_CACHE, photo, wait_until
from tests.server.tracing.test_spans import CALLER_SPAN, CALLER_TRACE, TRACEPARENT

#: A real model in a real process: make test-fast skips these.
pytestmark = pytest.mark.slow


class Received:
    """What the receiver was sent: each span with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], Span]] = []
        self.lock = threading.Lock()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value
                              for a in resource_spans.resource.attributes}  # fmt: skip
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((attributes, span) for span in scope_spans.spans)

    def named(self, name: str) -> list[Span]:
        with self.lock:
            return [span for _, span in self.spans if span.name == name]


def _grpc_receiver(received: Received, port: int) -> Any:
    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (the protocol's name)
            received.add(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return lambda: server.stop(grace=None)


def _http_receiver(received: Received, port: int) -> Any:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = (
                self.path == "/v1/traces"
                and self.headers["Content-Type"] == "application/x-protobuf"
            )
            if ok:
                received.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.shutdown


@pytest.fixture(params=["http/protobuf", "grpc"])
def receiver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    """A receiver, and the OTEL_* variables a served process needs to send to it."""
    received, port = Received(), free_port()
    stop = (_grpc_receiver if request.param == "grpc" else _http_receiver)(received, port)
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
