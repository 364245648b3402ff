"""Optional API keys (``BATCHSERVE_API_KEYS``): ``Authorization: Bearer KEY`` or ``X-API-Key``.

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against
every configured key without stopping at the first match, so the time taken
tells nothing about how close a guess was. A matching key is remembered on the
request by a short fingerprint (never the key itself): the rate limiter counts
per key, and logs may name it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated, Final

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.web.errors import ApiError, ErrorCode

API_KEY_HEADER: Final = "X-API-Key"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerKey",
    description="`Authorization: Bearer <key>` with one of BATCHSERVE_API_KEYS",
)
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="apiKeyHeader",
    description=f"`{API_KEY_HEADER}: <key>` with one of BATCHSERVE_API_KEYS",
)


def fingerprint(key: str) -> str:
    """A short, non-reversible name for a key (rate-limit buckets, logs)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class ApiKeys:
    """The set of accepted keys, held as digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)
        if not self._digests:
            raise ValueError("ApiKeys needs at least one key")

    def __repr__(self) -> str:
        return f"<ApiKeys {len(self._digests)} keys>"

    def accepts(self, presented: str) -> bool:
        """True when ``presented`` is one of the keys; constant time in the keys' content."""
        digest = hashlib.sha256(presented.encode()).digest()
        matched = False
        for accepted in self._digests:
            matched |= hmac.compare_digest(digest, accepted)
        return matched


def _unauthorized(message: str) -> ApiError:
    return ApiError(ErrorCode.UNAUTHORIZED, message)


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Dependency of the protected routes: 401 ``unauthorized`` without a valid key."""
    keys: ApiKeys = request.app.state.api_keys
    presented = bearer.credentials if bearer is not None else header_key
    if not presented:
        raise _unauthorized(
            f"an API key is required: send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}'"
        )
    if not keys.accepts(presented):
        raise _unauthorized("the API key is not valid")
    request.state.api_key = fingerprint(presented)
