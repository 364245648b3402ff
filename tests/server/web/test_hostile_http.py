"""Hostile requests through HTTP: every parser answers a 4xx in its surface's shape, never a 5xx.

A sample of the codec's grammar (tests/server/web/test_oip_codec_properties.py)
sent to /v2 infer, hand-built multipart bodies (boundaries, part headers, file
names in any encoding) to /predict and /predict/batch, and hostile headers
and query parameters, all to a real server over a socket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer, app_with_test_engine, make_settings, photo, served
from tests.server.web.test_oip_codec_properties import HEADER_LENGTHS, REQUEST, TEXT

HOSTILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _sendable(value: bytes) -> bool:
    """What HTTP/1.1 carries in a header value at all (h11 refuses the rest on both sides)."""
    controls = any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value)
    return not controls and value == value.strip(b" \t")


#: Header values as bytes: UTF-8 of any text, Latin-1's digits-that-are-not ("²"), raw bytes.
HEADER_VALUES = (
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.sampled_from([b"\xb2", b"\xb9\xb2", b"1e400", b"nan", b"-5", b"0", b"9" * 5000])
    | st.binary(max_size=24)
).filter(_sendable)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    yield from served(app_with_test_engine(make_settings(model="mobilenet_v2", max_upload_mb=0.5)))


def _assert_ours(response: httpx.Response) -> None:
    """Below 500, and an error in the API's own shape."""
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"}
        assert error["message"]


def _assert_protocols(response: httpx.Response) -> None:
    """Below 500, and an error in the Open Inference Protocol's shape."""
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}
        assert isinstance(body["error"], str)


@HOSTILE
@given(request=REQUEST, header=HEADER_LENGTHS.filter(lambda h: h is None or _sendable(h.encode())))
def test_any_infer_request_is_answered_in_the_protocols_shape(
    server: RunningServer, request: object, header: str | None
) -> None:
    body = json.dumps(request, allow_nan=True).encode("utf-8", "surrogatepass")
    headers = {} if header is None else {"Inference-Header-Content-Length": header.encode()}
    with server.client() as client:
        response = client.post("/v2/models/mobilenet_v2/infer", content=body, headers=headers)
    _assert_protocols(response)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A multipart body of hostile parts, and its Content-Type (boundary included, or not)."""
    boundary = draw(
        st.sampled_from([b"b0und", b"", b"x" * 80])
        | st.binary(min_size=1, max_size=8).filter(_sendable)
    )
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([b"file", b"other", b""]) | st.binary(max_size=8))
        filename = draw(st.none() | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
        disposition = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        kind = draw(st.sampled_from([b"image/jpeg", b"text/plain", b"\xff\xfe"]))
        data = draw(st.sampled_from([photo("cat.jpg"), b"", b"GIF89a"]) | st.binary(max_size=64))
        parts.append(b"--" + boundary + b"\r\n" + disposition + b"\r\nContent-Type: " + kind
                     + b"\r\n\r\n" + data + b"\r\n")  # fmt: skip
    body = b"".join(parts) + b"--" + boundary + draw(st.sampled_from([b"--\r\n", b"", b"\r\n"]))
    content_type = draw(
        st.sampled_from([b"multipart/form-data; boundary=" + boundary, b"multipart/form-data"])
        | HEADER_VALUES.map(lambda v: b"multipart/form-data; boundary=" + v)
    )
    return body, content_type


@HOSTILE
@given(body=multipart_bodies(), path=st.sampled_from(["/predict", "/predict/batch"]))
def test_any_multipart_body_is_answered_in_the_apis_shape(
    server: RunningServer, body: tuple[bytes, bytes], path: str
) -> None:
    content, content_type = body
    with server.client() as client:
        response = client.post(path, content=content, headers={"Content-Type": content_type})
    _assert_ours(response)


@HOSTILE
@given(
    timeout=st.none() | HEADER_VALUES,
    content_type=st.none() | HEADER_VALUES,
    top_k=st.none() | TEXT,
    request_id=st.none() | HEADER_VALUES,
)
def test_hostile_headers_and_parameters_are_answered_in_the_apis_shape(
    server: RunningServer,
    timeout: bytes | None,
    content_type: bytes | None,
    top_k: str | None,
    request_id: bytes | None,
) -> None:
    headers = {
        name: value
        for name, value in (
            ("X-Request-Timeout", timeout),
            ("Content-Type", content_type),
            ("X-Request-ID", request_id),
        )
        if value is not None
    }
    # Percent-encoded by hand: a lone surrogate becomes the invalid UTF-8 a hostile client sends.
    query = "" if top_k is None else "?top_k=" + quote(top_k.encode("utf-8", "surrogatepass"))
    with server.client() as client:
        response = client.post(f"/predict{query}", content=photo("cat.jpg"), headers=headers)
    _assert_ours(response)


@pytest.mark.parametrize("name", ["%ED%A0%80", "%FF%FE", "%00", "a" * 300, "..%2F..%2Fetc"])
def test_model_names_that_cannot_be_served_are_a_404_in_each_shape(
    server: RunningServer, name: str
) -> None:
    with server.client() as client:
        ours = client.post(f"/models/{name}/predict", content=photo("cat.jpg"),
                           headers={"Content-Type": "image/jpeg"})  # fmt: skip
        protocols = client.get(f"/v2/models/{name}")
    assert ours.status_code == 404
    _assert_ours(ours)
    assert protocols.status_code == 404
    _assert_protocols(protocols)
