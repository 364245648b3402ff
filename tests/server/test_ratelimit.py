"""Per-client rate limiting: who the client is behind proxies, and the 429 it gets."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.requests import Request

from server.errors import ApiError, ErrorCode
from server.ratelimit import ClientRateLimiter, client_address
from tests.conftest import RunningServer, photo
from tests.server.test_routes import _post, assert_error

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers,
             "client": (peer, 5000)}  # fmt: skip
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # An untrusted peer cannot choose its own identity.
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        ("10.1.2.3", "198.51.100.7", "198.51.100.7"),
        # Left of the last untrusted hop is whatever the client wrote.
        ("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9", "198.51.100.7"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("10.1.2.3", "10.4.4.4", "10.4.4.4"),
        ("10.1.2.3", "", "10.1.2.3"),
        ("10.1.2.3", "garbage, 198.51.100.7", "198.51.100.7"),
    ],
)
def test_the_client_is_the_last_hop_not_written_by_a_trusted_proxy(
    peer: str, forwarded: str | None, client: str
) -> None:
    assert client_address(_request(peer, forwarded), PROXIES) == client


def test_without_trusted_proxies_forwarded_for_is_ignored() -> None:
    assert client_address(_request("10.1.2.3", "1.2.3.4"), ()) == "10.1.2.3"


async def test_each_client_has_its_own_budget_and_the_429_says_when_to_retry() -> None:
    limiter = ClientRateLimiter("2/minute", ())
    for _ in range(2):
        await limiter.check(_request("192.0.2.1"))
    with pytest.raises(ApiError) as refused:
        await limiter.check(_request("192.0.2.1"))
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert 1 <= int(refused.value.headers()["Retry-After"]) <= 60
    await limiter.check(_request("192.0.2.2"))


async def test_a_refused_request_uses_up_no_budget_in_the_other_windows() -> None:
    limiter = ClientRateLimiter("5/hour;1/day", ())
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
