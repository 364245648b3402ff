"""Settings from the environment and .env, validated with the bad variable named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.config import (
    MAX_IMAGE_PIXELS_CEILING,
    Settings,
    SettingsError,
    load_settings,
    unknown_variables,
    variable_names,
)


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
    assert settings.preprocess_threads == 5


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
    assert (
        "BATCHSERVE_MAX_BATCH_SIZE='0' (--max-batch-size): Input should be greater than or equal"
        in message
    )
    assert "BATCHSERVE_DEVICE='gpu' (--device): must be auto, cpu, cuda or cuda:N" in message
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
    assert "BATCHSERVE_RATE_LIMIT='lots' (--rate-limit): must be like 100/minute" in str(
        caught.value
    )
    assert "'proxy.local' is not an IP address or CIDR network" in str(caught.value)
    monkeypatch.setenv("BATCHSERVE_RATE_LIMIT", "10/second;500/hour")
    monkeypatch.setenv("BATCHSERVE_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    settings = load_settings()
    assert settings.trusted_proxies == "10.0.0.0/8, ::1"


def test_api_keys_must_be_long_and_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSERVE_API_KEYS", "a-long-enough-secret-key, tiny-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "BATCHSERVE_API_KEYS='**********'" in str(caught.value)
    assert "at least 16 characters (one has 11)" in str(caught.value)
    assert "tiny-secret" not in str(caught.value)
    monkeypatch.setenv("BATCHSERVE_API_KEYS", "a-long-enough-secret-key, another-secret-key-0")
    settings = load_settings()
    assert settings.api_key_list == ("a-long-enough-secret-key", "another-secret-key-0")
    assert "a-long-enough" not in repr(settings)


def test_cors_origins_must_be_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSERVE_CORS_ORIGINS", "https://app.example.com, example.org")
    with pytest.raises(SettingsError, match=r"'example\.org' is not an origin"):
        load_settings()
    monkeypatch.setenv("BATCHSERVE_CORS_ORIGINS", "https://app.example.com, *")
    assert load_settings().cors_origin_list == ("https://app.example.com", "*")


def test_a_mistyped_variable_is_named_with_the_setting_it_resembles(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BATCHSERVE_MAX_BACH_SIZE=4\n")
    names = [*variable_names(tmp_path / ".env"), "BATCHSERVE_WORKRES", "BATCHSERVE_PORT"]
    warnings = unknown_variables([*names, "BATCHSERVE_IMAGE_TAG", "OTHER_THING"])
    assert warnings == [
        "BATCHSERVE_MAX_BACH_SIZE is not a batchserve setting and is ignored; "
        "did you mean BATCHSERVE_MAX_BATCH_SIZE?",
        "BATCHSERVE_WORKRES is not a batchserve setting and is ignored; "
        "did you mean BATCHSERVE_WORKERS?",
    ]


def test_the_pixel_limit_has_a_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSERVE_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS_CEILING + 1))
    with pytest.raises(SettingsError, match="less than or equal to 1000000000"):
        load_settings()
    monkeypatch.setenv("BATCHSERVE_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS_CEILING))
    assert load_settings().max_image_pixels == MAX_IMAGE_PIXELS_CEILING


def test_the_clients_own_key_variable_is_no_typo_of_the_servers() -> None:
    """``batchserve predict`` reads BATCHSERVE_API_KEY; the server must not warn about it."""
    assert unknown_variables(["BATCHSERVE_API_KEY"]) == []
    assert unknown_variables(["BATCHSERVE_API_KEYZ"]) != []
