"""The spans themselves, on OpenTelemetry's SDK: loaded only when tracing is on.

A batch has many parents, so its ``inference`` span starts a trace of its own
and links to the server span of each request in it (OpenTelemetry's pattern
for batch processing). :class:`LinkedSampler` keeps such a span whenever one of
the requests it links to is kept, so that a ratio sampler never shows a
request whose batch is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import Attributes as OtelAttributes

from server import __version__
from server.tracing.facade import REQUEST_ID, Attributes, RequestTrace

#: The instrumentation scope every batchserve span carries.
SCOPE: Final = "batchserve"


class LinkedSampler(Sampler):
    """The configured sampler, except that a root span linked to a kept span is kept."""

    def __init__(self, base: Sampler) -> None:
        self.base = base

    def should_sample(
        self, parent_context: Context | None, trace_id: int, name: str,
        kind: SpanKind | None = None, attributes: OtelAttributes = None,
        links: Sequence[Link] | None = None, trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:  # fmt: skip
        """Keep a batch's span when any request it links to is kept; else ask the base."""
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and any(link.context.trace_flags.sampled for link in links or ()):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self.base.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """The base's description, marked as link-aware."""
        return f"LinkedSampler{{{self.base.get_description()}}}"


def resource() -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, else ``service.name=batchserve``."""
    detected = Resource.create()
    # The environment's own service.version, if any, wins over batchserve's.
    described = Resource({SERVICE_VERSION: __version__}).merge(detected)
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return described.merge(Resource({SERVICE_NAME: "batchserve"}))
    return described


class Spans:
    """A tracer provider of batchserve's own (the global one is left to the application)."""

    def __init__(self, provider: TracerProvider, description: str) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(SCOPE, __version__)
        self.description = description

    @classmethod
    def with_processors(cls, processors: Sequence[SpanProcessor], description: str) -> Spans:
        """Spans sampled as OTEL_TRACES_SAMPLER says (links kept), handed to ``processors``."""
        provider = TracerProvider(resource=resource(), shutdown_on_exit=False)
        # The SDK reads OTEL_TRACES_SAMPLER into provider.sampler; tracers take it from there.
        provider.sampler = LinkedSampler(provider.sampler)
        for processor in processors:
            provider.add_span_processor(processor)
        return cls(provider, f"{description}; sampler {provider.sampler.get_description()}")

    def request(self, name: str, carrier: Mapping[str, str], attributes: Attributes,
                request_id: str) -> OtelRequestTrace:  # fmt: skip
        """A server span, the child of the caller's ``traceparent`` when it sent one."""
        span = self._tracer.start_span(
            name, context=propagate.extract(carrier), kind=SpanKind.SERVER,
            attributes={**attributes, REQUEST_ID: request_id},
        )  # fmt: skip
        return OtelRequestTrace(self._tracer, span, request_id)

    def shutdown(self) -> None:
        """Flush every processor and stop."""
        self._provider.shutdown()


class OtelRequestTrace:
    """:class:`~server.tracing.facade.RequestTrace` on an SDK span."""

    __slots__ = ("_context", "_tracer", "request_id", "span")

    def __init__(self, tracer: Tracer, span: Span, request_id: str) -> None:
        self._tracer = tracer
        self.span = span
        self.request_id = request_id
        self._context = trace.set_span_in_context(span)

    @contextmanager
    def stage(self, name: str, attributes: Attributes) -> Iterator[None]:
        """A child span; an exception leaving the block marks it failed and is recorded."""
        span = self._tracer.start_span(name, context=self._context, attributes=attributes)
        with trace.use_span(span, end_on_exit=True):
            yield

    def stage_between(self, name: str, start_ns: int, end_ns: int, attributes: Attributes) -> None:
        """A child span with the times given."""
        span = self._tracer.start_span(
            name, context=self._context, attributes=attributes, start_time=start_ns
        )
        span.end(end_time=end_ns)

    def batch(self, linked: Sequence[RequestTrace], start_ns: int, end_ns: int,
              attributes: Attributes) -> None:  # fmt: skip
        """The forward pass's span: a root, linked to each request's server span."""
        links = [
            Link(t.span.get_span_context(), {REQUEST_ID: t.request_id})
            for t in linked
            if isinstance(t, OtelRequestTrace)
        ]
        span = self._tracer.start_span(
            "inference", context=Context(), links=links, attributes=attributes,
            start_time=start_ns,
        )  # fmt: skip
        span.end(end_time=end_ns)

    def end(self, name: str, attributes: Attributes, error: str | None) -> None:
        """Rename (the route is known only now), add the outcome, end."""
        self.span.update_name(name)
        self.span.set_attributes(attributes)
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()
