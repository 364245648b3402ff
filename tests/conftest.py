"""Shared fixtures: real photos, and a real batchserve (uvicorn) running in a thread."""

from __future__ import annotations

import asyncio
import atexit
import faulthandler
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import torchvision
import uvicorn
from fastapi import FastAPI
from filelock import FileLock
from prometheus_client.parser import text_string_to_metric_families

from loadtest.exports import SOURCES, export
from server.config import Settings
from server.service.registry import ModelRegistry
from server.service.unit import ModelUnit
from server.web.app import create_app
from server.web.serving import DrainingServer, uvicorn_config
from tests.engine import EngineKeeper

DATA = Path(__file__).parent / "data"
PHOTOS = ("cat.jpg", "cat_cmyk.jpg", "coffee.webp", "camera_gray.png", "horse_rgba.png",
          "animated.gif", "astronaut.jpg")  # fmt: skip


def require_tool(name: str) -> str:
    """The path of command ``name``; missing, the test fails in CI and is skipped elsewhere.

    ``make test`` installs the tools first (scripts/ensure-tools.sh), so in CI a
    missing tool is a broken setup, never a reason to skip silently.
    """
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (scripts/ensure-tools.sh installs it as root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_process_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 180) -> None:
    """Wait for ``/ready`` 200 from a server ``process``; its output if it dies or never is."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail("".join(part or "" for part in process.communicate())[-4000:])
        assert time.monotonic() < deadline, f"{url} never became ready"
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def photo(name: str) -> bytes:
    return (DATA / name).read_bytes()


#: How long a pytest process may take to exit once its tests are done before it prints every
#: thread's stack and leaves: a thread that never ends (joined at exit) must not hold CI.
EXIT_GRACE_S = 300


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Arm the exit watchdog: a process that cannot exit says where it is stuck, then goes."""
    faulthandler.dump_traceback_later(EXIT_GRACE_S, exit=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module kept whole (its fixtures are built once).

    With the suite spread over the cores (pytest-xdist), the long tests then
    start early and the quick ones fill the end, instead of one worker running
    a benchmark alone while the others have finished.
    """
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)
    # xdist's file-by-file scheduling (make test) keys tests by node id: of tests that share
    # one (as schemathesis's ``schema.parametrize()`` items do under pytest 9) it runs one.
    shared = [nodeid for nodeid, n in Counter(i.nodeid for i in items).items() if n > 1]
    if shared:
        raise pytest.UsageError(f"tests that share a node id, which xdist would run once: {shared}")


#: Names the run's model cache to the processes pytest-xdist starts, which inherit it.
SUITE_CACHE_VARIABLE = "TESTS_SUITE_MODEL_CACHE"


def _suite_cache() -> Path:
    """The run's model cache: made (and removed at exit) by the first process, shared after.

    The cache writes each entry atomically, so the workers may fill it at once; a
    model one worker converted or quantized is read by the others instead of redone.
    """
    if shared := os.environ.get(SUITE_CACHE_VARIABLE):
        return Path(shared)
    path = Path(tempfile.mkdtemp(prefix="batchserve-tests-cache-"))
    atexit.register(shutil.rmtree, path, True)
    os.environ[SUITE_CACHE_VARIABLE] = str(path)
    return path


#: The run's own model cache (not the developer's ~/.cache): a model the suite converted or
#: quantized once is read from here after; tests of the cache itself pass their own.
SUITE_CACHE = _suite_cache()


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: random weights, small batches, no .env from the developer's tree."""
    values: dict[str, Any] = {
        "model": "resnet50",
        "weights": "random",
        "max_batch_size": 4,
        "max_batch_wait_ms": 20,
        "preprocess_threads": 2,
        # Pinned, so that results do not depend on the CI machine's CPU features.
        "precision": "fp32",
        "compile": "off",
        "cpu_streams": "latency",
        # The torch engine starts in a second; the OpenVINO one converts the model first
        # (seconds). The shared API server runs the default engine (``resnet_server``);
        # tests/server/engines cover OpenVINO and int8 themselves.
        "engine": "torch",
        "cache_dir": SUITE_CACHE,
        # gRPC off: test servers run side by side; the gRPC tests give theirs a free port.
        "grpc_port": 0,
    }
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


@dataclass
class RunningServer:
    """A batchserve app served by uvicorn on a free port in a background thread."""

    app: FastAPI
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def registry(self) -> ModelRegistry:
        registry: ModelRegistry = self.app.state.registry
        return registry

    @property
    def service(self) -> ModelUnit:
        """The default model's unit."""
        unit = self.registry.default
        assert unit is not None, "the default model is served"
        return unit

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60), **kwargs)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while client.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, "server never became ready"
                time.sleep(0.05)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0 when the series is absent)."""
        value = self.series(name, **labels)
        return 0.0 if value is None else value

    def series(self, name: str, **labels: str) -> float | None:
        """One sample of ``/metrics``, or None when no series has these labels."""
        with self.client() as client:
            text = client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def start_server(app: FastAPI, *, wait_ready: bool = True) -> RunningServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    registry: ModelRegistry = app.state.registry
    server = DrainingServer(uvicorn_config(app, registry.settings, lifespan="on"), registry)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    running = RunningServer(app, f"http://127.0.0.1:{port}", server, thread)
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), "server thread died during startup"
        assert time.monotonic() < deadline, "server never started"
        time.sleep(0.02)
    if wait_ready:
        running.wait_ready()
    return running


def served(app: FastAPI) -> Iterator[RunningServer]:
    """A fixture's body: start ``app``, hand it over, stop it afterwards."""
    running = start_server(app)
    yield running
    running.stop()


def client_of(server: RunningServer) -> Iterator[httpx.Client]:
    """A fixture's body: a client of ``server``, closed afterwards."""
    with server.client() as client:
        yield client


def app_with_test_engine(settings: Settings, keeper: EngineKeeper | None = None) -> FastAPI:
    """The app for ``settings`` with the deterministic test engine: no network is built.

    ``keeper`` keeps the engines built, for a test that steers them.
    """
    return create_app(settings, preparer=keeper or EngineKeeper())


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    """Return once ``predicate()`` holds; fail after ``timeout_s`` (a guard against hangs)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest.fixture(scope="session")
def resnet_engines() -> EngineKeeper:
    """The test engines of the shared ``resnet_server``, for tests that hold its gate."""
    return EngineKeeper()


@pytest.fixture(scope="session")
def resnet_server(resnet_engines: EngineKeeper) -> Iterator[RunningServer]:
    """One server described as ResNet-50, shared by the API tests that do not reconfigure it.

    It runs the test engine (tests/engine.py), with the default engine's plan
    (OpenVINO on the CPU); tests/server/engines run the real engines.
    """
    yield from served(app_with_test_engine(make_settings(engine="auto"), resnet_engines))


@pytest.fixture(scope="session")
def guarded_server() -> Iterator[RunningServer]:
    """A small-model server with a rate limit behind a trusted proxy and a 2 s body timeout.

    Tests tell their clients apart with distinct X-Forwarded-For addresses.
    """
    settings = make_settings(
        model="mobilenet_v2",
        rate_limit="3/minute",
        trusted_proxies="127.0.0.1",
        body_timeout_s=2.0,
    )
    yield from served(app_with_test_engine(settings))


@pytest.fixture
def api(resnet_server: RunningServer) -> Iterator[httpx.Client]:
    yield from client_of(resnet_server)


#: Set by coverage (``patch = ["subprocess"]``) for the Python processes a test starts.
COVERAGE_VARIABLE = "COVERAGE_PROCESS_CONFIG"


def benchmark_environment() -> dict[str, str]:
    """The environment a benchmark runs in: no BATCHSERVE_ setting, the run's cache, no coverage.

    A benchmark program is not what coverage measures (the server code it runs
    is covered by the tests that run it in process), and the tracer would double
    its Python-heavy parts (torch.export, NNCF) in every process it starts.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
    env.pop(COVERAGE_VARIABLE, None)
    env["BATCHSERVE_CACHE_DIR"] = str(SUITE_CACHE)
    return env


def run_benchmark(module: str, args: list[str], tmp_path: Path) -> str:
    """Run ``python -m module args --out ...`` as `make bench` does; its report's text."""
    out = tmp_path / "report.md"
    env = benchmark_environment()
    result = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out.read_text()


def tiny_classifier(classes: int = 12) -> torch.nn.Module:
    """ResNet-18 with ``classes`` outputs and seeded random weights.

    Small enough to export in seconds, and unlike the mobile networks its random
    initialisation gives distinct answers (theirs fade to uniform probabilities).
    """
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=classes).eval()


def exported_once(
    factory: pytest.TempPathFactory, name: str, module: Callable[[], torch.nn.Module], crop: int
) -> dict[str, Path]:
    """``module()`` as model.ts, .pt2 and .onnx, exported by one process of the run for all.

    Under pytest-xdist every worker needs the files; the first to take the lock
    exports them into the run's shared temporary folder, the others read them
    there (the same bytes, so the model cache's entries made from them are shared too).
    """
    base = factory.getbasetemp()
    # A worker's folder is popen-gwN inside the run's own: that one the workers share.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"exported-{name}"
    with FileLock(f"{shared}.lock"):
        if not (shared / "done").is_file():
            export(module(), shared, crop)
            (shared / "done").touch()
    return {kind: shared / f"model.{kind}" for kind in SOURCES}


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny (ResNet-18) 12-class classifier as model.ts, .pt2 and .onnx (224x224 input)."""
    return exported_once(tmp_path_factory, "tiny", tiny_classifier, 224)


@pytest.fixture(scope="session")
def effnet_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The pretrained EfficientNet-Lite1 (ImageNet) as model.ts, model.pt2 and model.onnx."""
    from loadtest.int8_fidelity import efficientnet_lite1_module

    return exported_once(tmp_path_factory, "effnet", efficientnet_lite1_module, 240)
