"""The ``batchserve`` command: bad setup stops at once; a real server drains on SIGTERM."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from torchvision.models import get_model, get_model_weights

from loadtest.process import free_port
from server.cli.main import build_parser, with_default_command
from server.config import Settings, SettingsError, load_settings
from server.web.app import create_app
from tests.conftest import (
    SUITE_CACHE,
    make_settings,
    photo,
    start_server,
    wait_process_ready,
    wait_until,
)

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

BATCHSERVE = str(Path(sys.executable).with_name("batchserve"))


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSERVE_")}
    env.update({f"BATCHSERVE_{k.upper()}": v for k, v in settings.items()})
    env["TORCH_HOME"] = str(tmp_path / "torch-home")
    env.setdefault("BATCHSERVE_CACHE_DIR", str(SUITE_CACHE))
    env.setdefault("BATCHSERVE_PRECISION", "fp32")
    env.setdefault("BATCHSERVE_COMPILE", "off")
    # Free ports: the start checks both before loading anything, and tests run side by side.
    env.setdefault("BATCHSERVE_PORT", str(free_port()))
    env.setdefault("BATCHSERVE_GRPC_PORT", str(free_port()))
    return env


def _refused_start(command: list[str], tmp_path: Path, status: int = 2, **settings: str) -> str:
    """Run a start that must fail before serving with ``status``; return its stderr.

    2: the configuration is wrong; 3: the model it names fails to load.
    """
    result = subprocess.run(
        command,
        env=_environment(tmp_path, **settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == status, result.stderr[-2000:]
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


def _info_and_answer(settings: Settings) -> tuple[dict[str, Any], httpx.Response]:
    """Start a server with ``settings``: its /info, and its answer for cat.jpg."""
    running = start_server(create_app(settings))
    try:
        with running.client() as client:
            info = client.get("/info").json()
            answer = client.post("/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    finally:
        running.stop()
    return info, answer


def test_mobilenet_v2_serves_with_labels_and_preprocessing_from_its_weights(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), path)
    info, response = _info_and_answer(make_settings(model="mobilenet_v2", weights=str(path)))
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
    message: str | None = None


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
            message = response.json().get("error", {}).get("message")
            outcomes.append(_Outcome(request_id, response.status_code, None, message))
        except httpx.TransportError as exc:
            outcomes.append(_Outcome(request_id, None, type(exc).__name__))
        if stop.is_set() or outcomes[-1].error == "ConnectError":
            return


@dataclass
class _Served:
    status: int
    arrived: float  # epoch seconds, from the access log: end time minus duration


def _json_logs(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _epoch(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def _access_log(records: list[dict[str, object]]) -> dict[str, _Served]:
    """request id -> status and arrival time, from the server's JSON access log lines."""
    served = {}
    for record in records:
        if record.get("path") == "/predict":
            arrived = _epoch(record) - float(str(record["duration_ms"])) / 1000
            served[str(record["request_id"])] = _Served(int(str(record["status"])), arrived)
    return served


def _readiness_off_at(records: list[dict[str, object]]) -> float:
    for record in records:
        if "not ready; finishing the requests in flight" in str(record["message"]):
            return _epoch(record)
    pytest.fail("the server never logged that readiness went off")


def _get_ready(conn: socket.socket) -> bytes:
    conn.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"}" not in answer and (chunk := conn.recv(65536)):
        answer += chunk
    return answer


def _ready_after_signal(conn: socket.socket) -> bytes:
    """/ready on a kept-alive connection after SIGTERM; b"" if uvicorn closed it first.

    uvicorn closes idle keep-alive connections at its next tick after the
    signal; a /ready sent later than that (a loaded CI machine) meets a closed
    socket, which refuses new work just as well as a 503 does.
    """
    try:
        return _get_ready(conn)
    except (ConnectionResetError, BrokenPipeError):
        return b""


#: A request's admission and its arrival time are a few bytecodes apart; under load, with the
#: GIL shared with decode threads, the signal can land between them.
_ADMISSION_SLACK_S = 0.05


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
        wait_process_ready(url, process)
        probe = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert _get_ready(probe).startswith(b"HTTP/1.1 200 ")
        with ThreadPoolExecutor(6) as pool, probe:
            clients = [pool.submit(_keep_posting, url, i, stop, outcomes) for i in range(6)]
            deadline = time.monotonic() + 120
            # A steady stream first, then the signal while most clients are mid-request.
            while len(outcomes) < 30 or _inflight(url) < 5:
                assert time.monotonic() < deadline
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            # The same kept-alive connection, right after the signal: readiness is off.
            after_signal = _ready_after_signal(probe)
            _, stderr = process.communicate(timeout=60)
            exited = time.monotonic()
            stop.set()
            for client in clients:
                client.result(timeout=120)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert exited - signalled < 20 + 5
    assert "Traceback" not in stderr
    if after_signal:  # answered before uvicorn closed the idle connection: refused
        assert after_signal.startswith(b"HTTP/1.1 503 "), after_signal[:300]
        assert b'"code":"not_ready"' in after_signal
    records = _json_logs(stderr)
    off_at = _readiness_off_at(records)
    served = _access_log(records)
    for outcome in outcomes:
        if outcome.request_id not in served:
            # Never reached the app: refused at connect time, or closed unread by uvicorn.
            assert outcome.status is None, outcome
            continue
        answer = served[outcome.request_id]
        # The client got exactly what the server answered.
        assert outcome.status == answer.status, outcome
        if answer.arrived < off_at - _ADMISSION_SLACK_S:
            assert answer.status == 200, (outcome, off_at - answer.arrived)
        elif answer.arrived > off_at + _ADMISSION_SLACK_S:
            assert answer.status == 503, (outcome, answer.arrived - off_at)
        if answer.status != 200:
            # Refused at admission because readiness was off, never dropped once accepted.
            assert (answer.status, outcome.message) == (503, "the server is shutting down")
    # Arrivals within the slack of the switch may have been refused at admission (checked
    # above); every one clearly before it was accepted and must have been answered.
    accepted_before = [a for a in served.values() if a.arrived < off_at - _ADMISSION_SLACK_S]
    drained = [a for a in accepted_before if a.status == 200]
    assert len(drained) == len(accepted_before) > 30
    assert "drained and stopped" in stderr


def test_help_and_version_answer_without_loading_anything(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    for arguments, expected in [
        (["--help"], "serve the model over HTTP"),
        (["serve", "--help"], "--max-batch-size"),
        (["--version"], "batchserve 0."),
    ]:
        result = subprocess.run(
            [BATCHSERVE, *arguments], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
    assert not (tmp_path / "torch-home").exists()


def test_every_setting_has_a_kebab_case_option() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for field in Settings.model_fields:
        assert f"--{field.replace('_', '-')}" in help_text, field


def _settings_from(argv: list[str]) -> Settings:
    args = build_parser().parse_args(with_default_command(argv))
    return load_settings(args.settings_source(parsed_args=args))


def test_options_override_the_environment_which_overrides_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("BATCHSERVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "BATCHSERVE_PORT=7001\nBATCHSERVE_MAX_BATCH_SIZE=3\nBATCHSERVE_LOG_LEVEL=debug\n"
    )
    monkeypatch.setenv("BATCHSERVE_PORT", "7002")
    monkeypatch.setenv("BATCHSERVE_MAX_BATCH_SIZE", "5")
    settings = _settings_from(["--max-batch-size", "7", "--protect-metrics"])
    assert (settings.max_batch_size, settings.port, settings.log_level) == (7, 7002, "debug")
    assert settings.protect_metrics is True
    assert _settings_from(["serve"]).max_batch_size == 5
    with pytest.raises(SettingsError, match=r"BATCHSERVE_PORT='http' \(--port\)"):
        _settings_from(["serve", "--port", "http"])


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [BATCHSERVE, "serve", "--max-bach-size", "4"], env=_environment(tmp_path), cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unrecognized arguments: --max-bach-size" in result.stderr


def test_a_mistyped_variable_is_a_startup_warning(tmp_path: Path) -> None:
    stderr = _refused_start(
        [BATCHSERVE], tmp_path, model=str(tmp_path / "absent.pt2"), max_bach_size="4",
        image_tag="latest",
    )  # fmt: skip
    assert "BATCHSERVE_MAX_BACH_SIZE is not a batchserve setting" in stderr
    assert "did you mean BATCHSERVE_MAX_BATCH_SIZE?" in stderr
    assert "IMAGE_TAG" not in stderr


class _SilentProxy:
    """An HTTPS proxy that accepts connections and never answers: a download that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self) -> None:
        self.listener.close()


def test_ctrl_c_during_the_weights_download_exits_cleanly(tmp_path: Path) -> None:
    proxy = _SilentProxy()
    env = _environment(tmp_path, model="resnet18", log_format="text")
    env.update(https_proxy=proxy.url, HTTPS_PROXY=proxy.url, no_proxy="", NO_PROXY="")
    process = subprocess.Popen(
        [BATCHSERVE], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "downloading" in line:
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        proxy.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT
    assert "batchserve: stopped by SIGINT" in stderr
    assert "Traceback" not in stderr
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


def test_ctrl_c_while_serving_drains_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _environment(tmp_path, model="mobilenet_v2", weights="random", port=str(port))
    process = subprocess.Popen(
        [BATCHSERVE], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_process_ready(url, process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "drained and stopped" in stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


def test_quantize_ahead_of_time_then_serve_int8_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = subprocess.run(
        [BATCHSERVE, "quantize", "--model", "mobilenet_v2", "--weights", "random",
         "--cache-dir", str(cache)],
        env=_environment(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["cache_entry"]).parent == cache / "int8"
    assert report["fidelity"]["photos"] == 22  # the shipped held-out photos
    assert report["fidelity"]["top1_low"] <= report["fidelity"]["top1_agreement"]
    settings = make_settings(
        model="mobilenet_v2", engine="openvino", precision="int8", cache_dir=cache
    )
    info, answer = _info_and_answer(settings)
    assert (info["engine"], info["precision"]) == ("openvino", "int8")
    assert info["int8_fidelity"] == report["fidelity"]
    assert info["plan"]["engine_version"] == info["versions"]["openvino"]
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"precision": "int8", "calibration_dir": "nowhere"}, "is not a directory"),
        ({"precision": "int8", "engine": "torch"}, "int8 runs on the OpenVINO engine"),
        (
            {"engine": "openvino", "compile": "on"},
            "compiles torchvision models on the torch engine",
        ),
    ],
)
def test_engine_problems_stop_the_start_with_what_to_do(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    if "calibration_dir" in settings:
        settings = {**settings, "calibration_dir": str(tmp_path / settings["calibration_dir"])}
    stderr = _refused_start(
        [BATCHSERVE], tmp_path, model="mobilenet_v2", weights="random", **settings
    )
    assert message in stderr


def _repository(tmp_path: Path, folders: dict[str, dict[str, bytes]]) -> Path:
    root = tmp_path / "models"
    for name, files in folders.items():
        (root / name).mkdir(parents=True)
        for file, content in files.items():
            (root / name / file).write_bytes(content)
    return root


def test_model_file_problems_stop_the_start_naming_the_file_or_setting(
    tmp_path: Path, tiny_files: dict[str, Path]
) -> None:
    """Each refused start: exit 2 (settings) or 3 (the model), no traceback, what is wrong named."""
    state_dict = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, state_dict)
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"\x08\x01garbage" * 64)
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\nthree\n")
    ts = tiny_files["ts"].read_bytes()
    twice = _repository(tmp_path / "a", {"twice": {"model.ts": ts, "model.pt": ts}})
    several = _repository(tmp_path / "b", {"x": {"model.ts": ts}, "y": {"model.ts": ts}})
    cases: list[tuple[dict[str, str], list[str], int]] = [
        ({"model": str(tiny_files["ts"]), "labels": str(labels)},
         [str(labels), "has 3 labels but the model outputs 12 classes"], 3),
        ({"model": str(tmp_path / "model.h5")}, ["model.h5", "unknown model file type"], 2),
        ({"model": str(tmp_path / "absent.pt2")}, ["absent.pt2", "no such file"], 2),
        ({"model": str(corrupt)}, [str(corrupt), "not a readable ONNX model"], 3),
        ({"model": str(state_dict)}, [str(state_dict), "is a state_dict, not TorchScript"], 3),
        ({"model_repository": str(twice)},
         ["model twice", "several model files (model.ts, model.pt)"], 2),
        ({"model_repository": str(several)},
         ["several models are served (x, y)", "BATCHSERVE_DEFAULT_MODEL"], 2),
        ({"model": "resnet5"}, ["unknown model 'resnet5'"], 2),
    ]  # fmt: skip
    (tmp_path / "model.h5").write_bytes(b"x")
    with ThreadPoolExecutor(2) as pool:
        errors = list(
            pool.map(lambda case: _refused_start([BATCHSERVE], tmp_path, case[2], **case[0]), cases)
        )
    for (settings, expected, _), stderr in zip(cases, errors, strict=True):
        for text in expected:
            assert text in stderr, (settings, stderr)


def test_a_model_that_fails_to_load_in_a_repository_is_named(
    tmp_path: Path, tiny_files: dict[str, Path]
) -> None:
    root = _repository(
        tmp_path,
        {"good": {"model.ts": tiny_files["ts"].read_bytes()}, "bad": {"model.pt2": b"junk"}},
    )
    stderr = _refused_start(
        [BATCHSERVE], tmp_path, 3, model_repository=str(root), default_model="good"
    )
    assert "model bad:" in stderr
    assert "model.pt2" in stderr


def test_quantize_a_repository_then_serve_every_model_int8_from_the_cache(
    tmp_path: Path, tiny_files: dict[str, Path]
) -> None:
    """Every model is quantized whatever its config says; the server finds each in the cache."""
    root = _repository(tmp_path, {"tiny": {"model.onnx": tiny_files["onnx"].read_bytes()}})
    # A random network agrees with itself poorly after quantization: the gate is not the point.
    (root / "tiny" / "config.toml").write_text('precision = "fp32"\nint8_min_agreement = 0.0\n')
    (root / "mobile").mkdir()
    (root / "mobile" / "config.toml").write_text('model = "mobilenet_v2"\nweights = "random"\n')
    cache = tmp_path / "cache"
    result = subprocess.run(
        [BATCHSERVE, "quantize", "--model-repository", str(root), "--cache-dir", str(cache)],
        env=_environment(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)["models"]
    assert set(reports) == {"mobile", "tiny"}
    (root / "tiny" / "config.toml").write_text('precision = "int8"\nint8_min_agreement = 0.0\n')
    settings = make_settings(
        model_repository=root, default_model="tiny", engine="openvino", precision="int8",
        cache_dir=cache,
    )  # fmt: skip
    running = start_server(create_app(settings))
    try:
        with running.client() as client:
            for name, report in reports.items():
                info = client.get(f"/models/{name}").json()
                assert (info["precision"], info["int8_fidelity"]) == ("int8", report["fidelity"])
    finally:
        running.stop()
    assert "quantized in" not in result.stdout  # the report alone on stdout


def test_predict_prints_a_table_or_json_from_a_running_server(
    tmp_path: Path, resnet_server
) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    cat = str(Path(__file__).parents[1] / "data" / "cat.jpg")
    command = [BATCHSERVE, "predict", cat, "--url", resnet_server.url, "--top-k", "2"]
    table = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == cat
    assert len(lines) == 3
    assert re.fullmatch(r"\s+\d+\.\d\d%  .+ \(\d+\)", lines[1])
    as_json = subprocess.run(
        [*command[:3], str(bad), *command[3:], "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert as_json.returncode == 1  # one image could not be classified
    first, second = json.loads(as_json.stdout)
    assert first["image"] == cat
    assert len(first["predictions"]) == 2
    assert second["code"] == "invalid_image"


def test_predict_says_why_when_there_is_no_server(tmp_path: Path) -> None:
    cat = str(Path(__file__).parents[1] / "data" / "cat.jpg")
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [BATCHSERVE, "predict", cat, "--url", url], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert url in result.stderr
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [BATCHSERVE, "predict", str(tmp_path / "nope.jpg")], capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


def test_sighup_scans_the_repository_once(tmp_path: Path, tiny_files: dict[str, Path]) -> None:
    root = tmp_path / "models"
    (root / "tiny" / "1").mkdir(parents=True)
    (root / "tiny" / "1" / "model.ts").write_bytes(tiny_files["ts"].read_bytes())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _environment(
        tmp_path, model_repository=str(root), model_control="explicit", port=str(port),
        poll_interval_s="0.2", admin_keys="admin-0123456789abcdef",
    )  # fmt: skip
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen([BATCHSERVE], env=env, cwd=tmp_path, stderr=log, text=True)
    try:
        wait_process_ready(url, process)
        (root / "tiny" / "2").mkdir()
        (root / "tiny" / "2" / "model.ts").write_bytes(tiny_files["ts"].read_bytes())
        time.sleep(0.6)  # the folder must be quiet for two poll intervals (file times)
        process.send_signal(signal.SIGHUP)
        headers = {"X-API-Key": "admin-0123456789abcdef"}

        def versions() -> list[str]:
            index = httpx.post(f"{url}/v2/repository/index", headers=headers).json()
            return [entry.get("version", "") for entry in index if entry["state"] == "READY"]

        wait_until(lambda: versions() == ["2"], timeout_s=120)  # the latest-1 policy
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    log.seek(0)
    assert "SIGHUP: scanning the model repository" in log.read()
