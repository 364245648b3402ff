"""``inference.GRPCInferenceService``: each call of the protocol, on the REST side's code.

Every call runs through :func:`_observed`, gRPC's counterpart of the request
middleware: an id, metrics with ``protocol="grpc"``, an access log line, the
units it held released, and every error answered with its gRPC status
(status.py). ServerLive and ServerReady are open, as REST's probes are; the
others need an API key when keys are set, the repository calls an admin key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
import grpc.aio
from google.protobuf.message import Message

from server.tracing import RequestTrace
from server.web import oip
from server.web.errors import ApiError, ErrorCode, as_api_error
from server.web.grpc import codec
from server.web.grpc.call import Backend, Call
from server.web.grpc.messages import SERVICE, method_names, method_types, reply
from server.web.grpc.status import status_of, trailers
from server.web.repository import (
    check_load_parameters,
    index_entries,
    load_model,
    require_explicit,
    unload_model,
)

logger = logging.getLogger("batchserve.access")
_error_logger = logging.getLogger("batchserve.errors")

Behaviour = Callable[[Call, Any], Awaitable[Message]]
Context = grpc.aio.ServicerContext[Any, Any]

#: The statuses that mark a server span failed (OpenTelemetry's gRPC convention).
SERVER_ERRORS: Final = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})  # fmt: skip
#: Room for the message's framing on top of the request limit (field tags and lengths).
FRAMING_BYTES: Final = 64 * 1024


async def server_live(call: Call, request: Any) -> Message:
    """Alive: the process answers."""
    return reply("ServerLiveResponse", live=True)


async def server_ready(call: Call, request: Any) -> Message:
    """Ready when every model is (false while loading, warming up or draining)."""
    return reply("ServerReadyResponse", ready=call.backend.registry.ready)


async def model_ready(call: Call, request: Any) -> Message:
    """Whether the model (or its version) is ready; NOT_FOUND for one not served."""
    call.authorize()
    unit = call.unit(request.name, request.version)
    return reply("ModelReadyResponse", ready=unit.ready)


async def server_metadata(call: Call, request: Any) -> Message:
    """The server's name, version and protocol extensions."""
    call.authorize()
    return reply("ServerMetadataResponse", **oip.server_metadata())


async def model_metadata(call: Call, request: Any) -> Message:
    """The model's inputs and outputs, as REST's ``GET /v2/models/{name}`` gives them."""
    call.authorize()
    unit = call.unit(request.name, request.version)
    return codec.from_dict("ModelMetadataResponse", oip.metadata(call.backend.registry, unit))


async def model_infer(call: Call, request: Any) -> Message:
    """Classify the images (or pixels) of the one input; the answer REST gives, as raw data."""
    call.authorize()
    unit = call.unit(request.model_name, request.model_version)
    deadline = await call.admit(unit)
    limit = unit.limits.max_request_bytes
    if request.ByteSize() > limit + FRAMING_BYTES:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"the request exceeds the limit of {limit / 2**20:.4g} MiB"
        )
    infer = codec.infer_request(request)
    if infer.timeout_us is not None:
        deadline = min(deadline, call.arrived_at + infer.timeout_us / 1e6)
    results = await oip.classify_inputs(unit, infer, call.arrived_at, deadline, call.progress)
    version = str(unit.version)
    call.backend.metrics.count_images(unit.name, version, call.endpoint, len(results), "grpc")
    outputs = oip.requested_outputs(unit, infer, results)
    return codec.infer_response(unit.name, version, infer.id, outputs)


async def model_statistics(call: Call, request: Any) -> Message:
    """The statistics extension: every model, one model's versions, or one version."""
    call.authorize()
    registry = call.backend.registry
    if not request.name:
        units = [unit for name in registry.names for unit in registry.versions(name)]
    elif request.version:
        units = [call.unit(request.name, request.version)]
    else:
        call.unit(request.name)  # NOT_FOUND for a model not served
        units = registry.versions(request.name)
    return codec.from_dict("ModelStatisticsResponse", oip.statistics_of(units))


async def repository_index(call: Call, request: Any) -> Message:
    """Each model version with its state and reason (``ready``: the ready ones only)."""
    call.authorize_admin()
    entries = index_entries(call.backend.control, request.ready)
    return codec.from_dict("RepositoryIndexResponse", {"models": entries})


def _model_to_control(call: Call, request: Any, action: str) -> str:
    """The model a load or unload names (Triton's ``model_name``, or KServe's field 1)."""
    call.authorize_admin()
    require_explicit(call.backend.registry.settings.model_control, action)
    name = str(request.model_name or request.repository_name)
    if not name:
        raise ApiError(ErrorCode.BAD_REQUEST, f"name the model to {action}")
    return name


async def repository_model_load(call: Call, request: Any) -> Message:
    """Load or reload a model; answered once it serves, or with why it failed."""
    name = _model_to_control(call, request, "load")
    check_load_parameters(request.parameters.keys())
    await load_model(call.backend.control, name)
    return reply("RepositoryModelLoadResponse", model_name=name, isLoaded=True)


async def repository_model_unload(call: Call, request: Any) -> Message:
    """Unload a model; answered once its queue has drained."""
    name = _model_to_control(call, request, "unload")
    await unload_model(call.backend.control, name)
    return reply("RepositoryModelUnloadResponse", model_name=name, isUnloaded=True)


#: Each method of the service, by its name in the .proto.
BEHAVIOURS: Final[dict[str, Behaviour]] = {
    "ServerLive": server_live,
    "ServerReady": server_ready,
    "ModelReady": model_ready,
    "ServerMetadata": server_metadata,
    "ModelMetadata": model_metadata,
    "ModelInfer": model_infer,
    "RepositoryModelLoad": repository_model_load,
    "RepositoryModelUnload": repository_model_unload,
    "ModelStatistics": model_statistics,
    "RepositoryIndex": repository_index,
}


def endpoint(method: str) -> str:
    """A method's full path, ``/inference.GRPCInferenceService/ModelInfer``: its metrics label."""
    return f"/{SERVICE}/{method}"


def generic_handler(backend: Backend) -> grpc.GenericRpcHandler:
    """Every method of the service, each run by :func:`_observed`."""
    handlers = {}
    for name in method_names():
        request_type, response_type = method_types(name)
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            _observed(backend, name, BEHAVIOURS[name]),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _observed(
    backend: Backend, method: str, behaviour: Behaviour
) -> Callable[[Any, Context], Awaitable[Message]]:
    path = endpoint(method)

    async def run(request: Any, context: Context) -> Message:
        call = Call(backend, context, path)
        call.progress.trace = trace = _server_span(call, method)
        started = time.perf_counter()
        backend.metrics.inflight.inc()
        try:
            response = await behaviour(call, request)
            context.set_trailing_metadata((("x-request-id", call.request_id),))
            return response
        except asyncio.CancelledError:
            call.status = _gone(call)
            raise
        except Exception as exc:  # every error is answered with a status, none escapes
            error = _answerable(exc, call)
            call.status = status_of(error)
            backend.metrics.errors.labels(code=error.code.value).inc()
            await context.abort(call.status, error.message, trailers(error, call.request_id))
            raise  # unreachable: abort raises
        finally:
            call.release()
            backend.metrics.inflight.dec()
            _finish(call, time.perf_counter() - started)
            if trace is not None:
                _end_server_span(trace, call, method)

    return run


def _server_span(call: Call, method: str) -> RequestTrace | None:
    """The call's server span (OpenTelemetry's gRPC convention), when tracing is on."""
    if not call.backend.tracing.enabled:
        return None
    carrier = {k: v for k, v in call.metadata.items() if isinstance(v, str)}
    attributes = {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method}
    return call.backend.tracing.request(f"{SERVICE}/{method}", carrier, attributes,
                                        call.request_id)  # fmt: skip


def _end_server_span(trace: RequestTrace, call: Call, method: str) -> None:
    attributes: dict[str, str | int] = {"rpc.grpc.status_code": call.status.value[0]}
    if call.model:
        attributes["batchserve.model"] = call.model
        attributes["batchserve.model.version"] = call.version
    failed = call.status in SERVER_ERRORS
    trace.end(f"{SERVICE}/{method}", attributes, call.status.name if failed else None)


def _answerable(exc: Exception, call: Call) -> ApiError:
    error = as_api_error(exc)
    if error is None:
        _error_logger.exception(
            "unhandled error in gRPC %s (request %s)", call.endpoint, call.request_id
        )
        error = ApiError(ErrorCode.INTERNAL_ERROR, "an internal error occurred")
    return error


def _gone(call: Call) -> grpc.StatusCode:
    """The client cancelled, or its deadline passed: counted by stage, as REST's 499s are."""
    remaining = call.context.time_remaining()
    expired = remaining is not None and remaining <= 0
    stage = call.progress.stage if call.model else "upload"
    logger.info("gRPC call %s ended by its client during %s", call.request_id, stage)
    if call.model:
        call.backend.metrics.client_disconnects.labels(stage=stage).inc()
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED


def _finish(call: Call, duration_s: float) -> None:
    status = call.status.name
    metrics = call.backend.metrics
    metrics.observe_request(call.endpoint, status, duration_s, call.model, call.version, "grpc")
    logger.info(
        '%s "GRPC %s" %s %.1fms',
        call.request_id, call.endpoint, status, duration_s * 1000,
        extra={
            "request_id": call.request_id, "method": "GRPC", "path": call.endpoint,
            "status": status, "duration_ms": round(duration_s * 1000, 3),
            "client": call.context.peer(),
        },
    )  # fmt: skip
