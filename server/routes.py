"""The HTTP endpoints. Handlers stay thin: the model units do the work, errors.py maps failures.

The web layer imports neither torch nor Pillow: the registry, its units and
the describer of models arrive through ``app.state`` (see app.py).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from server.config import MAX_TOP_K
from server.errors import ApiError, ErrorCode, from_image_error, overloaded, respond
from server.progress import Progress
from server.ratelimit import ClientRateLimiter
from server.schemas import (
    BatchItem,
    BatchPredictResponse,
    InfoResponse,
    ItemError,
    ModelInfo,
    ModelsResponse,
    ModelSummary,
    Prediction,
    PredictResponse,
    StatusResponse,
    Timing,
    error_responses,
)
from server.upload import FIELD, Part, cancel_on_disconnect, read_image_bytes, read_image_parts

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from server.image_errors import ImageError
    from server.registry import ModelRegistry
    from server.unit import Classification, ModelUnit

T = TypeVar("T")


class Describer(Protocol):
    """What describes the served models (server.info, which imports torch)."""

    def describe(self, unit: ModelUnit) -> ModelInfo | None:
        """One model's description; None before it is loaded."""
        ...

    def summaries(self, registry: ModelRegistry) -> list[ModelSummary]:
        """Every model, one line each."""
        ...

    def info(self, registry: ModelRegistry) -> InfoResponse | None:
        """The default model's description and the list of models."""
        ...


#: The API proper: behind the API keys when they are set.
router = APIRouter()
#: Liveness and readiness: always open, for load balancers and orchestrators.
probes = APIRouter()
#: Prometheus' scrape target: open unless BATCHSERVE_PROTECT_METRICS.
telemetry = APIRouter()


def _request_body(file_schema: dict[str, Any], raw: bool) -> dict[str, Any]:
    """OpenAPI for a multipart body with ``file`` parts, and for raw image bytes if ``raw``."""
    multipart = {
        "schema": {"type": "object", "required": [FIELD], "properties": {FIELD: file_schema}}
    }
    content: dict[str, Any] = {"multipart/form-data": multipart}
    if raw:
        binary = {"schema": {"type": "string", "format": "binary"}}
        content |= {"image/*": binary, "application/octet-stream": binary}
    return {"requestBody": {"required": True, "content": content}}


_IMAGE: Final = {
    "type": "string",
    "format": "binary",
    "description": "The image: JPEG, PNG, WebP, GIF, BMP or TIFF",
}
_MULTIPART_BODY: Final = _request_body(_IMAGE, raw=True)
_BATCH_BODY: Final = _request_body(
    {"type": "array", "items": _IMAGE, "description": "1 to BATCHSERVE_MAX_FILES images"},
    raw=False,
)


def registry_of(request: Request) -> ModelRegistry:
    """The app's models."""
    registry: ModelRegistry = request.app.state.registry
    return registry


def _describer(request: Request) -> Describer:
    describer: Describer = request.app.state.describer
    return describer


def unit_named(request: Request, name: str) -> ModelUnit:
    """The unit serving ``name``; 404 ``model_not_found`` naming the served ones."""
    registry = registry_of(request)
    unit = registry.get(name)
    if unit is None:
        raise ApiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"no model named {name[:64]!r}; served: {', '.join(registry.names)}",
        )
    return unit


def _ensure_accepting(unit: ModelUnit) -> None:
    if not unit.ready:
        raise ApiError(ErrorCode.NOT_READY, unit.not_ready_reason)
    stats = unit.batcher.statistics()
    # Refuse before reading and decoding the body: a full queue would refuse it anyway.
    if stats.queue_depth >= stats.max_queue_size:
        raise overloaded(stats.drain_s)


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


_PREDICT_DOCS: Final[dict[str, Any]] = {
    "response_model": PredictResponse,
    "responses": error_responses(400, 401, 404, 408, 413, 415, 422, 429, 431, 500, 503, 504),
    "openapi_extra": {**_MULTIPART_BODY, "parameters": [_REQUEST_TIMEOUT_PARAMETER]},
}
TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K, description="How many classes")]
ModelName = Annotated[str, Path(description="A served model's name (GET /models)")]


@router.post("/predict", summary="Classify one image", **_PREDICT_DOCS)
async def predict(request: Request, top_k: TopK = 5) -> PredictResponse:
    """Upload one image (multipart field ``file``); get its top-k classes from the default model."""
    return await _predict(request, registry_of(request).default, top_k)


@router.post("/models/{name}/predict", summary="Classify one image with a model", **_PREDICT_DOCS)
async def predict_with(request: Request, name: ModelName, top_k: TopK = 5) -> PredictResponse:
    """The /predict contract, on the model ``name``; 404 ``model_not_found`` if none."""
    return await _predict(request, unit_named(request, name), top_k)


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let in: when it arrived, when its answer is due, when its body must be in."""

    arrived_at: float
    deadline: float
    read_by: float


async def admit(request: Request, unit: ModelUnit) -> Admission:
    """Before the body is read: the rate limit, the deadline, readiness and room in the queue."""
    request.state.model = unit.name
    limiter: ClientRateLimiter | None = request.app.state.limiter
    if limiter is not None:
        await limiter.check(request)
    settings = unit.settings
    timeout_s = _request_timeout(request, settings.request_timeout_s)
    _ensure_accepting(unit)
    arrived_at: float = request.state.arrived_at
    return Admission(arrived_at, arrived_at + timeout_s, arrived_at + settings.body_timeout_s)


async def _predict(request: Request, unit: ModelUnit, top_k: int) -> PredictResponse:
    admitted = await admit(request, unit)
    reading = read_image_bytes(request, unit.settings.max_upload_bytes)
    data = await read_within(reading, admitted.read_by)
    progress = Progress()
    work = unit.classify(data, admitted.arrived_at, admitted.deadline, progress)
    # Image and batcher errors pass through to errors.py's handlers.
    result = await cancel_on_disconnect(request, work, progress)
    unit.metrics.count_images(endpoint_path(request), 1)
    return _answer(request, unit, result, top_k)


def endpoint_path(request: Request) -> str:
    """The matched route's path template (a metrics label)."""
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


async def read_within(reading: Awaitable[T], read_by: float) -> T:
    """The upload, or 408 ``request_timeout`` when the body is not in by ``read_by``.

    A client trickling its upload holds only its own connection: nothing is
    queued or decoded for it until the whole body is in.
    """
    try:
        async with asyncio.timeout_at(read_by):
            return await reading
    except TimeoutError:
        raise ApiError(
            ErrorCode.REQUEST_TIMEOUT, "the upload was not received within the body timeout"
        ) from None


def _predictions(unit: ModelUnit, result: Classification, top_k: int) -> list[Prediction]:
    assert unit.model is not None
    categories = unit.model.categories
    return [
        Prediction(index=i, label=categories[i], probability=p) for i, p in result.row.top[:top_k]
    ]


def _timing(request: Request, results: list[Classification]) -> Timing:
    """Milliseconds per stage; with several images, the longest queue and inference."""
    total_s = asyncio.get_running_loop().time() - request.state.arrived_at
    return Timing(
        preprocess=round(max((r.preprocess_s for r in results), default=0.0) * 1000, 3),
        queue=round(max((r.queue_s for r in results), default=0.0) * 1000, 3),
        inference=round(max((r.row.inference_s for r in results), default=0.0) * 1000, 3),
        total=round(total_s * 1000, 3),
    )


def _answer(
    request: Request, unit: ModelUnit, result: Classification, top_k: int
) -> PredictResponse:
    return PredictResponse(
        predictions=_predictions(unit, result, top_k),
        model=unit.name,
        weights=unit.describe_weights(),
        batch_size=result.row.batch_size,
        timing_ms=_timing(request, [result]),
        request_id=request.state.request_id,
    )


_BATCH_DOCS: Final[dict[str, Any]] = {
    "response_model": BatchPredictResponse,
    "response_model_exclude_none": True,
    "responses": error_responses(400, 401, 404, 408, 413, 415, 422, 429, 431, 500, 503, 504),
    "openapi_extra": {**_BATCH_BODY, "parameters": [_REQUEST_TIMEOUT_PARAMETER]},
}


@router.post("/predict/batch", summary="Classify several images", **_BATCH_DOCS)
async def predict_batch(request: Request, top_k: TopK = 5) -> BatchPredictResponse:
    """Upload 1 to BATCHSERVE_MAX_FILES images (each a ``file`` part); get each one's top-k.

    200 when the request itself is valid: an image that cannot be decoded, or is
    too large, gets its own error entry and the others their answers. Overload
    and deadlines fail the whole request, as on /predict.
    """
    return await _predict_batch(request, registry_of(request).default, top_k)


@router.post(
    "/models/{name}/predict/batch", summary="Classify several images with a model", **_BATCH_DOCS
)
async def predict_batch_with(
    request: Request, name: ModelName, top_k: TopK = 5
) -> BatchPredictResponse:
    """The /predict/batch contract, on the model ``name``."""
    return await _predict_batch(request, unit_named(request, name), top_k)


async def _predict_batch(request: Request, unit: ModelUnit, top_k: int) -> BatchPredictResponse:
    admitted = await admit(request, unit)
    settings = unit.settings
    reading = read_image_parts(
        request, settings.max_upload_bytes, settings.max_request_bytes, settings.max_files
    )
    parts = await read_within(reading, admitted.read_by)
    good = [part.data for part in parts if part.error is None]
    progress = Progress()
    work = unit.classify_many(good, admitted.arrived_at, admitted.deadline, progress)
    outcomes = iter(await cancel_on_disconnect(request, work, progress))
    results = [part.error or next(outcomes) for part in parts]
    answered = [r for r in results if not isinstance(r, Exception)]
    unit.metrics.count_images(endpoint_path(request), len(answered))
    return BatchPredictResponse(
        results=[
            _item(unit, part, result, top_k) for part, result in zip(parts, results, strict=True)
        ],
        model=unit.name,
        request_id=request.state.request_id,
        timing_ms=_timing(request, answered),
    )


def _item(
    unit: ModelUnit, part: Part, result: Classification | ImageError | ApiError, top_k: int
) -> BatchItem:
    if isinstance(result, Exception):
        error = result if isinstance(result, ApiError) else from_image_error(result)
        return BatchItem(
            filename=part.filename, error=ItemError(code=error.code, message=error.message)
        )
    return BatchItem(
        filename=part.filename,
        predictions=_predictions(unit, result, top_k),
        batch_size=result.row.batch_size,
    )


@probes.get("/health", response_model=StatusResponse, summary="Liveness")
async def health() -> StatusResponse:
    """200 while the process is alive; never touches the model."""
    return StatusResponse(status="ok")


@probes.get(
    "/ready", response_model=StatusResponse, summary="Readiness", responses=error_responses(503)
)
async def ready(request: Request) -> StatusResponse | JSONResponse:
    """200 once every model is loaded and warmed up; 503 before that and while draining."""
    registry = registry_of(request)
    if not registry.ready:
        return respond(request, ApiError(ErrorCode.NOT_READY, registry.not_ready_reason))
    return StatusResponse(status="ready")


@router.get(
    "/info",
    response_model=InfoResponse,
    summary="The default model and the list of models",
    responses=error_responses(401, 503),
)
async def info(request: Request) -> InfoResponse:
    """The default model: preprocessing, device, precision, batching and versions; every model."""
    answer = _describer(request).info(registry_of(request))
    if answer is None:
        raise ApiError(ErrorCode.NOT_READY, "the model is not loaded yet")
    return answer


@router.get("/models", response_model=ModelsResponse, summary="The served models",
            responses=error_responses(401))  # fmt: skip
async def models(request: Request) -> ModelsResponse:
    """Each served model: name, readiness, engine, precision and number of classes."""
    return ModelsResponse(models=_describer(request).summaries(registry_of(request)))


@router.get(
    "/models/{name}",
    response_model=ModelInfo,
    summary="One model",
    responses=error_responses(401, 404, 503),
)
async def model(request: Request, name: ModelName) -> ModelInfo:
    """The model ``name``, described as /info describes the default one."""
    answer = _describer(request).describe(unit_named(request, name))
    if answer is None:
        raise ApiError(ErrorCode.NOT_READY, f"the model {name} is not loaded yet")
    return answer


@telemetry.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Every ``batchserve_*`` metric plus process metrics, in Prometheus text format."""
    body, content_type = request.app.state.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
