"""The ``batchserve`` command: bad setup stops at once; a real server drains on SIGTERM."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from torchvision.models import get_model, get_model_weights

from loadtest.process import free_port
from server.app import create_app
from tests.conftest import make_settings, photo, start_server

BATCHSERVE = str(Path(sys.executable).with_name("batchserve"))


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


@dataclass
class _Outcome:
    request_id: str
    status: int | None
    error: str | None
    finished: float


def _keep_posting(url: str, worker: int, stop: threading.Event, outcomes: list[_Outcome]) -> None:
    """Post one photo after another, a new connection each time, until told to stop or refused."""
    data = photo("cat.jpg")
    for n in itertools.count():
        request_id = f"w{worker}-{n}"
        try:
            response = httpx.post(
                f"{url}/predict",
                files={"file": ("c.jpg", data)},
                headers={"X-Request-ID": request_id},
                timeout=120,
            )
            outcomes.append(_Outcome(request_id, response.status_code, None, time.monotonic()))
        except httpx.TransportError as exc:
            outcomes.append(_Outcome(request_id, None, type(exc).__name__, time.monotonic()))
        if stop.is_set() or outcomes[-1].error == "ConnectError":
            return


def _access_log(stderr: str) -> dict[str, int]:
    """request id -> status, from the server's JSON access log lines."""
    statuses = {}
    for line in stderr.splitlines():
        if line.startswith("{") and '"path": "/predict"' in line:
            record = json.loads(line)
            statuses[record["request_id"]] = record["status"]
    return statuses


def test_sigterm_under_load_answers_every_accepted_request_then_exits(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _environment(
        tmp_path, model="mobilenet_v2", weights="random", port=str(port), max_batch_size="4",
        log_format="json", shutdown_timeout_s="20",
    )  # fmt: skip
    process = subprocess.Popen(
        [BATCHSERVE], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    stop = threading.Event()
    outcomes: list[_Outcome] = []
    try:
        _wait_ready(url, process)
        with ThreadPoolExecutor(6) as pool:
            clients = [pool.submit(_keep_posting, url, i, stop, outcomes) for i in range(6)]
            deadline = time.monotonic() + 120
            # A steady stream first, then the signal while most clients are mid-request.
            while len(outcomes) < 30 or _inflight(url) < 5:
                assert time.monotonic() < deadline
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
            exited = time.monotonic()
            stop.set()
            for client in clients:
                client.result(timeout=120)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert exited - signalled < 20 + 5
    assert "Traceback" not in stderr
    served = _access_log(stderr)
    for outcome in outcomes:
        if outcome.request_id in served:
            # The server took it: the client got exactly what the server answered.
            assert outcome.status == served[outcome.request_id], outcome
            assert outcome.status in (200, 503), outcome
        else:
            # Never reached the app: refused at connect time, or closed unread by uvicorn.
            assert outcome.status is None, outcome
    drained = [o for o in outcomes if o.status == 200 and o.finished > signalled]
    assert drained, "no request in flight at SIGTERM was answered"
    assert "drained and stopped" in stderr
