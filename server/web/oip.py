"""The Open Inference Protocol (KServe v2) over HTTP, under /v2.

Standard clients (tritonclient, the KServe SDK) can call batchserve as they call
Triton, KServe, MLServer or OpenVINO Model Server. Each served model has the
versions its repository folder and version policy give it (``1`` without
versions; a path without a version reaches the newest ready one), two inputs
of which a request sends one (IMAGE: BYTES [N] of encoded files; PIXELS: FP32
[N, 3, H, W] already preprocessed) and one output,
PROBABILITIES (FP32 [N, classes]; with the classification extension, BYTES
[N, k] of "probability:index:label"). Errors under /v2 have the protocol's
shape, ``{"error": "message"}`` (errors.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response

from server import __version__
from server.config import MAX_TOP_K
from server.models.image_errors import ImageError
from server.service.door import NotReadyError
from server.service.progress import Progress
from server.web import oip_codec
from server.web.errors import ApiError, ErrorCode
from server.web.oip_codec import IMAGE, PIXELS, PROBABILITIES, InferRequest, OutputTensor
from server.web.plumbing import (
    admit,
    count_images,
    loaded,
    read_within,
    registry_of,
    unit_named,
    version_named,
)
from server.web.schemas import (
    ProtocolLive,
    ProtocolModelReady,
    ProtocolReady,
    protocol_error_responses,
)
from server.web.upload import cancel_on_disconnect, read_raw_body

if TYPE_CHECKING:
    from server.service.registry import ModelRegistry
    from server.service.unit import Classification, ModelUnit

#: Metadata, model metadata and inference: behind the API keys when set.
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])
#: Liveness and readiness: always open.
probes = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])

EXTENSIONS: Final = ("classification", "binary_tensor_data", "statistics", "model_repository")
ModelName = Annotated[str, Path(description="A served model's name")]
Version = Annotated[str, Path(description="One of the model's served versions")]


#: Answers the handler builds itself (JSON, or JSON then binary tensor data).
_EMPTY: Final[dict[str, Any]] = {"response_class": Response}
#: Metadata endpoints' errors; inference adds its own.
_LOOKUP_ERRORS: Final = protocol_error_responses(401, 404, 503)
_INFER_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "JSON, or JSON then binary tensor data (Inference-Header-Content-Length)",
        "content": {"application/json": {"schema": {"type": "object"}},
                    "application/octet-stream": {}},
    },
    **protocol_error_responses(400, 401, 404, 408, 413, 429, 500, 503, 504),
}  # fmt: skip


# The protocol's bodies, ``{"live": true}``, ``{"ready": true}`` and ``{"name", "ready"}``:
# tritonclient reads only the status, the KServe SDK's REST client reads the body too.
@probes.get("/health/live", summary="Protocol liveness")
async def oip_live() -> ProtocolLive:
    """200 while the process is alive."""
    return ProtocolLive(live=True)


@probes.get("/health/ready", summary="Protocol readiness", responses=protocol_error_responses(503))
async def oip_ready(request: Request) -> ProtocolReady:
    """200 when every model is ready, else 503 with the reason."""
    registry = registry_of(request)
    if not registry.ready:
        raise ApiError(ErrorCode.NOT_READY, registry.not_ready_reason)
    return ProtocolReady(ready=True)


@router.get("", summary="Protocol server metadata", responses=protocol_error_responses(401))
async def oip_server() -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    return server_metadata()


def server_metadata() -> dict[str, Any]:
    """The protocol's server metadata (REST and gRPC): name, version, extensions."""
    return {"name": "batchserve", "version": __version__, "extensions": list(EXTENSIONS)}


@router.get("/models/stats", summary="Protocol statistics of every model", responses=_LOOKUP_ERRORS)
async def oip_all_stats(request: Request) -> dict[str, Any]:
    """The statistics extension: every served version of every model."""
    registry = registry_of(request)
    units = [unit for name in registry.names for unit in registry.versions(name)]
    return statistics_of(units)


@router.get("/models/{name}/stats", summary="Protocol model statistics", responses=_LOOKUP_ERRORS)
async def oip_stats(request: Request, name: ModelName) -> dict[str, Any]:
    """Requests, forward passes and their cumulative times, for every served version."""
    _unit(request, name)  # 404 for a model not served
    return statistics_of(registry_of(request).versions(name))


@router.get(
    "/models/{name}/versions/{version}/stats",
    summary="Protocol model statistics, versioned",
    responses=_LOOKUP_ERRORS,
)
async def oip_version_stats(request: Request, name: ModelName, version: Version) -> dict[str, Any]:
    """The statistics of one version of the model."""
    return statistics_of([_unit(request, name, version)])


def statistics_of(units: list[ModelUnit]) -> dict[str, Any]:
    """Triton's ``model_stats`` body: one item per model version (also the gRPC answer's)."""
    return {
        "model_stats": [unit.statistics.as_dict(unit.name, str(unit.version)) for unit in units]
    }


def _unit(request: Request, name: str, version: str | None = None) -> ModelUnit:
    unit = unit_named(request, name)
    return unit if version is None else version_named(request, name, version)


@router.get("/models/{name}", summary="Protocol model metadata", responses=_LOOKUP_ERRORS)
async def oip_model(request: Request, name: ModelName) -> dict[str, Any]:
    """The model's inputs and outputs, named, typed and shaped."""
    return metadata(registry_of(request), _unit(request, name))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Protocol model metadata, versioned",
    responses=_LOOKUP_ERRORS,
)
async def oip_model_version(request: Request, name: ModelName, version: Version) -> dict[str, Any]:
    """The inputs and outputs of one version of the model."""
    return metadata(registry_of(request), _unit(request, name, version))


def metadata(registry: ModelRegistry, unit: ModelUnit) -> dict[str, Any]:
    """The protocol's model metadata: the model's inputs and outputs, named, typed and shaped."""
    model = loaded(unit)
    crop = model.preprocessing.crop_size
    return {
        "name": unit.name,
        "versions": [str(u.version) for u in registry.versions(unit.name)],
        "platform": f"batchserve_{model.engine}",
        "inputs": [
            {"name": IMAGE, "datatype": "BYTES", "shape": [-1]},
            {"name": PIXELS, "datatype": "FP32", "shape": [-1, 3, crop, crop]},
        ],
        "outputs": [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, model.num_classes]}],
    }


@router.get("/models/{name}/ready", summary="Protocol model readiness", responses=_LOOKUP_ERRORS)
async def oip_model_ready(request: Request, name: ModelName) -> ProtocolModelReady:
    """200 when the model is ready, else 503 with the reason."""
    return _readiness(_unit(request, name))


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Protocol model readiness, versioned",
    responses=_LOOKUP_ERRORS,
)
async def oip_model_version_ready(
    request: Request, name: ModelName, version: Version
) -> ProtocolModelReady:
    """200 when that version of the model is ready, else 503 with the reason."""
    return _readiness(_unit(request, name, version))


def _readiness(unit: ModelUnit) -> ProtocolModelReady:
    if not unit.ready:
        raise NotReadyError(unit.not_ready_reason)
    return ProtocolModelReady(name=unit.name, ready=True)


@router.post(
    "/models/{name}/infer", summary="Protocol inference", responses=_INFER_RESPONSES, **_EMPTY
)
async def oip_infer(request: Request, name: ModelName) -> Response:
    """Classify the images of one input tensor; JSON or binary tensor data, both ways."""
    return await _infer(request, _unit(request, name))


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Protocol inference, versioned",
    responses=_INFER_RESPONSES,
    **_EMPTY,
)
async def oip_infer_version(request: Request, name: ModelName, version: Version) -> Response:
    """Inference on one version of the model."""
    return await _infer(request, _unit(request, name, version))


async def _infer(request: Request, unit: ModelUnit) -> Response:
    admitted = await admit(request, unit)
    limits = unit.limits
    progress = Progress(request.state.trace)
    reading = read_raw_body(request, limits.max_request_bytes)
    body = await read_within(reading, admitted.read_by, progress.trace)
    # A malformed body raises oip_codec.ProtocolError: 400 in the protocol's shape (errors.py).
    infer = oip_codec.parse(body, request.headers.get(oip_codec.HEADER_LENGTH))
    deadline = admitted.deadline
    if infer.timeout_us is not None:
        deadline = min(deadline, admitted.arrived_at + infer.timeout_us / 1e6)
    work = classify_inputs(unit, infer, admitted.arrived_at, deadline, progress)
    results = await cancel_on_disconnect(request, work, progress)
    count_images(request, unit, len(results))
    outputs = requested_outputs(unit, infer, results)
    content, headers = oip_codec.response(unit.name, infer.id, outputs, str(unit.version))
    return Response(content, headers=headers)


async def classify_inputs(
    unit: ModelUnit, infer: InferRequest, arrived_at: float, deadline: float, progress: Progress
) -> list[Classification]:
    """The one input's images through the unit; an unreadable image fails the request (400)."""
    if len(infer.inputs) != 1 or infer.inputs[0].name not in (IMAGE, PIXELS):
        raise ApiError(ErrorCode.BAD_REQUEST, f"send exactly one input: {IMAGE} or {PIXELS}")
    tensor = infer.inputs[0]
    count = tensor.shape[0] if tensor.shape else 0
    limits = unit.limits
    if not 1 <= count <= limits.max_files:
        raise ApiError(ErrorCode.BAD_REQUEST, f"send 1 to {limits.max_files} images, not {count}")
    if tensor.name == PIXELS:
        pixels = _pixels(unit, tensor)
        return await unit.classify_pixels(pixels, count, arrived_at, deadline, progress)
    images = _images(tensor, count, limits.max_upload_bytes)
    answered: list[Classification] = []
    results = await unit.classify_many(images, arrived_at, deadline, progress)
    for index, result in enumerate(results):
        if isinstance(result, ImageError):
            # The same error, naming the image; errors.py answers it like any image error.
            raise type(result)(f"image {index}: {result}") from result
        answered.append(result)
    return answered


def _images(tensor: oip_codec.Input, count: int, max_bytes: int) -> list[bytes]:
    if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
        raise ApiError(ErrorCode.BAD_REQUEST, f"{IMAGE} must be BYTES of shape [N]")
    images = oip_codec.byte_elements(tensor)
    if len(images) != count:
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"{IMAGE} has {len(images)} elements, shape says {count}"
        )
    for index, image in enumerate(images):
        if len(image) > max_bytes:  # BATCHSERVE_MAX_UPLOAD_MB, as for every image file
            raise ApiError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"image {index} exceeds the limit of {max_bytes / 2**20:g} MiB",
            )
    return images


def _pixels(unit: ModelUnit, tensor: oip_codec.Input) -> bytes:
    crop = loaded(unit).preprocessing.crop_size
    if tensor.datatype != "FP32" or tuple(tensor.shape[1:]) != (3, crop, crop):
        raise ApiError(
            ErrorCode.BAD_REQUEST, f"{PIXELS} must be FP32 of shape [N, 3, {crop}, {crop}]"
        )
    return oip_codec.fp32_bytes(tensor)


def requested_outputs(
    unit: ModelUnit, infer: InferRequest, results: list[Classification]
) -> list[OutputTensor]:
    """PROBABILITIES as asked: full FP32 rows, or the top k as classification strings."""
    binary_default = bool(infer.parameters.get("binary_data_output", False))
    wanted = infer.outputs or [oip_codec.Output(PROBABILITIES, binary_default)]
    outputs = []
    for output in wanted:
        if output.name != PROBABILITIES:
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"unknown output {output.name!r}: {PROBABILITIES}"
            )
        outputs.append(_output(unit, output, results))
    return outputs


def _output(
    unit: ModelUnit, output: oip_codec.Output, results: list[Classification]
) -> OutputTensor:
    model = loaded(unit)
    count = len(results)
    if not output.classification:
        fp32 = probability_bytes(results)
        shape = (count, model.num_classes)
        return OutputTensor(PROBABILITIES, "FP32", shape, output.binary, fp32=fp32)
    k = min(output.classification, MAX_TOP_K, model.num_classes)
    labels = model.labels
    elements = tuple(
        f"{p:f}:{i}:{labels[i]}".encode() for result in results for i, p in result.row.top[:k]
    )
    return OutputTensor(PROBABILITIES, "BYTES", (count, k), output.binary, elements=elements)


def probability_bytes(results: list[Classification]) -> bytes:
    """Every class's probability of each result: little-endian float32 ``[N, classes]``."""
    return b"".join(result.row.probabilities.astype("<f4").tobytes() for result in results)
