"""The protocol's bodies: every malformed request is a ProtocolError naming what is wrong."""

from __future__ import annotations

import json
import struct

import pytest

from server.web.oip_codec import (
    Input,
    OutputTensor,
    ProtocolError,
    byte_elements,
    fp32_bytes,
    parse,
    response,
)


def _body(request: dict, binary: bytes = b"") -> tuple[bytes, str]:
    header = json.dumps(request).encode()
    return header + binary, str(len(header))


def test_json_and_binary_inputs_are_read() -> None:
    image = b"\x89PNG..."
    element = struct.pack("<I", len(image)) + image
    body, length = _body(
        {"id": "x", "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                                 "parameters": {"binary_data_size": len(element)}}],
         "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 2}}],
         "parameters": {"timeout": 5000, "binary_data_output": True}},
        element,
    )  # fmt: skip
    request = parse(body, length)
    assert (request.id, request.timeout_us) == ("x", 5000)
    assert byte_elements(request.inputs[0]) == [image]
    assert request.outputs[0].classification == 2
    assert request.outputs[0].binary  # the request's binary_data_output
    pixels = Input("PIXELS", "FP32", (1, 2), data=[[0.5, 1.5]])
    assert struct.unpack("<2f", fp32_bytes(pixels)) == (0.5, 1.5)


@pytest.mark.parametrize(("body", "length", "message"), [
    (b"{", None, "malformed"),
    (b"[]", None, "'inputs' list"),
    (b'{"inputs": [], "parameters": 3}', None, "'parameters' must be an object"),
    (b'{"inputs": [3]}', None, "with a 'name'"),
    (b'{"inputs": [{"name": "IMAGE", "shape": "x", "data": []}]}', None, "'shape'"),
    (b'{"inputs": [{"name": "IMAGE", "shape": [1]}]}', None, "neither 'data'"),
    (b'{"inputs": [{"name": "IMAGE", "shape": [1], "parameters": {"binary_data_size": 9}}]}',
     None, "past the body"),
    (b'{"inputs": []}xx', "14", "longer than the inputs"),
    (b'{"inputs": []}', "999", "Inference-Header-Content-Length"),
    (b'{"inputs": [], "id": 3}', None, "'id' must be a string"),
    (b'{"inputs": [], "outputs": [3]}', None, "output must be an object"),
    # Found by the properties test: a number where the list belongs was a TypeError (a 500).
    (b'{"inputs": [], "outputs": 1}', None, "'outputs' must be a list"),
    (b'{"inputs": [], "outputs": "PROBABILITIES"}', None, "'outputs' must be a list"),
    (b'{"inputs": [], "outputs": [{"name": "P", "parameters": {"classification": -1}}]}',
     None, "'classification'"),
    (b'{"inputs": [], "parameters": {"timeout": -5}}', None, "'timeout'"),
])  # fmt: skip
def test_malformed_requests_say_what_is_wrong(
    body: bytes, length: str | None, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse(body, length)


@pytest.mark.parametrize(("tensor", "message"), [
    (Input("IMAGE", "BYTES", (1,), data=["not base64!"]), "base64"),
    (Input("IMAGE", "BYTES", (1,), raw=b"\x01\x00"), "cut short"),
    (Input("IMAGE", "BYTES", (1,), raw=b"\x09\x00\x00\x00ab"), "longer than the data"),
])  # fmt: skip
def test_bad_bytes_tensors(tensor: Input, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        byte_elements(tensor)


@pytest.mark.parametrize(("tensor", "message"), [
    (Input("PIXELS", "FP32", (1, 2), raw=b"\x00" * 4), "4 bytes for 2 FP32"),
    (Input("PIXELS", "FP32", (1, 2), data=[1.0]), "2 numbers"),
    (Input("PIXELS", "FP32", (1, 2), data=["a", "b"]), "2 numbers"),
])  # fmt: skip
def test_bad_fp32_tensors(tensor: Input, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        fp32_bytes(tensor)


def test_responses_in_json_or_binary() -> None:
    fp32 = struct.pack("<2f", 0.25, 0.75)
    as_json, headers = response("m", None, [OutputTensor("P", "FP32", (1, 2), False, fp32=fp32)])
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(as_json)["outputs"][0]["data"] == [0.25, 0.75]
    labels = OutputTensor("P", "BYTES", (1, 1), True, elements=(b"0.5:1:cat",))
    body, headers = response("m", "r", [labels])
    size = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:size])
    assert header["id"] == "r"
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 13
    assert body[size:] == struct.pack("<I", 9) + b"0.5:1:cat"
