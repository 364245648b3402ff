"""Running the app under uvicorn, with readiness turned off the moment SIGTERM/SIGINT arrives.

uvicorn closes its listening socket and idle connections when the signal
arrives and runs the app's lifespan shutdown only after in-flight requests
have finished. A request arriving meanwhile on a kept-alive connection must
already see /ready 503 and be refused with ``not_ready``, so the flag is set in
the signal handler itself, not in the lifespan.
"""

from __future__ import annotations

import logging
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from server.config import Settings
from server.metrics import Metrics
from server.web.errors import ErrorCode
from server.web.http_head import bounded_protocol

if TYPE_CHECKING:
    from server.service.registry import ModelRegistry

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that tells every model to drain as soon as it is asked to exit."""

    def __init__(self, config: uvicorn.Config, registry: ModelRegistry) -> None:
        super().__init__(config)
        self.registry = registry

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop accepting work at once, then let uvicorn finish the requests in flight."""
        if not self.registry.draining:
            logger.info("signal %d: not ready; finishing the requests in flight", sig)
            self.registry.begin_drain()
        super().handle_exit(sig, frame)


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How batchserve runs under uvicorn.

    httptools (with the head limits of :mod:`server.web.http_head`) on uvloop where
    installed (a dependency on Linux and macOS): the event loop's CPU time per
    request is what the server adds to decoding and the model, and both cost it
    less than h11 and asyncio's own loop (docs/performance.md).
    """
    metrics: Metrics = app.state.metrics
    refused = metrics.errors.labels(code=ErrorCode.HEADERS_TOO_LARGE.value)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": bounded_protocol(refused.inc),
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": max(1, int(settings.shutdown_timeout_s)),
        "server_header": False,
        # The app decides whom to believe (BATCHSERVE_TRUSTED_PROXIES); uvicorn's own
        # proxy handling would trust loopback's X-Forwarded-For by default.
        "proxy_headers": False,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def serve(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` until a signal, then drain within ``BATCHSERVE_SHUTDOWN_TIMEOUT_S``."""
    DrainingServer(uvicorn_config(app, settings), app.state.registry).run()
