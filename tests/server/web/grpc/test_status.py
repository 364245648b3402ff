"""Every API error code has its gRPC status; the retryable ones say when to retry."""

from __future__ import annotations

import grpc
import pytest

from server.web.errors import STATUS as HTTP_STATUS
from server.web.errors import ApiError, ErrorCode
from server.web.grpc.status import status_of, trailers


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_each_code_maps_to_the_status_its_http_status_means(code: ErrorCode) -> None:
    status = status_of(ApiError(code, "m"))
    http = HTTP_STATUS[code]
    expected = {
        401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED,
        408: grpc.StatusCode.DEADLINE_EXCEEDED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        429: grpc.StatusCode.RESOURCE_EXHAUSTED, 431: grpc.StatusCode.RESOURCE_EXHAUSTED,
        500: grpc.StatusCode.INTERNAL, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
    }.get(http, grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    if code is ErrorCode.OVERLOADED:
        expected = grpc.StatusCode.RESOURCE_EXHAUSTED
    elif code is ErrorCode.NOT_READY:
        expected = grpc.StatusCode.UNAVAILABLE
    assert status == expected


def test_a_full_queue_says_its_drain_time_twice() -> None:
    error = ApiError(ErrorCode.OVERLOADED, "full", retry_after_s=7)
    assert dict(trailers(error, "r-1")) == {
        "batchserve-error-code": "overloaded", "x-request-id": "r-1", "retry-after": "7",
        "grpc-retry-pushback-ms": "7000",
    }  # fmt: skip


def test_not_ready_retries_after_a_second_and_a_bad_request_never() -> None:
    assert dict(trailers(ApiError(ErrorCode.NOT_READY, "loading"), "r"))["retry-after"] == "1"
    plain = dict(trailers(ApiError(ErrorCode.INVALID_IMAGE, "bad"), "r"))
    assert "retry-after" not in plain
    assert "grpc-retry-pushback-ms" not in plain
