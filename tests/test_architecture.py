"""The dependency arrow: batcher/ is generic and knows nothing of the server's world."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BATCHER_FILES = sorted((ROOT / "batcher").glob("*.py"))


def _imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_batcher_has_modules_to_check() -> None:
    assert len(BATCHER_FILES) >= 5


@pytest.mark.parametrize("path", BATCHER_FILES, ids=lambda p: p.name)
def test_batcher_imports_only_the_standard_library_and_itself(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"batcher", "__future__"}
    foreign = _imported_top_level_modules(path) - allowed
    assert not foreign, f"{path.name} imports {sorted(foreign)}"


@pytest.mark.parametrize("name", ["server", "fastapi", "starlette", "torch", "prometheus_client"])
def test_the_forbidden_names_are_indeed_not_in_the_standard_library(name: str) -> None:
    assert name not in sys.stdlib_module_names
