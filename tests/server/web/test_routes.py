"""API tests against the real app: real ResNet-50 architecture (random weights), real photos."""

from __future__ import annotations

import io
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from server.models.cores import usable_cores
from server.web.errors import STATUS, ErrorCode
from tests.conftest import PHOTOS, RunningServer, photo, wait_until
from tests.engine import MeanPixelEngine


def _post(client: httpx.Client, data: bytes, name: str = "image.jpg", **kwargs) -> httpx.Response:
    return client.post("/predict", files={"file": (name, data, "image/jpeg")}, **kwargs)


def assert_error(response: httpx.Response, code: ErrorCode) -> dict:
    assert response.status_code == STATUS[code], response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code.value
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def test_predict_answers_top5_with_labels_model_timing_and_request_id(api) -> None:
    response = _post(api, photo("cat.jpg"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "predictions", "model", "weights", "batch_size", "timing_ms", "request_id",
    }  # fmt: skip
    predictions = body["predictions"]
    assert len(predictions) == 5
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-6
    info = api.get("/info").json()
    assert all(0 <= p["index"] < info["num_classes"] for p in predictions)
    assert all(isinstance(p["label"], str) and p["label"] for p in predictions)
    assert (body["model"], body["weights"]) == ("resnet50", "random")
    assert body["batch_size"] >= 1
    assert set(body["timing_ms"]) == {"preprocess", "queue", "inference", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["inference"] > 0
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("name", PHOTOS)
def test_every_test_photo_is_classified(api, name: str) -> None:
    response = _post(api, photo(name), name=name)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("top_k", [1, 7, 20])
def test_top_k_is_configurable_per_request(api, top_k: int) -> None:
    response = _post(api, photo("coffee.webp"), params={"top_k": top_k})
    assert len(response.json()["predictions"]) == top_k


@pytest.mark.parametrize("top_k", ["0", "21", "five"])
def test_a_bad_top_k_is_invalid_parameter(api, top_k: str) -> None:
    body = assert_error(
        _post(api, photo("cat.jpg"), params={"top_k": top_k}), ErrorCode.INVALID_PARAMETER
    )
    assert "top_k" in body["error"]["message"]


def test_a_sane_client_request_id_is_kept_and_a_bad_one_replaced(api) -> None:
    kept = _post(api, photo("cat.jpg"), headers={"X-Request-ID": "client-42.a:b"})
    assert kept.headers["x-request-id"] == kept.json()["request_id"] == "client-42.a:b"
    replaced = api.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32


def test_concurrent_requests_are_batched_and_match_the_image_sent_alone(
    api, resnet_server, resnet_engines
) -> None:
    names = ["cat.jpg", "coffee.webp", "astronaut.jpg", "camera_gray.png"] * 3
    alone = {name: _post(api, photo(name), params={"top_k": 20}).json() for name in set(names)}
    engine = resnet_engines.built["resnet50"]
    engine.gate.clear()  # the first batch is held, so the others queue up behind it
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            answers = [
                pool.submit(lambda n: _post(api, photo(n), params={"top_k": 20}).json(), name)
                for name in names
            ]
            wait_until(
                lambda: (
                    (
                        resnet_server.series(
                            "batchserve_queue_depth", model="resnet50", version="1"
                        )
                        or 0
                    )
                    >= 2
                )
            )
            engine.gate.set()
            together = [answer.result() for answer in answers]
    finally:
        engine.gate.set()
    assert max(body["batch_size"] for body in together) > 1
    for name, body in zip(names, together, strict=True):
        expected = {p["index"]: p["probability"] for p in alone[name]["predictions"]}
        for p in body["predictions"]:
            if p["index"] in expected:
                assert p["probability"] == pytest.approx(expected[p["index"]], abs=1e-4)
        top = [p["index"] for p in body["predictions"][:3]]
        assert top == [p["index"] for p in alone[name]["predictions"][:3]]


def test_health_is_cheap_and_ready_is_ready(api) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/ready").json() == {"status": "ready"}


def test_info_describes_model_preprocessing_batching_and_versions(api) -> None:
    info = api.get("/info").json()
    assert info["model"] == "resnet50"
    assert info["weights"] == "random"
    assert info["random_weights"] is True
    assert info["num_classes"] == 1000
    assert info["input_size"] == [3, 224, 224]
    assert info["preprocessing"]["resize_size"] == 232
    assert info["device"] == "cpu"
    assert info["precision"] == "fp32"
    assert info["batching"] == {
        "max_batch_size": 4, "max_batch_wait_ms": 20.0, "max_queue_size": 128, "workers": 1,
    }  # fmt: skip
    assert set(info["versions"]) >= {"batchserve", "torch", "torchvision"}


def test_metrics_expose_latency_batch_size_and_queue_depth(api) -> None:
    _post(api, photo("cat.jpg"))
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "batchserve_request_duration_seconds_bucket",
        "batchserve_batch_size_bucket",
        "batchserve_queue_depth",
        "batchserve_queue_wait_seconds_bucket",
        "batchserve_inference_duration_seconds_bucket",
        "batchserve_preprocess_duration_seconds_bucket",
        'batchserve_requests_total{endpoint="/predict",model="resnet50",protocol="http",'
        'status="200",version="1"}',
        'batchserve_images_total{endpoint="/predict",model="resnet50",protocol="http",version="1"}',
        'batchserve_errors_total{code="invalid_image"}',
        'batchserve_dropped_total{model="resnet50",reason="deadline",version="1"}',
        "batchserve_workers_busy",
        'batchserve_model_info{device="cpu"',
        "process_resident_memory_bytes",
    ):
        assert name in text, name


def test_openapi_documents_every_endpoint_the_upload_and_the_errors(api) -> None:
    assert api.get("/docs").status_code == 200
    schema = api.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) >= {"/predict", "/health", "/ready", "/info", "/metrics", "/models",
                          "/models/{name}", "/models/{name}/predict"}  # fmt: skip
    assert (
        "multipart/form-data" in paths["/models/{name}/predict"]["post"]["requestBody"]["content"]
    )
    assert "404" in paths["/models/{name}/predict"]["post"]["responses"]
    predict = paths["/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"200", "400", "413", "415", "422", "500", "503", "504"} <= set(predict["responses"])
    error_ref = predict["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorResponse")
    assert {"image/*", "application/octet-stream"} <= set(predict["requestBody"]["content"])


def test_openapi_has_readable_operation_ids_headers_and_typed_limits(api) -> None:
    schema = api.get("/openapi.json").json()
    ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"predict", "predict_with", "predict_batch", "predict_batch_with", "info", "models",
            "model", "health", "ready", "metrics"} <= ids  # fmt: skip
    for path in schema["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                assert "X-Request-ID" in response["headers"], (operation["operationId"], status)
                assert ("Retry-After" in response["headers"]) == (status in ("429", "503"))
    limits = schema["components"]["schemas"]["Limits"]["properties"]
    assert {"max_upload_mb", "max_request_mb", "max_files", "max_top_k"} <= set(limits)
    assert api.get("/info").json()["limits"]["max_files"] == 16


# --- every error code the shared server can produce -------------------------------------


def test_bytes_that_are_no_image_are_invalid_image(api) -> None:
    for data in (b"hello, I am text", bytes(range(256)) * 40):
        assert_error(_post(api, data), ErrorCode.INVALID_IMAGE)


def test_a_truncated_jpeg_is_invalid_image(api) -> None:
    data = photo("cat.jpg")
    assert_error(_post(api, data[: len(data) // 2]), ErrorCode.INVALID_IMAGE)


def test_an_empty_file_is_empty_file(api) -> None:
    assert_error(_post(api, b""), ErrorCode.EMPTY_FILE)


def test_a_malformed_multipart_body_is_invalid_multipart(api) -> None:
    response = api.post(
        "/predict",
        content=b"--other\r\nContent-Disposition: form-data; name=file\r\n\r\nabc",
        headers={"Content-Type": "multipart/form-data; boundary=expected"},
    )
    assert_error(response, ErrorCode.INVALID_MULTIPART)
    broken = api.post(
        "/predict",
        content=b"--b\r\nContent-Disposition: form-data; name=file; filename=a\r\nbroken",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert_error(broken, ErrorCode.INVALID_MULTIPART)


def test_a_declared_length_over_the_limit_is_refused_before_reading(resnet_server) -> None:
    # Only the headers and 1 KiB are sent: an answer proves the body was not awaited.
    host, port = resnet_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {11 * 1024 * 1024}\r\n\r\n".encode()
            + b"x" * 1024
        )
        answer = b""
        while b'"}}' not in answer and (chunk := conn.recv(65536)):
            answer += chunk
        head = answer.decode("latin-1")
    assert head.startswith("HTTP/1.1 413 "), head
    assert '"code":"payload_too_large"' in head


def test_a_file_over_the_limit_is_payload_too_large(api) -> None:
    assert_error(_post(api, b"\xff" * (10 * 1024 * 1024 + 1)), ErrorCode.PAYLOAD_TOO_LARGE)


def test_a_file_of_exactly_the_limit_is_read(api) -> None:
    # Read whole and handed to the decoder, which finds no image in it: not a size error.
    assert_error(_post(api, b"\xff" * (10 * 1024 * 1024)), ErrorCode.INVALID_IMAGE)


def test_a_body_that_is_not_multipart_is_unsupported_media_type(api) -> None:
    response = api.post("/predict", json={"file": "cat.jpg"})
    assert_error(response, ErrorCode.UNSUPPORTED_MEDIA_TYPE)


def test_a_decodable_but_refused_format_is_unsupported_image_format(api) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PPM")
    body = assert_error(_post(api, buffer.getvalue()), ErrorCode.UNSUPPORTED_IMAGE_FORMAT)
    assert "PPM" in body["error"]["message"]


def test_a_form_without_the_file_field_is_missing_file(api) -> None:
    response = api.post("/predict", files={"image": ("a.jpg", photo("cat.jpg"), "image/jpeg")})
    assert_error(response, ErrorCode.MISSING_FILE)
    text_field = api.post("/predict", data={"file": "cat.jpg"}, files={"x": ("x", b"x")})
    assert_error(text_field, ErrorCode.MISSING_FILE)


def test_two_file_parts_are_too_many_files(api) -> None:
    data = photo("cat.jpg")
    response = api.post(
        "/predict", files=[("file", ("a.jpg", data, "image/jpeg")), ("file", ("b.jpg", data))]
    )
    assert_error(response, ErrorCode.TOO_MANY_FILES)
    many = [("file", (f"{i}.jpg", b"x")) for i in range(6)]
    assert_error(api.post("/predict", files=many), ErrorCode.TOO_MANY_FILES)


def test_a_pixel_bomb_is_refused_from_its_header(api) -> None:
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # 81 MP in a few kB
    assert len(buffer.getvalue()) < 100_000
    body = assert_error(_post(api, buffer.getvalue()), ErrorCode.IMAGE_TOO_LARGE)
    assert "9000x9000" in body["error"]["message"]


def test_unknown_paths_and_methods_use_the_error_shape(api) -> None:
    assert_error(api.get("/nowhere"), ErrorCode.NOT_FOUND)
    assert_error(api.get("/predict"), ErrorCode.METHOD_NOT_ALLOWED)


def test_the_resnet_server_fixture_is_shared(resnet_server: RunningServer) -> None:
    assert resnet_server.service.ready


def test_the_shared_server_plans_the_default_engine_and_runs_the_test_engine(api) -> None:
    info = api.get("/info").json()
    assert (info["engine"], info["plan"]["engine"]) == ("openvino", "openvino")
    assert info["plan"]["engine_version"] == MeanPixelEngine.version


def test_each_forward_pass_is_charged_to_its_models_compute_seconds(
    api, resnet_server: RunningServer
) -> None:
    before = resnet_server.series("batchserve_compute_seconds_total", model="resnet50", version="1")
    assert before is not None
    _post(api, photo("cat.jpg"))
    after = resnet_server.series("batchserve_compute_seconds_total", model="resnet50", version="1")
    assert after is not None
    assert after > before


def test_info_names_every_pool_and_the_cores_they_share(api) -> None:
    plan = api.get("/info").json()["plan"]
    assert plan["cores"] == usable_cores()
    # The default engine's plan: OpenVINO's threads per worker, torch's team of one beside them.
    assert (plan["workers"], plan["threads_per_worker"]) == (1, plan["cores"])
    assert (plan["torch_threads"], plan["decode_threads"]) == (1, 2)  # make_settings: 2
