"""API errors: stable codes, their HTTP statuses, and the one place that maps domain errors."""

from __future__ import annotations

import logging
import math
from enum import StrEnum
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from batcher import BatcherClosedError, BatcherError, BatchFailedError, QueueFullError
from server.models.image_errors import ImageError, ImageTooLargeError, UnsupportedImageFormatError
from server.service.door import NotReadyError
from server.web.oip_codec import ProtocolError

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying a 503: at least this ...
RETRY_AFTER_S: Final = 1
#: ... and at most this, however slowly the queue drains (a client may still come back sooner
#: elsewhere: this is a hint, not a ban).
MAX_RETRY_AFTER_S: Final = 30
#: The message of every 503 ``overloaded``.
OVERLOADED_MESSAGE: Final = "the server is at capacity; retry shortly"
#: The realm named in a 401's WWW-Authenticate header.
REALM: Final = "batchserve"


class ErrorCode(StrEnum):
    """Every machine-readable error code the API answers with."""

    INVALID_IMAGE = "invalid_image"
    EMPTY_FILE = "empty_file"
    INVALID_MULTIPART = "invalid_multipart"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_LOAD_FAILED = "model_load_failed"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
    MISSING_FILE = "missing_file"
    TOO_MANY_FILES = "too_many_files"
    INVALID_PARAMETER = "invalid_parameter"
    IMAGE_TOO_LARGE = "image_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INFERENCE_FAILED = "inference_failed"
    INTERNAL_ERROR = "internal_error"


STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_IMAGE: 400,
    ErrorCode.EMPTY_FILE: 400,
    ErrorCode.INVALID_MULTIPART: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.MODEL_LOAD_FAILED: 400,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.UNSUPPORTED_IMAGE_FORMAT: 415,
    ErrorCode.MISSING_FILE: 422,
    ErrorCode.TOO_MANY_FILES: 422,
    ErrorCode.INVALID_PARAMETER: 422,
    ErrorCode.IMAGE_TOO_LARGE: 422,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.NOT_READY: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.INFERENCE_FAILED: 500,
    ErrorCode.INTERNAL_ERROR: 500,
}

_RETRYABLE: Final = {ErrorCode.OVERLOADED, ErrorCode.NOT_READY}
_BY_HTTP_STATUS: Final = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


#: What the access log records for a request whose client left (nginx's "client closed request").
CLIENT_CLOSED_STATUS: Final = 499


class DisconnectStage(StrEnum):
    """Where a request was when its client went away (``batchserve_client_disconnects_total``).

    ``upload`` is the body still arriving; the others are the request stages.
    """

    UPLOAD = "upload"
    PREPROCESS = "preprocess"
    QUEUE = "queue"
    INFERENCE = "inference"


class ClientDisconnectedError(Exception):
    """The client went away before its answer was ready; nobody reads the response."""

    def __init__(self, stage: DisconnectStage) -> None:
        super().__init__(f"the client disconnected during {stage.value}")
        self.stage = stage


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "request_id"}}``."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        """The HTTP status that goes with the code."""
        return STATUS[self.code]

    def headers(self) -> dict[str, str]:
        """Retry-After where the client may retry: the 503s, and 429 with its own wait."""
        if self.retry_after_s is not None:
            return {"Retry-After": str(self.retry_after_s)}
        if self.code is ErrorCode.UNAUTHORIZED:
            return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        return {"Retry-After": str(RETRY_AFTER_S)} if self.code in _RETRYABLE else {}


def retry_after_s(drain_s: float | None) -> int:
    """Whole seconds until the queue has drained at its measured rate, within the bounds."""
    if drain_s is None or not math.isfinite(drain_s):
        return RETRY_AFTER_S
    return max(RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, math.ceil(drain_s)))


def overloaded(drain_s: float | None) -> ApiError:
    """503 ``overloaded``, with a Retry-After from how long the queue takes to drain."""
    return ApiError(ErrorCode.OVERLOADED, OVERLOADED_MESSAGE, retry_after_s=retry_after_s(drain_s))


def from_image_error(exc: ImageError) -> ApiError:
    """Map a preprocessing failure to its API error."""
    if isinstance(exc, ImageTooLargeError):
        return ApiError(ErrorCode.IMAGE_TOO_LARGE, str(exc))
    if isinstance(exc, UnsupportedImageFormatError):
        return ApiError(ErrorCode.UNSUPPORTED_IMAGE_FORMAT, str(exc))
    return ApiError(ErrorCode.INVALID_IMAGE, str(exc))


def from_batcher_error(exc: BatcherError) -> ApiError:
    """Map a batcher outcome to its API error."""
    if isinstance(exc, QueueFullError):
        return overloaded(exc.drain_s)
    if isinstance(exc, BatcherClosedError):
        return ApiError(ErrorCode.NOT_READY, "the server is shutting down; retry elsewhere")
    if isinstance(exc, BatchFailedError):
        return ApiError(ErrorCode.INFERENCE_FAILED, "the model failed on this request's batch")
    return ApiError(ErrorCode.DEADLINE_EXCEEDED, "the request was not computed before its deadline")


def as_api_error(exc: Exception) -> ApiError | None:
    """The API error a domain error is answered with (None for any other exception).

    The one mapping of domain errors: the REST handlers and the gRPC service both use it.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        return from_image_error(exc)
    if isinstance(exc, BatcherError):
        return from_batcher_error(exc)
    if isinstance(exc, NotReadyError):
        return ApiError(ErrorCode.NOT_READY, str(exc))
    if isinstance(exc, ProtocolError):
        return ApiError(ErrorCode.BAD_REQUEST, str(exc))
    return None


def request_id_of(request: Request) -> str | None:
    """The id the request middleware gave this request, if it ran."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def error_response(error: ApiError, request_id: str | None) -> JSONResponse:
    """The JSON response for ``error`` (not counted: see ``respond``)."""
    body = {"error": {"code": error.code.value, "message": error.message, "request_id": request_id}}
    return JSONResponse(body, status_code=error.status, headers=error.headers())


#: Paths under this prefix speak the Open Inference Protocol, errors included.
OIP_PREFIX: Final = "/v2"


def oip_error_response(error: ApiError) -> JSONResponse:
    """The Open Inference Protocol's error body, ``{"error": "message"}``, same status."""
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers())


def response_for(path: str, error: ApiError, request_id: str | None) -> JSONResponse:
    """``error`` in the shape its path speaks: the protocol's under /v2, ours elsewhere."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return oip_error_response(error)
    return error_response(error, request_id)


def respond(request: Request, error: ApiError) -> JSONResponse:
    """Count ``error`` in ``batchserve_errors_total`` and answer it in the path's own shape."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code=error.code.value).inc()
    return response_for(request.url.path, error, request_id_of(request))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    """ApiError itself, and the domain errors that become one (``as_api_error``)."""
    error = as_api_error(exc)
    assert error is not None
    return respond(request, error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()
    )
    return respond(request, ApiError(ErrorCode.INVALID_PARAMETER, details))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _BY_HTTP_STATUS.get(exc.status_code, ErrorCode.BAD_REQUEST)
    response = respond(request, ApiError(code, str(exc.detail)))
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _client_gone(request: Request, exc: Exception) -> Response:
    """Any body reader that meets a disconnect ends here: 499, counted by stage, never a 500."""
    stage = exc.stage if isinstance(exc, ClientDisconnectedError) else DisconnectStage.UPLOAD
    logger.info("client disconnected during %s (request %s)", stage.value, request_id_of(request))
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.client_disconnects.labels(stage=stage.value).inc()
    return Response(status_code=CLIENT_CLOSED_STATUS)


def install_handlers(app: FastAPI) -> None:
    """Answer every error raised inside the app with the structured body."""
    app.add_exception_handler(ClientDisconnectedError, _client_gone)
    # Starlette's own: raised by request.stream()/body()/form() when the client leaves mid-upload.
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(ApiError, _api_error)
    # The model units raise these; they become API errors through as_api_error only.
    for domain_error in (ImageError, BatcherError, NotReadyError, ProtocolError):
        app.add_exception_handler(domain_error, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
