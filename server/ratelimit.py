"""Optional per-client rate limiting of /predict (``BATCHSERVE_RATE_LIMIT``), with ``limits``.

The client is the TCP peer, or, when the peer is a trusted proxy
(``BATCHSERVE_TRUSTED_PROXIES``), the right-most X-Forwarded-For entry that is
not itself a trusted proxy: entries further left are written by the client and
cannot be believed.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from server.config import IPNetwork
from server.errors import ApiError, ErrorCode


def _is_trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: Request, trusted: Sequence[IPNetwork]) -> str:
    """The address to limit: the peer, unless a trusted proxy forwarded the request."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class ClientRateLimiter:
    """A moving-window limit per client address, kept in this process's memory."""

    def __init__(self, spec: str, trusted: Sequence[IPNetwork]) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self.trusted = tuple(trusted)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, request: Request) -> None:
        """Count this request against its client; 429 ``rate_limited`` once over a limit."""
        key = client_address(request, self.trusted)
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
