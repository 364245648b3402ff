"""Settings: every ``BATCHSERVE_*`` environment variable (also read from ``.env``), validated."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Final, Literal

from dotenv import dotenv_values
from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX: Final = "BATCHSERVE_"
#: 1 Gpx decodes to 3 GB of RGB: beyond that no single image can be served sensibly.
MAX_IMAGE_PIXELS_CEILING: Final = 1_000_000_000
#: An API key shorter than this is refused: it could be guessed.
MIN_API_KEY_LENGTH: Final = 16
#: ``BATCHSERVE_`` variables that are not settings but are expected: docker-compose.yml's
#: image tag, and the key that batchserve's own client (``batchserve predict``) sends.
KNOWN_OTHER_VARIABLES: Final = frozenset({"BATCHSERVE_IMAGE_TAG", "BATCHSERVE_API_KEY"})

#: The largest ``top_k`` a request may ask for.
MAX_TOP_K: Final = 20
#: A served model's name: safe in URLs, file names and metric labels.
MODEL_NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: The settings a model repository's ``config.toml`` may set for its model (lower case).
PER_MODEL_KEYS: Final = (
    "model", "weights", "labels", "resize_size", "crop_size", "mean", "std", "interpolation",
    "output", "device", "engine", "precision", "compile", "calibration_dir", "held_out_dir",
    "int8_min_agreement", "int8_fp32_ops", "max_batch_size", "max_batch_wait_ms",
    "max_queue_size", "workers", "threads_per_worker", "cpu_streams", "weight",
)  # fmt: skip

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
EngineName = Literal["auto", "torch", "openvino"]
CompileMode = Literal["auto", "on", "off"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]
OutputKind = Literal["logits", "probabilities"]
CpuStreams = Literal["auto", "latency", "throughput", "by-load"]
ModelControl = Literal["none", "explicit", "poll"]
Triple = Annotated[tuple[float, float, float] | None, NoDecode]


class Settings(BaseSettings):
    """The server's configuration; see docs/configuration.md for each value.

    Each field is ``BATCHSERVE_<NAME>`` in the environment or ``.env`` and
    ``--<name>`` (kebab-case) on ``batchserve serve``; the flag wins over the
    environment, which wins over ``.env``. A field's docstring is its ``--help``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        # An empty value means the default (BATCHSERVE_LABELS= in .env.example), never "".
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    model: str = "resnet50"
    """A torchvision model name (resnet50, ...) or a model file (.ts, .pt, .pt2, .onnx, .xml)."""
    weights: str = "DEFAULT"
    """DEFAULT, a registry weights name, a state_dict file, or random."""
    model_name: str = ""
    """The served model's name (default: the torchvision name or the file's stem)."""
    labels: Path | None = None
    """A labels file: one label per line, or a JSON list (default: ImageNet's or class_<i>)."""
    resize_size: Annotated[int, Field(ge=1, le=8192)] | None = None
    """Resize the shorter side to this (default: the weights' own, 256 for model files)."""
    crop_size: Annotated[int, Field(ge=1, le=8192)] | None = None
    """Center crop to this square, the model's input (default: the weights', 224 for files)."""
    mean: Triple = None
    """Per-channel mean, e.g. 0.485,0.456,0.406 (default: the weights', ImageNet's for files)."""
    std: Triple = None
    """Per-channel standard deviation (default: the weights', ImageNet's for files)."""
    interpolation: Interpolation | None = None
    """Resize filter: nearest, bilinear or bicubic (default: the weights', bilinear for files)."""
    output: OutputKind = "logits"
    """What the model outputs: logits (softmax applied) or probabilities (used as they are)."""
    model_repository: Path | None = None
    """A folder with one sub-folder per model (Triton's layout): serves them all."""
    model_dir: Path | None = None
    """A mounted model folder (KServe's /mnt/models): a repository, one model, or one file."""
    default_model: str = ""
    """The model POST /predict serves (default: the only model)."""
    model_control: ModelControl = "none"
    """Models at run time: none (fixed at startup), explicit (load and unload on request),
    poll (the repository re-scanned every BATCHSERVE_POLL_INTERVAL_S)."""
    load_models: Annotated[tuple[str, ...], NoDecode] = ()
    """explicit: the models loaded at startup, comma-separated; empty: every model."""
    poll_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 5.0
    """poll: seconds between scans of the repository."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    engine: EngineName = "auto"
    """auto (OpenVINO on the CPU when installed, else torch), torch or openvino."""
    precision: Precision = "auto"
    """auto (bf16 where the hardware has it, else fp32), fp32, bf16, fp16 (CUDA), int8 (CPU)."""
    calibration_dir: Path | None = None
    """int8: a folder of representative images (default: photos shipped with batchserve)."""
    held_out_dir: Path | None = None
    """int8: at least 20 other images int8 is checked on (default: photos shipped with it)."""
    int8_min_agreement: Annotated[float, Field(ge=0, le=1)] = 0.8
    """int8: least top-1 agreement with fp32 on held-out photos; below it the server stops."""
    int8_fp32_ops: Annotated[tuple[str, ...], NoDecode] = ()
    """int8: operation types (e.g. GroupConvolution) or names NNCF leaves in fp32."""
    compile: CompileMode = "auto"
    """torch.compile the model: auto, on or off."""
    cache_dir: Path = Path("~/.cache/batchserve")
    """Where compiled kernels and int8 models are cached between restarts."""
    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    """Most images in one forward pass."""
    max_batch_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 5.0
    """Longest wait for a batch to fill, from its first item."""
    max_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 128
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """The model's share of compute while several models are busy (relative to the others')."""
    """Images waiting before new requests get 503 overloaded."""
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    """Concurrent inference workers (auto: 1 on CPU, one per core with throughput or by-load
    streams, 2 on CUDA)."""
    threads_per_worker: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    """Compute threads per inference worker (auto: usable cores / workers on CPU)."""
    cpu_streams: CpuStreams = "auto"
    """OpenVINO on the CPU: one stream of every core (latency), one per core (throughput),
    or both, chosen per batch by the queue (by-load); auto: by-load on CPUs with AMX, else
    latency."""
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """A request's deadline, from arrival; queued past it, it is not computed."""
    max_upload_mb: Annotated[float, Field(gt=0, le=1024)] = 10.0
    """Largest image file in MiB (413 above)."""
    max_files: Annotated[int, Field(ge=1, le=1024)] = 16
    """Most images in one /predict/batch request (422 too_many_files above)."""
    max_request_mb: Annotated[float, Field(gt=0, le=4096)] = 64.0
    """Largest /predict/batch body in MiB, all files together (413 above)."""
    max_image_pixels: Annotated[int, Field(ge=1, le=MAX_IMAGE_PIXELS_CEILING)] = 50_000_000
    """Most pixels an image may declare (decompression bombs); 422 above."""
    preprocess_threads: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    """Image-decoding threads (auto: one per usable core: affinity mask and cgroup quota)."""
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """The whole upload must arrive within this many seconds (408 otherwise)."""
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    """Longest drain of queued and running work after SIGTERM or Ctrl-C."""
    rate_limit: str = ""
    """Per-client (per-key with API keys) limit, e.g. 100/minute; empty: none."""
    trusted_proxies: str = ""
    """Proxies (addresses or CIDRs) whose X-Forwarded-For is believed; empty: none."""
    api_keys: SecretStr = SecretStr("")
    """Comma-separated API keys required on every endpoint but the probes, /docs and /metrics."""
    admin_keys: SecretStr = SecretStr("")
    """Comma-separated keys the model-control endpoints (/v2/repository/...) require."""
    protect_metrics: bool = False
    """Require an API key on /metrics too."""
    cors_origins: str = ""
    """Comma-separated browser origins allowed to call the API (CORS), or *; empty: none."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 for all interfaces)."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    """TCP port to listen on."""
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 8001
    """TCP port of the Open Inference Protocol over gRPC (as Triton's); 0 turns gRPC off."""
    tracing: bool = False
    """OpenTelemetry spans (the tracing extra), sent where the OTEL_* variables say; also on
    when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set."""
    log_level: LogLevel = "info"
    """debug, info, warning, error or critical."""
    log_format: LogFormat = "text"
    """text, or json (one object per line)."""

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        name = value.strip()
        if not name:
            raise ValueError("must name a torchvision classification model, e.g. resnet50")
        # A file path keeps its case; a torchvision name is matched in lower case.
        return name if is_model_path(name) else name.lower()

    @field_validator("model_name", "default_model")
    @classmethod
    def _served_name(cls, value: str) -> str:
        name = value.strip()
        if name and not MODEL_NAME_PATTERN.match(name):
            raise ValueError(
                "must be 1-64 characters: letters, digits, '_', '.' or '-', starting with a "
                "letter or digit"
            )
        return name

    @field_validator("int8_fp32_ops", "load_models", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """``GroupConvolution,MatMul`` or a list (config.toml)."""
        return _split(value) if isinstance(value, str) else value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _triple(cls, value: object) -> object:
        """``0.5,0.5,0.5`` or a JSON list ``[0.5, 0.5, 0.5]``."""
        if isinstance(value, str):
            return value.strip().strip("[]").replace(" ", "").split(",")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if value is not None and min(value) <= 0:
            raise ValueError("every standard deviation must be > 0")
        return value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        name = value.strip().lower()
        kind, _, index = name.partition(":")
        bad_index = bool(index) and not (kind == "cuda" and index.isascii() and index.isdigit())
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

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _api_keys(cls, value: SecretStr) -> SecretStr:
        for key in _split(value.get_secret_value()):
            if len(key) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"each key must have at least {MIN_API_KEY_LENGTH} characters (one has "
                    f"{len(key)}); make one with: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'"
                )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _split(value):
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com or *")
        return value.strip()

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The configured API keys; empty when the API is open."""
        return tuple(_split(self.api_keys.get_secret_value()))

    @property
    def admin_key_list(self) -> tuple[str, ...]:
        """The keys of the model-control endpoints; empty when none are configured."""
        return tuple(_split(self.admin_keys.get_secret_value()))

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """Origins allowed by CORS; empty when CORS is off."""
        return tuple(_split(self.cors_origins))

    @field_validator(
        "cache_dir", "calibration_dir", "held_out_dir", "labels", "model_repository", "model_dir"
    )
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator(
        "log_level",
        "log_format",
        "precision",
        "compile",
        "engine",
        "interpolation",
        "output",
        mode="before",
    )
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes (``max_upload_mb`` MiB)."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        """The whole-request limit of /predict/batch in bytes (``max_request_mb`` MiB)."""
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_batch_wait_s(self) -> float:
        """The batching window in seconds."""
        return self.max_batch_wait_ms / 1000.0


#: What each model file extension holds; any other path is refused at startup.
FILE_SOURCES: Final = {
    ".ts": "torchscript",
    ".pt": "torchscript",
    ".pt2": "exported",
    ".onnx": "onnx",
    # OpenVINO's own IR: model.xml, with its weights in model.bin beside it.
    ".xml": "openvino",
}
MODEL_FILE_SUFFIXES: Final = tuple(FILE_SOURCES)
#: The file kinds OpenVINO reads as they are, which only the OpenVINO engine runs, by name.
OPENVINO_FILE_SOURCES: Final = {"onnx": "ONNX", "openvino": "OpenVINO IR"}


def is_model_path(value: str) -> bool:
    """A model file rather than a torchvision name (names have no dots or slashes)."""
    return any(mark in value for mark in ("/", "\\", "."))


def model_source(model: str) -> str:
    """``torchvision`` for a name, else the file's kind (``unknown`` for other extensions)."""
    if not is_model_path(model):
        return "torchvision"
    return FILE_SOURCES.get(Path(model).suffix.lower(), "unknown")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class SettingsError(Exception):
    """The environment holds invalid settings; the message lists each one."""


def with_model_settings(
    settings: Settings, overrides: dict[str, object], where: str, **fixed: object
) -> Settings:
    """``settings`` with one model's own values (a repository's ``config.toml``), validated.

    Only :data:`PER_MODEL_KEYS` may be in ``overrides``; ``fixed`` values are set
    by batchserve itself. ``where`` names the file in errors.
    """
    unknown = sorted(set(overrides) - set(PER_MODEL_KEYS))
    if unknown:
        raise SettingsError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a model may set: "
            + ", ".join(PER_MODEL_KEYS)
        )
    try:
        # model_validate reads no environment: the process-wide values come from ``settings``.
        return Settings.model_validate({**settings.model_dump(), **overrides, **fixed})
    except ValidationError as exc:
        raise SettingsError(f"{where}: " + describe_errors(exc)) from exc


def load_settings(cli: PydanticBaseSettingsSource | None = None, **fixed: object) -> Settings:
    """Read settings from the command line (if given), the environment and ``.env``.

    ``fixed`` values win over every source (a subcommand that implies a setting).
    Raises :class:`SettingsError` with one clear message naming every bad value.
    """
    try:
        return Settings(_cli_settings_source=cli, **fixed)  # type: ignore[call-arg, arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from exc


def describe_errors(exc: ValidationError) -> str:
    """Turn pydantic's errors into lines naming the variable (and flag) and the bad value."""
    problems: dict[str, list[str]] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        value = "'**********'" if field in ("api_keys", "admin_keys") else repr(error.get("input"))
        flag = "--" + field.replace("_", "-")
        key = f"{ENV_PREFIX}{field.upper()}={value} ({flag})"
        problems.setdefault(key, []).append(error["msg"].removeprefix("Value error, "))
    lines = [f"  {key}: {' or '.join(messages)}" for key, messages in problems.items()]
    return "\n".join(["invalid configuration:", *lines])


def unknown_variables(names: Iterable[str]) -> list[str]:
    """Warnings for ``BATCHSERVE_`` names that are no setting (typos), with the likely one."""
    known = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    warnings = []
    for name in sorted(set(names)):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in KNOWN_OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a batchserve setting and is ignored{hint}")
    return warnings


def variable_names(env_file: Path = Path(".env")) -> list[str]:
    """Every variable name set in the environment or in ``env_file``."""
    names = list(os.environ)
    if env_file.is_file():
        names.extend(dotenv_values(env_file))
    return names
