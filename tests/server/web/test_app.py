"""The app factory: the documentation pages work with no network (assets served by the app)."""

from __future__ import annotations

import gc
import re

import pytest
from fastapi.testclient import TestClient

from server.web.app import create_app
from tests.conftest import app_with_test_engine, make_settings, photo, start_server

#: Every address an HTML page loads: scripts, styles, icons and the OpenAPI document.
_REFERENCES = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""")
_CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png",
                  ".json": "application/json"}  # fmt: skip


@pytest.fixture(scope="module")
def client() -> TestClient:
    # Without the lifespan: the pages and their assets need no model.
    return TestClient(app_with_test_engine(make_settings(model="mobilenet_v2")))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_every_asset_from_the_server_itself(
    client: TestClient, page: str
) -> None:
    html = client.get(page)
    assert html.status_code == 200
    references = [a or b for a, b in _REFERENCES.findall(html.text)]
    assert any(ref.endswith(".js") for ref in references), references
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference  # another host, without a scheme
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 0, reference
        suffix = reference[reference.rfind(".") :]
        assert _CONTENT_TYPES[suffix] in asset.headers["content-type"], reference


def test_the_swagger_ui_bundle_is_swagger_ui_itself(client: TestClient) -> None:
    bundle = client.get("/static-offline-docs/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert len(bundle.content) > 500_000


@pytest.mark.slow
def test_the_default_engine_on_the_cpu_is_openvino_and_info_names_its_version() -> None:
    """A real model on the default engine, as users run it (the API tests use the test engine)."""
    running = start_server(create_app(make_settings(model="mobilenet_v3_small", engine="auto")))
    try:
        with running.client() as client:
            info = client.get("/info").json()
            answer = client.post("/predict", files={"file": ("cat.jpg", photo("cat.jpg"))})
    finally:
        running.stop()
    assert (info["engine"], info["plan"]["engine"]) == ("openvino", "openvino")
    assert info["versions"]["openvino"] == info["plan"]["engine_version"]
    assert answer.status_code == 200, answer.text


def test_what_startup_built_is_kept_out_of_later_collections() -> None:
    gc.unfreeze()
    app = app_with_test_engine(make_settings(model="mobilenet_v2"))
    try:
        with TestClient(app) as client:
            assert client.get("/ready").status_code == 200
            frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    # The app, its registry and the engine's objects, at the least.
    assert frozen > 1000
