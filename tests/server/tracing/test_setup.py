"""Where spans go, as the standard OTEL_* variables say."""

from __future__ import annotations

import sys

import pytest

from server.tracing import Tracing, TracingUnavailableError, check
from server.tracing.setup import EXPORTER_MODULES, exporter_names, otlp_protocol
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("environ", "described"),
    [
        ({}, "otlp http/protobuf to http://localhost:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
         "otlp http/protobuf to http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp grpc to http://localhost:4317"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
          "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://tempo:4318/v1/traces"},
         "otlp http/protobuf to https://tempo:4318/v1/traces"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"},
         "otlp http/protobuf to http://localhost:4318/v1/traces, console"),
    ],
)  # fmt: skip
def test_the_exporters_follow_the_otel_variables(
    environ: dict[str, str], described: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environ.items():  # the exporters read the process's own environment
        monkeypatch.setenv(name, value)
    tracing = Tracing.from_settings(make_settings(tracing=True), environ)
    try:
        assert tracing.describe().startswith(f"{described}; sampler LinkedSampler{{")
    finally:
        tracing.shutdown()


def test_the_sampler_is_the_one_otel_traces_sampler_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    tracing = Tracing.from_settings(
        make_settings(tracing=True), {"OTEL_TRACES_EXPORTER": "console"}
    )
    try:
        assert "TraceIdRatioBased{0.25}" in tracing.describe()
    finally:
        tracing.shutdown()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin': batchserve exports"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
         "OTEL_EXPORTER_OTLP_PROTOCOL='http/json': batchserve sends OTLP as http/protobuf or grpc"),
    ],
)  # fmt: skip
def test_a_value_batchserve_cannot_export_to_stops_the_start(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(TracingUnavailableError, match=message.replace("(", r"\(")):
        check(make_settings(tracing=True), environ)


def test_unset_variables_mean_otlp_over_http_protobuf() -> None:
    assert exporter_names({}) == ["otlp"]
    assert otlp_protocol({}) == "http/protobuf"
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}) == "grpc"


def test_a_transport_whose_exporter_is_not_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, EXPORTER_MODULES["grpc"], None)
    grpc = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(
        TracingUnavailableError, match=r"OTLP over grpc needs .*batchserve\[tracing\]"
    ):
        check(make_settings(tracing=True), grpc)
    check(make_settings(tracing=True), {})  # http/protobuf's is there
