"""The image the Dockerfile builds starts and serves, with the command each deployment gives it.

The image is assembled from the Dockerfile's own lines (tests/deploy/image.py):
only what its COPY lines copy, installed as its RUN lines install it, run
from a folder outside the repository. Then the image's CMD, the compose
service's command and the Kubernetes container's command and args each serve
(random weights) until /ready, and answer one /predict.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtest import otlp_receiver
from tests.conftest import photo, require_tool, wait_process_ready
from tests.deploy.image import ROOT, Image, assemble, parse_dockerfile
from tests.deploy.test_kubernetes import KUBE, _by_kind, _kustomize

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

_, STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text())
#: The runtime stage's CMD (the image has no ENTRYPOINT).
IMAGE_CMD: list[str] = json.loads(STAGES["runtime"].all("CMD")[-1])


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return assemble(tmp_path_factory.mktemp("image"))


def test_the_image_has_no_entrypoint_and_one_cmd() -> None:
    assert STAGES["runtime"].all("ENTRYPOINT") == []
    assert IMAGE_CMD == ["batchserve"]


def test_the_image_holds_only_what_the_dockerfile_copies(image: Image) -> None:
    src = image.bin.parents[2] / "src"
    assert not (src / "tests").exists()
    assert not (src / "docs").exists()
    assert (src / "pyproject.toml").is_file()


def test_batchserve_version_runs_in_the_image(image: Image) -> None:
    result = image.run("batchserve", "--version")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("batchserve ")


def test_the_installed_distribution_carries_its_license(image: Image) -> None:
    show = "import importlib.metadata as m; print([str(f) for f in m.files('batchserve')])"
    result = image.run("python", "-c", show)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LICENSE" in result.stdout


def test_the_build_steps_import_paths_work_in_the_image(image: Image) -> None:
    """The weights stage's loader and ``batchserve quantize`` (the int8 build) both import."""
    quantize = image.run("batchserve", "quantize", "--help")
    assert quantize.returncode == 0, quantize.stderr[-3000:]
    loader = image.run(
        "python",
        "-c",
        "from server.models.torchvision_models import ensure_weights, resolve_weights",
    )
    assert loader.returncode == 0, loader.stderr[-3000:]


def test_the_image_carries_the_int8_calibration_and_held_out_photos(image: Image) -> None:
    """The int8 build's ``batchserve quantize`` calibrates and checks on the shipped photos."""
    code = (
        "from server.engines import calibration as c\n"
        "cal, held, _ = c.identify(None, None)\nprint(len(cal), len(held))"
    )
    result = image.run("python", "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["7", "22"]


def _compose_service() -> dict[str, Any]:
    result = subprocess.run(
        [require_tool("docker-compose"), "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    service: dict[str, Any] = yaml.safe_load(result.stdout)["services"]["batchserve"]
    return service


def _compose() -> tuple[list[str], dict[str, str]]:
    service = _compose_service()
    assert "entrypoint" not in service
    command = service.get("command", IMAGE_CMD)
    environment = service.get("environment", {})
    return command, {k: str(v) for k, v in environment.items() if v is not None}


def _kubernetes(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    docs = _by_kind(_kustomize(KUBE / "base", tmp_path / "built.yaml"))
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    # Kubernetes: command replaces the ENTRYPOINT (none here), args the CMD.
    command = [*container.get("command", []), *container.get("args", IMAGE_CMD)]
    return command, dict(docs["ConfigMap"]["data"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serving(image: Image) -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    def start(command: list[str], env: dict[str, str]) -> str:
        port = _free_port()
        overrides = {"BATCHSERVE_HOST": "127.0.0.1", "BATCHSERVE_PORT": str(port),
                     "BATCHSERVE_WEIGHTS": "random"}  # fmt: skip
        processes.append(image.start(*command, **{**env, **overrides}))
        return f"http://127.0.0.1:{port}"

    yield start, processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("deployment", ["image", "compose", "kubernetes"])
def test_each_deployments_command_serves_from_the_image(
    deployment: str, serving: Any, tmp_path: Path
) -> None:
    command, env = {
        "image": lambda: (IMAGE_CMD, {}),
        "compose": _compose,
        "kubernetes": lambda: _kubernetes(tmp_path),
    }[deployment]()
    start, processes = serving
    url = start(command, env)
    wait_process_ready(url, processes[0], timeout_s=240)
    answer = httpx.post(f"{url}/predict", files={"file": photo("cat.jpg")}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 5
    docs = httpx.get(f"{url}/docs", timeout=30)  # Swagger UI's files come from the image too
    assert docs.status_code == 200
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert httpx.get(f"{url}/static-offline-docs/{asset}", timeout=30).status_code == 200
    processes[0].send_signal(signal.SIGTERM)
    assert processes[0].wait(timeout=60) == 0


def test_the_image_traces_to_a_collector_when_pointed_at_one(serving: Any) -> None:
    """The tracing extra is in the image: an OTLP endpoint is all it takes to get spans."""
    port = _free_port()
    received, stop_receiver = otlp_receiver.start("http/protobuf", port)
    start, processes = serving
    try:
        url = start(IMAGE_CMD, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                                "OTEL_BSP_SCHEDULE_DELAY": "100"})  # fmt: skip
        wait_process_ready(url, processes[0], timeout_s=240)
        assert httpx.get(f"{url}/info", timeout=30).json()["tracing"].startswith("otlp ")
        answer = httpx.post(f"{url}/predict", files={"file": photo("cat.jpg")}, timeout=60)
        assert answer.status_code == 200, answer.text
        processes[0].send_signal(signal.SIGTERM)
        assert processes[0].wait(timeout=60) == 0  # the drained stop flushes the spans
    finally:
        stop_receiver()
    (request,) = received.named("POST /predict")
    assert [link.span_id for link in received.named("inference")[-1].links] == [request.span_id]
