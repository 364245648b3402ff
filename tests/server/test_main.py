"""The ``batchserve`` command: bad setup stops at once; a real server drains on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from torchvision.models import get_model, get_model_weights

from server.app import create_app
from tests.conftest import make_settings, photo, start_server

BATCHSERVE = str(Path(sys.executable).with_name("batchserve"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
    env.update({f"BATCHSERVE_{k.upper()}": v for k, v in settings.items()})
    env["TORCH_HOME"] = str(tmp_path / "torch-home")
    env.setdefault("BATCHSERVE_PRECISION", "fp32")
    env.setdefault("BATCHSERVE_COMPILE", "off")
    return env


def _refused_start(command: list[str], tmp_path: Path, **settings: str) -> str:
    """Run a start that must fail before serving; return its stderr."""
    result = subprocess.run(
        command,
        env=_environment(tmp_path, **settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_bad_setting_stops_at_once_with_the_variable_named(tmp_path: Path) -> None:
    stderr = _refused_start([BATCHSERVE], tmp_path, max_batch_size="zero")
    assert "BATCHSERVE_MAX_BATCH_SIZE='zero'" in stderr


def test_a_missing_weights_file_stops_at_once_with_the_remedy(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "server"]
    stderr = _refused_start(command, tmp_path, weights=str(tmp_path / "missing.pth"))
    assert "cannot start" in stderr
    assert "nor an existing state_dict file" in stderr


def test_mobilenet_v2_serves_with_labels_and_preprocessing_from_its_weights(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), path)
    running = start_server(create_app(make_settings(model="mobilenet_v2", weights=str(path))))
    try:
        with running.client() as client:
            info = client.get("/info").json()
            response = client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    finally:
        running.stop()
    metadata = get_model_weights("mobilenet_v2").DEFAULT
    transforms = metadata.transforms()
    assert info["model"] == "mobilenet_v2"
    assert info["weights"] == str(path)
    assert info["num_classes"] == len(metadata.meta["categories"])
    assert info["input_size"] == [3, transforms.crop_size[0], transforms.crop_size[0]]
    assert info["preprocessing"]["resize_size"] == transforms.resize_size[0]
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "mobilenet_v2"
    assert body["predictions"][0]["label"] in metadata.meta["categories"]


def _wait_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("the server never became ready")


def _inflight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^batchserve_inflight_requests (\S+)$", text, re.MULTILINE)
    assert match
    return float(match.group(1))


def test_the_command_serves_then_drains_on_sigterm_and_exits_by_itself(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _environment(
        tmp_path, weights="random", port=str(port), max_batch_size="4", max_batch_wait_ms="20"
    )
    process = subprocess.Popen(
        [BATCHSERVE], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_ready(url, process)
        data = photo("cat.jpg")

        def post(_: int) -> int:
            return httpx.post(
                f"{url}/predict", files={"file": ("c.jpg", data)}, timeout=120
            ).status_code

        with ThreadPoolExecutor(6) as pool:
            answers = pool.map(post, range(6))
            deadline = time.monotonic() + 60
            while _inflight(url) < 7:  # the six uploads plus this scrape
                assert time.monotonic() < deadline
            process.send_signal(signal.SIGTERM)
            assert list(answers) == [200] * 6
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    assert "drained and stopped" in stderr
