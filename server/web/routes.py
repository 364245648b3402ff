"""The HTTP endpoints. Handlers stay thin: the model units do the work, errors.py maps failures.

The web layer imports neither torch nor Pillow: the registry and its units
arrive through ``app.state`` (see app.py), and handlers read a unit through its
door only (its description, limits and classify calls).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from server.config import MAX_TOP_K
from server.service.door import NotReadyError
from server.service.progress import Progress
from server.web import info as describing
from server.web.errors import ApiError, ErrorCode, from_image_error, respond
from server.web.plumbing import (
    REQUEST_TIMEOUT_PARAMETER,
    admit,
    count_images,
    encoded,
    loaded,
    read_within,
    registry_of,
    unit_named,
)
from server.web.schemas import (
    BatchItem,
    BatchPredictResponse,
    InfoResponse,
    ItemError,
    ModelInfo,
    ModelsResponse,
    Prediction,
    PredictResponse,
    StatusResponse,
    Timing,
    error_responses,
)
from server.web.upload import FIELD, Part, cancel_on_disconnect, read_image_bytes, read_image_parts

if TYPE_CHECKING:
    from server.models.image_errors import ImageError
    from server.service.unit import Classification, ModelUnit

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


_PREDICT_DOCS: Final[dict[str, Any]] = {
    "response_model": PredictResponse,
    "responses": error_responses(400, 401, 404, 408, 413, 415, 422, 429, 431, 500, 503, 504),
    "openapi_extra": {**_MULTIPART_BODY, "parameters": [REQUEST_TIMEOUT_PARAMETER]},
}
TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K, description="How many classes", examples=[3])]
ModelName = Annotated[str, Path(description="A served model's name (GET /models)")]


@router.post("/predict", summary="Classify one image", **_PREDICT_DOCS)
async def predict(request: Request, top_k: TopK = 5) -> Response:
    """Upload one image (multipart field ``file``); get its top-k classes from the default model."""
    return await _predict(request, unit_named(request, registry_of(request).default_name), top_k)


@router.post("/models/{name}/predict", summary="Classify one image with a model", **_PREDICT_DOCS)
async def predict_with(request: Request, name: ModelName, top_k: TopK = 5) -> Response:
    """The /predict contract, on the model ``name``; 404 ``model_not_found`` if none."""
    return await _predict(request, unit_named(request, name), top_k)


async def _predict(request: Request, unit: ModelUnit, top_k: int) -> Response:
    admitted = await admit(request, unit)
    progress = Progress(request.state.trace)
    reading = read_image_bytes(request, unit.limits.max_upload_bytes)
    data = await read_within(reading, admitted.read_by, progress.trace)
    work = unit.classify(data, admitted.arrived_at, admitted.deadline, progress)
    # Image and batcher errors pass through to errors.py's handlers.
    result = await cancel_on_disconnect(request, work, progress)
    count_images(request, unit, 1)
    return encoded(_answer(request, unit, result, top_k))


def _predictions(unit: ModelUnit, result: Classification, top_k: int) -> list[Prediction]:
    categories = loaded(unit).labels
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
        weights=loaded(unit).weights,
        batch_size=result.row.batch_size,
        timing_ms=_timing(request, [result]),
        request_id=request.state.request_id,
    )


_BATCH_DOCS: Final[dict[str, Any]] = {
    "response_model": BatchPredictResponse,
    "responses": error_responses(400, 401, 404, 408, 413, 415, 422, 429, 431, 500, 503, 504),
    "openapi_extra": {**_BATCH_BODY, "parameters": [REQUEST_TIMEOUT_PARAMETER]},
}


@router.post("/predict/batch", summary="Classify several images", **_BATCH_DOCS)
async def predict_batch(request: Request, top_k: TopK = 5) -> Response:
    """Upload 1 to BATCHSERVE_MAX_FILES images (each a ``file`` part); get each one's top-k.

    200 when the request itself is valid: an image that cannot be decoded, or is
    too large, gets its own error entry and the others their answers. Overload
    and deadlines fail the whole request, as on /predict.
    """
    return await _predict_batch(
        request, unit_named(request, registry_of(request).default_name), top_k
    )


@router.post(
    "/models/{name}/predict/batch", summary="Classify several images with a model", **_BATCH_DOCS
)
async def predict_batch_with(request: Request, name: ModelName, top_k: TopK = 5) -> Response:
    """The /predict/batch contract, on the model ``name``."""
    return await _predict_batch(request, unit_named(request, name), top_k)


async def _predict_batch(request: Request, unit: ModelUnit, top_k: int) -> Response:
    admitted = await admit(request, unit)
    limits = unit.limits
    reading = read_image_parts(
        request, limits.max_upload_bytes, limits.max_request_bytes, limits.max_files
    )
    progress = Progress(request.state.trace)
    parts = await read_within(reading, admitted.read_by, progress.trace)
    good = [part.data for part in parts if part.error is None]
    work = unit.classify_many(good, admitted.arrived_at, admitted.deadline, progress)
    outcomes = iter(await cancel_on_disconnect(request, work, progress))
    results = [part.error or next(outcomes) for part in parts]
    answered = [r for r in results if not isinstance(r, Exception)]
    count_images(request, unit, len(answered))
    answer = BatchPredictResponse(
        results=[
            _item(unit, part, result, top_k) for part, result in zip(parts, results, strict=True)
        ],
        model=unit.name,
        request_id=request.state.request_id,
        timing_ms=_timing(request, answered),
    )
    return encoded(answer, exclude_none=True)


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
    answer = describing.info(registry_of(request), request.app.state.tracing.describe())
    if answer is None:
        raise NotReadyError("the default model is not loaded")
    return answer


@router.get("/models", response_model=ModelsResponse, summary="The served models",
            responses=error_responses(401))  # fmt: skip
async def models(request: Request) -> ModelsResponse:
    """Each served model: name, readiness, engine, precision and number of classes."""
    return ModelsResponse(models=describing.summaries(registry_of(request)))


@router.get(
    "/models/{name}",
    response_model=ModelInfo,
    summary="One model",
    responses=error_responses(401, 404, 503),
)
async def model(request: Request, name: ModelName) -> ModelInfo:
    """The model ``name``, described as /info describes the default one."""
    answer = describing.describe(unit_named(request, name), registry_of(request))
    if answer is None:
        raise NotReadyError(f"the model {name} is not loaded yet")
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
