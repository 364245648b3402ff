"""Per-client rate limiting: who the client is behind proxies, and the 429 it gets."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request

from server.web.errors import ApiError, ErrorCode
from server.web.ratelimit import ClientRateLimiter, client_key
from tests.conftest import RunningServer, app_with_test_engine, make_settings, photo
from tests.server.web.test_routes import _post, assert_error


def _request(peer: str, api_key: str | None = None) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [],
             "client": (peer, 5000), "state": {}}  # fmt: skip
    request = Request(scope)
    if api_key is not None:
        request.state.api_key = api_key
    return request


async def _post_as(app, peer: str, forwarded: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/predict", files={"file": ("c.jpg", b"x")}, headers=headers)
    return response.status_code


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # An untrusted peer cannot choose its own identity; loopback is not trusted by default.
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        ("127.0.0.1", "1.2.3.4", "127.0.0.1"),
        ("10.1.2.3", "198.51.100.7", "198.51.100.7"),
        # Left of the last untrusted hop is whatever the client wrote.
        ("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9", "198.51.100.7"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("10.1.2.3", "10.4.4.4", "10.4.4.4"),
        ("10.1.2.3", "", "10.1.2.3"),
    ],
)
async def test_the_client_is_the_last_hop_not_written_by_a_trusted_proxy(
    peer: str, forwarded: str | None, client: str
) -> None:
    """One budget per client: a second request as ``client`` itself finds it spent."""
    settings = make_settings(rate_limit="1/minute", trusted_proxies="10.0.0.0/8,::1")
    app = app_with_test_engine(settings)  # no lifespan: the limiter runs before the readiness check
    assert await _post_as(app, peer, forwarded) != 429
    assert await _post_as(app, client, None) == 429
    assert await _post_as(app, "192.0.2.99", None) != 429


def test_with_api_keys_the_budget_belongs_to_the_key() -> None:
    assert client_key(_request("192.0.2.1", api_key="abc123")) == "key:abc123"
    assert client_key(_request("192.0.2.1")) == "192.0.2.1"


async def test_each_client_has_its_own_budget_and_the_429_says_when_to_retry() -> None:
    limiter = ClientRateLimiter("2/minute")
    for _ in range(2):
        await limiter.check(_request("192.0.2.1"))
    with pytest.raises(ApiError) as refused:
        await limiter.check(_request("192.0.2.1"))
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert 1 <= int(refused.value.headers()["Retry-After"]) <= 60
    await limiter.check(_request("192.0.2.2"))


async def test_a_refused_request_uses_up_no_budget_in_the_other_windows() -> None:
    limiter = ClientRateLimiter("5/hour;1/day")
    await limiter.check(_request("192.0.2.3"))
    for _ in range(3):
        with pytest.raises(ApiError):
            await limiter.check(_request("192.0.2.3"))
    hourly = limiter.items[0]
    stats = await limiter._limiter.get_window_stats(hourly, "192.0.2.3")
    assert stats.remaining == 4


def test_over_the_limit_predict_gets_429_and_probes_are_never_limited(
    guarded_server: RunningServer,
) -> None:
    with guarded_server.client(headers={"X-Forwarded-For": "198.51.100.20"}) as client:
        for _ in range(3):
            assert _post(client, photo("cat.jpg")).status_code == 200
        limited = _post(client, photo("cat.jpg"))
        assert_error(limited, ErrorCode.RATE_LIMITED)
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        for path in ("/health", "/ready", "/info", "/metrics"):
            assert client.get(path).status_code == 200
        metrics = client.get("/metrics").text
    assert 'batchserve_errors_total{code="rate_limited"} 0.0' not in metrics
    with guarded_server.client(headers={"X-Forwarded-For": "198.51.100.21"}) as other:
        assert _post(other, photo("cat.jpg")).status_code == 200
