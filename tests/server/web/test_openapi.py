"""``server.web.openapi``: the document's headers and the examples /docs and schemathesis use."""

from __future__ import annotations

from typing import Any

from server.web.openapi import with_examples, with_headers


def _document() -> dict[str, Any]:
    parameters = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "name", "in": "query", "schema": {"type": "string"}},
    ]
    responses = {"200": {"description": "ok"}, "429": {"description": "slow down"}}
    operation = {"parameters": parameters, "responses": responses}
    return {"paths": {"/v2/models/{name}/versions/{version}/infer": {"post": operation}}}


def test_path_parameters_name_the_served_model_and_version_1() -> None:
    (operation,) = with_examples(_document(), "mobilenet_v2")["paths"].values()
    name, version, query = operation["post"]["parameters"]
    assert (name["example"], version["example"]) == ("mobilenet_v2", "1")
    assert "example" not in query  # only path parameters name a model


def test_every_answer_documents_its_request_id_and_retries_their_delay() -> None:
    (operation,) = with_headers(_document())["paths"].values()
    responses = operation["post"]["responses"]
    assert set(responses["200"]["headers"]) == {"X-Request-ID"}
    assert set(responses["429"]["headers"]) == {"X-Request-ID", "Retry-After"}
