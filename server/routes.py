"""The HTTP endpoints. Handlers stay thin: the service does the work, errors.py maps failures."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from batcher import BatcherError
from server import preprocess
from server.engines import MAX_TOP_K
from server.errors import ApiError, ErrorCode, from_batcher_error, from_image_error, respond
from server.info import describe
from server.ratelimit import ClientRateLimiter
from server.schemas import (
    InfoResponse,
    Prediction,
    PredictResponse,
    StatusResponse,
    Timing,
    error_responses,
)
from server.service import Classification, ClassificationService, Progress
from server.upload import FIELD, cancel_on_disconnect, read_image_bytes

#: The API proper: behind the API keys when they are set.
router = APIRouter()
#: Liveness and readiness: always open, for load balancers and orchestrators.
probes = APIRouter()
#: Prometheus' scrape target: open unless BATCHSERVE_PROTECT_METRICS.
telemetry = APIRouter()

_MULTIPART_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "The image: JPEG, PNG, WebP, GIF, BMP or TIFF",
                        }
                    },
                }
            }
        },
    }
}


def _service(request: Request) -> ClassificationService:
    service: ClassificationService = request.app.state.service
    return service


def _ensure_accepting(service: ClassificationService) -> None:
    if not service.ready:
        raise ApiError(ErrorCode.NOT_READY, _not_ready_reason(service))
    stats = service.batcher.statistics()
    # Refuse before reading and decoding the body: a full queue would refuse it anyway.
    if stats.queue_depth >= stats.max_queue_size:
        raise ApiError(ErrorCode.OVERLOADED, "the server is at capacity; retry shortly")


def _not_ready_reason(service: ClassificationService) -> str:
    if service.failure:
        return service.failure
    if service.draining:
        return "the server is shutting down"
    if service.warm:
        return "the batcher stopped after a fatal error; restart the server"
    return "the model is loading or warming up"


REQUEST_TIMEOUT_HEADER: Final = "X-Request-Timeout"
_REQUEST_TIMEOUT_PARAMETER: Final[dict[str, Any]] = {
    "name": REQUEST_TIMEOUT_HEADER,
    "in": "header",
    "required": False,
    "description": "Seconds this request may take, counted from its arrival; "
    "shortens BATCHSERVE_REQUEST_TIMEOUT_S, never lengthens it",
    "schema": {"type": "number", "exclusiveMinimum": 0},
}


def _request_timeout(request: Request, limit_s: float) -> float:
    """The client's ``X-Request-Timeout`` capped at ``limit_s``; 422 unless a number > 0."""
    raw = request.headers.get(REQUEST_TIMEOUT_HEADER)
    if raw is None:
        return limit_s
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ApiError(
            ErrorCode.INVALID_PARAMETER,
            f"{REQUEST_TIMEOUT_HEADER} must be a positive number of seconds, got {raw[:40]!r}",
        )
    return min(value, limit_s)


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Classify one image",
    responses=error_responses(400, 401, 408, 413, 415, 422, 429, 431, 500, 503, 504),
    openapi_extra={**_MULTIPART_BODY, "parameters": [_REQUEST_TIMEOUT_PARAMETER]},
)
async def predict(
    request: Request,
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="How many classes")] = 5,
) -> PredictResponse:
    """Upload one image (multipart field ``file``); get its top-k classes."""
    service = _service(request)
    limiter: ClientRateLimiter | None = request.app.state.limiter
    if limiter is not None:
        await limiter.check(request)
    settings = service.settings
    timeout_s = _request_timeout(request, settings.request_timeout_s)
    _ensure_accepting(service)
    arrived_at: float = request.state.arrived_at
    read_by = arrived_at + settings.body_timeout_s
    data = await _read_body(request, settings.max_upload_bytes, read_by)
    deadline = arrived_at + timeout_s
    progress = Progress()
    work = service.classify(data, arrived_at, deadline, progress)
    try:
        result = await cancel_on_disconnect(request, work, progress)
    except preprocess.ImageError as exc:
        raise from_image_error(exc) from exc
    except BatcherError as exc:
        raise from_batcher_error(exc) from exc
    return _answer(request, service, result, top_k)


async def _read_body(request: Request, max_bytes: int, read_by: float) -> bytes:
    """The uploaded image, or 408 ``request_timeout`` when the body is not in by ``read_by``.

    A client trickling its upload holds only its own connection: nothing is
    queued or decoded for it until the whole body is in.
    """
    try:
        async with asyncio.timeout_at(read_by):
            return await read_image_bytes(request, max_bytes)
    except TimeoutError:
        raise ApiError(
            ErrorCode.REQUEST_TIMEOUT, "the upload was not received within the body timeout"
        ) from None


def _answer(
    request: Request, service: ClassificationService, result: Classification, top_k: int
) -> PredictResponse:
    assert service.model is not None
    categories = service.model.categories
    predictions = [
        Prediction(index=i, label=categories[i], probability=p) for i, p in result.row.top[:top_k]
    ]
    total_s = asyncio.get_running_loop().time() - request.state.arrived_at
    timing = Timing(
        preprocess=round(result.preprocess_s * 1000, 3),
        queue=round(result.queue_s * 1000, 3),
        inference=round(result.row.inference_s * 1000, 3),
        total=round(total_s * 1000, 3),
    )
    return PredictResponse(
        predictions=predictions,
        model=service.model.name,
        weights=service.describe_weights(),
        batch_size=result.row.batch_size,
        timing_ms=timing,
        request_id=request.state.request_id,
    )


@probes.get("/health", response_model=StatusResponse, summary="Liveness")
async def health() -> StatusResponse:
    """200 while the process is alive; never touches the model."""
    return StatusResponse(status="ok")


@probes.get(
    "/ready", response_model=StatusResponse, summary="Readiness", responses=error_responses(503)
)
async def ready(request: Request) -> StatusResponse | JSONResponse:
    """200 once the model is loaded and warmed up; 503 before that and while draining."""
    service = _service(request)
    if not service.ready:
        return respond(request, ApiError(ErrorCode.NOT_READY, _not_ready_reason(service)))
    return StatusResponse(status="ready")


@router.get(
    "/info",
    response_model=InfoResponse,
    summary="Model and settings",
    responses=error_responses(401, 503),
)
async def info(request: Request) -> InfoResponse:
    """The served model, its preprocessing, device, precision, batching settings and versions."""
    service = _service(request)
    if service.model is None:
        raise ApiError(ErrorCode.NOT_READY, "the model is not loaded yet")
    return describe(service, service.model)


@telemetry.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Every ``batchserve_*`` metric plus process metrics, in Prometheus text format."""
    body, content_type = _service(request).metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
