"""The application factory and its lifespan: load, warm up, serve, drain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server import __version__
from server.config import Settings
from server.errors import ErrorCode, install_handlers
from server.metrics import Metrics
from server.middleware import RequestContextMiddleware
from server.ratelimit import ClientRateLimiter
from server.routes import router
from server.service import ClassificationService

logger = logging.getLogger(__name__)

ENDPOINTS = ("/predict", "/health", "/ready", "/info", "/metrics")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: ClassificationService = app.state.service
    await service.start()
    _publish_model_info(service)
    try:
        yield
    finally:
        logger.info("shutting down: draining the queue and in-flight batches")
        await service.aclose()


def _publish_model_info(service: ClassificationService) -> None:
    service.metrics.set_model_info(
        model=service.settings.model,
        weights=service.describe_weights(),
        device=str(service.device),
        precision=service.precision,
        max_batch_size=str(service.settings.max_batch_size),
        workers=str(service.workers),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model is loaded by the lifespan, never at import or here."""
    settings = settings or Settings()
    metrics = Metrics(
        max_batch_size=settings.max_batch_size,
        endpoints=ENDPOINTS,
        error_codes=[code.value for code in ErrorCode],
    )
    app = FastAPI(
        title="batchserve",
        version=__version__,
        summary="Dynamic-batching image classification server",
        lifespan=_lifespan,
    )
    app.state.service = ClassificationService(settings, metrics)
    app.state.metrics = metrics
    app.state.limiter = (
        ClientRateLimiter(settings.rate_limit, settings.trusted_networks)
        if settings.rate_limit
        else None
    )
    install_handlers(app)
    app.include_router(router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
