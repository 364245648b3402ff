"""The service under control: overload, deadlines, disconnects, model failures, readiness."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
import torch

from batcher import DropReason
from server.config import Settings
from server.web.app import create_app
from server.web.errors import ErrorCode
from tests.conftest import (
    RunningServer,
    app_with_test_engine,
    make_settings,
    photo,
    start_server,
    wait_until,
)
from tests.engine import EngineKeeper, MeanPixelEngine
from tests.server.web.test_routes import _post, assert_error


def gated_server(settings: Settings) -> Iterator[tuple[RunningServer, MeanPixelEngine]]:
    """A fixture's body: a server on the test engine, whose forward passes the test steers."""
    engines = EngineKeeper()
    running = start_server(create_app(settings, preparer=engines))
    gated = engines.built[running.service.name]
    yield running, gated
    gated.gate.set()
    running.stop()


@pytest.fixture(scope="module")
def controlled() -> Iterator[tuple[RunningServer, MeanPixelEngine]]:
    yield from gated_server(
        make_settings(
            model="mobilenet_v2", max_batch_size=1, max_queue_size=2, request_timeout_s=1.5
        )
    )


@pytest.fixture
def server(controlled) -> Iterator[RunningServer]:
    running, gated = controlled
    gated.gate.set()
    gated.batch_sizes.clear()
    gated.started = threading.Semaphore(0)
    yield running
    gated.gate.set()


@pytest.fixture
def engine(controlled) -> MeanPixelEngine:
    return controlled[1]


def _background_post(
    pool: ThreadPoolExecutor, server: RunningServer, **kwargs
) -> Future[httpx.Response]:
    def post() -> httpx.Response:
        with server.client(**kwargs) as client:
            return _post(client, photo("cat.jpg"))

    return pool.submit(post)


def _occupy_worker(pool, server, engine: MeanPixelEngine) -> Future[httpx.Response]:
    engine.gate.clear()
    busy = _background_post(pool, server)
    assert engine.started.acquire(timeout=30)
    return busy


def test_past_the_queue_bound_requests_get_overloaded_at_once(server, engine) -> None:
    with ThreadPoolExecutor(4) as pool, server.client() as client:
        busy = _occupy_worker(pool, server, engine)
        queued = [_background_post(pool, server) for _ in range(2)]
        wait_until(lambda: server.service.batcher.statistics().queue_depth == 2)
        refused = _post(client, photo("cat.jpg"))
        assert_error(refused, ErrorCode.OVERLOADED)
        assert refused.headers["retry-after"] == "1"
        engine.gate.set()
        assert [f.result().status_code for f in (busy, *queued)] == [200, 200, 200]


def test_a_request_queued_past_its_deadline_gets_504_and_is_never_computed(server, engine) -> None:
    with ThreadPoolExecutor(2) as pool:
        busy = _occupy_worker(pool, server, engine)
        late = _background_post(pool, server)
        response = late.result(timeout=30)
        # The worker is still blocked: the 504 came at the deadline, not after the batch.
        assert not busy.done()
        assert_error(response, ErrorCode.DEADLINE_EXCEEDED)
        engine.gate.set()
        assert busy.result().status_code == 200
    assert engine.batch_sizes == [1]
    assert server.service.batcher.statistics().dropped[DropReason.DEADLINE] >= 1


def test_a_client_may_shorten_its_deadline_but_never_lengthen_it(server, engine) -> None:
    with ThreadPoolExecutor(3) as pool:
        busy = _occupy_worker(pool, server, engine)
        started = time.monotonic()
        short = _background_post(pool, server, headers={"X-Request-Timeout": "0.2"})
        assert_error(short.result(timeout=30), ErrorCode.DEADLINE_EXCEEDED)
        # The server's own deadline is 1.5 s: a 504 before it can only come from the header.
        assert time.monotonic() - started < 1.5
        long = _background_post(pool, server, headers={"X-Request-Timeout": "3600"})
        assert_error(long.result(timeout=30), ErrorCode.DEADLINE_EXCEEDED)
        assert not busy.done()
        engine.gate.set()
        assert busy.result().status_code == 200
    assert engine.batch_sizes == [1]


@pytest.mark.parametrize("value", ["soon", "-1", "0", "nan", "inf", ""])
def test_a_malformed_request_timeout_is_invalid_parameter(server, value: str) -> None:
    with server.client(headers={"X-Request-Timeout": value}) as client:
        body = assert_error(_post(client, photo("cat.jpg")), ErrorCode.INVALID_PARAMETER)
    assert "X-Request-Timeout" in body["error"]["message"]


def _disconnects(server: RunningServer, stage: str) -> float:
    return server.metric("batchserve_client_disconnects_total", stage=stage)


def _answered(server: RunningServer, status: str) -> float:
    return server.metric(
        "batchserve_requests_total",
        protocol="http",
        endpoint="/predict",
        status=status,
        model=server.service.name,
        version="1",
    )


def test_a_client_that_leaves_while_queued_costs_no_compute(server, engine) -> None:
    dropped_before = server.service.batcher.statistics().dropped.get(DropReason.CANCELLED, 0)
    left_before, closed_before = _disconnects(server, "queue"), _answered(server, "499")
    with ThreadPoolExecutor(2) as pool:
        busy = _occupy_worker(pool, server, engine)
        leaving = _background_post(pool, server, timeout=0.5)
        with pytest.raises(httpx.ReadTimeout):
            leaving.result(timeout=30)
        wait_until(lambda: server.service.batcher.statistics().queue_depth == 0)
        engine.gate.set()
        assert busy.result().status_code == 200
    assert engine.batch_sizes == [1]
    dropped = server.service.batcher.statistics().dropped[DropReason.CANCELLED]
    assert dropped == dropped_before + 1
    assert _disconnects(server, "queue") == left_before + 1
    assert _answered(server, "499") == closed_before + 1


def test_a_client_that_leaves_during_its_forward_pass_is_499_not_an_error(server, engine) -> None:
    left_before, closed_before = _disconnects(server, "inference"), _answered(server, "499")
    errors_before = server.metric("batchserve_errors_total", code="internal_error")
    engine.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        leaving = _background_post(pool, server, timeout=1.0)
        assert engine.started.acquire(timeout=30)
        with pytest.raises(httpx.ReadTimeout):
            leaving.result(timeout=30)
        wait_until(lambda: _answered(server, "499") == closed_before + 1)
        engine.gate.set()
    assert _disconnects(server, "inference") == left_before + 1
    assert server.metric("batchserve_errors_total", code="internal_error") == errors_before


def test_a_failing_forward_fails_only_its_request_and_the_server_keeps_serving(
    server, engine
) -> None:
    engine.fail_next = RuntimeError("simulated kernel failure")
    with server.client() as client:
        failed = _post(client, photo("cat.jpg"))
        body = assert_error(failed, ErrorCode.INFERENCE_FAILED)
        assert "simulated" not in body["error"]["message"]
        assert _post(client, photo("cat.jpg")).status_code == 200


def test_out_of_memory_on_a_single_image_fails_only_that_request(server, engine) -> None:
    engine.fail_next = torch.OutOfMemoryError("CUDA out of memory (injected)")
    with server.client() as client:
        assert_error(_post(client, photo("cat.jpg")), ErrorCode.INFERENCE_FAILED)
        assert _post(client, photo("cat.jpg")).status_code == 200


@pytest.fixture(scope="module")
def batching_server() -> Iterator[tuple[RunningServer, MeanPixelEngine]]:
    yield from gated_server(make_settings(model="mobilenet_v2", max_batch_size=4))


def _four_in_one_batch(server: RunningServer, gated: MeanPixelEngine) -> list[httpx.Response]:
    """While one request holds the only worker, four queue up: the next batch has all four."""
    gated.started = threading.Semaphore(0)
    with ThreadPoolExecutor(5) as pool:
        busy = _occupy_worker(pool, server, gated)
        futures = [_background_post(pool, server) for _ in range(4)]
        wait_until(lambda: server.service.batcher.statistics().queue_depth == 4)
        gated.gate.set()
        assert busy.result(timeout=60).status_code == 200
        return [future.result(timeout=60) for future in futures]


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory (injected)"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory (injected)"),
    ],
)
def test_an_out_of_memory_batch_is_served_as_two_halves(batching_server, error) -> None:
    server, engine = batching_server
    engine.fail_above, engine.failure = 2, error
    engine.batch_sizes.clear()
    responses = _four_in_one_batch(server, engine)
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.json()["batch_size"] for r in responses] == [2] * 4
    assert engine.batch_sizes == [1, 4, 2, 2]


def test_halves_that_still_run_out_of_memory_fail_their_requests(batching_server) -> None:
    server, engine = batching_server
    engine.fail_above, engine.failure = 1, torch.OutOfMemoryError("injected")
    engine.batch_sizes.clear()
    for response in _four_in_one_batch(server, engine):
        assert_error(response, ErrorCode.INFERENCE_FAILED)
    assert engine.batch_sizes == [1, 4, 2]


def test_other_failures_are_not_retried(batching_server) -> None:
    server, engine = batching_server
    engine.fail_above, engine.failure = 1, ValueError("a bug in the model")
    engine.batch_sizes.clear()
    for response in _four_in_one_batch(server, engine):
        assert_error(response, ErrorCode.INFERENCE_FAILED)
    assert engine.batch_sizes == [1, 4]
    engine.fail_above = None
    assert _post(server.client(), photo("cat.jpg")).status_code == 200


class _FatalFault(BaseException):
    """Escapes ordinary error handling, as a dying worker thread's fault would."""


def test_a_dead_batcher_makes_ready_fail_and_requests_fail_fast() -> None:
    engines = EngineKeeper()
    running = start_server(create_app(make_settings(max_batch_size=1), preparer=engines))
    try:
        engines.built["resnet50"].fail_next = _FatalFault()  # type: ignore[assignment]
        with running.client(timeout=10) as client:
            assert_error(_post(client, photo("cat.jpg")), ErrorCode.INFERENCE_FAILED)
            ready = assert_error(client.get("/ready"), ErrorCode.NOT_READY)
            assert "restart" in ready["error"]["message"]
            assert_error(_post(client, photo("cat.jpg")), ErrorCode.NOT_READY)
            assert client.get("/health").status_code == 200
    finally:
        running.stop()


def test_a_bug_is_internal_error_without_a_traceback(server, monkeypatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(server.service, "classify", broken)
    with server.client() as client:
        response = _post(client, photo("cat.jpg"))
        assert_error(response, ErrorCode.INTERNAL_ERROR)
        assert "KeyError" not in response.text
        metrics = client.get("/metrics").text
    assert 'batchserve_errors_total{code="internal_error"} 1.0' in metrics


def test_a_failed_warm_up_leaves_ready_503_with_its_reason(monkeypatch) -> None:
    def broken_warm_up(self: object, max_batch_size: int) -> None:
        raise RuntimeError("no kernel for this CPU (injected)")

    monkeypatch.setattr(MeanPixelEngine, "warm_up", broken_warm_up)
    running = start_server(app_with_test_engine(make_settings()), wait_ready=False)
    try:
        wait_until(lambda: running.service.failure is not None)
        with running.client() as client:
            body = assert_error(client.get("/ready"), ErrorCode.NOT_READY)
            reason = "warm-up failed: RuntimeError: no kernel for this CPU (injected)"
            assert body["error"]["message"] == reason
            refused = assert_error(_post(client, photo("cat.jpg")), ErrorCode.NOT_READY)
            assert refused["error"]["message"] == reason
            assert client.get("/health").status_code == 200
    finally:
        running.stop()


def test_not_ready_until_warm_and_health_answers_meanwhile(monkeypatch) -> None:
    released = threading.Event()
    real_warm_up = MeanPixelEngine.warm_up

    def gated_warm_up(self: MeanPixelEngine, max_batch_size: int) -> None:
        assert released.wait(timeout=60)
        real_warm_up(self, max_batch_size)

    monkeypatch.setattr(MeanPixelEngine, "warm_up", gated_warm_up)
    running = start_server(app_with_test_engine(make_settings()), wait_ready=False)
    try:
        with running.client() as client:
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            assert time.monotonic() - started < 1.0
            not_ready = client.get("/ready")
            assert_error(not_ready, ErrorCode.NOT_READY)
            assert not_ready.headers["retry-after"] == "1"
            assert_error(_post(client, photo("cat.jpg")), ErrorCode.NOT_READY)
            released.set()
            running.wait_ready()
            assert _post(client, photo("cat.jpg")).status_code == 200
    finally:
        released.set()
        running.stop()


def test_inference_threads_get_the_plans_thread_count_in_their_own_thread() -> None:
    """OpenMP settings are per thread: set in the event loop's, they would not reach these."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    engines = EngineKeeper()
    try:
        running = start_server(create_app(make_settings(threads_per_worker=1), preparer=engines))
        try:
            assert _post(running.client(), photo("cat.jpg")).status_code == 200
        finally:
            running.stop()
    finally:
        torch.set_num_threads(previous)
    assert engines.built["resnet50"].threads_seen == [1]


def test_streams_by_load_give_a_lone_batch_every_core_and_company_one_each() -> None:
    settings = make_settings(
        engine="openvino", cpu_streams="by-load", workers=2, threads_per_worker=1,
        max_batch_size=1,
    )  # fmt: skip
    steps = gated_server(settings)
    running, engine = next(steps)
    try:
        assert running.service.plan.solo_threads == running.service.plan.cores
        assert _post(running.client(), photo("cat.jpg")).status_code == 200
        assert engine.alone == [True]  # nothing else in flight or queued
        with ThreadPoolExecutor(2) as pool:
            first = _occupy_worker(pool, running, engine)  # alone too: it started first
            second = _background_post(pool, running)
            # The second is submitted while the first is in flight: a one-core stream.
            wait_until(lambda: running.service._in_flight == 2)
            engine.gate.set()
            assert first.result().status_code == second.result().status_code == 200
        assert engine.alone == [True, True, False]
    finally:
        next(steps, None)  # the fixture body's cleanup: open the gate, stop the server
