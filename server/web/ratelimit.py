"""Optional per-client rate limiting of /predict (``BATCHSERVE_RATE_LIMIT``), with ``limits``.

With API keys set, each key has its own budget. Without them, each client
address has one: the TCP peer, or the client a trusted proxy named (the proxy
headers middleware has already put it into the request's ``client``; see
``BATCHSERVE_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from server.web.errors import ApiError, ErrorCode


def client_key(request: Request) -> str:
    """What the budget belongs to: the API key's fingerprint, else the client address."""
    api_key = getattr(request.state, "api_key", None)
    if isinstance(api_key, str):
        return f"key:{api_key}"
    return request.client.host if request.client else "unknown"


class ClientRateLimiter:
    """A moving-window limit per API key or client address, kept in this process's memory."""

    def __init__(self, spec: str) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, request: Request) -> None:
        """Count this request against its client; 429 ``rate_limited`` once over a limit."""
        await self.check_key(client_key(request))

    async def check_key(self, key: str) -> None:
        """Count one request against ``key``'s budget (a gRPC call's client, too)."""
        # Test every window before counting in any: a refused request uses up no budget.
        for item in self.items:
            if not await self._limiter.test(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise ApiError(
                    ErrorCode.RATE_LIMITED,
                    f"rate limit of {item} exceeded for {key}; retry in {wait} s",
                    retry_after_s=wait,
                )
        for item in self.items:
            await self._limiter.hit(item, key)
