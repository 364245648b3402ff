"""Dependencies: declared as used, and the library internals batchserve relies on still there.

pyproject.toml bounds uvicorn, httptools, Starlette and pydantic-settings below their
next major because batchserve uses parts of them that are not their public API.
These tests name each such part, so that an upgrade that moves one fails here,
loudly and by name, rather than somewhere in a 431 or a multipart upload.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import sys
import tomllib
from pathlib import Path

import httptools
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic_settings import CliSettingsSource
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: What the installed packages may import: the runtime dependencies, the engine extras and
#: tracing's.
SERVING_EXTRAS = ("openvino", "int8", "tracing")


def _declared(requirements: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(text) for text in requirements)
    return {canonicalize_name(r.name): r for r in parsed if r.name != "batchserve"}


RUNTIME = _declared(PROJECT["dependencies"])
EXTRAS = _declared([r for extra in SERVING_EXTRAS for r in PROJECT["optional-dependencies"][extra]])


def _imported_modules(package: str) -> set[str]:
    """Top-level names every module of ``package`` imports (absolute imports only)."""
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.partition(".")[0])
    return names


def _third_party(package: str) -> dict[str, list[str]]:
    ours = {"server", "batcher", "batchserve_client", "__future__"}
    providers = importlib.metadata.packages_distributions()
    modules = _imported_modules(package) - ours - set(sys.stdlib_module_names)
    return {module: providers.get(module, [module]) for module in sorted(modules)}


@pytest.mark.parametrize("package", ["server", "batcher", "batchserve_client"])
def test_every_imported_library_is_a_declared_dependency(package: str) -> None:
    """A library imported directly is declared, not left to arrive through another one."""
    declared = set(RUNTIME) | set(EXTRAS)
    undeclared = {
        module: dists
        for module, dists in _third_party(package).items()
        if not {canonicalize_name(d) for d in dists} & declared
    }
    assert undeclared == {}


def test_a_tracer_provider_samples_with_the_attribute_batchserve_wraps() -> None:
    """server/tracing/spans.py wraps ``TracerProvider.sampler`` (the SDK's reading of
    OTEL_TRACES_SAMPLER) in its link-aware sampler; tracers must take it from there."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(shutdown_on_exit=False)
    provider.sampler = ALWAYS_OFF
    assert not provider.get_tracer("batchserve").start_span("x").is_recording()


def test_the_dependencies_named_by_the_issue_are_declared_directly() -> None:
    for name in ("python-dotenv", "starlette", "h11", "fastapi-offline"):
        assert name in RUNTIME, name


def test_uvicorn_comes_without_its_standard_extra() -> None:
    """[standard] pulls websockets and watchfiles too; httptools and uvloop are declared alone."""
    assert RUNTIME["uvicorn"].extras == set()
    assert {"httptools", "uvloop"} <= set(RUNTIME)


@pytest.mark.parametrize("name", ["uvicorn", "httptools", "starlette", "pydantic-settings"])
def test_the_libraries_whose_internals_we_use_are_bounded_and_installed_within(name: str) -> None:
    requirement = RUNTIME[name]
    assert any(spec.operator == "<" for spec in requirement.specifier), requirement
    assert requirement.specifier.contains(importlib.metadata.version(name)), requirement


def test_the_build_backend_reads_the_license_expression() -> None:
    """An SPDX ``license`` string and ``license-files`` need setuptools 77 or newer."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    (setuptools,) = [Requirement(r) for r in build["requires"] if r.startswith("setuptools")]
    assert not setuptools.specifier.contains("76.9")
    assert setuptools.specifier.contains("77.0")
    assert PROJECT["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()


def test_uvicorns_httptools_protocol_still_has_what_http_head_overrides() -> None:
    """server/web/http_head.py extends the parser callbacks and ``send_400_response``.

    uvicorn's protocol must still hand itself to httptools' parser as the
    callback object, answer parse errors (a callback's exception among them)
    through ``send_400_response(msg)``, and write on ``transport``.
    """
    init = inspect.getsource(HttpToolsProtocol.__init__)
    assert "httptools.HttpRequestParser(self)" in init, "the protocol no longer is the callbacks"
    received = inspect.getsource(HttpToolsProtocol.data_received)
    assert "except httptools.HttpParserError" in received, "parse errors are handled elsewhere"
    assert "self.send_400_response(" in received, "parse errors are answered another way"
    for callback in ("on_message_begin", "on_url", "on_header", "on_headers_complete"):
        assert callable(getattr(HttpToolsProtocol, callback)), callback
    assert list(inspect.signature(HttpToolsProtocol.send_400_response).parameters) == [
        "self",
        "msg",
    ]
    assert "self.transport" in inspect.getsource(HttpToolsProtocol.connection_made)


def test_httptools_turns_a_callbacks_exception_into_a_parser_error() -> None:
    class Refusing:
        def on_header(self, name: bytes, value: bytes) -> None:
            raise ValueError(name)

    parser = httptools.HttpRequestParser(Refusing())
    with pytest.raises(httptools.HttpParserError):
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_python_multiparts_parser_still_takes_what_multipart_py_passes() -> None:
    """server/web/multipart.py drives the streaming parser with its callback table."""
    assert list(inspect.signature(MultipartParser.__init__).parameters)[1:3] == [
        "boundary",
        "callbacks",
    ]
    events = []
    callbacks = {"on_part_data": lambda data, start, end: events.append(data[start:end])}
    parser = MultipartParser(b"b", callbacks)  # type: ignore[arg-type]
    parser.write(b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nxy\r\n--b--\r\n')
    parser.finalize()
    assert b"".join(events) == b"xy"
    with pytest.raises(FormParserError):
        MultipartParser(b"b", {}).write(b"not a multipart body at all")


def test_pydantic_settings_cli_source_still_takes_what_the_cli_passes() -> None:
    parameters = inspect.signature(CliSettingsSource.__init__).parameters
    used = ("root_parser", "cli_kebab_case", "cli_implicit_flags", "cli_prog_name",
            "cli_hide_none_type", "cli_use_class_docs_for_groups")  # fmt: skip
    for name in used:
        assert name in parameters, f"CliSettingsSource lost its {name!r} option"
    assert "parsed_args" in inspect.signature(CliSettingsSource.__call__).parameters
