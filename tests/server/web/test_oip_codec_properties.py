"""Property tests: whatever body arrives, the protocol codec refuses it with ProtocolError only.

The inputs cover the codec's whole grammar, with wrong types at every
position: huge and non-ASCII numbers, deep nesting, strings a UTF-8 encoder
refuses, lying lengths in the header and in ``binary_data_size``. Anything but
a parsed request or a :class:`ProtocolError` would reach the client as a 500.
"""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.web import oip_codec
from server.web.oip_codec import ProtocolError

#: Numbers beyond int64 and float32, beyond Python's int-to-string limit, and NaN/infinity.
NUMBERS = (
    st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**400, 2**31, -1, 0, 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([3.5e38, -3.5e38, 1e308, 5e-324])
)
#: Text with lone surrogates, control characters and non-ASCII digits.
TEXT = st.text(alphabet=st.characters(codec=None), max_size=12) | st.sampled_from(
    ["", "IMAGE", "PIXELS", "PROBABILITIES", "\ud800", "١٢", "²", "é", "\x00"]
)
LEAVES = st.none() | st.booleans() | NUMBERS | TEXT
VALUES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3)
)


def _or_anything(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """The right kind of value most of the time, any JSON value sometimes."""
    return strategy | VALUES


SHAPES = _or_anything(st.lists(NUMBERS | st.booleans(), max_size=4))
DATA = _or_anything(st.lists(VALUES | st.lists(NUMBERS, max_size=4), max_size=6))
PARAMETERS = _or_anything(
    st.fixed_dictionaries(
        {},
        optional={
            "binary_data_size": _or_anything(NUMBERS),
            "binary_data": _or_anything(st.booleans()),
            "classification": _or_anything(NUMBERS),
            "timeout": _or_anything(NUMBERS),
            "binary_data_output": VALUES,
        },
    )
)
INPUT = _or_anything(
    st.fixed_dictionaries(
        {"name": _or_anything(st.sampled_from(["IMAGE", "PIXELS"]) | TEXT)},
        optional={
            "shape": SHAPES,
            "datatype": _or_anything(st.sampled_from(["BYTES", "FP32", "INT64"])),
            "data": DATA,
            "parameters": PARAMETERS,
        },
    )
)
OUTPUT = _or_anything(
    st.fixed_dictionaries({"name": _or_anything(TEXT)}, optional={"parameters": PARAMETERS})
)
REQUEST = _or_anything(
    st.fixed_dictionaries(
        {"inputs": _or_anything(st.lists(INPUT, max_size=3))},
        optional={
            "id": _or_anything(TEXT),
            "parameters": PARAMETERS,
            "outputs": _or_anything(st.lists(OUTPUT, max_size=2)),
        },
    )
)
HEADER_LENGTHS = (
    st.none()
    | st.sampled_from(["", "-1", "١٢", "²", "0x10", " 5", "9" * 5000])
    | (st.integers(0, 4096).map(str))
)

PROPERTIES = settings(max_examples=400, deadline=None)


def _decode_everything(request: oip_codec.InferRequest) -> None:
    """What the infer endpoint asks of a parsed request: each input's elements or numbers."""
    for tensor in request.inputs:
        for read in (oip_codec.byte_elements, oip_codec.fp32_bytes):
            with contextlib.suppress(ProtocolError):
                read(tensor)


def _parse_and_decode(body: bytes, header: str | None) -> None:
    try:
        request = oip_codec.parse(body, header)
    except ProtocolError as refused:
        message = str(refused)
    else:
        _decode_everything(request)
        return
    assert message  # a refusal says why


@PROPERTIES
@given(request=REQUEST, tail=st.binary(max_size=64), header=HEADER_LENGTHS)
def test_any_json_request_is_parsed_or_refused_with_a_protocol_error(
    request: object, tail: bytes, header: str | None
) -> None:
    text = json.dumps(request, allow_nan=True).encode("utf-8", "surrogatepass")
    _parse_and_decode(text + tail, header)


@PROPERTIES
@given(body=st.binary(max_size=256), header=HEADER_LENGTHS)
def test_any_bytes_are_parsed_or_refused_with_a_protocol_error(
    body: bytes, header: str | None
) -> None:
    _parse_and_decode(body, header)


@PROPERTIES
@given(
    elements=st.lists(st.binary(max_size=16), max_size=4),
    lie=st.integers(0, 2**32 - 1),
    declared=st.integers(-4, 512),
)
def test_binary_tensor_data_with_lying_lengths_is_refused_cleanly(
    elements: list[bytes], lie: int, declared: int
) -> None:
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    raw += struct.pack("<I", lie)
    header = {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [len(elements) + 1],
                          "parameters": {"binary_data_size": declared}}]}  # fmt: skip
    text = json.dumps(header).encode()
    _parse_and_decode(text + raw, str(len(text)))


@pytest.mark.parametrize("depth", [100, 990, 5_000, 200_000])
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    tensor = f'{{"name": "PIXELS", "datatype": "FP32", "shape": [1], "data": {nested}}}'
    body = f'{{"inputs": [{tensor}]}}'
    _parse_and_decode(body.encode(), None)


@pytest.mark.parametrize(
    "value", ["1" * 5_000, "1e999", "-1e999", "NaN", "Infinity", "3.5e38", str(2**64)]
)
def test_huge_and_non_finite_numbers_are_refused_wherever_they_are(value: str) -> None:
    for where in (
        '{"inputs": [], "parameters": {"timeout": %s}}',
        '{"inputs": [{"name": "PIXELS", "datatype": "FP32", "shape": [%s]}]}',
        '{"inputs": [{"name": "PIXELS", "datatype": "FP32", "shape": [1], "data": [%s]}]}',
        '{"inputs": [{"name": "x", "shape": [1], "parameters": {"binary_data_size": %s}}]}',
        '{"inputs": [], "outputs": [{"name": "P", "parameters": {"classification": %s}}]}',
    ):
        _parse_and_decode((where % value).encode(), None)


def test_numbers_are_bounded_as_the_protocol_types_them() -> None:
    """Dimensions and the timeout are int64; pixel values float32, finite."""
    cases = {
        f'{{"inputs": [{{"name": "I", "shape": [{2**63}], "data": []}}]}}': "'shape'",
        f'{{"inputs": [], "parameters": {{"timeout": {2**63}}}}}': "'timeout'",
        '{"inputs": [], "parameters": {"timeout": true}}': "'timeout'",
        '{"inputs": [{"name": "I", "shape": [true], "data": []}]}': "'shape'",
    }
    for body, message in cases.items():
        with pytest.raises(ProtocolError, match=message):
            oip_codec.parse(body.encode(), None)
    pixels = oip_codec.Input("PIXELS", "FP32", (2,), data=[1.0, 3.5e38])
    with pytest.raises(ProtocolError, match="finite float32"):
        oip_codec.fp32_bytes(pixels)
