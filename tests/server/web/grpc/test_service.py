"""The Open Inference Protocol over gRPC, called with tritonclient's gRPC client, sync and asyncio.

Answers are compared with the REST side's for the same photo; errors are read
with grpcio itself where a test needs the status's trailing metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tg_aio
import tritonclient.http as th
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from loadtest.process import free_port
from server.models.preprocess import image_to_tensor
from server.web.grpc.messages import SERVICE, method_types
from tests.conftest import (
    RunningServer,
    app_with_test_engine,
    make_settings,
    photo,
    start_server,
    wait_until,
)
from tests.engine import EngineKeeper

KEY = "k-0123456789abcdef-grpc"


@pytest.fixture(scope="module")
def engines() -> EngineKeeper:
    return EngineKeeper()


@pytest.fixture(scope="module")
def server(engines: EngineKeeper) -> Iterator[RunningServer]:
    """REST and gRPC on one process, same models: batches of up to 4, a queue of 8."""
    settings = make_settings(grpc_port=free_port(), max_queue_size=8)
    running = start_server(app_with_test_engine(settings, engines))
    yield running
    running.stop()


def grpc_address(server: RunningServer) -> str:
    return f"127.0.0.1:{server.registry.settings.grpc_port}"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[tg.InferenceServerClient]:
    client = tg.InferenceServerClient(grpc_address(server))
    yield client
    client.close()


def image_input(*names: str) -> tg.InferInput:
    tensor = tg.InferInput("IMAGE", [len(names)], "BYTES")
    tensor.set_data_from_numpy(np.array([photo(n) for n in names], dtype=object))
    return tensor


def _rest_probabilities(server: RunningServer, name: str) -> np.ndarray:
    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = th.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([photo(name)], dtype=object))
    probabilities = client.infer("resnet50", [tensor]).as_numpy("PROBABILITIES")
    client.close()
    assert probabilities is not None
    return probabilities


def raw_call(
    server: RunningServer, method: str, metadata: tuple[tuple[str, str], ...] = (), **fields: Any
) -> Any:
    """One call with grpcio's own channel and batchserve's messages; grpc.RpcError on failure."""
    request_type, response_type = method_types(method)
    with grpc.insecure_channel(grpc_address(server)) as channel:
        stub = channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return stub(request_type(**fields), metadata=metadata, timeout=60)


def rpc_error(server: RunningServer, method: str, **fields: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(server, method, **fields)
    return caught.value


def trailers(error: grpc.RpcError) -> dict[str, str]:
    return dict(error.trailing_metadata())  # type: ignore[attr-defined]


def test_probes_and_metadata_match_rest(
    client: tg.InferenceServerClient, server: RunningServer
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("resnet50")
    assert client.is_model_ready("resnet50", "1")
    metadata = client.get_server_metadata(as_json=True)
    with server.client() as rest:
        assert metadata == rest.get("/v2").json()
        assert rest.get("/info").json()["grpc_port"] == server.registry.settings.grpc_port
        expected = rest.get("/v2/models/resnet50").json()
    assert client.get_model_metadata("resnet50", "1", as_json=True) == {
        **expected,
        "inputs": [{**i, "shape": [str(s) for s in i["shape"]]} for i in expected["inputs"]],
        "outputs": [{**o, "shape": [str(s) for s in o["shape"]]} for o in expected["outputs"]],
    }  # protobuf's JSON writes int64 as strings


@pytest.mark.parametrize("name", ["cat.jpg", "rocket.jpg"])
def test_an_image_answers_exactly_as_over_rest(
    client: tg.InferenceServerClient, server: RunningServer, name: str
) -> None:
    result = client.infer("resnet50", [image_input(name)], request_id="r-1")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("resnet50", "1", "r-1")
    probabilities = result.as_numpy("PROBABILITIES")
    assert probabilities is not None
    assert probabilities.shape == (1, 1000)
    assert np.array_equal(probabilities, _rest_probabilities(server, name))


def test_the_classification_extension_and_several_images(client: tg.InferenceServerClient) -> None:
    wanted = [tg.InferRequestedOutput("PROBABILITIES", class_count=3)]
    result = client.infer("resnet50", [image_input("cat.jpg", "rocket.jpg")], outputs=wanted)
    top = result.as_numpy("PROBABILITIES")
    assert top is not None
    assert top.shape == (2, 3)
    full = client.infer("resnet50", [image_input("cat.jpg", "rocket.jpg")]).as_numpy(
        "PROBABILITIES"
    )
    assert full is not None
    for row, probabilities in zip(top, full, strict=True):
        indices = [int(element.decode().split(":")[1]) for element in row]
        assert indices == np.argsort(-probabilities)[:3].tolist()
        for element in row:
            probability, index, _label = element.decode().split(":", 2)
            assert abs(float(probability) - probabilities[int(index)]) < 1e-6


def test_pixels_raw_and_typed_contents_answer_alike(
    client: tg.InferenceServerClient, server: RunningServer
) -> None:
    spec = server.service.model.preprocessing  # type: ignore[union-attr]
    pixels = image_to_tensor(photo("cat.jpg"), spec, 10**8).numpy()[None].astype(np.float32)
    tensor = tg.InferInput("PIXELS", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    raw = client.infer("resnet50", [tensor]).as_numpy("PROBABILITIES")
    typed_input = {"name": "PIXELS", "datatype": "FP32", "shape": list(pixels.shape),
                   "contents": {"fp32_contents": pixels.ravel().tolist()}}  # fmt: skip
    typed = raw_call(server, "ModelInfer", model_name="resnet50", inputs=[typed_input])
    values = np.frombuffer(typed.raw_output_contents[0], dtype="<f4").reshape(1, 1000)
    assert raw is not None
    assert np.array_equal(values, raw)
    image = {"name": "IMAGE", "datatype": "BYTES", "shape": [1],
             "contents": {"bytes_contents": [photo("cat.jpg")]}}  # fmt: skip
    typed_image = raw_call(server, "ModelInfer", model_name="resnet50", inputs=[image])
    from_image = np.frombuffer(typed_image.raw_output_contents[0], dtype="<f4")
    assert np.array_equal(from_image.reshape(1, 1000), _rest_probabilities(server, "cat.jpg"))


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND, "model_not_found"),
        ({"model_name": "resnet50", "model_version": "7"}, grpc.StatusCode.NOT_FOUND,
         "model_not_found"),
        ({"model_name": "resnet50"}, grpc.StatusCode.INVALID_ARGUMENT, "bad_request"),
        ({"model_name": "resnet50", "inputs": [{"name": "IMAGE", "datatype": "BYTES",
          "shape": [1], "contents": {"bytes_contents": [b"not an image"]}}]},
         grpc.StatusCode.INVALID_ARGUMENT, "invalid_image"),
        ({"model_name": "resnet50", "inputs": [{"name": "IMAGE", "datatype": "BYTES",
          "shape": [-1]}]}, grpc.StatusCode.INVALID_ARGUMENT, "bad_request"),
        ({"model_name": "resnet50", "inputs": [{"name": "IMAGE", "datatype": "BYTES",
          "shape": [1]}], "raw_input_contents": [b"\x09\x00\x00\x00abc"]},
         grpc.StatusCode.INVALID_ARGUMENT, "bad_request"),
        ({"model_name": "resnet50", "inputs": [{"name": "IMAGE", "datatype": "BYTES",
          "shape": [1], "contents": {"bytes_contents": [b"x" * (10 * 2**20 + 1)]}}]},
         grpc.StatusCode.RESOURCE_EXHAUSTED, "payload_too_large"),
        ({"model_name": "resnet50", "inputs": [{"name": "IMAGE", "datatype": "BYTES",
          "shape": [1], "contents": {"bytes_contents": [photo("cat.jpg")]}}],
          "outputs": [{"name": "LOGITS"}]}, grpc.StatusCode.INVALID_ARGUMENT, "bad_request"),
    ],
    ids=["unknown-model", "unknown-version", "no-input", "undecodable", "negative-shape",
         "short-raw", "image-too-large", "unknown-output"],
)  # fmt: skip
def test_errors_have_their_status_and_code(
    server: RunningServer, fields: dict[str, Any], status: grpc.StatusCode, code: str
) -> None:
    error = rpc_error(server, "ModelInfer", **fields)
    assert error.code() == status, error.details()  # type: ignore[attr-defined]
    assert trailers(error)["batchserve-error-code"] == code
    assert error.details()
    assert "Traceback" not in error.details()


def test_metadata_and_statistics_of_an_unknown_model_are_not_found(
    client: tg.InferenceServerClient,
) -> None:
    for call in (
        lambda: client.get_model_metadata("nope"),
        lambda: client.is_model_ready("resnet50", "9"),
        lambda: client.get_inference_statistics("nope"),
    ):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_statistics_count_grpc_calls(
    client: tg.InferenceServerClient, server: RunningServer
) -> None:
    def successes() -> int:
        stats = client.get_inference_statistics("resnet50", "1", as_json=True)
        return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))

    before = successes()
    client.infer("resnet50", [image_input("cat.jpg")])
    assert successes() == before + 1
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [("resnet50", "1")]
    with server.client() as rest:
        assert rest.get("/v2/models/stats").json()["model_stats"][0]["inference_count"] == int(
            every[0]["inference_count"]
        )


def _gated(engines: EngineKeeper) -> Any:
    gated = engines.built["resnet50"]
    gated.gate.clear()
    return gated


def test_the_calls_own_deadline_and_a_cancelled_call_leave_the_queue(
    engines: EngineKeeper, server: RunningServer, client: tg.InferenceServerClient
) -> None:
    gated = _gated(engines)
    queued = {"stage": "queue"}
    disconnects = server.metric("batchserve_client_disconnects_total", **queued)
    try:
        answers: list[Any] = []
        client.async_infer(
            "resnet50",
            [image_input("cat.jpg")],
            callback=lambda result, error: answers.append(result),
        )
        assert gated.started.acquire(timeout=30)
        with pytest.raises(InferenceServerException) as caught:
            client.infer("resnet50", [image_input("rocket.jpg")], client_timeout=0.5)
        assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        asyncio.run(_cancel_a_queued_call(server))
    finally:
        gated.gate.set()
    wait_until(lambda: bool(answers))
    assert answers[0].as_numpy("PROBABILITIES") is not None
    # The cancelled call counts as a client gone from the queue; the one past its deadline is
    # DEADLINE_EXCEEDED, whether the batcher dropped it first or gRPC ended the call first.
    wait_until(
        lambda: server.metric("batchserve_client_disconnects_total", **queued) >= 1 + disconnects
    )
    infer = {"protocol": "grpc", "endpoint": f"/{SERVICE}/ModelInfer", "model": "resnet50",
             "version": "1"}  # fmt: skip
    assert server.metric("batchserve_requests_total", **infer, status="CANCELLED") == 1
    assert server.metric("batchserve_requests_total", **infer, status="DEADLINE_EXCEEDED") == 1
    assert client.infer("resnet50", [image_input("cat.jpg")]).as_numpy("PROBABILITIES") is not None


async def _cancel_a_queued_call(server: RunningServer) -> None:
    """An asyncio client's call, cancelled while its image waits in the queue."""
    client = tg_aio.InferenceServerClient(grpc_address(server))
    tensor = tg_aio.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([photo("cat.jpg")], dtype=object))
    task = asyncio.create_task(client.infer("resnet50", [tensor]))
    depth = {"model": "resnet50", "version": "1"}
    await asyncio.to_thread(
        wait_until, lambda: server.metric("batchserve_queue_depth", **depth) == 1
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(
        wait_until, lambda: server.metric("batchserve_queue_depth", **depth) == 0
    )
    await client.close()


def test_the_asyncio_client_and_the_health_service(server: RunningServer) -> None:
    async def calls() -> None:
        client = tg_aio.InferenceServerClient(grpc_address(server))
        assert await client.is_server_ready()
        tensor = tg_aio.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([photo("cat.jpg")], dtype=object))
        result = await client.infer("resnet50", [tensor])
        assert np.array_equal(
            result.as_numpy("PROBABILITIES"), _rest_probabilities(server, "cat.jpg")
        )
        await client.close()

    asyncio.run(calls())
    with grpc.insecure_channel(grpc_address(server)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_grpc_is_counted_with_its_protocol_label(
    client: tg.InferenceServerClient, server: RunningServer
) -> None:
    answered = {"protocol": "grpc", "endpoint": f"/{SERVICE}/ModelInfer", "model": "resnet50",
                "version": "1"}  # fmt: skip
    before = server.metric("batchserve_images_total", **answered)
    requests = server.metric("batchserve_requests_total", **answered, status="OK")
    client.infer("resnet50", [image_input("cat.jpg", "cat.jpg")])
    assert server.metric("batchserve_images_total", **answered) == before + 2
    assert server.metric("batchserve_requests_total", **answered, status="OK") == requests + 1
    rest = {"protocol": "http", "endpoint": "/v2/models/{name}/infer", "model": "resnet50",
            "version": "1"}  # fmt: skip
    rest_before = server.metric("batchserve_images_total", **rest)
    _rest_probabilities(server, "cat.jpg")
    assert server.metric("batchserve_images_total", **rest) == rest_before + 1


def test_a_full_queue_is_resource_exhausted_with_its_drain_time(
    engines: EngineKeeper, server: RunningServer, client: tg.InferenceServerClient
) -> None:
    gated = _gated(engines)
    answers: list[Any] = []
    try:
        client.async_infer(
            "resnet50",
            [image_input("cat.jpg")],
            callback=lambda result, error: answers.append(error),
        )
        assert gated.started.acquire(timeout=30)
        eight = image_input(*["cat.jpg"] * 8)  # the queue's whole capacity
        client.async_infer(
            "resnet50", [eight], callback=lambda result, error: answers.append(error)
        )
        depth = {"model": "resnet50", "version": "1"}
        wait_until(lambda: server.metric("batchserve_queue_depth", **depth) == 8)
        error = rpc_error(server, "ModelInfer", model_name="resnet50", inputs=[
            {"name": "IMAGE", "datatype": "BYTES", "shape": [1],
             "contents": {"bytes_contents": [photo("cat.jpg")]}}
        ])  # fmt: skip
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        metadata = trailers(error)
        assert metadata["batchserve-error-code"] == "overloaded"
        assert 1 <= int(metadata["retry-after"]) <= 30
        assert metadata["grpc-retry-pushback-ms"] == str(1000 * int(metadata["retry-after"]))
    finally:
        gated.gate.set()
    wait_until(lambda: len(answers) == 2)
    assert answers == [None, None]  # both admitted calls were answered
