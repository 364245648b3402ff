"""One gRPC call's plumbing, as plumbing.py is REST's: keys, lookups, admission, held units.

API keys come as metadata, ``authorization: Bearer KEY`` or ``x-api-key: KEY``,
checked as REST checks its headers (auth.py). A call's deadline is the
earlier of the client's own gRPC deadline and ``BATCHSERVE_REQUEST_TIMEOUT_S``
from its arrival; the protocol's ``timeout`` parameter shortens it further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from server.service.progress import Progress
from server.web.auth import API_KEY_HEADER, check_local_admin, checked_admin_key, checked_key
from server.web.middleware import VALID_REQUEST_ID, fresh_request_id
from server.web.plumbing import find_unit

if TYPE_CHECKING:
    import grpc.aio
    from starlette.datastructures import State

    from server.metrics import Metrics
    from server.service.control import ModelControl
    from server.service.registry import ModelRegistry
    from server.service.unit import ModelUnit
    from server.tracing import Tracing
    from server.web.auth import ApiKeys
    from server.web.ratelimit import ClientRateLimiter


@dataclass(frozen=True, slots=True)
class Backend:
    """What the gRPC service serves from: the app's models, control, metrics and guards."""

    registry: ModelRegistry
    control: ModelControl
    metrics: Metrics
    limiter: ClientRateLimiter | None
    api_keys: ApiKeys | None
    admin_keys: ApiKeys | None
    tracing: Tracing

    @classmethod
    def of(cls, state: State) -> Backend:
        """The backend of the app whose ``app.state`` this is (the REST side's very objects)."""
        return cls(
            state.registry, state.control, state.metrics,
            state.limiter, state.api_keys, state.admin_keys, state.tracing,
        )  # fmt: skip


class Call:
    """One call: its id, arrival, client and key, the model it reached, the units it holds."""

    def __init__(
        self, backend: Backend, context: grpc.aio.ServicerContext[Any, Any], endpoint: str
    ) -> None:
        self.backend = backend
        self.context = context
        self.endpoint = endpoint
        #: How the call ended, for its metrics and access log line.
        self.status = grpc.StatusCode.OK
        self.metadata = dict(context.invocation_metadata() or ())
        candidate = self.metadata.get("x-request-id")
        valid = isinstance(candidate, str) and VALID_REQUEST_ID.match(candidate)
        self.request_id = str(candidate) if valid else fresh_request_id()
        self.arrived_at = asyncio.get_running_loop().time()
        self.model = self.version = ""
        self.api_key: str | None = None
        self.progress = Progress()
        self._releases: list[Callable[[], None]] = []

    def _presented(self) -> str | None:
        authorization = self.metadata.get("authorization")
        if isinstance(authorization, str) and authorization[:7].lower() == "bearer ":
            return authorization[7:].strip()
        key = self.metadata.get(API_KEY_HEADER.lower())
        return key if isinstance(key, str) else None

    def authorize(self) -> None:
        """With API keys set: UNAUTHENTICATED unless the call presents one of them."""
        if self.backend.api_keys is not None:
            self.api_key = checked_key(self.backend.api_keys, self._presented())

    def authorize_admin(self) -> None:
        """The repository calls: an admin key, or without them the local-only rule (403)."""
        if self.backend.admin_keys is not None:
            self.api_key = checked_admin_key(self.backend.admin_keys, self._presented())
        else:
            check_local_admin(self.backend.registry.settings)

    def client_key(self) -> str:
        """The rate limit's bucket: the API key's fingerprint, else the peer's address."""
        if self.api_key is not None:
            return f"key:{self.api_key}"
        peer = self.context.peer() or "unknown"  # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555"
        address = peer.partition(":")[2].rpartition(":")[0]
        return address.strip("[]") or peer

    def unit(self, name: str, version: str = "") -> ModelUnit:
        """The unit serving ``name`` (``version``, or the newest ready one), held for this call."""
        unit = find_unit(self.backend.registry, name, version or None)
        self._releases.append(unit.hold())
        return unit

    async def admit(self, unit: ModelUnit) -> float:
        """The rate limit, readiness and room in the queue; the call's deadline (loop time)."""
        self.model, self.version = unit.name, str(unit.version)
        if self.backend.limiter is not None:
            await self.backend.limiter.check_key(self.client_key())
        timeout_s = unit.limits.request_timeout_s
        remaining = self.context.time_remaining()
        if remaining is not None:
            timeout_s = min(timeout_s, remaining)
        unit.ensure_accepting()
        return self.arrived_at + timeout_s

    def release(self) -> None:
        """Let go of every unit this call held (once it is answered, or failed)."""
        for release in self._releases:
            release()
        self._releases.clear()
