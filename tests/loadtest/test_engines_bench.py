"""``python -m loadtest.engines_bench``: every engine, the naive baseline and the bound."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from loadtest.engines_bench import SERVER_CHOICES, selected_servers, stop_server
from loadtest.naive_server import create_naive_app
from loadtest.process import free_port
from server.config import Settings
from server.models.cores import usable_cores
from server.models.plan import resolve_plan
from server.models.preprocess import image_to_crop
from server.service.preparation import prepare
from tests.conftest import benchmark_environment, photo, run_benchmark, wait_until

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


#: A server of each kind (every start costs a model build): the baseline, a LitServe peer,
#: batchserve's defaults and its int8 variant that chooses streams by load.
SERVERS = ("naive FastAPI", "LitServe + the same OpenVINO int8 model", "batchserve defaults",
           "batchserve int8, streams by load")  # fmt: skip


def test_the_engine_benchmark_measures_every_engine_and_server(tmp_path: Path) -> None:
    args = [
        "--model", "mobilenet_v3_small", "--batch-sizes", "1,2",
        "--raw-seconds", "0.2", "--concurrency", "1", "--duration", "1",
        "--servers", "naive,litserve-int8,defaults,int8-by-load",
    ]  # fmt: skip
    report = run_benchmark("loadtest.engines_bench", args, tmp_path)
    assert "python -m loadtest.engines_bench --model mobilenet_v3_small" in report
    assert "- CPU: " in report
    steps = report.split("## Preprocessing, step by step", 1)[1].split("##", 1)[0]
    assert "| step | rocket.jpg ms | rocket_12mp.jpg ms |" in steps
    step_rows = [
        line for line in steps.splitlines() if line.startswith("| ") and "ms |" not in line
    ]
    assert len(step_rows) == 4, steps
    assert all(float(cell) > 0 for row in step_rows for cell in row.strip("|").split("|")[1:])
    for row in ("| torch | fp32 |", "| openvino | fp32 |", "| openvino | int8 |"):
        assert row in report, row
    for server in SERVERS:
        assert f"| {server}" in report, server
    load = report.split("## Servers under load", 1)[1].split("##", 1)[0]
    assert "| /health p99 ms | errors | max RSS MB | ready s |" in load
    served = [line.strip("|").split("|") for line in load.splitlines() if line.startswith("| ")]
    assert [row[-3].strip() for row in served[1:]] == ["0"] * len(SERVERS), load
    bound = report.split("## Against the machine's bound", 1)[1]
    rows = [line for line in bound.splitlines() if line.startswith(("| batchserve", "| LitServe"))]
    assert len(rows) == len(SERVERS) - 1, bound  # the naive server has no bound row
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        preprocess_ms, engine_ms, images_per_s = (float(c) for c in cells[2:5])
        assert images_per_s == pytest.approx(usable_cores() * 1000 / (preprocess_ms + engine_ms),
                                             rel=0.02)  # fmt: skip
        assert 0 < float(cells[5]) < 1.5  # c=1's share of the bound
        loop = cells[6]
        assert (loop == "—") == row.startswith("| LitServe"), row
        if row.startswith("| batchserve"):
            assert 0 < float(loop) < 50, row  # measured, and a guard against nonsense


def test_the_litserve_peer_serves_batchserves_own_engine(tmp_path: Path) -> None:
    env = {**benchmark_environment(), "BATCHSERVE_MAX_BATCH_SIZE": "2"}
    port = free_port()
    command = [sys.executable, "-m", "loadtest.litserve_server", "--port", str(port),
               "--model", "mobilenet_v3_small", "--precision", "fp32"]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=Path(__file__).parents[2])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/health"), timeout_s=180)
        response = httpx.post(f"{url}/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    finally:
        process.send_signal(signal.SIGINT)  # LitServe's own way to stop, workers and all
        process.wait(timeout=60)
    body = response.json()
    assert response.status_code == httpx.codes.OK, body
    assert body["batch_size"] == 1
    settings = Settings(model="mobilenet_v3_small", weights="random", engine="openvino",
                        precision="fp32", cache_dir=tmp_path)  # fmt: skip
    engine = prepare(settings, resolve_plan(settings)).built.engine
    row = engine.run([image_to_crop(photo("cat.jpg"), engine.model.preprocessing, 10**8)])[0]
    assert [p["index"] for p in body["predictions"]] == [i for i, _ in row.top[:5]]
    assert [p["probability"] for p in body["predictions"]] == pytest.approx(
        [p for _, p in row.top[:5]], abs=1e-5
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == httpx.codes.OK
    except httpx.TransportError:
        return False


def test_the_naive_baseline_answers_like_batchserve() -> None:
    with TestClient(create_naive_app("mobilenet_v3_small")) as client:
        response = client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    body = response.json()
    assert response.status_code == httpx.codes.OK
    assert len(body["predictions"]) == 5
    assert body["batch_size"] == 1


#: A server and the worker it forked, both asleep: Ctrl-C to the group stops both. Each
#: leaves at once on SIGINT (os._exit: no exit handlers, such as a coverage tracer's, to
#: hold a forked child up), and says "up" once it runs Python code again after the fork:
#: a signal that lands in the child while CPython is still setting up after fork() is
#: dropped by design, so the test signals only when both are up.
FORKING = (
    "import os, signal, time; signal.signal(signal.SIGINT, lambda *_: os._exit(130)); "
    "os.fork(); print('up', flush=True); time.sleep(60)"
)
#: A server that ignores Ctrl-C, as LitServe's shutdown sometimes hangs.
DEAF = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (a zombie awaiting its reaper does not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def test_a_peer_in_its_own_group_is_stopped_with_every_process_it_forked() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", FORKING], start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    both = process.stdout.read(6)  # "up\n" twice, the two writes possibly interleaved
    assert both.count(b"up") == 2
    stop_server("forking", process, signal.SIGINT, grace_s=10)
    assert process.returncode == 130
    wait_until(lambda: not _group_alive(process.pid))


def test_a_peer_that_ignores_its_stop_signal_is_killed_after_the_grace_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    process = subprocess.Popen([sys.executable, "-c", DEAF], start_new_session=True)
    assert process.stdout is None
    wait_until(lambda: _ignores_sigint(process.pid))
    stop_server("deaf", process, signal.SIGINT, grace_s=0.5)
    assert process.returncode == -signal.SIGKILL
    assert "deaf did not stop on SIGINT within 0.5 s: killed" in capsys.readouterr().out


def _ignores_sigint(pid: int) -> bool:
    """Whether ``pid`` has set SIGINT to be ignored yet (SigIgn in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    ignored = int(mask.split()[1], 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


def test_servers_are_chosen_by_name_in_their_running_order() -> None:
    assert selected_servers("all") == list(SERVER_CHOICES.values())
    assert selected_servers("int8,naive") == ["naive FastAPI (eager fp32, no batching)",
                                              "batchserve int8"]  # fmt: skip
    with pytest.raises(SystemExit, match=r"unknown --servers \['fast'\]"):
        selected_servers("naive,fast")
