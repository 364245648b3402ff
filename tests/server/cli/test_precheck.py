"""The settings' own mistakes, found before torch loads: the same message, the same status."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from loadtest.process import free_port
from server.cli import precheck
from server.cli.precheck import check_settings, refusal
from server.cli.serve import EXIT_CONFIG
from server.cli.startup import exit_status
from server.models.errors import ModelLoadError
from tests.conftest import make_settings


@pytest.fixture(autouse=True)
def logging_set_up(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The calls to configure logging (left to pytest here, whose capture it would replace)."""
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(precheck, "configure_logging", lambda *args: calls.append(args))
    return calls


def _repository(root: Path, folders: dict[str, list[str]]) -> Path:
    for name, files in folders.items():
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file).write_bytes(b"x")
    return root


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"model": "model.h5"}, "unknown model file type '.h5'"),
        ({"model": "absent.pt2"}, "absent.pt2: no such file"),
        ({"model": "my net!.onnx"}, "is not a valid model name"),
        ({"model_repository": "nowhere"}, "nowhere: no such folder"),
        ({"model_repository": {"twice": ["model.ts", "model.onnx"]}}, "several model files"),
        ({"model_repository": {"x": ["model.ts"], "y": ["model.ts"]}},
         "several models are served (x, y)"),
        ({"model_repository": {"x": ["model.ts"]}, "default_model": "z"}, "z is not served"),
    ],
)  # fmt: skip
def test_each_mistake_is_refused_with_the_loading_steps_own_message_and_status(
    tmp_path: Path, settings: dict[str, object], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    values = dict(settings)
    if isinstance(values.get("model"), str):
        values["model"] = str(tmp_path / str(values["model"]))
    repository = values.get("model_repository")
    if isinstance(repository, dict):
        values["model_repository"] = _repository(tmp_path / "models", repository)
    elif repository is not None:
        values["model_repository"] = tmp_path / str(repository)
    chosen = make_settings(**values)
    with pytest.raises(
        ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as err:
        check_settings(chosen)
    with caplog.at_level(logging.ERROR, logger="batchserve"):
        assert refusal(chosen) == exit_status(err.value)
    assert f"cannot start: {err.value}" in caplog.text


def test_a_served_model_file_or_repository_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, logging_set_up: list[tuple[str, str]]
) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not read here")
    repository = _repository(tmp_path / "models", {"a": ["model.ts"], "b": ["model.pt2"]})
    with caplog.at_level(logging.ERROR, logger="batchserve"):
        assert refusal(make_settings(model=str(tmp_path / "model.onnx"), port=0)) is None
        served = make_settings(model_repository=repository, default_model="b", port=0)
        assert refusal(served) is None
        assert refusal(make_settings(model="resnet50", port=0)) is None  # a name: checked later
    assert caplog.text == ""
    assert logging_set_up == [("info", "text")] * 3  # before anything is checked


@pytest.mark.parametrize(
    ("setting", "variable"), [("port", "BATCHSERVE_PORT"), ("grpc_port", "BATCHSERVE_GRPC_PORT")]
)
def test_a_port_another_process_listens_on_is_a_configuration_error_before_any_model_loads(
    setting: str, variable: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        others = {"port": free_port(), "grpc_port": free_port(), setting: taken}
        with caplog.at_level(logging.ERROR, logger="batchserve"):
            assert refusal(make_settings(host="127.0.0.1", **others)) == EXIT_CONFIG
    assert f"cannot listen on 127.0.0.1:{taken} ({variable})" in caplog.text
    assert "in use" in caplog.text  # the system's own reason
    assert caplog.text.count("cannot start") == 1  # only the taken one


def test_free_ports_and_port_zero_pass_and_a_host_that_does_not_resolve_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="batchserve"):
        assert refusal(make_settings(port=free_port(), grpc_port=free_port())) is None
        assert refusal(make_settings(port=0, grpc_port=0)) is None
        assert caplog.text == ""
        assert refusal(make_settings(host="no-such-host.invalid", port=free_port())) == EXIT_CONFIG
    assert "cannot listen on no-such-host.invalid" in caplog.text


def test_tracing_that_cannot_run_is_a_configuration_error_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with caplog.at_level(logging.ERROR, logger="batchserve"):
        assert refusal(make_settings(tracing=True, port=0)) == EXIT_CONFIG
        assert refusal(make_settings(port=0)) is None  # off: the variable is not read
    assert "cannot start: OTEL_TRACES_EXPORTER='zipkin'" in caplog.text


def test_an_openvino_ir_without_its_weights_file_is_refused_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "model.xml").write_text("<net/>")
    with caplog.at_level(logging.ERROR, logger="batchserve"):
        assert refusal(make_settings(model=str(tmp_path / "model.xml"), port=0)) == EXIT_CONFIG
    assert "an OpenVINO IR needs its weights beside it, model.bin" in caplog.text
