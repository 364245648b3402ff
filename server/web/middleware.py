"""Per-request context: a request id, the arrival time, an access log line and metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import Metrics
from server.tracing import RequestTrace, Tracing
from server.web.errors import CLIENT_CLOSED_STATUS, ApiError, ErrorCode, response_for
from server.web.plumbing import UNMATCHED, endpoint_of, release_units

logger = logging.getLogger("batchserve.access")
_error_logger = logging.getLogger("batchserve.errors")

#: A client's request id is kept when it is such a token (HTTP's X-Request-ID, gRPC's metadata).
VALID_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def fresh_request_id() -> str:
    """A new request id: 32 hexadecimal digits."""
    return uuid.uuid4().hex


def request_id_from(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if VALID_REQUEST_ID.match(candidate):
                return candidate
    return fresh_request_id()


class RequestContextMiddleware:
    """Outermost middleware: ids, timing, access log, metrics, and a last-resort 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing if tracing is not None else Tracing()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["arrived_at"] = asyncio.get_running_loop().time()
        state["trace"] = trace = self._server_span(scope, request_id)
        response = _ResponseWatch(send, request_id, self.metrics)
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, response.send)
        except Exception:
            await response.fail(scope)
        finally:
            release_units(scope)
            self.metrics.inflight.dec()
            self._finish(scope, response, time.perf_counter() - started)
            if trace is not None:
                _end_server_span(trace, scope, response.status)

    def _server_span(self, scope: Scope, request_id: str) -> RequestTrace | None:
        """The request's server span (named by its route once routed), when tracing is on."""
        if not self.tracing.enabled:
            return None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        attributes = {
            "http.request.method": scope["method"], "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
            **({"client.address": client[0], "client.port": client[1]} if client else {}),
        }  # fmt: skip
        return self.tracing.request(scope["method"], headers, attributes, request_id)

    def _finish(self, scope: Scope, response: _ResponseWatch, duration_s: float) -> None:
        endpoint = endpoint_of(scope)
        state = scope["state"]  # the predict handlers set the model and version they reached
        model, version = str(state.get("model", "")), str(state.get("version", ""))
        self.metrics.observe_request(endpoint, response.status, duration_s, model, version)
        client = scope.get("client")
        logger.info(
            '%s "%s %s" %d %.1fms',
            response.request_id,
            scope["method"],
            scope["path"],
            response.status,
            duration_s * 1000,
            extra={
                "request_id": response.request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": response.status,
                "duration_ms": round(duration_s * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
            },
        )


def _end_server_span(trace: RequestTrace, scope: Scope, status: int) -> None:
    """Name it ``POST /predict`` (OpenTelemetry's HTTP convention); a 5xx marks it failed."""
    route, state = endpoint_of(scope), scope["state"]
    attributes: dict[str, str | int] = {"http.response.status_code": status}
    if route != UNMATCHED:
        attributes["http.route"] = route
    if model := state.get("model"):
        attributes["batchserve.model"] = str(model)
        attributes["batchserve.model.version"] = str(state.get("version", ""))
    name = scope["method"] if route == UNMATCHED else f"{scope['method']} {route}"
    trace.end(name, attributes, str(status) if status >= 500 else None)


class _ResponseWatch:
    """Wraps ``send``: adds X-Request-ID, remembers the status, counts error codes."""

    def __init__(self, send: Send, request_id: str, metrics: Metrics) -> None:
        self._send = send
        self.request_id = request_id
        self._metrics = metrics
        self.status = CLIENT_CLOSED_STATUS
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            MutableHeaders(scope=message)["X-Request-ID"] = self.request_id
        await self._send(message)

    async def fail(self, scope: Scope) -> None:
        """A bug escaped every handler: log it with its traceback, answer a bare 500."""
        _error_logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
        if self.started:
            return
        error = ApiError(ErrorCode.INTERNAL_ERROR, "an internal error occurred")
        self._metrics.errors.labels(code=error.code.value).inc()
        response = response_for(scope["path"], error, self.request_id)
        await response(scope, _no_receive, self.send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
