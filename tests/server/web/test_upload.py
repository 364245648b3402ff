"""Hostile bodies and slow clients: every one answered with a documented 4xx, nothing held up."""

from __future__ import annotations

import io
import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from server.web.errors import ErrorCode
from server.web.http_head import MAX_HEADER_COUNT, MAX_REQUEST_HEAD_BYTES
from tests.conftest import RunningServer, photo
from tests.server.web.test_routes import _post, assert_error

LIMIT = 10 * 1024 * 1024


def _connect(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _read_answer(conn: socket.socket) -> str:
    answer = b""
    while b"}}" not in answer and (chunk := conn.recv(65536)):
        answer += chunk
    return answer.decode("latin-1")


def test_a_chunked_upload_with_no_length_is_cut_off_once_past_the_limit(api) -> None:
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        while sent < 4 * LIMIT:
            sent += 256 * 1024
            yield b"\xff" * (256 * 1024)

    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    try:
        response = api.post("/predict", content=body(), headers=headers)
    except httpx.TransportError:
        pytest.fail("the server should answer 413, not drop the connection")
    assert_error(response, ErrorCode.PAYLOAD_TOO_LARGE)
    assert "chunked" in response.request.headers.get("transfer-encoding", "")


def test_a_huge_text_field_is_refused_while_parsing(api) -> None:
    response = api.post(
        "/predict", data={"note": "x" * 1_000_000}, files={"file": ("a.jpg", photo("cat.jpg"))}
    )
    assert_error(response, ErrorCode.INVALID_MULTIPART)


def test_thousands_of_parts_are_refused(api) -> None:
    fields = {f"f{i}": "1" for i in range(5000)}
    response = api.post("/predict", data=fields, files={"file": ("a.jpg", photo("cat.jpg"))})
    assert_error(response, ErrorCode.INVALID_MULTIPART)
    files = [("file", (f"{i}.jpg", b"x")) for i in range(3000)]
    assert_error(api.post("/predict", files=files), ErrorCode.TOO_MANY_FILES)


def test_a_client_that_leaves_mid_upload_is_499_never_a_server_error(
    resnet_server: RunningServer,
) -> None:
    before = resnet_server.metric("batchserve_client_disconnects_total", stage="upload")
    errors = resnet_server.metric("batchserve_errors_total", code="internal_error")
    model = resnet_server.service.name
    status_499 = {
        "protocol": "http",
        "endpoint": "/predict",
        "status": "499",
        "model": model,
        "version": "1",
    }
    closed = resnet_server.metric("batchserve_requests_total", **status_499)
    conn = _trickle(resnet_server, "198.51.100.50")
    time.sleep(0.2)  # the handler is now waiting for the rest of the body
    conn.close()
    deadline = time.monotonic() + 30
    while resnet_server.metric("batchserve_requests_total", **status_499) == closed:
        assert time.monotonic() < deadline, "the disconnect was never counted"
        time.sleep(0.05)
    assert resnet_server.metric("batchserve_client_disconnects_total", stage="upload") == before + 1
    assert resnet_server.metric("batchserve_errors_total", code="internal_error") == errors
    statuses = {
        "protocol": "http",
        "endpoint": "/predict",
        "status": "500",
        "model": model,
        "version": "1",
    }
    assert resnet_server.metric("batchserve_requests_total", **statuses) == 0


def _send_head(server: RunningServer, head: bytes, pieces: int = 1) -> bytes:
    """Send ``head`` (in ``pieces`` writes, each one its own segment) and read to the close."""
    with _connect(server) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        size = -(-len(head) // pieces)
        for start in range(0, len(head), size):
            if select.select([conn], [], [], 0)[0]:
                break  # answered already: the server stopped reading
            conn.sendall(head[start : start + size])
            time.sleep(0.01)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                if b"connection: close" not in answer.lower() and answer.endswith(b"}"):
                    break
        except ConnectionResetError:
            pass
    return answer


def _head_with(filler: bytes, extra_headers: int = 0) -> bytes:
    lines = b"".join(b"X-Extra-%d: 1\r\n" % i for i in range(extra_headers))
    return b"GET /health HTTP/1.1\r\nHost: x\r\n" + lines + b"X-Big: " + filler + b"\r\n\r\n"


@pytest.mark.parametrize(("size", "pieces"), [(70_000, 1), (70_000, 35), (256 * 1024, 1)])
def test_a_head_over_the_limit_is_431_whether_it_arrives_in_one_read_or_many(
    resnet_server: RunningServer, size: int, pieces: int
) -> None:
    answer = _send_head(resnet_server, _head_with(b"a" * size), pieces)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == ErrorCode.HEADERS_TOO_LARGE.value


def test_a_head_just_under_the_limit_is_served(resnet_server: RunningServer) -> None:
    filler = b"a" * (MAX_REQUEST_HEAD_BYTES - len(_head_with(b"")) - 16)
    head = _head_with(filler)
    assert MAX_REQUEST_HEAD_BYTES - 64 < len(head) <= MAX_REQUEST_HEAD_BYTES
    for pieces in (1, 16):
        answer = _send_head(resnet_server, head, pieces)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_too_many_header_lines_are_431_and_counted(resnet_server: RunningServer) -> None:
    # Host and X-Big are two lines of their own.
    within = _send_head(resnet_server, _head_with(b"1", MAX_HEADER_COUNT - 2))
    assert within.startswith(b"HTTP/1.1 200 "), within[:200]
    over = _send_head(resnet_server, _head_with(b"1", MAX_HEADER_COUNT - 1))
    assert over.startswith(b"HTTP/1.1 431 "), over[:200]
    assert b"101 headers; the limit is 100" in over
    with resnet_server.client() as client:
        metrics = client.get("/metrics").text
    assert 'batchserve_errors_total{code="headers_too_large"} 0.0' not in metrics


def test_the_declared_content_type_is_not_trusted_the_bytes_are(api) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo("cat.jpg"))).save(buffer, format="PNG")
    as_jpeg = api.post("/predict", files={"file": ("cat.jpg", buffer.getvalue(), "image/jpeg")})
    assert as_jpeg.status_code == 200
    text = api.post("/predict", files={"file": ("cat.png", b"plain text", "image/png")})
    assert_error(text, ErrorCode.INVALID_IMAGE)


def _trickle(server: RunningServer, forwarded_for: str) -> socket.socket:
    """Start an upload that declares 100 kB and sends a few bytes of it."""
    conn = _connect(server)
    conn.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n"
        + f"X-Forwarded-For: {forwarded_for}\r\nContent-Length: 100000\r\n\r\n".encode()
        + b"--b\r\nContent-Disposition: form-data; name=file; filename=a\r\n\r\n"
    )
    return conn


def test_slow_uploads_get_408_and_do_not_hold_up_other_clients(
    guarded_server: RunningServer,
) -> None:
    tricklers = [_trickle(guarded_server, f"198.51.100.{100 + i}") for i in range(20)]
    try:
        with guarded_server.client(headers={"X-Forwarded-For": "198.51.100.99"}) as client:
            assert _post(client, photo("cat.jpg")).status_code == 200
        for conn in tricklers:
            # None has been answered yet: the quick request did not wait for them.
            conn.setblocking(False)
            with pytest.raises(BlockingIOError):
                conn.recv(1)
            conn.setblocking(True)
        started = time.monotonic()
        for conn in tricklers:
            answer = _read_answer(conn)
            assert answer.startswith("HTTP/1.1 408 "), answer[:200]
            body = json.loads(answer.split("\r\n\r\n", 1)[1])
            assert body["error"]["code"] == ErrorCode.REQUEST_TIMEOUT.value
        assert time.monotonic() - started < 30
    finally:
        for conn in tricklers:
            conn.close()
