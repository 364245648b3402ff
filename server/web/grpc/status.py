"""API errors as gRPC statuses: the code, the message, and the trailing metadata.

Every error keeps its stable batchserve code in the ``batchserve-error-code``
trailer. Errors a client may retry carry their delay twice: ``retry-after``
(whole seconds, as HTTP's header) and ``grpc-retry-pushback-ms``, which gRPC's
own retry policy obeys (gRFC A6).
"""

from __future__ import annotations

from typing import Final

import grpc

from server.web.errors import RETRY_AFTER_S, ApiError, ErrorCode

_INVALID: Final = grpc.StatusCode.INVALID_ARGUMENT

#: Each error code's gRPC status; the codes not named are INVALID_ARGUMENT (HTTP's 4xx).
STATUS: Final[dict[ErrorCode, grpc.StatusCode]] = {
    ErrorCode.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: grpc.StatusCode.UNIMPLEMENTED,
    # gRPC's own answer to a message over the receive limit.
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.HEADERS_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_READY: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.REQUEST_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.INFERENCE_FAILED: grpc.StatusCode.INTERNAL,
    ErrorCode.INTERNAL_ERROR: grpc.StatusCode.INTERNAL,
}

ERROR_CODE_KEY: Final = "batchserve-error-code"
RETRY_AFTER_KEY: Final = "retry-after"
PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"
_RETRYABLE: Final = {ErrorCode.OVERLOADED, ErrorCode.NOT_READY, ErrorCode.RATE_LIMITED}


def status_of(error: ApiError) -> grpc.StatusCode:
    """The gRPC status that goes with ``error``'s code."""
    return STATUS.get(error.code, _INVALID)


def trailers(error: ApiError, request_id: str) -> tuple[tuple[str, str], ...]:
    """The trailing metadata of ``error``: its code, the request id, and the retry delay."""
    pairs = [(ERROR_CODE_KEY, error.code.value), ("x-request-id", request_id)]
    if error.code in _RETRYABLE:
        wait_s = error.retry_after_s if error.retry_after_s is not None else RETRY_AFTER_S
        pairs += [(RETRY_AFTER_KEY, str(wait_s)), (PUSHBACK_KEY, str(wait_s * 1000))]
    return tuple(pairs)
