"""The single mapping from domain errors to API errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from batcher import BatcherClosedError, BatchFailedError, DeadlineExceededError, QueueFullError
from server.models import preprocess
from server.web.errors import (
    MAX_RETRY_AFTER_S,
    RETRY_AFTER_S,
    STATUS,
    ApiError,
    ErrorCode,
    from_batcher_error,
    from_image_error,
    retry_after_s,
)


def test_every_code_has_a_status() -> None:
    assert set(STATUS) == set(ErrorCode)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (QueueFullError(), ErrorCode.OVERLOADED),
        (BatcherClosedError(), ErrorCode.NOT_READY),
        (BatchFailedError(), ErrorCode.INFERENCE_FAILED),
        (DeadlineExceededError(), ErrorCode.DEADLINE_EXCEEDED),
    ],
)
def test_batcher_errors_map_to_their_codes(error: Exception, code: ErrorCode) -> None:
    assert from_batcher_error(error).code == code  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (preprocess.ImageTooLargeError("x"), ErrorCode.IMAGE_TOO_LARGE),
        (preprocess.UnsupportedImageFormatError("x"), ErrorCode.UNSUPPORTED_IMAGE_FORMAT),
        (preprocess.InvalidImageError("x"), ErrorCode.INVALID_IMAGE),
    ],
)
def test_image_errors_map_to_their_codes(error: preprocess.ImageError, code: ErrorCode) -> None:
    assert from_image_error(error).code == code


def test_only_the_503s_and_a_rate_limit_carry_retry_after() -> None:
    assert ApiError(ErrorCode.OVERLOADED, "x").headers() == {"Retry-After": "1"}
    assert ApiError(ErrorCode.NOT_READY, "x").headers() == {"Retry-After": "1"}
    assert ApiError(ErrorCode.DEADLINE_EXCEEDED, "x").headers() == {}
    assert ApiError(ErrorCode.REQUEST_TIMEOUT, "x").headers() == {}
    limited = ApiError(ErrorCode.RATE_LIMITED, "x", retry_after_s=7)
    assert limited.headers() == {"Retry-After": "7"}
    assert limited.status == 429


def test_every_code_is_documented_in_the_api_reference() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "api.md").read_text()
    for code in ErrorCode:
        assert f"| {STATUS[code]} | `{code.value}` |" in docs, code


@pytest.mark.parametrize(
    ("drain_s", "expected"),
    [(None, 1), (0.0, 1), (0.2, 1), (1.01, 2), (7.5, 8), (300.0, 30), (math.inf, 1)],
)
def test_retry_after_is_the_queues_drain_time_bounded(drain_s: float | None, expected: int) -> None:
    assert retry_after_s(drain_s) == expected
    assert (RETRY_AFTER_S, MAX_RETRY_AFTER_S) == (1, 30)


def test_a_full_queue_answers_with_its_drain_time() -> None:
    error = from_batcher_error(QueueFullError("queue is full (8 items waiting)", drain_s=4.2))
    assert (error.code, error.status) == (ErrorCode.OVERLOADED, 503)
    assert error.headers() == {"Retry-After": "5"}
    assert from_batcher_error(QueueFullError("full")).headers() == {"Retry-After": "1"}
