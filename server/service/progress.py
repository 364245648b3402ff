"""Where a request is: shared by the model units (which move it on) and the web layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.tracing import RequestTrace


class Progress:
    """Which stage a request is in: ``preprocess``, ``queue`` or ``inference``; and its trace.

    Set by the model unit as the request moves on, read by the web layer when
    its client disconnects (to count where clients give up). ``trace`` is the
    request's server span when tracing is on: the unit adds the stage spans to
    it, and the batch that runs the request links to it.
    """

    __slots__ = ("stage", "trace")

    def __init__(self, trace: RequestTrace | None = None) -> None:
        self.stage = "preprocess"
        self.trace = trace

    def __repr__(self) -> str:
        return f"<Progress {self.stage}>"
