"""API keys and CORS: who may call what, in the usual error shape, declared in OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server.web.auth import ApiKeys, fingerprint
from server.web.errors import ErrorCode
from tests.conftest import RunningServer, app_with_test_engine, make_settings, photo, start_server
from tests.server.web.test_routes import _post, assert_error

KEY = "k-0123456789abcdef-first"
OTHER_KEY = "k-0123456789abcdef-second"


def _client(peer: str = "192.0.2.10", app=None, **overrides) -> httpx.AsyncClient:
    """An in-process client (no lifespan: the model is not loaded, so /predict stops at 503)."""
    app = app or app_with_test_engine(make_settings(api_keys=f"{KEY},{OTHER_KEY}", **overrides))
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def _predict(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/predict", files={"file": ("c.jpg", b"x")}, headers=headers)


def test_keys_are_compared_as_digests_against_every_key() -> None:
    keys = ApiKeys([KEY, OTHER_KEY])
    assert keys.accepts(KEY)
    assert keys.accepts(OTHER_KEY)
    assert not keys.accepts(KEY[:-1])
    assert not keys.accepts("")
    assert KEY not in repr(keys)
    assert fingerprint(KEY) != fingerprint(OTHER_KEY)
    assert KEY not in fingerprint(KEY)
    with pytest.raises(ValueError, match="at least one key"):
        ApiKeys([])


async def test_without_a_valid_key_the_api_answers_401_in_the_error_shape() -> None:
    async with _client() as client:
        missing = assert_error(await _predict(client), ErrorCode.UNAUTHORIZED)
        assert "Authorization: Bearer" in missing["error"]["message"]
        wrong = await _predict(client, Authorization=f"Bearer {KEY}x")
        assert_error(wrong, ErrorCode.UNAUTHORIZED)
        assert wrong.headers["www-authenticate"] == 'Bearer realm="batchserve"'
        assert wrong.headers["x-request-id"] == wrong.json()["error"]["request_id"]
        assert_error(await client.get("/info"), ErrorCode.UNAUTHORIZED)
        assert_error(await _predict(client, **{"X-API-Key": "nope"}), ErrorCode.UNAUTHORIZED)
        metrics = (await client.get("/metrics")).text
    assert 'batchserve_errors_total{code="unauthorized"} 4.0' in metrics


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": OTHER_KEY}])
async def test_either_header_with_a_valid_key_passes(headers: dict[str, str]) -> None:
    async with _client() as client:
        # Past the key check, the unloaded model answers not_ready.
        assert_error(await _predict(client, **headers), ErrorCode.NOT_READY)
        assert_error(await client.get("/info", headers=headers), ErrorCode.NOT_READY)


async def test_probes_and_metrics_stay_open_unless_metrics_are_protected() -> None:
    async with _client() as client:
        assert (await client.get("/health")).status_code == 200
        assert_error(await client.get("/ready"), ErrorCode.NOT_READY)
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
    async with _client(protect_metrics=True) as client:
        assert (await client.get("/health")).status_code == 200
        assert_error(await client.get("/metrics"), ErrorCode.UNAUTHORIZED)
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert scraped.status_code == 200


async def test_openapi_declares_both_schemes_on_the_protected_operations_only() -> None:
    async with _client() as client:
        spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>` with one of BATCHSERVE_API_KEYS",
    }
    assert schemes["apiKeyHeader"]["in"] == "header"
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    either = [{"bearerKey": []}, {"apiKeyHeader": []}]
    assert spec["paths"]["/predict"]["post"]["security"] == either
    assert spec["paths"]["/info"]["get"]["security"] == either
    assert "401" in spec["paths"]["/predict"]["post"]["responses"]
    for path in ("/health", "/ready", "/metrics"):
        assert "security" not in spec["paths"][path]["get"]


async def test_without_keys_nothing_is_protected_or_declared() -> None:
    app = app_with_test_engine(make_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        spec = (await client.get("/openapi.json")).json()
        assert_error(await _predict(client), ErrorCode.NOT_READY)
    assert "securitySchemes" not in spec.get("components", {})


async def test_with_keys_the_rate_limit_counts_per_key_not_per_address() -> None:
    app = app_with_test_engine(make_settings(api_keys=f"{KEY},{OTHER_KEY}", rate_limit="1/minute"))
    async with _client(app=app) as client, _client("192.0.2.11", app=app) as elsewhere:
        first = {"Authorization": f"Bearer {KEY}"}
        assert_error(await _predict(client, **first), ErrorCode.NOT_READY)
        assert_error(await _predict(client, **first), ErrorCode.RATE_LIMITED)
        # The same key from another address: the same, spent budget.
        assert_error(await _predict(elsewhere, **first), ErrorCode.RATE_LIMITED)
        # The same address with another key: its own budget.
        assert_error(await _predict(client, **{"X-API-Key": OTHER_KEY}), ErrorCode.NOT_READY)


def _cors_client(origins: str) -> httpx.AsyncClient:
    app = app_with_test_engine(make_settings(cors_origins=origins))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_cors_allows_the_configured_origins_with_the_headers_clients_use() -> None:
    origin = "https://app.example.com"
    async with _cors_client(f"{origin},https://other.example.com") as client:
        preflight = await client.options(
            "/predict",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,x-api-key,x-request-timeout,"
                "x-request-id,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        allowed = preflight.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "x-api-key", "x-request-timeout", "x-request-id"):
            assert header in allowed
        answer = await client.get("/health", headers={"Origin": origin})
        assert answer.headers["access-control-allow-origin"] == origin
        exposed = answer.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed
        assert "retry-after" in exposed
        refused = await client.options(
            "/predict",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers


async def test_without_cors_origins_no_cors_headers_are_sent() -> None:
    app = app_with_test_engine(make_settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/health", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in answer.headers


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[RunningServer]:
    running = start_server(app_with_test_engine(make_settings(model="mobilenet_v2", api_keys=KEY)))
    yield running
    running.stop()


def test_a_running_server_with_keys_classifies_for_a_key_holder(keyed_server) -> None:
    with keyed_server.client() as client:
        assert_error(_post(client, photo("cat.jpg")), ErrorCode.UNAUTHORIZED)
    with keyed_server.client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        response = _post(client, photo("cat.jpg"))
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 5
