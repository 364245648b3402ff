"""The protocol's gRPC messages to and from the REST side's own request and output types.

A ``ModelInferRequest`` becomes the :class:`~server.web.oip_codec.InferRequest`
the REST endpoint parses from JSON, so that both run the very same checks and
code (oip.py). Inputs come as ``raw_input_contents`` (what tritonclient and the
KServe SDK send; BYTES elements length-prefixed as in REST's binary data) or as
typed ``contents`` (``bytes_contents``, ``fp32_contents``); outputs go back as
``raw_output_contents``, as Triton answers.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.web.grpc.messages import message, reply
from server.web.oip_codec import INT64_MAX, InferRequest, Input, Output, OutputTensor, ProtocolError


def infer_request(request: Any) -> InferRequest:
    """The REST side's parsed request for a ``ModelInferRequest``; ProtocolError if malformed."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    inputs = [_input(tensor, raw[i] if raw else None) for i, tensor in enumerate(request.inputs)]
    outputs = [
        Output(
            o.name, binary=True, classification=_count(parameters(o.parameters), "classification")
        )
        for o in request.outputs
    ]
    values = parameters(request.parameters)
    timeout = _count(values, "timeout") or None
    return InferRequest(request.id or None, inputs, outputs, timeout, values)


def parameters(items: Any) -> dict[str, Any]:
    """A protocol parameter map as plain values (whichever of the oneof is set)."""
    values: dict[str, Any] = {}
    for name, parameter in items.items():
        kind = parameter.WhichOneof("parameter_choice")
        values[name] = getattr(parameter, kind) if kind is not None else None
    return values


def _count(values: dict[str, Any], name: str) -> int:
    value = values.get(name)
    if value is None:
        return 0
    if type(value) is not int or not 1 <= value <= INT64_MAX:
        raise ProtocolError(f"parameter {name!r} must be a positive integer")
    return value


def _input(tensor: Any, raw: bytes | None) -> Input:
    shape = tuple(tensor.shape)
    if any(size < 0 for size in shape):
        raise ProtocolError(f"input {tensor.name!r}: a shape's sizes cannot be negative")
    if raw is not None:
        return Input(tensor.name, tensor.datatype, shape, raw=raw)
    contents = tensor.contents
    if tensor.datatype == "BYTES":
        elements = contents.bytes_contents
        packed = b"".join(struct.pack("<I", len(e)) + e for e in elements)
        return Input(tensor.name, tensor.datatype, shape, raw=packed)
    values = array("f", contents.fp32_contents)
    if sys.byteorder == "big":  # the protocol's raw data is little-endian
        values.byteswap()
    return Input(tensor.name, tensor.datatype, shape, raw=values.tobytes())


def infer_response(
    model: str, version: str, request_id: str | None, outputs: list[OutputTensor]
) -> Message:
    """The ``ModelInferResponse``: each output's metadata, its data as raw contents."""
    response: Any = message("ModelInferResponse")(
        model_name=model, model_version=version, id=request_id or ""
    )
    for output in outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        response.raw_output_contents.append(output.payload())
    built: Message = response
    return built


def from_dict(name: str, document: dict[str, Any]) -> Message:
    """``inference.<name>`` from the REST side's JSON body of the same shape."""
    return json_format.ParseDict(document, reply(name))
