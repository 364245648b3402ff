"""The dependency arrows: batcher/ is generic; in server/, the web layer and the model layer
import nothing of each other's heavy dependencies."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BATCHER_FILES = sorted((ROOT / "batcher").rglob("*.py"))


def _imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", BATCHER_FILES, ids=lambda p: p.name)
def test_batcher_imports_only_the_standard_library_and_itself(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"batcher", "__future__"}
    foreign = _imported_top_level_modules(path) - allowed
    assert not foreign, f"{path.name} imports {sorted(foreign)}"


def _modules_loaded_by(imports: list[str]) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing ``imports``."""
    code = "; ".join(f"import {name}" for name in imports)
    code += "; import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


#: The layers, each a package; a module belongs to the layer of the folder it lives in.
LAYERS = (
    "server.web", "server.service", "server.models", "server.engines", "server.cli",
    "server.tracing",
)  # fmt: skip
#: What stays at server/'s top: configuration, metrics, the package and its entry point.
TOP = {"server", "server.__main__", "server.config", "server.metrics"}


def _server_modules() -> set[str]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "server").rglob("*.py")
    }


def _modules_of(package: str) -> list[str]:
    return sorted(m for m in _server_modules() if m == package or m.startswith(f"{package}."))


def test_the_web_layer_imports_no_torch_no_pillow_and_no_numpy() -> None:
    loaded = _modules_loaded_by(_modules_of("server.web"))
    assert not loaded & {"torch", "torchvision", "PIL", "numpy", "openvino"}, loaded


def test_model_engine_and_service_code_import_no_web_framework() -> None:
    """All three packages' modules in one fresh interpreter: none may bring a web framework."""
    modules = [
        m for p in ("server.models", "server.engines", "server.service") for m in _modules_of(p)
    ]
    loaded = _modules_loaded_by(modules)
    assert not loaded & {"fastapi", "starlette", "uvicorn", "prometheus_client"}, loaded


def test_serving_without_tracing_imports_no_module_of_the_tracing_extra() -> None:
    """Off, the tracing extra need not be installed: nothing the server loads needs it.

    (FastAPI imports OpenTelemetry's API, part of no extra of ours, where it is installed.)
    """
    modules = [*_modules_of("server.web"), "server.service.unit", "server.cli.precheck"]
    code = "; ".join(f"import {name}" for name in modules)
    code += "; import sys; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    extra = [m for m in loaded if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
    assert not extra
    assert not {"server.tracing.spans", "server.tracing.setup"} & set(loaded)


def _imports_of(module: str) -> set[str]:
    """The server modules ``module`` imports (at any level, TYPE_CHECKING included)."""
    path = ROOT / Path(*module.split("."))
    path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names & _server_modules()


def _layer_of(module: str) -> str:
    return next((layer for layer in LAYERS if module.startswith(layer)), "server")


#: Which layer may import which: web -> service -> models and engines; nothing imports web
#: but the command line; the top (config, metrics) is everyone's.
MAY_IMPORT = {
    "server.web": {
        "server.web",
        "server.service",
        "server.models",
        "server.engines",
        "server.tracing",
    },
    "server.service": {"server.service", "server.models", "server.engines", "server.tracing"},
    # Below the two that open spans: it knows neither requests' routes nor units.
    "server.tracing": {"server.tracing"},
    "server.models": {"server.models"},
    "server.engines": {"server.engines", "server.models"},
    "server.cli": set(LAYERS),
}


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_layers_import_only_the_layers_below_them(layer: str) -> None:
    wrong = {
        f"{module} -> {imported}"
        for module in _modules_of(layer)
        for imported in _imports_of(module)
        if _layer_of(imported) not in MAY_IMPORT[layer] | {"server"}
    }
    assert not wrong, sorted(wrong)


def test_every_server_module_lives_in_one_layer_or_at_the_top() -> None:
    """A new module belongs to a layer because of its folder; the top holds only these."""
    top = {m for m in _server_modules() if _layer_of(m) == "server"}
    assert top == TOP


def test_the_top_imports_no_layer() -> None:
    """Configuration and metrics are below every layer; the entry point only reaches the CLI."""
    for module in TOP - {"server.__main__"}:
        assert {_layer_of(m) for m in _imports_of(module)} <= {"server"}, module


#: What the web layer may read of a model unit: its door (server/service/door.py) and lifecycle.
UNIT_DOOR = {"name", "version", "state", "ready", "not_ready_reason", "description",
             "limits", "ensure_accepting", "classify", "classify_many", "classify_pixels",
             "plan", "hold", "statistics"}  # fmt: skip


@pytest.mark.parametrize("module", _modules_of("server.web"))
def test_the_web_layer_reads_a_unit_only_through_its_door(module: str) -> None:
    """No ``unit.batcher``, ``unit.model``, ``unit.metrics`` or private attribute in web code."""
    path = ROOT / Path(*module.split("."))
    path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
    reads = {
        (node.lineno, node.attr)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in {"unit", "service"}
    }
    beyond = sorted((line, attr) for line, attr in reads if attr not in UNIT_DOOR)
    assert not beyond, f"{module} reads the unit's {beyond}"


def test_importing_the_batcher_loads_only_the_standard_library() -> None:
    """At run time too: no import hidden in a function body or pulled in by a dependency."""
    added = _modules_loaded_by(["batcher"]) - _modules_loaded_by(["sys"])
    assert added - set(sys.stdlib_module_names) == {"batcher"}


def test_the_client_imports_neither_torch_nor_the_server() -> None:
    loaded = _modules_loaded_by(["batchserve_client"])
    assert not loaded & {"torch", "PIL", "numpy", "fastapi", "server", "batcher"}, loaded
    assert "httpx" in loaded
