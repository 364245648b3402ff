"""The Open Inference Protocol's HTTP bodies: JSON, and the binary tensor data extension.

A request is JSON, optionally followed by binary tensor data: the
``Inference-Header-Content-Length`` header says how many bytes the JSON takes,
and each input with ``parameters.binary_data_size`` has that many bytes of the
rest, in input order. BYTES tensors in binary are elements each prefixed with
their 4-byte little-endian length; in JSON, images are base64 strings. Only
the standard library: the web layer imports neither torch nor numpy.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, Final

#: The input of encoded image files: BYTES [N].
IMAGE: Final = "IMAGE"
#: The input of preprocessed images: FP32 [N, 3, H, W].
PIXELS: Final = "PIXELS"
#: The output: FP32 [N, classes], or with ``classification: k``, BYTES [N, k].
PROBABILITIES: Final = "PROBABILITIES"
HEADER_LENGTH: Final = "Inference-Header-Content-Length"
#: The protocol's shapes, timeouts and counts are int64; larger numbers are refused.
INT64_MAX: Final = 2**63 - 1
#: The largest finite float32: a pixel value beyond it cannot be sent to the model.
FLOAT32_MAX: Final = 3.4028234663852886e38


class ProtocolError(ValueError):
    """The request does not follow the protocol (answered 400 with the message)."""


@dataclass(frozen=True, slots=True)
class Input:
    """One input tensor: its JSON ``data``, or its binary bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """An output the client asked for: as binary data or JSON, and how many classes."""

    name: str
    binary: bool
    classification: int = 0


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed inference request."""

    id: str | None
    inputs: list[Input]
    outputs: list[Output]
    timeout_us: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def parse(body: bytes, header_length: str | None) -> InferRequest:
    """The request in ``body``; :class:`ProtocolError` naming what is wrong."""
    json_size = _header_length(header_length, len(body))
    try:
        request = json.loads(body[:json_size])
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a number too long
        raise ProtocolError(f"the request's JSON is malformed: {exc}") from None
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise ProtocolError("the request must be a JSON object with an 'inputs' list")
    parameters = _object(request.get("parameters"), "parameters")
    inputs = _inputs(request["inputs"], memoryview(body)[json_size:])
    binary_default = bool(parameters.get("binary_data_output", False))
    outputs = [_output(o, binary_default) for o in _list(request.get("outputs"), "outputs")]
    timeout = parameters.get("timeout")
    if timeout is not None and not _is_count(timeout, minimum=1):
        raise ProtocolError("parameter 'timeout' must be a positive number of microseconds")
    return InferRequest(_id(request.get("id")), inputs, outputs, timeout, parameters)


def _is_count(value: object, minimum: int = 0) -> bool:
    """An int64 JSON integer of at least ``minimum`` (``true`` is no number here)."""
    return type(value) is int and minimum <= value <= INT64_MAX


def _header_length(value: str | None, size: int) -> int:
    if value is None:
        return size
    # ASCII digits only: str.isdigit() also accepts "²" and "١٢", which int() refuses.
    if not (value.isascii() and value.isdigit() and len(value) <= 19) or int(value) > size:
        raise ProtocolError(f"{HEADER_LENGTH} must be a byte count within the body, got {value!r}")
    return int(value)


def _id(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ProtocolError("'id' must be a string")
    return value


def _object(value: object, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"'{what}' must be an object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"'{what}' must be a list")
    return value


def _inputs(items: list[Any], binary: memoryview) -> list[Input]:
    inputs, offset = [], 0
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError("each input must be an object with a 'name'")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise ProtocolError(f"input {item['name']!r}: 'shape' must be a list of sizes")
        size = _object(item.get("parameters"), "parameters").get("binary_data_size")
        raw = None
        if size is not None:
            if not _is_count(size) or offset + size > len(binary):
                raise ProtocolError(f"input {item['name']!r}: binary_data_size past the body")
            raw, offset = bytes(binary[offset : offset + size]), offset + size
        elif not isinstance(item.get("data"), list):
            raise ProtocolError(f"input {item['name']!r} has neither 'data' nor binary data")
        datatype = item.get("datatype", "")
        if not isinstance(datatype, str):
            raise ProtocolError(f"input {item['name']!r}: 'datatype' must be a string")
        inputs.append(Input(item["name"], datatype, tuple(shape), item.get("data"), raw))
    if offset != len(binary):
        raise ProtocolError("the binary data is longer than the inputs' binary_data_size")
    return inputs


def _output(item: object, binary_default: bool) -> Output:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProtocolError("each requested output must be an object with a 'name'")
    parameters = _object(item.get("parameters"), "parameters")
    classes = parameters.get("classification", 0)
    if not _is_count(classes):
        raise ProtocolError("parameter 'classification' must be a count of classes")
    return Output(item["name"], bool(parameters.get("binary_data", binary_default)), classes)


def byte_elements(tensor: Input) -> list[bytes]:
    """A BYTES tensor's elements: length-prefixed in binary, base64 strings in JSON."""
    if tensor.raw is not None:
        return _length_prefixed(tensor.raw)
    assert tensor.data is not None
    elements = _flat(tensor.data)
    try:
        if not all(isinstance(element, str) for element in elements):
            raise ValueError("not a string")
        return [base64.b64decode(element, validate=True) for element in elements]
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise ProtocolError(
            f"input {tensor.name!r}: in JSON, each image must be a base64 string"
        ) from None


def _length_prefixed(raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError("a BYTES element's 4-byte length is cut short")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ProtocolError("a BYTES element is longer than the data")
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def fp32_bytes(tensor: Input) -> bytes:
    """An FP32 tensor's values as little-endian float32 bytes, checked against its shape."""
    count = math.prod(tensor.shape)
    if tensor.raw is not None:
        if len(tensor.raw) != 4 * count:
            raise ProtocolError(f"input {tensor.name!r}: {len(tensor.raw)} bytes for {count} FP32")
        return tensor.raw
    assert tensor.data is not None
    values = _flat(tensor.data)
    if len(values) != count or not all(_is_float32(v) for v in values):
        raise ProtocolError(
            f"input {tensor.name!r}: 'data' must hold {count} numbers, each a finite float32"
        )
    packed = array("f", values)
    if sys.byteorder == "big":  # the protocol's binary data is little-endian
        packed.byteswap()
    return packed.tobytes()


def _is_float32(value: object) -> bool:
    if type(value) is int:
        return abs(value) <= FLOAT32_MAX
    return type(value) is float and math.isfinite(value) and abs(value) <= FLOAT32_MAX


def _flat(data: list[Any]) -> list[Any]:
    """JSON tensor data may be nested (row-major) or flat; walked without recursion."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """An output to send: FP32 bytes, or BYTES elements."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    binary: bool
    fp32: bytes = b""
    elements: tuple[bytes, ...] = ()

    def payload(self) -> bytes:
        """The binary form of the data."""
        if self.datatype == "FP32":
            return self.fp32
        return b"".join(struct.pack("<I", len(e)) + e for e in self.elements)

    def json_data(self) -> list[Any]:
        """The JSON form of the data (flat, row-major)."""
        if self.datatype == "FP32":
            values = array("f", self.fp32)
            if sys.byteorder == "big":
                values.byteswap()
            return values.tolist()
        return [e.decode("utf-8") for e in self.elements]


def response(
    model: str, request_id: str | None, outputs: list[OutputTensor], version: str = "1"
) -> tuple[bytes, dict[str, str]]:
    """The response body and its content headers, binary outputs after the JSON.

    ``version`` is the model version that answered.
    """
    tensors, payloads = [], []
    for output in outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
        }
        if output.binary:
            payload = output.payload()
            tensor["parameters"] = {"binary_data_size": len(payload)}
            payloads.append(payload)
        else:
            tensor["data"] = output.json_data()
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if request_id is not None:
        body["id"] = request_id
    header = json.dumps(body).encode()
    if not payloads:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(payloads), headers
