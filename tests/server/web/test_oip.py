"""The Open Inference Protocol, called with tritonclient (PyPI), a real client, sync and asyncio."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from server.models.preprocess import image_to_tensor
from tests.conftest import RunningServer, app_with_test_engine, make_settings, photo, served
from tests.server.web.test_routes import _post

KEY = "k-0123456789abcdef-triton"


def _host(server: RunningServer) -> str:
    return server.url.removeprefix("http://")


def _expected(server: RunningServer, name: str) -> list[dict]:
    with server.client() as client:
        return list(_post(client, photo(name)).json()["predictions"])


def _assert_like_predict(probabilities: np.ndarray, expected: list[dict]) -> None:
    top = np.argsort(-probabilities)[: len(expected)]
    assert top.tolist() == [p["index"] for p in expected]
    for p in expected:
        assert abs(float(probabilities[p["index"]]) - p["probability"]) < 1e-4


@pytest.fixture(scope="module")
def client(resnet_server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(_host(resnet_server))
    yield client
    client.close()


def test_health_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("resnet50")
    assert client.is_model_ready("resnet50", "1")
    assert client.get_server_metadata()["extensions"] == [
        "classification", "binary_tensor_data", "statistics", "model_repository"
    ]  # fmt: skip
    metadata = client.get_model_metadata("resnet50", "1")
    assert metadata["versions"] == ["1"]
    inputs = {i["name"]: i for i in metadata["inputs"]}
    assert inputs["IMAGE"] == {"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}
    assert inputs["PIXELS"]["shape"] == [-1, 3, 224, 224]
    assert metadata["outputs"][0]["shape"] == [-1, 1000]


@pytest.mark.parametrize("binary", [True, False])
def test_image_bytes_answer_like_predict(
    client: triton.InferenceServerClient, resnet_server: RunningServer, binary: bool
) -> None:
    names = ["cat.jpg", "coffee.jpg"]
    if binary:
        images = np.array([photo(n) for n in names], dtype=np.object_)
    else:  # JSON carries images as base64 strings
        images = np.array([base64.b64encode(photo(n)).decode() for n in names], dtype=np.object_)
    tensor = triton.InferInput("IMAGE", [2], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=binary)
    output = triton.InferRequestedOutput("PROBABILITIES", binary_data=binary)
    result = client.infer("resnet50", [tensor], outputs=[output], request_id="r-1")
    probabilities = result.as_numpy("PROBABILITIES")
    assert probabilities.shape == (2, 1000)
    assert result.get_response()["id"] == "r-1"
    for row, name in zip(probabilities, names, strict=True):
        _assert_like_predict(row, _expected(resnet_server, name))


@pytest.mark.parametrize("binary", [True, False])
def test_preprocessed_pixels_answer_like_predict(
    client: triton.InferenceServerClient, resnet_server: RunningServer, binary: bool
) -> None:
    spec = resnet_server.service.model.preprocessing  # type: ignore[union-attr]
    pixels = image_to_tensor(photo("cat.jpg"), spec, 10**8).numpy()[np.newaxis]
    tensor = triton.InferInput("PIXELS", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels.astype(np.float32), binary_data=binary)
    result = client.infer("resnet50", [tensor])  # no outputs named: all, in binary
    _assert_like_predict(result.as_numpy("PROBABILITIES")[0], _expected(resnet_server, "cat.jpg"))


def test_the_classification_extension(
    client: triton.InferenceServerClient, resnet_server: RunningServer
) -> None:
    tensor = triton.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([photo("coffee.jpg")], dtype=np.object_))
    output = triton.InferRequestedOutput("PROBABILITIES", class_count=3)
    result = client.infer("resnet50", [tensor], outputs=[output])
    rows = result.as_numpy("PROBABILITIES")
    assert rows.shape == (1, 3)
    expected = _expected(resnet_server, "coffee.jpg")[:3]
    for element, want in zip(rows[0], expected, strict=True):
        probability, index, label = element.decode().split(":", 2)
        assert (int(index), label) == (want["index"], want["label"])
        assert abs(float(probability) - want["probability"]) < 1e-4


def _status(error: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(error.value.status())


def test_errors_have_the_protocols_shape_and_are_counted(
    client: triton.InferenceServerClient, resnet_server: RunningServer
) -> None:
    before = resnet_server.metric("batchserve_errors_total", code="model_not_found")
    tensor = triton.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="image 0: the file is not") as bad:
        client.infer("resnet50", [tensor])
    assert _status(bad) == "400"
    with pytest.raises(InferenceServerException, match="no model named") as missing:
        client.infer("nope", [tensor])
    assert _status(missing) == "404"
    with pytest.raises(InferenceServerException) as version:
        client.get_model_metadata("resnet50", "2")
    assert _status(version) == "404"
    many = triton.InferInput("IMAGE", [17], "BYTES")
    many.set_data_from_numpy(np.array([photo("cat.jpg")] * 17, dtype=np.object_))
    with pytest.raises(InferenceServerException, match="send 1 to 16 images") as too_many:
        client.infer("resnet50", [many])
    assert _status(too_many) == "400"
    good = triton.InferInput("IMAGE", [1], "BYTES")
    good.set_data_from_numpy(np.array([photo("cat.jpg")], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="deadline") as late:
        client.infer("resnet50", [good], timeout=1)  # one microsecond
    assert _status(late) == "504"
    after = resnet_server.metric("batchserve_errors_total", code="model_not_found")
    assert after == before + 2
    with resnet_server.client() as http:
        body = http.post("/v2/models/resnet50/infer", content=b"{").json()
        assert set(body) == {"error"}


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningServer]:
    """API keys on; a queue of two images."""
    settings = make_settings(model="mobilenet_v2", api_keys=KEY, max_queue_size=2)
    yield from served(app_with_test_engine(settings))


def test_keys_guard_all_but_health_and_overload_is_503_with_retry_after(
    keyed: RunningServer,
) -> None:
    anonymous = triton.InferenceServerClient(_host(keyed))
    assert anonymous.is_server_live()
    assert anonymous.is_server_ready()
    with pytest.raises(InferenceServerException) as refused:
        anonymous.get_model_metadata("mobilenet_v2")
    assert _status(refused) == "401"
    authorised = {"Authorization": f"Bearer {KEY}"}
    three = triton.InferInput("IMAGE", [3], "BYTES")
    three.set_data_from_numpy(np.array([photo("cat.jpg")] * 3, dtype=np.object_))
    with pytest.raises(InferenceServerException, match="capacity") as overloaded:
        anonymous.infer("mobilenet_v2", [three], headers=dict(authorised))  # it adds to them
    assert _status(overloaded) == "503"
    anonymous.close()
    with keyed.client(headers=authorised) as http:
        response = http.post("/v2/models/mobilenet_v2/infer", content=b"{}")
        assert response.status_code == 400
        assert "error" in response.json()
        big = http.post("/v2/models/mobilenet_v2/infer", content=b"x" * (65 * 1024 * 1024))
        assert big.status_code == 413
        assert set(big.json()) == {"error"}
        retry = http.post(
            "/v2/models/mobilenet_v2/infer",
            json={"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [3],
                              "data": [base64.b64encode(photo("cat.jpg")).decode()] * 3}]},
        )  # fmt: skip
        assert retry.status_code == 503
        assert retry.headers["retry-after"] == "1"


def test_rate_limits_answer_429_in_the_protocols_shape(guarded_server: RunningServer) -> None:
    headers = {"X-Forwarded-For": "198.51.100.77"}
    with guarded_server.client(headers=headers) as http:
        statuses = [http.post("/v2/models/mobilenet_v2/infer", content=b"{}") for _ in range(4)]
    assert [s.status_code for s in statuses] == [400, 400, 400, 429]
    assert set(statuses[-1].json()) == {"error"}
    assert statuses[-1].headers["retry-after"]


async def test_the_asyncio_client_too(resnet_server: RunningServer) -> None:
    client = triton_aio.InferenceServerClient(_host(resnet_server))
    try:
        assert await client.is_server_ready()
        tensor = triton_aio.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([photo("cat.jpg")], dtype=np.object_))
        result = await client.infer("resnet50", [tensor])
        probabilities = result.as_numpy("PROBABILITIES")[0]
    finally:
        await client.close()
    _assert_like_predict(probabilities, _expected(resnet_server, "cat.jpg"))


@pytest.fixture(scope="module")
def counted() -> Iterator[RunningServer]:
    """A server of its own: its statistics count only this module's requests."""
    yield from served(app_with_test_engine(make_settings(model="mobilenet_v2")))


def _infer_images(client: triton.InferenceServerClient, images: list[bytes]) -> None:
    tensor = triton.InferInput("IMAGE", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    client.infer("mobilenet_v2", [tensor])


def test_statistics_count_requests_images_passes_and_their_times(counted: RunningServer) -> None:
    client = triton.InferenceServerClient(_host(counted))
    empty = client.get_inference_statistics("mobilenet_v2")["model_stats"][0]
    assert (empty["inference_count"], empty["execution_count"], empty["last_inference"]) == (
        0,
        0,
        0,
    )
    _infer_images(client, [photo("cat.jpg")])
    _infer_images(client, [photo("cat.jpg"), photo("coffee.webp")])
    with pytest.raises(InferenceServerException):
        _infer_images(client, [b"not an image"])
    (stats,) = client.get_inference_statistics("mobilenet_v2", "1")["model_stats"]
    client.close()
    assert (stats["name"], stats["version"]) == ("mobilenet_v2", "1")
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 2
    assert inference["fail"]["count"] == 1
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[stage]["count"] == 2, stage
        assert inference[stage]["ns"] > 0, stage
    stages_ns = sum(inference[s]["ns"] for s in ("queue", "compute_input", "compute_infer"))
    assert stages_ns <= inference["success"]["ns"]  # each stage is a part of the whole
    assert stats["inference_count"] == 3
    passes = stats["batch_stats"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in passes) == 3
    assert sum(b["compute_infer"]["count"] for b in passes) == stats["execution_count"]
    assert stats["last_inference"] > 1.7e12  # milliseconds since the epoch


async def test_statistics_of_every_model_and_unknown_names(counted: RunningServer) -> None:
    client = triton_aio.InferenceServerClient(_host(counted))
    try:
        every = await client.get_inference_statistics()
        by_name = await client.get_inference_statistics("mobilenet_v2")
        with pytest.raises(InferenceServerException) as missing:
            await client.get_inference_statistics("nope")
        with pytest.raises(InferenceServerException) as version:
            await client.get_inference_statistics("mobilenet_v2", "7")
    finally:
        await client.close()
    assert [s["name"] for s in every["model_stats"]] == ["mobilenet_v2"]
    assert [s["version"] for s in by_name["model_stats"]] == ["1"]
    assert _status(missing) == _status(version) == "404"
