"""Errors the client raises: the server's own error, or no answer at all."""

from __future__ import annotations


class BatchserveError(Exception):
    """The server answered with an error (``code`` is its machine-readable code)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class NotReadyError(TimeoutError):
    """The server did not become ready in time."""
