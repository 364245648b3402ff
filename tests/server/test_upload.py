"""Hostile bodies and slow clients: every one answered with a documented 4xx, nothing held up."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from server.errors import ErrorCode
from tests.conftest import RunningServer, photo
from tests.server.test_routes import _post, assert_error

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


def test_oversized_headers_are_refused_never_served(resnet_server: RunningServer) -> None:
    with _connect(resnet_server) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Big: "
            + b"a" * 256 * 1024
            + b"\r\nContent-Length: 0\r\n\r\n"
        )
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


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
