"""The model repository extension over a real socket, driven by tritonclient: index, load, unload.

The model is the tiny 12-class ResNet-18 (TorchScript) on the torch engine, in
numbered version folders whose labels say the version (``v2_3``), so an answer
tells which version gave it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from server.web.app import create_app
from tests.conftest import RunningServer, make_settings, photo, start_server

#: Real servers and model files: make test-fast skips these.
pytestmark = pytest.mark.slow

ADMIN = "admin-0123456789abcdef"


def _version(root: Path, model: Path, version: int) -> None:
    folder = root / "tiny" / str(version)
    folder.mkdir(parents=True)
    (folder / model.name).write_bytes(model.read_bytes())
    (folder / "labels.txt").write_text("".join(f"v{version}_{i}\n" for i in range(12)))


@pytest.fixture
def control(tiny_files: dict[str, Path], tmp_path: Path) -> Iterator[RunningServer]:
    _version(tmp_path, tiny_files["ts"], 1)
    settings = make_settings(model_repository=tmp_path, model_control="explicit", admin_keys=ADMIN)
    running = start_server(create_app(settings))
    yield running
    running.stop()


def _triton(server: RunningServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)


def _answer(client: httpx.Client) -> tuple[int, str]:
    response = client.post("/predict", files={"file": ("cat.jpg", photo("cat.jpg"))})
    label = response.json()["predictions"][0]["label"] if response.status_code == 200 else ""
    return response.status_code, label


def test_a_reload_under_load_loses_no_request_and_switches_once(
    control: RunningServer, tiny_files: dict[str, Path]
) -> None:
    root = control.registry.settings.model_repository
    assert root is not None
    answers: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def client_loop(mine: list[tuple[int, str]]) -> None:
        with control.client() as client:
            while not stop.is_set():
                mine.append(_answer(client))

    threads = [threading.Thread(target=client_loop, args=(a,)) for a in answers]
    for thread in threads:
        thread.start()
    _version(root, tiny_files["ts"], 2)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    _triton(control).load_model("tiny", headers=admin)
    with control.client() as client:
        after = [_answer(client) for _ in range(3)]
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert {status for mine in answers for status, _ in mine} == {200}
    for mine in answers:  # each client sees version 1, then version 2, never back
        versions = [label.split("_")[0] for _, label in mine]
        assert versions == sorted(versions), versions
    assert {label.split("_")[0] for _, label in after} == {"v2"}
    index = _triton(control).get_model_repository_index(headers=admin)
    assert index == [{"name": "tiny", "version": "2", "state": "READY"}]
    assert control.series("batchserve_model_loads_total", model="tiny", outcome="success") == 1
    # The old version drained and was released: its gauges went with it.
    assert control.series("batchserve_queue_depth", model="tiny", version="1") is None


def test_a_broken_version_leaves_the_old_one_serving_and_says_why(
    control: RunningServer,
) -> None:
    root = control.registry.settings.model_repository
    assert root is not None
    (root / "tiny" / "2").mkdir()
    (root / "tiny" / "2" / "model.ts").write_bytes(b"not a model")
    admin = {"X-API-Key": ADMIN}
    with pytest.raises(InferenceServerException) as failed:
        _triton(control).load_model("tiny", headers=admin)
    assert failed.value.status() == "400"
    with control.client() as client:
        assert _answer(client)[1].startswith("v1_")
        described = client.get("/models/tiny").json()
    assert "version 2" in described["load_error"]
    index = _triton(control).get_model_repository_index(headers=admin)
    assert index[0] == {"name": "tiny", "version": "1", "state": "READY"}
    assert index[1]["state"] == "UNAVAILABLE"
    assert "version 2" in index[1]["reason"]


def test_unload_drains_then_404_and_load_brings_it_back(control: RunningServer) -> None:
    admin = {"X-API-Key": ADMIN}
    client = _triton(control)
    client.unload_model("tiny", headers=admin)
    with control.client() as http:
        response = http.post("/models/tiny/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
    assert client.get_model_repository_index(headers=admin) == [
        {"name": "tiny", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    with pytest.raises(InferenceServerException) as missing:
        client.unload_model("tiny", headers=admin)
    assert missing.value.status() == "404"
    client.load_model("tiny", headers=admin)
    assert client.is_model_ready("tiny")


def test_control_needs_an_admin_key_not_an_api_key(control: RunningServer) -> None:
    client = _triton(control)
    for headers in ({}, {"X-API-Key": "wrong-0123456789abcdef"}):
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_repository_index(headers=headers)
        assert refused.value.status() == "401"


@pytest.mark.parametrize(
    ("mode", "host", "status"),
    [("none", "127.0.0.1", 403), ("explicit", "0.0.0.0", 403), ("explicit", "127.0.0.1", 200)],
)
def test_without_admin_keys_only_a_local_explicit_server_takes_control(
    tiny_files: dict[str, Path], tmp_path: Path, mode: str, host: str, status: int
) -> None:
    _version(tmp_path, tiny_files["ts"], 1)
    settings = make_settings(model_repository=tmp_path, model_control=mode, host=host)
    running = start_server(create_app(settings))
    try:
        with running.client() as client:
            assert client.post("/v2/repository/index").status_code == status
    finally:
        running.stop()
