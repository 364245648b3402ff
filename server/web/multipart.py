"""A multipart/form-data body read into memory with python-multipart's parser, within limits.

Starlette's form parser spools every file part to a temporary file and awaits a
write per chunk and a seek per file: built for forms of any size. An upload
here is bounded by BATCHSERVE_MAX_UPLOAD_MB / MAX_REQUEST_MB before it is read,
so the parts are kept as bytes, and the event loop does one parser call per
chunk of the body. The refusals, and their messages, are Starlette's.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


class MultipartError(ValueError):
    """The body is not a form this server reads; ``str(error)`` says why."""


@dataclass(slots=True)
class FormPart:
    """One part of the form: its field name, the file name (None for a text field), the bytes."""

    name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)

    @property
    def is_file(self) -> bool:
        """A file upload (its Content-Disposition names a filename), not a text field."""
        return self.filename is not None


@dataclass(frozen=True, slots=True)
class FormLimits:
    """Most file parts, most text fields, and the largest text field in bytes."""

    max_files: int
    max_fields: int
    max_field_bytes: int


def _decode(raw: bytes | bytearray, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


class _Collector:
    """python-multipart's callbacks: each part's headers, name and bytes, counted as they come."""

    def __init__(self, limits: FormLimits, charset: str) -> None:
        self.parts: list[FormPart] = []
        self._limits = limits
        self._charset = charset
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._files = 0
        self._fields = 0

    def callbacks(self) -> MultipartCallbacks:
        """The parser's callback table."""
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise MultipartError('The Content-Disposition header field "name" must be provided.')
        name = _decode(options[b"name"], self._charset)
        filename = options.get(b"filename")
        self._count(is_file=filename is not None)
        decoded = None if filename is None else _decode(filename, self._charset)
        self.parts.append(FormPart(name, decoded))

    def _count(self, *, is_file: bool) -> None:
        if is_file:
            self._files += 1
            if self._files > self._limits.max_files:
                limit = self._limits.max_files
                raise MultipartError(f"Too many files. Maximum number of files is {limit}.")
            return
        self._fields += 1
        if self._fields > self._limits.max_fields:
            limit = self._limits.max_fields
            raise MultipartError(f"Too many fields. Maximum number of fields is {limit}.")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if not part.is_file and len(part.data) + end - start > self._limits.max_field_bytes:
            kib = self._limits.max_field_bytes // 1024
            raise MultipartError(f"Part exceeded maximum size of {kib}KB.")
        part.data += data[start:end]


def _boundary_and_charset(content_type: str) -> tuple[bytes, str]:
    _, params = parse_options_header(content_type)
    if b"boundary" not in params:
        raise MultipartError("Missing boundary in multipart.")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        return params[b"boundary"], codecs.lookup(charset).name
    except LookupError:
        return params[b"boundary"], "latin-1"


async def read_form(
    content_type: str, body: AsyncIterator[bytes], limits: FormLimits
) -> list[FormPart]:
    """Every part of the form in ``body``, in order; :class:`MultipartError` if it is not one."""
    boundary, charset = _boundary_and_charset(content_type)
    collector = _Collector(limits, charset)
    try:
        # The parser refuses some boundaries itself (over 256 bytes): invalid data too.
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise MultipartError("Invalid multipart data.") from exc
    return collector.parts
