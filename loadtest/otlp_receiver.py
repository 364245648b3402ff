"""An OTLP trace receiver on loopback, over HTTP or gRPC, as a collector receives spans.

It decodes what arrives with opentelemetry-proto's own messages and keeps each
span with its resource's attributes: the tracing benchmark counts them, and the
end-to-end test reads them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

ExportRequest = trace_service_pb2.ExportTraceServiceRequest


class Received:
    """What the receiver was sent: each span with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], Span]] = []
        self._lock = threading.Lock()

    def add(self, request: ExportRequest) -> None:
        """Keep every span of one export."""
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value
                              for a in resource_spans.resource.attributes}  # fmt: skip
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((attributes, span) for span in scope_spans.spans)

    def named(self, name: str) -> list[Span]:
        """The spans called ``name``, in the order they arrived."""
        with self._lock:
            return [span for _, span in self.spans if span.name == name]

    def count(self) -> int:
        """How many spans arrived."""
        with self._lock:
            return len(self.spans)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportRequest, context: Any) -> Any:  # noqa: N802 (OTLP's name)
        self.received.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _grpc(received: Received, port: int) -> Callable[[], None]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    # opentelemetry-proto's generated grpc module has no type hints.
    add = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    add(_TraceService(received), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()

    def stop() -> None:
        server.stop(grace=None).wait()

    return stop


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            protobuf = self.headers["Content-Type"] == "application/x-protobuf"
            ok = self.path == "/v1/traces" and protobuf
            if ok:
                received.add(ExportRequest.FromString(body))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the benchmark and the tests print what matters."""

    return Handler


def _http(received: Received, port: int) -> Callable[[], None]:
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(received))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def start(protocol: str, port: int) -> tuple[Received, Callable[[], None]]:
    """A receiver for ``protocol`` (``http/protobuf`` or ``grpc``) on 127.0.0.1:``port``.

    Returns what it receives and the function that stops it.
    """
    received = Received()
    stop = (_grpc if protocol == "grpc" else _http)(received, port)
    return received, stop
