"""The spans a served request and its batch leave, read from the SDK's in-memory exporter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags

from loadtest.process import free_port
from server.tracing import Tracing
from server.tracing.spans import LinkedSampler, Spans, resource
from server.web.app import create_app
from tests.conftest import RunningServer, make_settings, photo, served, wait_until
from tests.engine import EngineKeeper, MeanPixelEngine

#: A caller's W3C trace context (the specification's own example ids).
CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
T = TypeVar("T")
TRACEPARENT = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def engines() -> EngineKeeper:
    return EngineKeeper()


@pytest.fixture(scope="module")
def server(exporter: InMemorySpanExporter, engines: EngineKeeper) -> Iterator[RunningServer]:
    """Batches of up to 3."""
    settings = make_settings(max_batch_size=3, grpc_port=free_port())
    tracing = Tracing.exporting_to(SimpleSpanProcessor(exporter))
    yield from served(create_app(settings, preparer=engines, tracing=tracing))


@pytest.fixture
def engine(server: RunningServer, engines: EngineKeeper) -> Iterator[MeanPixelEngine]:
    built = engines.built["resnet50"]
    built.started = threading.Semaphore(0)
    yield built
    built.gate.set()


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()  # the readiness polls of the start
    return exporter


def _post(server: RunningServer, headers: dict[str, str]) -> httpx.Response:
    with server.client() as client:
        return client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))},
                           headers=headers)  # fmt: skip


def _batch_of_three(server: RunningServer, engine: MeanPixelEngine,
                    send: Callable[[dict[str, str]], T]) -> list[T]:  # fmt: skip
    """A first request holds the forward pass until three more wait: they make one batch."""
    headers = [{"traceparent": TRACEPARENT, "x-request-id": "with-parent"},
               {"x-request-id": "second"}, {"x-request-id": "third"}]  # fmt: skip
    engine.gate.clear()
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(send, {"x-request-id": "first"})
        while not engine.started.acquire(timeout=0.05):
            if first.done():
                first.result()  # raises what stopped it
            assert time.monotonic() - began < 30, "the first request never reached the engine"
        three = [pool.submit(send, h) for h in headers]
        wait_until(lambda: server.service.batcher.statistics().queue_depth == 3)
        engine.gate.set()
        first.result(timeout=30)
        return [future.result(timeout=30) for future in three]


def _three_at_once(server: RunningServer, engine: MeanPixelEngine) -> list[httpx.Response]:
    return _batch_of_three(server, engine, lambda headers: _post(server, headers))


def _without_first(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    """The spans of the batch of three: the traces of its requests, and its batch's span."""
    three = {"with-parent", "second", "third"}
    _wait_for_server_spans(spans, three | {"first"})
    finished = list(spans.get_finished_spans())
    traces = {s.context.trace_id for s in finished
              if s.attributes.get("batchserve.request_id") in three}  # fmt: skip
    batches = [s for s in finished if s.name == "inference"
               and any(link.context.trace_id in traces for link in s.links)]  # fmt: skip
    return [s for s in finished if s.context.trace_id in traces] + batches


def _wait_for_server_spans(spans: InMemorySpanExporter, request_ids: set[str]) -> None:
    """A server span ends just after its answer is sent: the client may have it first."""

    def ended() -> set[object]:
        return {s.attributes.get("batchserve.request_id") for s in spans.get_finished_spans()}

    wait_until(lambda: request_ids <= ended())


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_a_batch_of_three_leaves_three_request_trees_and_one_linked_inference_span(
    server: RunningServer, engine: MeanPixelEngine, spans: InMemorySpanExporter
) -> None:
    responses = _three_at_once(server, engine)
    assert [r.json()["batch_size"] for r in responses] == [3, 3, 3]
    finished = _without_first(spans)
    requests = _named(finished, "POST /predict")
    (batch,) = _named(finished, "inference")
    assert len(finished) == 3 * 4 + 1, sorted(
        s.name for s in finished
    )  # each request's server span and 3 stages; the batch
    for request in requests:
        assert request.kind is SpanKind.SERVER
        children = [s for s in finished if s.parent and s.parent.span_id == request.context.span_id]
        assert sorted(s.name for s in children) == ["preprocess", "queue", "upload"]
        assert all(s.context.trace_id == request.context.trace_id for s in children)
        assert request.attributes["http.route"] == "/predict"
        assert request.attributes["http.response.status_code"] == 200
        assert request.attributes["batchserve.model"] == "resnet50"
    by_id = {r.attributes["batchserve.request_id"]: r for r in requests}
    assert set(by_id) == {"with-parent", "second", "third"}
    continued = by_id["with-parent"]
    assert continued.context.trace_id == CALLER_TRACE
    assert continued.parent is not None
    assert continued.parent.span_id == CALLER_SPAN
    assert by_id["second"].parent is None
    assert by_id["second"].context.trace_id != CALLER_TRACE
    assert batch.parent is None  # a batch has many parents: links instead
    assert {link.context.span_id for link in batch.links} == {r.context.span_id for r in requests}
    assert {link.attributes["batchserve.request_id"] for link in batch.links} == set(by_id)
    assert batch.attributes["batchserve.batch.size"] == 3
    assert batch.attributes["batchserve.engine"] == "torch"
    assert batch.attributes["batchserve.precision"] == "fp32"
    assert batch.attributes["batchserve.model"] == "resnet50"


def test_stage_spans_keep_the_order_of_the_request_and_the_batch_follows_its_queue(
    server: RunningServer, engine: MeanPixelEngine, spans: InMemorySpanExporter
) -> None:
    _three_at_once(server, engine)
    finished = _without_first(spans)
    (batch,) = _named(finished, "inference")
    for request in _named(finished, "POST /predict"):
        stages = {s.name: s for s in finished
                  if s.parent and s.parent.span_id == request.context.span_id}  # fmt: skip
        upload, preprocess, queue = stages["upload"], stages["preprocess"], stages["queue"]
        assert request.start_time <= upload.start_time <= upload.end_time
        assert upload.end_time <= preprocess.start_time <= preprocess.end_time
        assert preprocess.end_time <= queue.start_time <= queue.end_time <= request.end_time
        # The queue ends as the forward pass starts (both measured, so up to a few ms apart).
        assert abs(queue.end_time - batch.start_time) < 50e6
        assert batch.end_time <= request.end_time


def test_a_grpc_call_continues_its_traceparent_metadata(
    server: RunningServer, engine: MeanPixelEngine, spans: InMemorySpanExporter
) -> None:
    """A batch of three calls; one carries the caller's trace context."""
    address = f"127.0.0.1:{server.registry.settings.grpc_port}"
    image = np.array([photo("cat.jpg")], dtype=np.object_)

    def infer(headers: dict[str, str]) -> None:
        with tg.InferenceServerClient(address) as client:
            tensor = tg.InferInput("IMAGE", [1], "BYTES")
            tensor.set_data_from_numpy(image)
            client.infer("resnet50", [tensor], headers=headers)

    _batch_of_three(server, engine, infer)
    finished = _without_first(spans)
    calls = _named(finished, "inference.GRPCInferenceService/ModelInfer")
    assert len(calls) == 3
    (continued,) = [c for c in calls if c.context.trace_id == CALLER_TRACE]
    assert continued.parent is not None
    assert continued.parent.span_id == CALLER_SPAN
    assert continued.attributes["rpc.system"] == "grpc"
    assert continued.attributes["rpc.grpc.status_code"] == 0
    children = [s.name for s in finished
                if s.parent and s.parent.span_id == continued.context.span_id]  # fmt: skip
    assert sorted(children) == ["preprocess", "queue"]  # the message arrived whole: no upload
    (batch,) = _named(finished, "inference")
    assert len(batch.links) == 3


def test_a_server_error_marks_the_server_span_failed_and_a_client_error_does_not(
    server: RunningServer, engine: MeanPixelEngine, spans: InMemorySpanExporter
) -> None:
    with server.client() as client:
        missing = client.post("/models/nope/predict", files={"file": ("c.jpg", b"x")})
        assert missing.status_code == 404
        unrouted = client.get("/no/such/path")
        assert unrouted.status_code == 404
    ids = {missing.headers["x-request-id"], unrouted.headers["x-request-id"]}
    _wait_for_server_spans(spans, ids)
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert finished["POST /models/{name}/predict"].status.status_code is StatusCode.UNSET
    assert finished["GET"].attributes["http.response.status_code"] == 404  # no route: the method
    assert "http.route" not in finished["GET"].attributes
    spans.clear()

    engine.fail_next = RuntimeError("the forward pass failed (injected)")
    with server.client() as client:
        failing = client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
        assert failing.status_code == 500
    _wait_for_server_spans(spans, {failing.headers["x-request-id"]})
    (failed,) = _named(list(spans.get_finished_spans()), "POST /predict")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "500"


def _context(sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(CALLER_TRACE, CALLER_SPAN, is_remote=False, trace_flags=flags)


def test_a_root_span_linked_to_a_kept_span_is_kept_whatever_the_base_sampler_says() -> None:
    never = LinkedSampler(ALWAYS_OFF)
    kept = never.should_sample(
        None, 1, "inference", links=[Link(_context(False)), Link(_context(True))]
    )
    assert kept.decision is Decision.RECORD_AND_SAMPLE
    assert (
        never.should_sample(None, 1, "inference", links=[Link(_context(False))]).decision
        is Decision.DROP
    )
    assert never.should_sample(None, 1, "POST /predict").decision is Decision.DROP
    assert (
        LinkedSampler(ALWAYS_ON).should_sample(None, 1, "x").decision is Decision.RECORD_AND_SAMPLE
    )
    assert "AlwaysOffSampler" in never.get_description()


def test_the_service_is_named_batchserve_unless_the_environment_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource().attributes["service.name"] == "batchserve"
    assert resource().attributes["service.version"]
    monkeypatch.setenv("OTEL_SERVICE_NAME", "classifier-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=7,deployment.environment=prod")
    described = resource().attributes
    assert (described["service.name"], described["service.version"]) == ("classifier-eu", "7")
    assert described["deployment.environment"] == "prod"


def test_info_says_where_spans_go(server: RunningServer) -> None:
    with server.client() as client:
        assert client.get("/info").json()["tracing"].startswith("in-process; sampler LinkedSampler")


@pytest.mark.parametrize(
    "traceparent",
    ["garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", f"ff-{TRACEPARENT[3:]}"],
)
def test_a_traceparent_that_is_not_valid_starts_a_trace_of_its_own(traceparent: str) -> None:
    exporter = InMemorySpanExporter()
    spans = Spans.with_processors([SimpleSpanProcessor(exporter)], "test")
    trace = spans.request("GET", {"traceparent": traceparent}, {}, "id")
    trace.end("GET /health", {}, None)
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.context.trace_id not in (0, CALLER_TRACE)
