"""Reading a multipart/form-data body into parts, within the limits, in Starlette's words."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.web.multipart import FormLimits, FormPart, MultipartError, read_form

LIMITS = FormLimits(max_files=2, max_fields=2, max_field_bytes=16)
TYPE = "multipart/form-data; boundary=xyz"


def _part(disposition: str, data: bytes, extra: str = "") -> bytes:
    head = f"--xyz\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()
    return head + data + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--xyz--\r\n"


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def _read(body: bytes, size: int = 65536, limits: FormLimits = LIMITS) -> list[FormPart]:
    return await read_form(TYPE, _chunks(body, size), limits)


NAMELESS = 'The Content-Disposition header field "name" must be provided.'
PHOTO = bytes(range(256)) * 40 + b"\r\n--xy not the boundary\r\n"


@pytest.mark.parametrize("size", [1, 7, 65536])
async def test_the_parts_come_back_in_order_whatever_the_chunks(size: int) -> None:
    body = _body(
        _part('form-data; name="note"', b"hello"),
        _part('form-data; name="file"; filename="cat.jpg"', PHOTO, "Content-Type: image/jpeg\r\n"),
    )
    parts = await _read(body, size)
    assert [(p.name, p.filename, bytes(p.data)) for p in parts] == [
        ("note", None, b"hello"),
        ("file", "cat.jpg", PHOTO),
    ]
    assert [p.is_file for p in parts] == [False, True]


async def test_names_are_utf8_and_an_empty_file_is_a_file() -> None:
    body = _body(_part('form-data; name="file"; filename="chat-noir-é.jpg"', b""))
    (part,) = await _read(body)
    assert part.filename == "chat-noir-é.jpg"
    assert part.is_file
    assert part.data == b""


async def test_a_file_may_exceed_the_text_field_limit_a_text_field_may_not() -> None:
    large = b"x" * 1000
    (part,) = await _read(_body(_part('form-data; name="file"; filename="a"', large)))
    assert part.data == large
    with pytest.raises(MultipartError, match=r"^Part exceeded maximum size of 0KB\.$"):
        await _read(_body(_part('form-data; name="note"', b"y" * 17)))


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([_part('form-data; name="file"; filename="a"', b"1")] * 3,
         "Too many files. Maximum number of files is 2."),
        ([_part('form-data; name="n"', b"1")] * 3,
         "Too many fields. Maximum number of fields is 2."),
        ([_part("form-data", b"1")], NAMELESS),
        ([_part('form-data; filename="a"', b"1", "X-Other: y\r\n")], NAMELESS),
    ],
)  # fmt: skip
async def test_forms_over_the_limits_or_without_names_are_refused(
    parts: list[bytes], message: str
) -> None:
    with pytest.raises(MultipartError) as refused:
        await _read(_body(*parts))
    assert str(refused.value) == message


async def test_a_body_that_is_not_multipart_or_has_no_boundary_is_refused() -> None:
    with pytest.raises(MultipartError, match=r"^Invalid multipart data\.$"):
        await _read(b"this is not a multipart body")
    long_boundary = "multipart/form-data; boundary=" + "b" * 5000
    with pytest.raises(MultipartError, match=r"^Invalid multipart data\.$"):
        await read_form(long_boundary, _chunks(b"--" + b"b" * 5000, 100), LIMITS)
    with pytest.raises(MultipartError, match=r"^Missing boundary in multipart\.$"):
        await read_form("multipart/form-data", _chunks(b"", 1), LIMITS)


async def test_an_unknown_charset_falls_back_to_latin1() -> None:
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="caf\xe9"\r\n\r\n'
    body = _body(head + b"1\r\n")
    parts = await read_form(TYPE + "; charset=klingon", _chunks(body, 100), LIMITS)
    assert parts[0].filename == "café"
