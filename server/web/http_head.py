"""Bounding the request head: 431 ``headers_too_large`` for a head over the limits.

h11 only bounds a head while it is still incomplete: a 70 KB header that
arrives in one read parses fine. :class:`BoundedH11Protocol` also measures
every complete head, and answers both cases (and too many header lines) with
431 in the API's error shape, then closes the connection: after an unread head
the stream cannot be trusted to be in sync.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Largest request head (request line + headers) accepted.
MAX_REQUEST_HEAD_BYTES: Final = 32 * 1024
#: Most header lines in one request.
MAX_HEADER_COUNT: Final = 100
HEADERS_TOO_LARGE: Final = "headers_too_large"


def head_size(event: h11.Request) -> int:
    """Bytes of the head as sent: request line, ``name: value`` lines, CRLFs."""
    request_line = len(event.method) + len(event.target) + len(b"HTTP/1.1") + 4
    headers = sum(len(name) + len(value) + 4 for name, value in event.headers)
    return request_line + headers + 2


def head_problem(event: h11.Request) -> str | None:
    """Why this complete head is refused, or None when it is within the limits."""
    if len(event.headers) > MAX_HEADER_COUNT:
        return f"the request has {len(event.headers)} headers; the limit is {MAX_HEADER_COUNT}"
    size = head_size(event)
    if size > MAX_REQUEST_HEAD_BYTES:
        return f"the request head is {size} bytes; the limit is {MAX_REQUEST_HEAD_BYTES}"
    return None


class _HeadTooLargeError(h11.RemoteProtocolError):
    """Raised in place of a parsed request whose head breaks the limits."""


class BoundedConnection(h11.Connection):
    """An h11 connection that refuses complete heads over the limits, like incomplete ones."""

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.refusal: str | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """h11's next event; a head over the limits raises RemoteProtocolError (hint 431)."""
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431 and not isinstance(exc, _HeadTooLargeError):
                self.refusal = f"the request head exceeds {MAX_REQUEST_HEAD_BYTES} bytes"
            raise
        if isinstance(event, h11.Request) and (problem := head_problem(event)):
            self.refusal = problem
            raise _HeadTooLargeError(problem, error_status_hint=431)
        return event


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with :class:`BoundedConnection` and a JSON 431.

    ``on_refused`` is called once per refused head (the app counts it in
    ``batchserve_errors_total{code="headers_too_large"}``).
    """

    on_refused: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = BoundedConnection(MAX_REQUEST_HEAD_BYTES)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to an unparsable request; a head over the limits gets 431."""
        refusal = getattr(self.conn, "refusal", None)
        if refusal is None:
            super().send_400_response(msg)
            return
        self.logger.info("refused a request head: %s", refusal)
        type(self).on_refused()
        body = {"error": {"code": HEADERS_TOO_LARGE, "message": refusal, "request_id": None}}
        self._send_and_close(431, json.dumps(body).encode())

    def _send_and_close(self, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body)):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


def bounded_protocol(on_refused: Callable[[], None]) -> type[BoundedH11Protocol]:
    """A protocol class for uvicorn's ``http=`` that reports each refused head."""
    return type(
        "BoundedH11Protocol", (BoundedH11Protocol,), {"on_refused": staticmethod(on_refused)}
    )
