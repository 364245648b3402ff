"""Settings from the environment and .env, validated with the bad variable named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.config import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BATCHSERVE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_suit_a_small_cpu_machine() -> None:
    settings = load_settings()
    assert (settings.model, settings.weights, settings.device) == ("resnet50", "DEFAULT", "auto")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.workers == "auto"
    assert settings.request_timeout_s == 30
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert settings.max_batch_wait_s == pytest.approx(0.005)


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSERVE_MODEL", "MobileNet_V2")
    monkeypatch.setenv("BATCHSERVE_WORKERS", "3")
    monkeypatch.setenv("BATCHSERVE_DEVICE", "CUDA:1")
    monkeypatch.setenv("BATCHSERVE_LOG_FORMAT", "JSON")
    monkeypatch.setenv("BATCHSERVE_PREPROCESS_THREADS", "5")
    settings = load_settings()
    assert (settings.model, settings.workers, settings.device) == ("mobilenet_v2", 3, "cuda:1")
    assert settings.log_format == "json"
    assert settings.resolved_preprocess_threads() == 5


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BATCHSERVE_MAX_BATCH_SIZE=12\nBATCHSERVE_PORT=9000\n")
    settings = load_settings()
    assert (settings.max_batch_size, settings.port) == (12, 9000)


def test_bad_values_are_reported_with_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHSERVE_MAX_BATCH_SIZE", "0")
    monkeypatch.setenv("BATCHSERVE_DEVICE", "gpu")
    monkeypatch.setenv("BATCHSERVE_PRECISION", "fp8")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid configuration:")
    assert "BATCHSERVE_MAX_BATCH_SIZE='0': Input should be greater than or equal to 1" in message
    assert "BATCHSERVE_DEVICE='gpu': must be auto, cpu, cuda or cuda:N, got 'gpu'" in message
    assert "BATCHSERVE_PRECISION='fp8'" in message


def test_an_empty_model_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSERVE_MODEL", " ")
    with pytest.raises(SettingsError, match="must name a torchvision classification model"):
        load_settings()


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_dotenv_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for field in Settings.model_fields:
        assert f"BATCHSERVE_{field.upper()}=" in example, field


def test_configuration_docs_describe_every_setting() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for field in Settings.model_fields:
        assert f"`BATCHSERVE_{field.upper()}`" in docs, field


def test_rate_limit_and_trusted_proxies_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSERVE_RATE_LIMIT", "lots")
    monkeypatch.setenv("BATCHSERVE_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "BATCHSERVE_RATE_LIMIT='lots': must be like 100/minute" in str(caught.value)
    assert "'proxy.local' is not an IP address or CIDR network" in str(caught.value)
    monkeypatch.setenv("BATCHSERVE_RATE_LIMIT", "10/second;500/hour")
    monkeypatch.setenv("BATCHSERVE_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    settings = load_settings()
    assert [str(n) for n in settings.trusted_networks] == ["10.0.0.0/8", "::1/128"]
