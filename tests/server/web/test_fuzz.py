"""Property-based attacks on /predict, and schemathesis against the app's own OpenAPI schema.

Whatever arrives, the answer is a documented status with the JSON error body,
never a 5xx, and it comes in bounded time.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.generation.modes import GenerationMode
from schemathesis.schemas import APIOperation

from server.web.errors import STATUS
from tests.conftest import RunningServer, app_with_test_engine, make_settings, photo

#: Every status /predict may answer to a client's upload (no 5xx).
DOCUMENTED = {200, *(s for s in STATUS.values() if s < 500)}
SEEDS = ("cat.jpg", "camera_gray.png", "coffee.webp", "animated.gif")


def _check(server: RunningServer, data: bytes, content_type: str = "image/jpeg") -> None:
    with server.client(timeout=30) as client:
        response = client.post("/predict", files={"file": ("upload", data, content_type)})
    assert response.status_code in DOCUMENTED, response.text
    body = response.json()
    if response.status_code == 200:
        assert len(body["predictions"]) == 5
    else:
        assert set(body["error"]) == {"code", "message", "request_id"}


@st.composite
def mutated_photos(draw: st.DrawFn) -> bytes:
    """A real photo with bytes flipped, cut, or spliced in: deep into the decoders."""
    data = bytearray(photo(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(("flip", "cut", "insert")))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
            if not data:
                break
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(data=st.binary(max_size=4096), content_type=st.sampled_from(["image/png", "text/plain"]))
def test_arbitrary_bytes_get_a_documented_answer(
    resnet_server: RunningServer, data: bytes, content_type: str
) -> None:
    _check(resnet_server, data, content_type)


@FUZZ
@given(data=mutated_photos())
def test_mutated_photos_get_a_documented_answer(resnet_server: RunningServer, data: bytes) -> None:
    _check(resnet_server, data)


schema = schemathesis.openapi.from_asgi(
    "/openapi.json", app_with_test_engine(make_settings(model="mobilenet_v2", max_batch_size=2))
)


@pytest.fixture
def warmed_up() -> None:
    """Wait for the in-process app's warm-up, so that no case meets a 503 ``not_ready``.

    schemathesis ends the app's lifespan after each operation's test, so each one
    starts (and warms up) the app again.
    """
    deadline = time.monotonic() + 120
    while schema["/ready"]["GET"].Case().call().status_code != 200:
        assert time.monotonic() < deadline, "the in-process app never became ready"
        time.sleep(0.1)


#: Each operation of the schema, a test of its own: a node id each (``schema.parametrize()``
#: gives all of them one under pytest 9, which xdist's file-by-file scheduling collapses).
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_every_endpoint_keeps_its_documented_contract(
    warmed_up: None, operation: APIOperation
) -> None:
    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(case=operation.as_strategy())
    def keeps_its_contract(case: schemathesis.Case) -> None:
        _keeps_the_contract(case)

    keeps_its_contract()


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_every_endpoint_keeps_its_contract_on_its_coverage_cases(
    warmed_up: None, operation: APIOperation
) -> None:
    """schemathesis' coverage phase: each parameter's boundaries, missing and wrong types."""
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    modes = list(GenerationMode)
    cases = list(
        schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=generation)
    )
    assert cases
    for case in cases:
        _keeps_the_contract(case)


#: The operations whose parameters the document gives examples for (top_k, the model's name).
EXAMPLED = [op for op in OPERATIONS if op.get_strategies_from_examples()]


@pytest.mark.parametrize("operation", EXAMPLED, ids=[op.label for op in EXAMPLED])
def test_every_documented_example_keeps_the_contract(
    warmed_up: None, operation: APIOperation
) -> None:
    """schemathesis' examples phase: the document's own examples, the rest filled in."""

    @settings(
        max_examples=10,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(case=st.one_of(operation.get_strategies_from_examples()))
    def keeps_its_contract(case: schemathesis.Case) -> None:
        if "name" in (case.path_parameters or {}):
            assert case.path_parameters["name"] == "mobilenet_v2"
        _keeps_the_contract(case)

    keeps_its_contract()


def test_the_examples_reach_every_model_route() -> None:
    labels = {op.label for op in EXAMPLED}
    assert {"POST /predict", "POST /models/{name}/predict", "GET /models/{name}"} <= labels


def _keeps_the_contract(case: schemathesis.Case) -> None:
    response = case.call(timeout=30)
    # Every default check but two: the blanket 5xx one, replaced below by the documented
    # exception, and "schema-valid data is accepted", since OpenAPI cannot say that the
    # binary ``file`` must be a decodable image (random bytes rightly get 400).
    case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])
    asked_for_a_deadline = "X-Request-Timeout" in (case.headers or {})
    if response.status_code == 504 and asked_for_a_deadline:
        # The client's own deadline passed first: the documented 504, item never computed.
        assert response.json()["error"]["code"] == "deadline_exceeded"
    else:
        assert response.status_code < 500, response.text
