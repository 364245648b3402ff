"""Bounding the request head: 431 ``headers_too_large`` for a head over the limits.

batchserve parses HTTP with httptools (llhttp, as Node.js does): it costs the
event loop less CPU per request than h11's pure-Python parser (issue 19's
notes; docs/performance.md, "The event loop's cost"). httptools itself has no limit on a
head: it keeps appending a header value that never ends. :class:`BoundedHttpToolsProtocol`
counts the head as it arrives and refuses, with 431 in the API's error shape and
then closing the connection (after an unread head the stream cannot be trusted
to be in sync):

- a complete head whose request line and header lines exceed the bytes limit,
  or with more header lines than the count limit;
- an incomplete head once more than the bytes limit has arrived without its end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Largest request head (request line + headers) accepted.
MAX_REQUEST_HEAD_BYTES: Final = 32 * 1024
#: Most header lines in one request.
MAX_HEADER_COUNT: Final = 100
HEADERS_TOO_LARGE: Final = "headers_too_large"
#: What the request line adds to its method and target: two spaces, "HTTP/1.1", CRLF.
_REQUEST_LINE_FRAMING: Final = len(b"  HTTP/1.1\r\n")
#: What a header line adds to its name and value: ": " and CRLF.
_HEADER_LINE_FRAMING: Final = len(b": \r\n")


def head_size(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """Bytes of the head as sent: request line, ``name: value`` lines, the empty line."""
    lines = sum(len(name) + len(value) + _HEADER_LINE_FRAMING for name, value in headers)
    return len(method) + len(target) + _REQUEST_LINE_FRAMING + lines + 2


class _HeadTooLargeError(httptools.HttpParserError):
    """Raised from a parser callback to stop parsing a head over the limits."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits and a JSON 431.

    ``on_refused`` is called once per refused head (the app counts it in
    ``batchserve_errors_total{code="headers_too_large"}``).
    """

    on_refused: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusal: str | None = None
        self._head_open = False
        self._head_lines: list[tuple[bytes, bytes]] = []
        self._target = b""
        self._unfinished_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; count it against the limit when all of it belongs to an unfinished head.

        A read in which a head begins is not counted (part of it may be the
        previous request's body), so an unfinished head is refused at most one
        read past the limit, and a head within the limit never is.
        """
        in_head_before = self._head_open
        super().data_received(data)
        if self.refusal is None and in_head_before and self._head_open:
            self._unfinished_bytes += len(data)
            if self._unfinished_bytes > MAX_REQUEST_HEAD_BYTES:
                self._refuse(f"the request head exceeds {MAX_REQUEST_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        """A new request: its head starts."""
        super().on_message_begin()
        self._head_open = True
        self._head_lines = []
        self._target = b""
        self._unfinished_bytes = 0

    def on_url(self, url: bytes) -> None:
        """A piece of the request target."""
        self._target += url
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header line, as sent; refused once there are too many."""
        self._head_lines.append((name, value))
        if len(self._head_lines) > MAX_HEADER_COUNT:
            count = len(self._head_lines)
            self._stop(f"the request has {count} headers; the limit is {MAX_HEADER_COUNT}")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is complete: measure it whole before the app sees it."""
        self._head_open = False
        size = head_size(self.parser.get_method(), self._target, self._head_lines)
        if size > MAX_REQUEST_HEAD_BYTES:
            self._stop(f"the request head is {size} bytes; the limit is {MAX_REQUEST_HEAD_BYTES}")
        super().on_headers_complete()

    def _stop(self, refusal: str) -> None:
        """Abort the parse: uvicorn then calls ``send_400_response``, which answers 431."""
        self.refusal = refusal
        raise _HeadTooLargeError(refusal)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to an unparsable request; a head over the limits gets 431."""
        if self.refusal is None:
            super().send_400_response(msg)
            return
        self._refuse(self.refusal)

    def _refuse(self, refusal: str) -> None:
        self.refusal = refusal
        self.logger.info("refused a request head: %s", refusal)
        type(self).on_refused()
        body = {"error": {"code": HEADERS_TOO_LARGE, "message": refusal, "request_id": None}}
        self._send_and_close(431, json.dumps(body).encode())

    def _send_and_close(self, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} Request Header Fields Too Large\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def bounded_protocol(on_refused: Callable[[], None]) -> type[BoundedHttpToolsProtocol]:
    """A protocol class for uvicorn's ``http=`` that reports each refused head."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"on_refused": staticmethod(on_refused)},
    )
