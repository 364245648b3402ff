"""A call's guards over gRPC: API keys in metadata, the rate limit, and the message limits."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from loadtest.process import free_port
from tests.conftest import RunningServer, app_with_test_engine, make_settings, photo, served
from tests.server.web.grpc.test_service import (
    grpc_address,
    image_input,
    raw_call,
    rpc_error,
    trailers,
)

KEY = "k-0123456789abcdef-grpc-keys"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningServer]:
    """API keys, 3 inferences a minute per key, images up to 0.25 MiB, requests up to 1 MiB."""
    settings = make_settings(
        grpc_port=free_port(), api_keys=KEY, rate_limit="3/minute", max_upload_mb=0.25,
        max_request_mb=1,
    )  # fmt: skip
    yield from served(app_with_test_engine(settings))


def _client(server: RunningServer) -> tg.InferenceServerClient:
    return tg.InferenceServerClient(grpc_address(server))


def test_keys_come_as_metadata_and_the_probes_stay_open(guarded: RunningServer) -> None:
    client = _client(guarded)
    assert client.is_server_live()
    assert client.is_server_ready()
    for headers in ({}, {"authorization": "Bearer wrong-key-0123456789"}):
        with pytest.raises(InferenceServerException) as caught:
            client.get_model_metadata("resnet50", headers=headers)
        assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
    for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
        assert client.get_model_metadata("resnet50", headers=headers).name == "resnet50"
    error = rpc_error(guarded, "ModelMetadata", name="resnet50")
    assert trailers(error)["batchserve-error-code"] == "unauthorized"


def test_the_rate_limit_is_resource_exhausted_with_the_retry_delay() -> None:
    other_key = f"{KEY}-other"
    settings = make_settings(grpc_port=free_port(), api_keys=f"{KEY},{other_key}",
                             rate_limit="2/minute")  # fmt: skip
    for server in served(app_with_test_engine(settings)):
        client = _client(server)
        for _ in range(2):
            client.infer("resnet50", [image_input("cat.jpg")], headers={"x-api-key": KEY})
        error = rpc_error_with(server, KEY)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        metadata = trailers(error)
        assert metadata["batchserve-error-code"] == "rate_limited"
        assert 1 <= int(metadata["retry-after"]) <= 60
        assert int(metadata["grpc-retry-pushback-ms"]) == 1000 * int(metadata["retry-after"])
        # Each key has its own budget.
        client.infer("resnet50", [image_input("cat.jpg")], headers={"x-api-key": other_key})


def rpc_error_with(server: RunningServer, key: str) -> grpc.RpcError:
    image = {"name": "IMAGE", "datatype": "BYTES", "shape": [1],
             "contents": {"bytes_contents": [photo("cat.jpg")]}}  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(server, "ModelInfer", (("x-api-key", key),), model_name="resnet50", inputs=[image])
    return caught.value


def test_messages_are_bounded_by_the_upload_limits(guarded: RunningServer) -> None:
    client = _client(guarded)
    key = {"x-api-key": KEY}
    big = tg.InferInput("IMAGE", [1], "BYTES")
    big.set_data_from_numpy(np.array([b"\xff" * (2**20 // 2)], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("resnet50", [big], headers=key)
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "0.25 MiB" in caught.value.message()
    huge = tg.InferInput("IMAGE", [1], "BYTES")
    huge.set_data_from_numpy(np.array([b"\xff" * (2 * 2**20)], dtype=object))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("resnet50", [huge], headers=key)
    # Refused by gRPC itself, before the message is parsed.
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
