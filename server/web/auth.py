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
import ipaddress
from collections.abc import Iterable
from typing import Annotated, Final

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.config import Settings
from server.web.errors import ApiError, ErrorCode

API_KEY_HEADER: Final = "X-API-Key"


def _schemes(bearer_name: str, header_name: str, setting: str) -> tuple[HTTPBearer, APIKeyHeader]:
    """The two ways to present a key of ``setting``, as OpenAPI security schemes."""
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name=bearer_name,
        description=f"`Authorization: Bearer <key>` with one of {setting}",
    )
    header = APIKeyHeader(
        name=API_KEY_HEADER,
        auto_error=False,
        scheme_name=header_name,
        description=f"`{API_KEY_HEADER}: <key>` with one of {setting}",
    )
    return bearer, header


_bearer, _api_key_header = _schemes("bearerKey", "apiKeyHeader", "BATCHSERVE_API_KEYS")
_admin_bearer, _admin_header = _schemes("adminBearerKey", "adminKeyHeader", "BATCHSERVE_ADMIN_KEYS")


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


def _presented(bearer: HTTPAuthorizationCredentials | None, header_key: str | None) -> str | None:
    return bearer.credentials if bearer is not None else header_key


def _loopback_only(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_key(keys: ApiKeys, presented: str | None) -> str:
    """The fingerprint of ``presented``, one of ``keys``; 401 ``unauthorized`` otherwise."""
    if not presented:
        raise _unauthorized(
            f"an API key is required: send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}'"
        )
    if not keys.accepts(presented):
        raise _unauthorized("the API key is not valid")
    return fingerprint(presented)


def checked_admin_key(keys: ApiKeys, presented: str | None) -> str:
    """The fingerprint of ``presented``, one of the admin ``keys``; 401 otherwise."""
    if not presented or not keys.accepts(presented):
        raise _unauthorized("model control needs one of BATCHSERVE_ADMIN_KEYS")
    return fingerprint(presented)


def check_local_admin(settings: Settings) -> None:
    """Model control without admin keys: 403 but under explicit control on a loopback server.

    Only a server under ``BATCHSERVE_MODEL_CONTROL=explicit`` listening on
    loopback lets it through: whoever reaches it runs on the same machine.
    """
    if settings.model_control == "explicit" and _loopback_only(settings.host):
        return
    raise ApiError(
        ErrorCode.FORBIDDEN,
        "model control needs BATCHSERVE_ADMIN_KEYS (or BATCHSERVE_MODEL_CONTROL=explicit "
        "on a server listening on loopback only)",
    )


async def require_admin_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_admin_bearer)],
    header_key: Annotated[str | None, Security(_admin_header)],
) -> None:
    """The model-control endpoints' dependency with admin keys set: 401 without one of them."""
    presented = _presented(bearer, header_key)
    request.state.api_key = checked_admin_key(request.app.state.admin_keys, presented)


async def local_admin_only(request: Request) -> None:
    """The model-control endpoints' dependency without admin keys (``check_local_admin``)."""
    check_local_admin(request.app.state.registry.settings)


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Dependency of the protected routes: 401 ``unauthorized`` without a valid key."""
    presented = _presented(bearer, header_key)
    request.state.api_key = checked_key(request.app.state.api_keys, presented)
