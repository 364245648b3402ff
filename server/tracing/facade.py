"""What the web and service layers call: spans when tracing is on, nothing when it is off.

Nothing here imports OpenTelemetry: :mod:`server.tracing.spans` imports its SDK,
and it is loaded only when tracing is on, so the server runs without the extra.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from server.config import Settings
    from server.tracing.spans import Spans

#: A span attribute's value, as OpenTelemetry takes it.
AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]

#: Either turns tracing on, as it does in OpenTelemetry's own auto-instrumentation.
ENABLING_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: The request id on the server span and on each batch link (as in the access log).
REQUEST_ID: Final = "batchserve.request_id"
_NO_STAGE: Final = contextlib.nullcontext()


class TracingUnavailableError(RuntimeError):
    """Tracing is asked for but cannot run: the extra is missing or an OTEL_* value is wrong."""


class RequestTrace(Protocol):
    """One request's server span: its stages' parent, and what its batch's span links to."""

    request_id: str

    def stage(self, name: str, attributes: Attributes) -> AbstractContextManager[None]:
        """A child span around a block of the request's own work (upload, preprocess)."""
        ...

    def stage_between(self, name: str, start_ns: int, end_ns: int, attributes: Attributes) -> None:
        """A child span whose times were measured apart (queue: until its batch started)."""
        ...

    def batch(self, linked: Sequence[RequestTrace], start_ns: int, end_ns: int,
              attributes: Attributes) -> None:  # fmt: skip
        """A forward pass's span, linked to the server span of every request in it."""
        ...

    def end(self, name: str, attributes: Attributes, error: str | None) -> None:
        """End the server span under its final name (the route), failed with ``error``."""
        ...


def wanted(settings: Settings, environ: Mapping[str, str] = os.environ) -> bool:
    """On with BATCHSERVE_TRACING or an OTLP endpoint, unless OTEL_SDK_DISABLED or no exporter."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return settings.tracing or any(environ.get(name, "").strip() for name in ENABLING_VARIABLES)


def check(settings: Settings, environ: Mapping[str, str] = os.environ) -> None:
    """Raise TracingUnavailableError for tracing asked for that cannot run; build nothing."""
    if wanted(settings, environ):
        _setup().check_environment(environ)


def _setup() -> ModuleType:
    try:
        from server.tracing import setup
    except ImportError as exc:
        raise TracingUnavailableError(
            f"tracing is on (BATCHSERVE_TRACING or an OTLP endpoint) but OpenTelemetry is "
            f"not installed ({exc.name}): pip install 'batchserve[tracing]'"
        ) from exc
    return setup


class Tracing:
    """The server's tracer, or none: then every call below returns at once."""

    def __init__(self, spans: Spans | None = None) -> None:
        self._spans = spans

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] = os.environ) -> Tracing:
        """Off, or spans exported as the ``OTEL_*`` variables say (TracingUnavailableError)."""
        if not wanted(settings, environ):
            return cls()
        spans: Spans = _setup().spans_from_environment(environ)
        return cls(spans)

    @classmethod
    def exporting_to(cls, processor: SpanProcessor) -> Tracing:
        """Spans handed to ``processor`` (tests: the SDK's in-memory exporter)."""
        from server.tracing.spans import Spans

        return cls(Spans.with_processors([processor], "in-process"))

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded at all."""
        return self._spans is not None

    def describe(self) -> str:
        """``off``, or where spans go: for /info and the startup line."""
        return "off" if self._spans is None else self._spans.description

    def request(self, name: str, carrier: Mapping[str, str], attributes: Attributes,
                request_id: str) -> RequestTrace | None:  # fmt: skip
        """A server span continuing the ``traceparent`` in ``carrier``; None when off."""
        if self._spans is None:
            return None
        return self._spans.request(name, carrier, attributes, request_id)

    def shutdown(self) -> None:
        """Send what is still buffered, then stop exporting (blocks up to the export timeout)."""
        if self._spans is not None:
            self._spans.shutdown()


def stage(trace: RequestTrace | None, name: str, **attributes: AttributeValue,
          ) -> AbstractContextManager[None]:  # fmt: skip
    """A stage span of ``trace``'s request around a block; a shared no-op when untraced."""
    return _NO_STAGE if trace is None else trace.stage(name, attributes)


def record_queue(trace: RequestTrace | None, submitted_ns: int, queue_s: float) -> None:
    """The ``queue`` span: from submission to the start of the batch's forward pass."""
    if trace is not None:
        trace.stage_between("queue", submitted_ns, submitted_ns + int(queue_s * 1e9), {})


def record_batch(traces: Iterable[RequestTrace | None], seconds: float,
                 attributes: Attributes) -> None:  # fmt: skip
    """The ``inference`` span of a forward pass that took ``seconds`` and ended just now."""
    linked = list({id(t): t for t in traces if t is not None}.values())
    if linked:
        end_ns = time.time_ns()
        linked[0].batch(linked, end_ns - int(seconds * 1e9), end_ns, attributes)
