"""gRPC messages to the REST side's parsed request and back, without a server."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from server.web.grpc.codec import from_dict, infer_request, infer_response, parameters
from server.web.grpc.messages import message
from server.web.oip_codec import OutputTensor, ProtocolError, byte_elements, fp32_bytes


def _request(**fields: object) -> object:
    return message("ModelInferRequest")(model_name="m", **fields)


def test_typed_and_raw_contents_give_the_same_input() -> None:
    images = [b"first", b"second image"]
    typed = infer_request(_request(inputs=[
        {"name": "IMAGE", "datatype": "BYTES", "shape": [2], "contents": {"bytes_contents": images}}
    ]))  # fmt: skip
    packed = b"".join(struct.pack("<I", len(i)) + i for i in images)
    raw = infer_request(_request(
        inputs=[{"name": "IMAGE", "datatype": "BYTES", "shape": [2]}], raw_input_contents=[packed]
    ))  # fmt: skip
    assert byte_elements(typed.inputs[0]) == byte_elements(raw.inputs[0]) == images
    values = np.arange(6, dtype="<f4")
    pixels = infer_request(_request(inputs=[
        {"name": "PIXELS", "datatype": "FP32", "shape": [1, 2, 3],
         "contents": {"fp32_contents": values.tolist()}}
    ]))  # fmt: skip
    assert fp32_bytes(pixels.inputs[0]) == values.tobytes()


def test_parameters_outputs_and_the_request_id() -> None:
    request = _request(
        id="req-7",
        parameters={"timeout": {"int64_param": 2500}, "note": {"string_param": "x"}},
        outputs=[{"name": "PROBABILITIES", "parameters": {"classification": {"int64_param": 3}}}],
    )
    parsed = infer_request(request)
    assert (parsed.id, parsed.timeout_us, parsed.parameters["note"]) == ("req-7", 2500, "x")
    assert parsed.outputs[0].classification == 3
    assert parameters({}) == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]},
        {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1]}],
         "raw_input_contents": [b"", b""]},
        {"parameters": {"timeout": {"int64_param": 0}}},
        {"parameters": {"timeout": {"string_param": "soon"}}},
        {"outputs": [{"name": "P", "parameters": {"classification": {"bool_param": True}}}]},
    ],
    ids=["negative-shape", "raw-count", "zero-timeout", "string-timeout", "bool-classes"],
)  # fmt: skip
def test_malformed_requests_are_protocol_errors(fields: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        infer_request(_request(**fields))


def test_the_response_carries_each_output_as_raw_contents() -> None:
    fp32 = np.array([[0.25, 0.75]], dtype="<f4").tobytes()
    outputs = [
        OutputTensor("PROBABILITIES", "FP32", (1, 2), True, fp32=fp32),
        OutputTensor("TOP", "BYTES", (1, 1), True, elements=(b"0.75:1:b",)),
    ]
    response = infer_response("m", "2", None, outputs)
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "")  # type: ignore[attr-defined]
    assert [list(o.shape) for o in response.outputs] == [[1, 2], [1, 1]]  # type: ignore[attr-defined]
    assert response.raw_output_contents == [fp32, b"\x08\x00\x00\x000.75:1:b"]  # type: ignore[attr-defined]


def test_a_rest_body_becomes_its_message() -> None:
    item = {"name": "m", "version": "1", "inference_count": 3,
            "inference_stats": {"success": {"count": 2, "ns": 10}}}  # fmt: skip
    stats = from_dict("ModelStatisticsResponse", {"model_stats": [item]})
    assert stats.model_stats[0].inference_stats.success.ns == 10  # type: ignore[attr-defined]
