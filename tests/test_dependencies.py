"""Dependencies: declared as used, and the library internals batchserve relies on still there.

pyproject.toml bounds uvicorn, h11, Starlette and pydantic-settings below their
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

import h11
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic_settings import CliSettingsSource
from starlette.formparsers import MultiPartException, MultiPartParser
from uvicorn.protocols.http.h11_impl import H11Protocol

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: What the installed packages may import: the runtime dependencies and the engine extras.
SERVING_EXTRAS = ("openvino", "int8")


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


def test_the_dependencies_named_by_the_issue_are_declared_directly() -> None:
    for name in ("python-dotenv", "starlette", "h11", "fastapi-offline"):
        assert name in RUNTIME, name


def test_uvicorn_comes_without_its_standard_extra() -> None:
    """[standard] pulls httptools, websockets, watchfiles and uvloop, none of which we use."""
    assert RUNTIME["uvicorn"].extras == set()


@pytest.mark.parametrize("name", ["uvicorn", "h11", "starlette", "pydantic-settings"])
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


def test_uvicorns_h11_protocol_still_has_what_http_head_overrides() -> None:
    """server/web/http_head.py replaces ``conn`` and ``send_400_response``, writes on ``transport``.

    uvicorn's protocol must still build ``self.conn`` in ``__init__``, read events
    through ``self.conn.next_event()`` and answer parse errors through
    ``send_400_response(msg)``.
    """
    init = inspect.getsource(H11Protocol.__init__)
    assert "self.conn = h11.Connection(" in init, "H11Protocol no longer builds self.conn"
    handle = inspect.getsource(H11Protocol.handle_events)
    assert "self.conn.next_event()" in handle, "H11Protocol reads events another way"
    assert "self.send_400_response(" in handle, "H11Protocol answers parse errors another way"
    assert list(inspect.signature(H11Protocol.send_400_response).parameters) == ["self", "msg"]
    assert "self.transport" in inspect.getsource(H11Protocol.connection_made)


def test_h11s_connection_still_takes_what_bounded_connection_passes() -> None:
    parameters = inspect.signature(h11.Connection.__init__).parameters
    assert "max_incomplete_event_size" in parameters
    assert "error_status_hint" in inspect.signature(h11.RemoteProtocolError.__init__).parameters


def test_starlettes_multipart_parser_still_takes_the_limits_upload_py_sets() -> None:
    parameters = inspect.signature(MultiPartParser.__init__).parameters
    for name in ("headers", "stream", "max_files", "max_fields", "max_part_size"):
        assert name in parameters, f"MultiPartParser lost its {name!r} parameter"
    assert "message" in inspect.signature(MultiPartException.__init__).parameters


def test_pydantic_settings_cli_source_still_takes_what_the_cli_passes() -> None:
    parameters = inspect.signature(CliSettingsSource.__init__).parameters
    used = ("root_parser", "cli_kebab_case", "cli_implicit_flags", "cli_prog_name",
            "cli_hide_none_type", "cli_use_class_docs_for_groups")  # fmt: skip
    for name in used:
        assert name in parameters, f"CliSettingsSource lost its {name!r} option"
    assert "parsed_args" in inspect.signature(CliSettingsSource.__call__).parameters
