"""Several images per request (/predict/batch) and raw image bytes on /predict."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server.web.errors import ErrorCode
from tests.conftest import (
    RunningServer,
    app_with_test_engine,
    client_of,
    make_settings,
    photo,
    served,
)
from tests.server.web.test_routes import _post, assert_error


def _files(*names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (name, photo(name) if "." in name else b"not an image", "image/jpeg"))
            for name in names]  # fmt: skip


def _same_answer(a: list[dict], b: list[dict]) -> None:
    assert [p["index"] for p in a] == [p["index"] for p in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x["probability"] - y["probability"]) < 1e-4


# --- raw bytes on /predict ----------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream"])
def test_raw_image_bytes_answer_like_the_multipart_form(api: httpx.Client, content_type) -> None:
    form = _post(api, photo("cat.jpg")).json()
    raw = api.post("/predict", content=photo("cat.jpg"), headers={"Content-Type": content_type})
    assert raw.status_code == 200, raw.text
    _same_answer(raw.json()["predictions"], form["predictions"])


def test_raw_bytes_are_checked_like_a_file(api: httpx.Client) -> None:
    jpeg = {"Content-Type": "image/jpeg"}
    assert_error(api.post("/predict", content=b"", headers=jpeg), ErrorCode.EMPTY_FILE)
    assert_error(api.post("/predict", content=b"text", headers=jpeg), ErrorCode.INVALID_IMAGE)
    huge = b"\xff" * (11 * 1024 * 1024)  # its declared length alone refuses it
    assert_error(api.post("/predict", content=huge, headers=jpeg), ErrorCode.PAYLOAD_TOO_LARGE)
    plain = api.post("/predict", content=b"x", headers={"Content-Type": "text/plain"})
    body = assert_error(plain, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    assert "image/* or application/octet-stream" in body["error"]["message"]


def test_a_chunked_raw_body_over_the_limit_is_refused(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"\xff" * (1024 * 1024)

    response = api.post("/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert_error(response, ErrorCode.PAYLOAD_TOO_LARGE)


# --- /predict/batch -----------------------------------------------------------------------


def test_each_part_gets_its_own_answer_or_error_in_order(
    api: httpx.Client, resnet_server: RunningServer
) -> None:
    name = resnet_server.service.name
    before = resnet_server.metric(
        "batchserve_images_total",
        protocol="http",
        endpoint="/predict/batch",
        model=name,
        version="1",
    )
    response = api.post("/predict/batch?top_k=3", files=_files("cat.jpg", "broken", "coffee.jpg"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"results", "model", "request_id", "timing_ms"}
    assert body["request_id"] == response.headers["x-request-id"]
    cat, broken, coffee = body["results"]
    assert [cat["filename"], broken["filename"], coffee["filename"]] == [
        "cat.jpg",
        "broken",
        "coffee.jpg",
    ]
    assert set(broken) == {"filename", "error"}
    assert broken["error"]["code"] == "invalid_image"
    assert set(cat) == {"filename", "predictions", "batch_size"}
    _same_answer(cat["predictions"], _post(api, photo("cat.jpg")).json()["predictions"][:3])
    _same_answer(coffee["predictions"], _post(api, photo("coffee.jpg")).json()["predictions"][:3])
    after = resnet_server.metric(
        "batchserve_images_total",
        protocol="http",
        endpoint="/predict/batch",
        model=name,
        version="1",
    )
    assert after == before + 2


def test_the_number_of_files_is_bounded(api: httpx.Client) -> None:
    assert_error(
        api.post("/predict/batch", files=_files(*["cat.jpg"] * 17)), ErrorCode.TOO_MANY_FILES
    )
    assert_error(api.post("/predict/batch", data={"x": "y"}, files=[("other", ("a", b"a"))]),
                 ErrorCode.MISSING_FILE)  # fmt: skip
    raw = api.post(
        "/predict/batch", content=photo("cat.jpg"), headers={"Content-Type": "image/jpeg"}
    )
    assert_error(raw, ErrorCode.UNSUPPORTED_MEDIA_TYPE)


def test_an_unknown_model_is_404(api: httpx.Client) -> None:
    response = api.post("/models/nope/predict/batch", files=_files("cat.jpg"))
    assert_error(response, ErrorCode.MODEL_NOT_FOUND)


@pytest.fixture(scope="module")
def small_limits() -> Iterator[RunningServer]:
    """4 images per batch at most; 2 queued; tight byte limits."""
    settings = make_settings(
        model="mobilenet_v2", max_batch_size=4, max_queue_size=2, max_files=4,
        max_upload_mb=0.08, max_request_mb=0.2,
    )  # fmt: skip
    yield from served(app_with_test_engine(settings))


@pytest.fixture
def small(small_limits: RunningServer) -> Iterator[httpx.Client]:
    yield from client_of(small_limits)


def test_a_file_over_its_limit_is_its_own_error(small: httpx.Client) -> None:
    big = b"\xff\xd8" + b"\x00" * 100_000  # over 0.08 MiB
    files = [*_files("cat.jpg"), ("file", ("big.jpg", big, "image/jpeg"))]
    body = small.post("/models/mobilenet_v2/predict/batch", files=files).json()
    assert body["results"][0]["predictions"]
    assert body["results"][1]["error"]["code"] == "payload_too_large"


def test_a_body_over_the_request_limit_fails_whole(small: httpx.Client) -> None:
    files = [("file", (f"{i}.jpg", b"\xff" * 55_000, "image/jpeg")) for i in range(4)]
    assert_error(small.post("/predict/batch", files=files), ErrorCode.PAYLOAD_TOO_LARGE)


def test_admission_is_all_or_nothing(small: httpx.Client) -> None:
    """Three images never fit a queue of two: the whole request is refused, nothing computed."""
    response = small.post("/predict/batch", files=_files("cat.jpg", "cat.jpg", "cat.jpg"))
    body = assert_error(response, ErrorCode.OVERLOADED)
    assert response.headers["retry-after"] == "1"
    assert body["error"]["message"]


def test_batch_size_counts_the_images_of_one_request(small: httpx.Client) -> None:
    body = small.post("/predict/batch", files=_files("cat.jpg", "cat.jpg")).json()
    assert [r["batch_size"] for r in body["results"]] == [2, 2]


def test_a_text_field_named_file_is_a_malformed_request(api: httpx.Client) -> None:
    response = api.post("/predict/batch", data={"file": "{}"}, files=_files("cat.jpg"))
    assert_error(response, ErrorCode.MISSING_FILE)


def test_the_request_limit_bounds_the_whole_body_framing_included(small: httpx.Client) -> None:
    """max_request_mb=0.2: files summing to just under it fail once the framing is counted."""
    limit = int(0.2 * 2**20)
    files = [("file", (f"{i}.jpg", b"\xff" * (limit // 2 - 10), "image/jpeg")) for i in range(2)]
    response = small.post("/predict/batch", files=files)
    body = assert_error(response, ErrorCode.PAYLOAD_TOO_LARGE)
    assert "0.2 MiB" in body["error"]["message"]
