"""Settings: every ``BATCHSERVE_*`` environment variable (also read from ``.env``), validated."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["auto", "on", "off"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]


class Settings(BaseSettings):
    """The server's configuration; see docs/configuration.md for each value."""

    model_config = SettingsConfigDict(
        env_prefix="BATCHSERVE_", env_file=".env", extra="ignore", frozen=True
    )

    model: str = "resnet50"
    weights: str = "DEFAULT"
    device: str = "auto"
    precision: Precision = "auto"
    compile: CompileMode = "auto"
    cache_dir: Path = Path("~/.cache/batchserve")
    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    max_batch_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 5.0
    max_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    threads_per_worker: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_upload_mb: Annotated[float, Field(gt=0, le=1024)] = 10.0
    max_image_pixels: Annotated[int, Field(ge=1)] = 50_000_000
    preprocess_threads: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    rate_limit: str = ""
    trusted_proxies: str = ""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        name = value.strip().lower()
        if not name:
            raise ValueError("must name a torchvision classification model, e.g. resnet50")
        return name

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        name = value.strip().lower()
        kind, _, index = name.partition(":")
        bad_index = bool(index) and not (kind == "cuda" and index.isdigit())
        if kind not in {"auto", "cpu", "cuda"} or bad_index:
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return name

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    "must be like 100/minute or 10/second;500/hour (empty: no limit)"
                ) from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for part in _split(value):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
        return value.strip()

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        """The proxies whose X-Forwarded-For is believed (comma-separated addresses/CIDRs)."""
        return tuple(ipaddress.ip_network(p, strict=False) for p in _split(self.trusted_proxies))

    @field_validator("cache_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", "log_format", "precision", "compile", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes (``max_upload_mb`` MiB)."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_batch_wait_s(self) -> float:
        """The batching window in seconds."""
        return self.max_batch_wait_ms / 1000.0

    def resolved_preprocess_threads(self) -> int:
        """Decode threads: one per core unless set."""
        if self.preprocess_threads == "auto":
            return os.cpu_count() or 1
        return self.preprocess_threads


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class SettingsError(Exception):
    """The environment holds invalid settings; the message lists each one."""


def load_settings() -> Settings:
    """Read settings from the environment and ``.env``, with one clear message on error."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from exc


def describe_errors(exc: ValidationError) -> str:
    """Turn pydantic's errors into lines naming the environment variable and the bad value."""
    problems: dict[str, list[str]] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        key = f"BATCHSERVE_{field.upper()}={error.get('input')!r}"
        problems.setdefault(key, []).append(error["msg"].removeprefix("Value error, "))
    lines = [f"  {key}: {' or '.join(messages)}" for key, messages in problems.items()]
    return "\n".join(["invalid configuration:", *lines])
