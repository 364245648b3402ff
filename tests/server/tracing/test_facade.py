"""Tracing off costs nothing and needs nothing; on, it is asked for as OpenTelemetry's tools ask."""

from __future__ import annotations

import sys

import pytest

import server.tracing
from server.tracing import Tracing, TracingUnavailableError, check, record_batch, stage, wanted
from server.tracing.facade import RequestTrace
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("tracing", "environ", "on"),
    [
        (False, {}, False),
        (True, {}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        (True, {"OTEL_SDK_DISABLED": "true"}, False),
        (True, {"OTEL_TRACES_EXPORTER": "none"}, False),
        (False, {"OTEL_SERVICE_NAME": "x"}, False),  # naming the service turns nothing on
    ],
)
def test_tracing_is_on_with_its_setting_or_an_otlp_endpoint_unless_the_sdk_is_disabled(
    tracing: bool, environ: dict[str, str], on: bool
) -> None:
    assert wanted(make_settings(tracing=tracing), environ) is on
    assert Tracing.from_settings(make_settings(tracing=tracing), environ).enabled is on


def test_off_every_call_is_a_no_op_that_shares_one_context_manager() -> None:
    off = Tracing.from_settings(make_settings(), {})
    assert off.request("GET", {"traceparent": "00-x"}, {}, "id") is None
    assert off.describe() == "off"
    assert stage(None, "upload") is stage(None, "preprocess")
    with stage(None, "upload"):
        pass
    record_batch([None, None], 0.01, {})  # nothing to link: nothing recorded
    off.shutdown()


class _Recorded:
    """A RequestTrace that notes the batches it is asked to record."""

    request_id = "r"

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []

    def batch(self, linked: list[RequestTrace], start_ns: int, end_ns: int, attributes: object,
              ) -> None:  # fmt: skip
        self.batches.append((len(linked), start_ns, end_ns))


def test_a_request_with_several_images_in_one_batch_is_linked_once() -> None:
    one, other = _Recorded(), _Recorded()
    record_batch([one, None, one, other], 0.25, {})  # type: ignore[list-item]
    ((count, start_ns, end_ns),) = one.batches
    assert count == 2
    assert other.batches == []
    assert end_ns - start_ns == 250_000_000


def test_tracing_asked_for_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the extra were not installed: OpenTelemetry's SDK cannot be imported.
    for name in ("setup", "spans"):
        monkeypatch.delitem(sys.modules, f"server.tracing.{name}", raising=False)
        monkeypatch.delattr(server.tracing, name, raising=False)
    for name in [m for m in sys.modules if m.startswith("opentelemetry.sdk")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(TracingUnavailableError, match=r"pip install 'batchserve\[tracing\]'"):
        check(make_settings(tracing=True), {})
    with pytest.raises(TracingUnavailableError, match=r"not installed \(opentelemetry\.sdk"):
        Tracing.from_settings(make_settings(), {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    check(make_settings(), {})  # off: nothing is imported, nothing is missing
