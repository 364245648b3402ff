"""The Python client against real running servers: answers, errors, retries, readiness."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from batchserve_client import (
    AsyncClient,
    BatchserveError,
    Client,
    ImageError,
    NotReadyError,
    Retry,
)
from loadtest.process import free_port
from tests.conftest import DATA, RunningServer, make_settings, photo
from tests.engine import MeanPixelEngine
from tests.server.service.test_unit import gated_server
from tests.server.web.test_routes import _post

KEY = "k-0123456789abcdef-client"


def _same(a: list, b: list[dict]) -> None:
    assert [p.index for p in a] == [p["index"] for p in b]
    for ours, theirs in zip(a, b, strict=True):
        assert abs(ours.probability - theirs["probability"]) < 1e-4


def test_a_path_bytes_and_a_pil_image_answer_like_predict(resnet_server: RunningServer) -> None:
    with resnet_server.client() as http:
        expected = _post(http, photo("cat.jpg")).json()["predictions"]
    with Client(resnet_server.url) as client:
        by_path = client.classify(DATA / "cat.jpg")
        by_str = client.classify(str(DATA / "cat.jpg"))
        by_bytes = client.classify(photo("cat.jpg"))
        with Image.open(DATA / "cat.jpg") as image:
            by_pil = client.classify(image.convert("RGB"), top_k=3)
    for answer in (by_path, by_str, by_bytes):
        _same(list(answer.predictions), expected)
    assert [p.index for p in by_pil.predictions] == [p["index"] for p in expected[:3]]
    assert by_path.model == "resnet50"
    assert by_path.top.label == expected[0]["label"]
    assert by_path.request_id
    assert set(by_path.timing_ms) >= {"queue", "inference", "total"}


def test_several_at_once_with_a_bad_one(resnet_server: RunningServer) -> None:
    with Client(resnet_server.url) as client:
        cat, bad = client.classify_many([DATA / "cat.jpg", b"not an image"], top_k=2)
        (summary,) = client.models()
        info = client.info()
    assert isinstance(bad, ImageError)
    assert bad.code == "invalid_image"
    assert not isinstance(cat, ImageError)
    assert len(cat.predictions) == 2
    assert (summary.name, summary.ready, summary.default, summary.classes) == (
        "resnet50", True, True, 1000
    )  # fmt: skip
    assert info["model"] == "resnet50"


async def test_the_asyncio_client_does_the_same(resnet_server: RunningServer) -> None:
    async with AsyncClient(resnet_server.url) as client:
        await client.wait_until_ready(timeout_s=30)
        one = await client.classify(DATA / "coffee.jpg")
        many = await client.classify_many([photo("coffee.jpg"), photo("cat.jpg")])
        models = await client.models()
        info = await client.info()
    assert not isinstance(many[0], ImageError)
    assert many[0].top.index == one.top.index
    assert [m.name for m in models] == ["resnet50"]
    assert info["num_classes"] == 1000


def test_other_client_errors_are_raised_at_once_never_retried(resnet_server: RunningServer) -> None:
    before = resnet_server.metric("batchserve_errors_total", code="invalid_image")
    with Client(resnet_server.url, retry=Retry(attempts=5, backoff_s=0.01)) as client:
        with pytest.raises(BatchserveError) as error:
            client.classify(b"not an image")
        with pytest.raises(BatchserveError) as missing:
            client.classify(DATA / "cat.jpg", model="nope")
    assert (error.value.status, error.value.code) == (400, "invalid_image")
    assert error.value.request_id
    assert missing.value.code == "model_not_found"
    assert resnet_server.metric("batchserve_errors_total", code="invalid_image") == before + 1


class _Counting(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return super().handle_request(request)


def test_connection_errors_are_retried_then_raised() -> None:
    transport = _Counting()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    retry = Retry(attempts=3, backoff_s=0.01)
    with Client(url, retry=retry, transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.models()
    assert transport.calls == 3
    with Client(url) as client, pytest.raises(NotReadyError):
        client.wait_until_ready(timeout_s=0.3, interval_s=0.1)


@pytest.fixture(scope="module")
def gated() -> Iterator[tuple[RunningServer, MeanPixelEngine]]:
    """One worker, a queue of one: two requests in flight fill it; keys required."""
    settings = make_settings(model="mobilenet_v2", max_batch_size=1, max_queue_size=1, api_keys=KEY)
    yield from gated_server(settings)


def _fresh(gated: tuple[RunningServer, MeanPixelEngine]) -> tuple[RunningServer, MeanPixelEngine]:
    server, engine = gated
    engine.started = threading.Semaphore(0)  # forget the batches of earlier tests
    return server, engine


def test_overload_is_retried_after_retry_after_until_it_clears(gated) -> None:
    server, engine = _fresh(gated)
    engine.gate.clear()
    refused_before = server.metric("batchserve_errors_total", code="overloaded")
    with ThreadPoolExecutor(3) as pool, Client(server.url, api_key=KEY) as client:
        busy = pool.submit(client.classify, photo("cat.jpg"))  # runs, blocked in the engine
        assert engine.started.acquire(timeout=30)
        queued = pool.submit(client.classify, photo("cat.jpg"))  # fills the queue of one
        while server.service.batcher.statistics().queue_depth < 1:
            time.sleep(0.01)
        retried = pool.submit(client.classify, photo("cat.jpg"))  # 503, then waits 1 s
        while server.metric("batchserve_errors_total", code="overloaded") == refused_before:
            time.sleep(0.01)
        engine.gate.set()
        answers = [f.result(timeout=60) for f in (busy, queued, retried)]
    assert all(answer.top for answer in answers)
    assert server.metric("batchserve_errors_total", code="overloaded") >= refused_before + 1


def test_the_deadline_and_the_key_travel_with_every_request(gated) -> None:
    server, engine = _fresh(gated)
    engine.gate.set()
    with Client(server.url) as anonymous, pytest.raises(BatchserveError) as refused:
        anonymous.models()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    engine.gate.clear()
    with (
        ThreadPoolExecutor(1) as pool,
        Client(server.url, api_key=KEY) as other,
        Client(server.url, api_key=KEY, deadline_s=0.3) as hurried,
    ):
        blocker = pool.submit(other.classify, photo("cat.jpg"))
        assert engine.started.acquire(timeout=30)
        with pytest.raises(BatchserveError) as late:
            hurried.classify(photo("cat.jpg"))
        engine.gate.set()
        blocker.result(timeout=60)
    assert (late.value.status, late.value.code) == (504, "deadline_exceeded")


def test_rate_limits_are_retried_then_raised(guarded_server: RunningServer) -> None:
    """The limiter's Retry-After (up to a minute) is capped by max_wait_s; each try counts."""
    before = guarded_server.metric("batchserve_errors_total", code="rate_limited")
    retry = Retry(attempts=3, max_wait_s=0.05)
    proxy = {"X-Forwarded-For": "198.51.100.91"}  # a client of its own behind the trusted proxy
    with Client(guarded_server.url, retry=retry, headers=proxy) as client:
        for _ in range(3):  # the limit: 3 a minute
            assert client.classify(photo("cat.jpg")).top
        with pytest.raises(BatchserveError) as limited:
            client.classify(photo("cat.jpg"))
    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert guarded_server.metric("batchserve_errors_total", code="rate_limited") == before + 3


class _AsyncCounting(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await super().handle_async_request(request)


async def test_the_asyncio_client_retries_connection_errors_and_raises_server_errors(
    resnet_server: RunningServer,
) -> None:
    transport = _AsyncCounting()
    url = f"http://127.0.0.1:{free_port()}"
    retry = Retry(attempts=3, backoff_s=0.01)
    async with AsyncClient(url, retry=retry, transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.models()
        assert transport.calls == 3
        with pytest.raises(NotReadyError):
            await client.wait_until_ready(timeout_s=0.3, interval_s=0.1)
    async with AsyncClient(resnet_server.url, retry=retry) as client:
        with pytest.raises(BatchserveError) as error:
            await client.classify(b"not an image")
    assert error.value.code == "invalid_image"


def _answer(status: int, retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after else {})


def test_the_backoff_has_full_jitter() -> None:
    """Connection failures wait a uniform share of the doubled backoff: from 0 to all of it."""
    for draw, expected in ((0.0, 0.0), (0.5, 0.5), (0.999, 0.999)):
        retry = Retry(attempts=5, backoff_s=0.25, uniform=lambda d=draw: d)
        assert retry.wait_s(2, None) == pytest.approx(expected)  # 0.25 * 2**2 = 1 s


def test_retry_after_is_honoured_and_the_jitter_comes_on_top() -> None:
    retry = Retry(attempts=5, backoff_s=0.5, max_wait_s=10.0, uniform=lambda: 0.5)
    assert retry.wait_s(0, _answer(503, "3")) == pytest.approx(3.25)
    assert retry.wait_s(1, _answer(429)) == pytest.approx(0.5)  # no header: the jitter alone
    assert retry.wait_s(1, _answer(503, "60")) == 10.0  # capped
    assert retry.wait_s(0, _answer(400)) is None
    assert retry.wait_s(4, _answer(503, "1")) is None  # the last attempt


def test_clients_refused_together_come_back_at_different_times() -> None:
    retry = Retry(attempts=3, backoff_s=1.0)
    waits = {retry.wait_s(0, _answer(503, "1")) for _ in range(50)}
    assert len(waits) > 40
    assert all(1.0 <= wait < 2.0 for wait in waits if wait is not None)
