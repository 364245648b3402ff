"""The gRPC server: on ``BATCHSERVE_GRPC_PORT``, in the app's own event loop, with health.

It starts in the app's lifespan once the models have started, feeding the
same units and batchers as REST, and stops in its shutdown before the models
drain: a call in flight then finishes within ``BATCHSERVE_SHUTDOWN_TIMEOUT_S``
while new ones are refused (UNAVAILABLE). From the SIGTERM itself, the models
refuse new work (serving.py), so a call arriving meanwhile is UNAVAILABLE too.

The standard health service (``grpc.health.v1``) answers for Kubernetes' gRPC
probes: ``""`` and ``inference.GRPCInferenceService`` are SERVING while every
model is ready, NOT_SERVING otherwise. Check reads the models' readiness when
asked; Watch streams the changes the server notices, checking once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.web.grpc.call import Backend
from server.web.grpc.messages import SERVICE
from server.web.grpc.service import FRAMING_BYTES, generic_handler

if TYPE_CHECKING:
    from server.service.registry import ModelRegistry

logger = logging.getLogger(__name__)

#: The health service's names: the server as a whole, and the inference service.
HEALTH_SERVICES: Final = ("", SERVICE)
#: How often Watch's statuses follow the models' readiness.
HEALTH_SYNC_S: Final = 1.0

_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessHealth(health.aio.HealthServicer):
    """``grpc.health.v1.Health`` whose status is the registry's readiness."""

    def __init__(self, registry: ModelRegistry) -> None:
        super().__init__()
        self._registry = registry

    def status(self) -> int:
        """SERVING while every model is ready (not while loading, warming up or draining)."""
        return _SERVING if self._registry.ready else _NOT_SERVING

    async def Check(  # noqa: N802 -- the generated servicer's method name
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        """The status now; NOT_FOUND for a service this server does not have."""
        if request.service not in HEALTH_SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self.status())

    async def follow(self) -> None:
        """Keep Watch's statuses equal to Check's until cancelled."""
        while True:
            for service in HEALTH_SERVICES:
                await self.set(service, self.status())
            await asyncio.sleep(HEALTH_SYNC_S)


class GrpcServer:
    """The protocol's gRPC service and the health service on one port."""

    def __init__(self, backend: Backend, address: str, max_message_bytes: int) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes + FRAMING_BYTES),
            ("grpc.max_send_message_length", -1),
            # Only this process serves the port: a second server on it fails to start.
            ("grpc.so_reuseport", 0),
        ]
        self.address = address
        self._server = grpc.aio.server(options=options)
        self._server.add_generic_rpc_handlers((generic_handler(backend),))
        self.health = ReadinessHealth(backend.registry)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen and serve; RuntimeError when the address cannot be bound."""
        try:
            self._server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen for gRPC on {self.address}: {exc}") from exc
        await self._server.start()
        self._follower = asyncio.create_task(self.health.follow(), name="grpc-health")
        logger.info("serving gRPC on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls at once, let those in flight finish within ``grace_s``."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
