"""The request plumbing the REST and protocol endpoints share: finding the model, admitting
a request (rate limit, deadline, readiness, room in the queue), reading its body in time,
and counting its images.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel
from starlette.types import Scope

from server.service.door import ModelDescription, NotReadyError
from server.tracing import stage
from server.web.errors import ApiError, ErrorCode

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from server.metrics import Metrics
    from server.service.registry import ModelRegistry
    from server.service.unit import ModelUnit
    from server.tracing import RequestTrace
    from server.web.ratelimit import ClientRateLimiter

T = TypeVar("T")


def encoded(answer: BaseModel, *, exclude_none: bool = False) -> Response:
    """``answer`` as the JSON response, encoded once by pydantic.

    The route's ``response_model`` still documents the body; FastAPI would
    otherwise validate again a model the handler has just built and validated,
    on the event loop, for every answer.
    """
    body = answer.model_dump_json(exclude_none=exclude_none)
    return Response(body, media_type="application/json")


def registry_of(request: Request) -> ModelRegistry:
    """The app's models."""
    registry: ModelRegistry = request.app.state.registry
    return registry


def find_unit(registry: ModelRegistry, name: str, version: str | None = None) -> ModelUnit:
    """The unit serving ``name`` (``version``, or the newest ready one); 404 ``model_not_found``
    naming the served ones (REST and gRPC alike)."""
    if version is None:
        unit = registry.get(name)
        if unit is None:
            raise ApiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"no model named {name[:64]!r}; served: {', '.join(registry.names)}",
            )
        return unit
    unit = registry.get_version(name, int(version)) if version.isdigit() else None
    if unit is None:
        served = ", ".join(str(u.version) for u in registry.versions(name))
        raise ApiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"model {name} has no version {version[:16]!r}; served: {served}",
        )
    return unit


def unit_named(request: Request, name: str) -> ModelUnit:
    """The unit serving ``name``, held for this request (``find_unit``)."""
    return held(request, find_unit(registry_of(request), name))


def version_named(request: Request, name: str, version: str) -> ModelUnit:
    """The unit serving ``version`` of ``name``, held for this request (``find_unit``)."""
    return held(request, find_unit(registry_of(request), name, version))


#: The request state's list of units to release when the answer is sent (the middleware does).
RELEASES: Final = "unit_releases"


def held(request: Request, unit: ModelUnit) -> ModelUnit:
    """``unit``, kept serving for this request until it is answered, through a reload.

    Held at the lookup itself, in the same step of the event loop: a reload
    that switches to a new version after this point still lets this request
    finish on the unit it found.
    """
    request.scope.setdefault("state", {}).setdefault(RELEASES, []).append(unit.hold())
    return unit


def release_units(scope: Scope) -> None:
    """Release every unit the request held (once it is answered, or failed)."""
    for release in scope.get("state", {}).pop(RELEASES, ()):
        release()


REQUEST_TIMEOUT_HEADER: Final = "X-Request-Timeout"
REQUEST_TIMEOUT_PARAMETER: Final[dict[str, Any]] = {
    "name": REQUEST_TIMEOUT_HEADER,
    "in": "header",
    "required": False,
    "description": "Seconds this request may take, counted from its arrival; "
    "shortens BATCHSERVE_REQUEST_TIMEOUT_S, never lengthens it",
    "schema": {"type": "number", "exclusiveMinimum": 0},
    "example": 10,
}


def request_timeout(request: Request, limit_s: float) -> float:
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


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let in: when it arrived, when its answer is due, when its body must be in."""

    arrived_at: float
    deadline: float
    read_by: float


async def admit(request: Request, unit: ModelUnit) -> Admission:
    """Before the body is read: the rate limit, the deadline, readiness and room in the queue."""
    request.state.model, request.state.version = unit.name, str(unit.version)
    limiter: ClientRateLimiter | None = request.app.state.limiter
    if limiter is not None:
        await limiter.check(request)
    limits = unit.limits
    timeout_s = request_timeout(request, limits.request_timeout_s)
    # Refused before the body is read and decoded: NotReadyError, QueueFullError.
    unit.ensure_accepting()
    arrived_at: float = request.state.arrived_at
    return Admission(arrived_at, arrived_at + timeout_s, arrived_at + limits.body_timeout_s)


def loaded(unit: ModelUnit) -> ModelDescription:
    """The unit's description; NotReadyError before its model is loaded."""
    description = unit.description
    if description is None:
        raise NotReadyError(f"the model {unit.name} is not loaded yet")
    return description


def count_images(request: Request, unit: ModelUnit, count: int) -> None:
    """``count`` images of ``unit`` answered through this request's endpoint."""
    metrics: Metrics = request.app.state.metrics
    metrics.count_images(unit.name, str(unit.version), endpoint_of(request.scope), count)


#: The endpoint label of a request no route matched (404s of unknown paths).
UNMATCHED: Final = "unmatched"


def endpoint_of(scope: Scope) -> str:
    """The matched route's path template: a low-cardinality metrics label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


async def read_within(
    reading: Awaitable[T], read_by: float, trace: RequestTrace | None = None
) -> T:
    """The upload (its ``upload`` span), or 408 ``request_timeout`` when not in by ``read_by``.

    A client trickling its upload holds only its own connection: nothing is
    queued or decoded for it until the whole body is in.
    """
    try:
        async with asyncio.timeout_at(read_by):
            with stage(trace, "upload"):
                return await reading
    except TimeoutError:
        raise ApiError(
            ErrorCode.REQUEST_TIMEOUT, "the upload was not received within the body timeout"
        ) from None
