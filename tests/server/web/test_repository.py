"""The model repository extension over a real socket, driven by tritonclient: index, load, unload.

The model is the tiny 12-class ResNet-18 (TorchScript) on the torch engine, in
numbered version folders whose labels say the version (``v2_3``), so an answer
tells which version gave it.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from loadtest.process import rss_mb
from server.web.app import create_app
from tests.conftest import RunningServer, make_settings, photo, start_server, wait_until

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


def _predict(server: RunningServer, model: str, times: int) -> None:
    with server.client() as client:
        for _ in range(times):
            response = client.post(
                f"/models/{model}/predict", files={"file": ("c.jpg", photo("cat.jpg"))}
            )
            assert response.status_code == 200, response.text


def _settled_rss_mb() -> float:
    gc.collect()
    return rss_mb(os.getpid())


def test_unloading_resnet50_gives_its_memory_and_threads_back(
    tiny_files: dict[str, Path], tmp_path: Path
) -> None:
    _version(tmp_path, tiny_files["ts"], 1)
    (tmp_path / "resnet50").mkdir()
    (tmp_path / "resnet50" / "config.toml").write_text('model = "resnet50"\nweights = "random"\n')
    settings = make_settings(model_repository=tmp_path, model_control="explicit",
                             load_models="tiny", admin_keys=ADMIN, engine="torch")  # fmt: skip
    running = start_server(create_app(settings))
    admin = {"X-API-Key": ADMIN}
    try:
        _predict(running, "tiny", 4)  # the server's own first-request allocations, before
        before, threads_before = _settled_rss_mb(), set(threading.enumerate())
        states = _states_while_loading(running, "resnet50", admin)
        _predict(running, "resnet50", 4)
        loaded = _settled_rss_mb()
        _triton(running).unload_model("resnet50", headers=admin)
        after = _settled_rss_mb()
        # Other tests' servers in this process may serve a resnet50 too: only new threads count.
        threads = [
            t.name for t in set(threading.enumerate()) - threads_before if "resnet50" in t.name
        ]
    finally:
        running.stop()
    print(f"RSS before loading ResNet-50 {before:.0f} MB, loaded {loaded:.0f} MB, "
          f"after unloading {after:.0f} MB")  # fmt: skip
    assert loaded - before > 90  # its 25.6 M fp32 weights alone are 98 MiB: the load was seen
    assert after - before < 100, (before, loaded, after)
    assert threads == []
    assert "LOADING" in states, states
    assert states[-1] == "READY", states


def _states_while_loading(server: RunningServer, name: str, admin: dict[str, str]) -> list[str]:
    """Load ``name`` on a thread; the states the index gave it meanwhile, in order, deduplicated."""
    loader = threading.Thread(target=_triton(server).load_model, args=(name,),
                              kwargs={"headers": admin})  # fmt: skip
    loader.start()
    watcher, states = _triton(server), [""]
    while True:
        loading = loader.is_alive()  # before the look, so the last look is after the load
        index = watcher.get_model_repository_index(headers=admin)
        state = next(entry["state"] for entry in index if entry["name"] == name)
        if state != states[-1]:
            states.append(state)
        if not loading:
            break
    loader.join()
    return states[1:]


@pytest.fixture
def polling(tiny_files: dict[str, Path], tmp_path: Path) -> Iterator[RunningServer]:
    """A poll-mode server scanning every 0.3 s: a folder loads once quiet for 0.6 s."""
    _version(tmp_path, tiny_files["ts"], 1)
    settings = make_settings(
        model_repository=tmp_path, model_control="poll", poll_interval_s=0.3, admin_keys=ADMIN
    )
    running = start_server(create_app(settings))
    yield running
    running.stop()


def _state(server: RunningServer, name: str) -> tuple[str, str]:
    with server.client() as client:
        index = client.post("/v2/repository/index", headers={"X-API-Key": ADMIN}).json()
    return next((e["state"], e.get("reason", "")) for e in index if e["name"] == name)


def test_polling_loads_a_slowly_copied_model_only_once_it_is_complete(
    polling: RunningServer, tiny_files: dict[str, Path]
) -> None:
    root = polling.registry.settings.model_repository
    assert root is not None
    folder = root / "late"
    folder.mkdir()
    (folder / "labels.txt").write_text("".join(f"late_{i}\n" for i in range(12)))
    data = tiny_files["ts"].read_bytes()
    chunk = len(data) // 10 + 1
    with (folder / "model.ts").open("wb") as copy:
        for start in range(0, len(data), chunk):  # ten chunks over 3 s: never quiet for 0.6 s
            copy.write(data[start : start + chunk])
            copy.flush()
            threading.Event().wait(0.3)
            assert _state(polling, "late")[0] != "READY"
    wait_until(lambda: _state(polling, "late")[0] == "READY", timeout_s=60)
    with polling.client() as client:
        assert _answer_of(client, "late").startswith("late_")
    # It was tried once, complete: no attempt on a half-written file failed.
    assert polling.series("batchserve_model_loads_total", model="late", outcome="failure") is None
    assert polling.series("batchserve_model_loads_total", model="late", outcome="success") == 1


def _answer_of(client: httpx.Client, model: str) -> str:
    response = client.post(f"/models/{model}/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    assert response.status_code == 200, response.text
    return str(response.json()["predictions"][0]["label"])


def test_polling_unloads_a_deleted_model_after_what_reached_it_is_answered(
    polling: RunningServer,
) -> None:
    statuses: list[int] = []
    stop = threading.Event()

    def client_loop() -> None:
        with polling.client() as client:
            while not stop.is_set():
                files = {"file": ("c.jpg", photo("cat.jpg"))}
                statuses.append(client.post("/models/tiny/predict", files=files).status_code)

    sender = threading.Thread(target=client_loop)
    sender.start()
    wait_until(lambda: len(statuses) >= 3)
    root = polling.registry.settings.model_repository
    assert root is not None
    shutil.rmtree(root / "tiny")
    wait_until(lambda: 404 in statuses, timeout_s=60)
    stop.set()
    sender.join(timeout=60)
    first_404 = statuses.index(404)
    assert set(statuses[:first_404]) == {200}, statuses  # answered until it was gone
    assert set(statuses[first_404:]) == {404}, statuses  # then model_not_found, never a 5xx
    assert polling.series("batchserve_model_unloads_total", model="tiny", outcome="drained") == 1
