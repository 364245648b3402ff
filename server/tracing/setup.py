"""Where spans go, read from the standard ``OTEL_*`` variables: loaded only when tracing is on.

``OTEL_TRACES_EXPORTER`` (``otlp``, the default, or ``console``; several
comma-separated), ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` (``http/protobuf``,
the specification's default, or ``grpc``); the exporters and the batch
processor read their own variables (endpoint, headers, timeout,
``OTEL_BSP_*``), and the SDK reads the sampler's and the resource's.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Final

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from server.tracing.facade import TracingUnavailableError
from server.tracing.spans import Spans

PROTOCOLS: Final = ("http/protobuf", "grpc")
#: The module of OTLP's span exporter over each transport.
EXPORTER_MODULES: Final = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}
EXPORTERS: Final = ("otlp", "console")


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names (``otlp`` when unset), checked."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in names:
        if name not in EXPORTERS:
            raise TracingUnavailableError(
                f"OTEL_TRACES_EXPORTER={name!r}: batchserve exports to {', '.join(EXPORTERS)} "
                f"or none"
            )
    return names


def otlp_protocol(environ: Mapping[str, str]) -> str:
    """OTLP's transport: the traces' own variable, then the general one, then http/protobuf."""
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if value := environ.get(variable, "").strip():
            if value not in PROTOCOLS:
                raise TracingUnavailableError(
                    f"{variable}={value!r}: batchserve sends OTLP as {' or '.join(PROTOCOLS)}"
                )
            return value
    return PROTOCOLS[0]


def _otlp_exporter(protocol: str) -> SpanExporter:
    """OTLP's exporter for ``protocol``; it reads OTEL_EXPORTER_OTLP_* itself."""
    exporter: type[SpanExporter] = _exporter_module(protocol).OTLPSpanExporter
    return exporter()


def _exporter_module(protocol: str) -> ModuleType:
    """Each transport is a package of its own in the extra: imported only when chosen."""
    try:
        return importlib.import_module(EXPORTER_MODULES[protocol])
    except ImportError as exc:
        raise TracingUnavailableError(
            f"OTLP over {protocol} needs {exc.name}: pip install 'batchserve[tracing]'"
        ) from exc


def _endpoint(environ: Mapping[str, str], protocol: str) -> str:
    """Where OTLP goes, as the exporter will work it out (for the startup line only)."""
    if traces := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if protocol == "grpc":
        return base or "http://localhost:4317"
    return f"{(base or 'http://localhost:4318').rstrip('/')}/v1/traces"


def spans_from_environment(environ: Mapping[str, str]) -> Spans:
    """Spans batched to each exporter OTEL_TRACES_EXPORTER names."""
    processors: list[SpanProcessor] = []
    described = []
    for name in exporter_names(environ):
        if name == "console":
            processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
            described.append("console")
            continue
        protocol = otlp_protocol(environ)
        processors.append(BatchSpanProcessor(_otlp_exporter(protocol)))
        described.append(f"otlp {protocol} to {_endpoint(environ, protocol)}")
    return Spans.with_processors(processors, ", ".join(described))


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise what :func:`spans_from_environment` would find wrong, building nothing."""
    if "otlp" in exporter_names(environ):
        _exporter_module(otlp_protocol(environ))
