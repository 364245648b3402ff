"""The dependency arrows: batcher/ is generic; in server/, the web layer and the model layer
import nothing of each other's heavy dependencies."""

from __future__ import annotations

import ast
import subprocess
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


def _modules_loaded_by(imports: list[str]) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing ``imports``."""
    code = "; ".join(f"import {name}" for name in imports)
    code += "; import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


#: The web layer: HTTP, metrics, errors, schemas. It reaches models through app.state.
WEB_LAYER = [
    "server.routes", "server.errors", "server.schemas", "server.metrics", "server.middleware",
    "server.auth", "server.upload", "server.ratelimit", "server.http_head", "server.progress",
    "server.image_errors", "server.config", "server.openapi", "server.oip", "server.oip_codec",
]  # fmt: skip
#: Models and engines: loading, converting, running. No web framework.
MODEL_LAYER = [
    "server.model", "server.model_files", "server.loading", "server.labels", "server.plan",
    "server.engines", "server.engines.contract", "server.engines.errors",
    "server.engines.torch_engine", "server.engines.openvino_engine", "server.engines.int8",
    "server.engines.int8_cache", "server.engines.calibration", "server.unit", "server.compute",
    "server.repository", "server.preprocess",
]  # fmt: skip


def test_the_web_layer_imports_no_torch_and_no_pillow() -> None:
    loaded = _modules_loaded_by(WEB_LAYER)
    assert not loaded & {"torch", "torchvision", "PIL", "numpy", "openvino"}, loaded


def test_model_and_engine_code_import_no_web_framework() -> None:
    loaded = _modules_loaded_by(MODEL_LAYER)
    assert not loaded & {"fastapi", "starlette", "uvicorn", "prometheus_client"}, loaded


def test_the_rules_are_checked_on_every_server_module() -> None:
    """A new module must be placed in one layer (or be a composition root) on purpose."""
    roots = {"server.app", "server.info", "server.registry", "server.serving", "server.logs",
             "server.cli", "server.__main__", "server"}  # fmt: skip
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "server").rglob("*.py")
    }
    modules = {m for m in modules if not m.startswith("server.cli.")}
    unplaced = modules - set(WEB_LAYER) - set(MODEL_LAYER) - roots
    assert not unplaced, f"place these in WEB_LAYER or MODEL_LAYER: {sorted(unplaced)}"


def test_the_client_imports_neither_torch_nor_the_server() -> None:
    loaded = _modules_loaded_by(["batchserve_client"])
    assert not loaded & {"torch", "PIL", "numpy", "fastapi", "server", "batcher"}, loaded
    assert "httpx" in loaded
