"""The OpenAPI document: readable operation ids, and the headers every answer carries."""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

_REQUEST_ID: Final = {
    "description": "The request's id: the client's X-Request-ID when sane, else a new one",
    "schema": {"type": "string"},
}
_RETRY_AFTER: Final = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 0},
}
#: Statuses whose answers say when to try again.
RETRY_STATUSES: Final = ("429", "503")


def operation_id(route: APIRoute) -> str:
    """The handler's name (``predict``, ``predict_batch``, ``info``): stable and readable."""
    return route.name


def install(app: FastAPI) -> None:
    """Serve the document with the response headers that middleware and errors add.

    Path parameters carry the served default model (``app.state.registry``) as their
    example, so /docs' "Try it out" and schemathesis' explicit phase reach a real model.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            app.openapi_schema = with_examples(
                with_headers(schema), app.state.registry.default_name
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_headers(schema: dict[str, Any]) -> dict[str, Any]:
    """Every response documents X-Request-ID; 429 and 503 document Retry-After too."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = _REQUEST_ID
                if status in RETRY_STATUSES:
                    headers["Retry-After"] = _RETRY_AFTER
    return schema


#: Example values of the path parameters other than the model's name.
_PATH_EXAMPLES: Final = {"version": "1"}


def with_examples(schema: dict[str, Any], model: str) -> dict[str, Any]:
    """Every ``{name}`` path parameter's example is ``model``; ``{version}``'s is "1"."""
    examples = {**_PATH_EXAMPLES, "name": model}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in examples:
                    parameter["example"] = examples[parameter["name"]]
    return schema
