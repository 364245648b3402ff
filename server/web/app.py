"""The application factory and its lifespan: load, warm up, serve, drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi.params import Depends as Dependency
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from server import __version__
from server.config import Settings
from server.metrics import Metrics
from server.tracing import Tracing
from server.web import oip, openapi, repository, routes
from server.web.auth import (
    API_KEY_HEADER,
    ApiKeys,
    local_admin_only,
    require_admin_key,
    require_api_key,
)
from server.web.errors import DisconnectStage, ErrorCode, install_handlers
from server.web.grpc.call import Backend
from server.web.grpc.messages import method_names
from server.web.grpc.server import GrpcServer
from server.web.grpc.service import endpoint
from server.web.middleware import RequestContextMiddleware
from server.web.plumbing import REQUEST_TIMEOUT_HEADER
from server.web.ratelimit import ClientRateLimiter

if TYPE_CHECKING:
    from server.service.control import RepositoryPoller
    from server.service.preparation import Preparer
    from server.service.registry import ModelPlan, ModelRegistry

logger = logging.getLogger(__name__)

ENDPOINTS = (
    "/predict", "/predict/batch", "/models/{name}/predict", "/models/{name}/predict/batch",
    "/models", "/models/{name}", "/health", "/ready", "/info", "/metrics",
    "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}", "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready", "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer", "/v2/models/stats", "/v2/models/{name}/stats",
    "/v2/models/{name}/versions/{version}/stats", "/v2/repository/index",
    "/v2/repository/models/{name}/load", "/v2/repository/models/{name}/unload",
)  # fmt: skip


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    registry: ModelRegistry = app.state.registry
    await registry.start()
    registry.publish_model_info()
    if app.state.tracing.enabled:
        logger.info("tracing: %s", app.state.tracing.describe())
    _freeze_startup_heap()
    poller: RepositoryPoller = app.state.poller
    poller.start()
    _rescan_on_sighup(poller)
    grpc_server: GrpcServer | None = None
    try:
        # Inside the try: a port that cannot be bound stops the start, and the models still close.
        grpc_server = app.state.grpc = await _start_grpc(app)
        yield
    finally:
        logger.info("shutting down: draining the queues and in-flight batches")
        if grpc_server is not None:
            await grpc_server.stop(registry.settings.shutdown_timeout_s)
        await poller.aclose()
        await registry.aclose()
        # Last: the spans of the requests drained above are sent before the process ends.
        await asyncio.to_thread(app.state.tracing.shutdown)


async def _start_grpc(app: FastAPI) -> GrpcServer | None:
    """The gRPC server on ``BATCHSERVE_GRPC_PORT``, serving the REST side's models; 0: none."""
    settings: Settings = app.state.registry.settings
    if not settings.grpc_port:
        return None
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    server = GrpcServer(Backend.of(app.state), f"{host}:{settings.grpc_port}",
                        settings.max_request_bytes)  # fmt: skip
    await server.start()
    return server


def _rescan_on_sighup(poller: RepositoryPoller) -> None:
    """SIGHUP scans the repository once, as a poll does (explicit and poll modes)."""
    if poller.control.settings.model_control == "none":
        return

    def rescan() -> None:
        logger.info("SIGHUP: scanning the model repository")
        task = asyncio.create_task(poller.scan(), name="sighup-scan")
        _background.add(task)
        task.add_done_callback(_background.discard)

    # Only the main thread may handle signals (a server run in a test's thread does not).
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, rescan)


#: SIGHUP scans in progress (the loop keeps only weak references to tasks).
_background: set[asyncio.Task[None]] = set()


def _freeze_startup_heap() -> None:
    """Keep what startup built (torch, OpenVINO, the models) out of every later collection.

    A full collection walks every tracked object: with the engines loaded, one
    stalls the event loop for a long time under load (issue 19's notes). Startup's objects
    live as long as the process, so they move to the permanent generation
    (CPython's ``gc.freeze``); what requests allocate is collected as before.
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings | None = None,
    *,
    models: list[ModelPlan] | None = None,
    preparer: Preparer | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the app; the models are loaded by the lifespan, never at import or here.

    ``models`` come from ``batchserve serve``, which resolves each model's plan
    and builds its engine before uvicorn starts; without them the plans are
    resolved here (ModelLoadError, DeviceError) and the lifespan loads the models
    with ``preparer`` (loading the model and building its engine, unless a test
    hands in its own engine). ``tracing`` defaults to what the settings and the
    ``OTEL_*`` variables ask for (TracingUnavailableError when it cannot run).
    """
    # The service layer brings torch; imported here so that importing the web layer does not.
    from server.service.control import ModelControl, RepositoryPoller
    from server.service.preparation import prepare
    from server.service.registry import build_registry, plan_models

    settings = settings or Settings()
    models = models if models is not None else plan_models(settings)
    buckets = sorted({size for model in models for size in model.plan.batch_buckets})
    metrics = Metrics(
        batch_sizes=buckets,
        endpoints=ENDPOINTS,
        grpc_methods=[endpoint(name) for name in method_names()],
        error_codes=[code.value for code in ErrorCode],
        disconnect_stages=[stage.value for stage in DisconnectStage],
    )
    # /docs and /redoc with Swagger UI's and ReDoc's files from the installed fastapi-offline
    # package (FastAPI's own self-hosting recipe), never a CDN: they work offline too.
    app = FastAPIOffline(
        title="batchserve",
        version=__version__,
        summary="Dynamic-batching image classification server",
        lifespan=_lifespan,
        generate_unique_id_function=openapi.operation_id,
    )
    openapi.install(app)
    app.state.registry = build_registry(settings, metrics, models, preparer or prepare)
    app.state.control = ModelControl(app.state.registry, settings)
    app.state.poller = RepositoryPoller(app.state.control)
    app.state.metrics = metrics
    app.state.tracing = tracing if tracing is not None else Tracing.from_settings(settings)
    app.state.grpc = None  # the lifespan starts it (BATCHSERVE_GRPC_PORT)
    app.state.limiter = ClientRateLimiter(settings.rate_limit) if settings.rate_limit else None
    app.state.api_keys = ApiKeys(settings.api_key_list) if settings.api_key_list else None
    app.state.admin_keys = ApiKeys(settings.admin_key_list) if settings.admin_key_list else None
    install_handlers(app)
    _include_routes(app, settings)
    _add_middleware(app, settings, metrics, app.state.tracing)
    return app


def _include_routes(app: FastAPI, settings: Settings) -> None:
    """The API behind the keys (when set); probes always open; /metrics open unless protected."""
    guard: list[Dependency] = [Depends(require_api_key)] if settings.api_key_list else []
    app.include_router(routes.router, dependencies=guard)
    app.include_router(oip.router, dependencies=guard)
    admin = require_admin_key if settings.admin_key_list else local_admin_only
    app.include_router(repository.router, dependencies=[Depends(admin)])
    app.include_router(routes.probes)
    app.include_router(oip.probes)
    app.include_router(routes.telemetry, dependencies=guard if settings.protect_metrics else [])


#: Request headers browsers may send cross-origin, and response headers they may read.
CORS_ALLOW_HEADERS = ("Authorization", API_KEY_HEADER, REQUEST_TIMEOUT_HEADER, "X-Request-ID")
CORS_EXPOSE_HEADERS = ("X-Request-ID", "Retry-After")


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics, tracing: Tracing) -> None:
    """Innermost first: CORS, then the request context, then the proxy headers outermost.

    The proxy headers come first so that the access log, the rate limiter and
    everything else see the real client; BATCHSERVE_TRUSTED_PROXIES is the only
    place that decides whom to believe (uvicorn's own handling is off).
    """
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origin_list),
            allow_methods=["GET", "POST"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, tracing=tracing)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
