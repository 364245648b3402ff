"""The request plumbing: the client's timeout, the endpoint label, the body's deadline."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.routing import Route

from server.web.errors import ApiError, ErrorCode
from server.web.plumbing import REQUEST_TIMEOUT_HEADER, endpoint_of, read_within, request_timeout


def _request(timeout: str | None = None) -> Request:
    headers = (
        [] if timeout is None else [(REQUEST_TIMEOUT_HEADER.lower().encode(), timeout.encode())]
    )
    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": headers})


@pytest.mark.parametrize(
    ("header", "expected"), [(None, 30.0), ("2.5", 2.5), ("120", 30.0), ("1e-3", 0.001)]
)
def test_the_clients_timeout_shortens_the_limit_never_lengthens_it(
    header: str | None, expected: float
) -> None:
    assert request_timeout(_request(header), 30.0) == expected


@pytest.mark.parametrize("header", ["0", "-1", "nan", "inf", "soon", ""])
def test_a_timeout_that_is_no_positive_number_is_invalid_parameter(header: str) -> None:
    with pytest.raises(ApiError) as refused:
        request_timeout(_request(header), 30.0)
    assert refused.value.code is ErrorCode.INVALID_PARAMETER
    assert REQUEST_TIMEOUT_HEADER in refused.value.message


def test_the_endpoint_label_is_the_routes_template_or_unmatched() -> None:
    route = Route("/models/{name}/predict", endpoint=lambda request: None)
    assert endpoint_of({"route": route}) == "/models/{name}/predict"
    assert endpoint_of({}) == "unmatched"


async def test_a_body_not_in_by_its_deadline_is_request_timeout() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[bytes] = loop.create_future()
    with pytest.raises(ApiError) as refused:
        await read_within(never, loop.time())
    assert refused.value.code is ErrorCode.REQUEST_TIMEOUT
    arrived: asyncio.Future[bytes] = loop.create_future()
    arrived.set_result(b"image")
    assert await read_within(arrived, loop.time() + 60) == b"image"
