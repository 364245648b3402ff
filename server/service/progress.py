"""Where a request is: shared by the model units (which move it on) and the web layer."""

from __future__ import annotations


class Progress:
    """Which stage a request is in: ``preprocess``, ``queue`` or ``inference``.

    Set by the model unit as the request moves on, read by the web layer when
    its client disconnects (to count where clients give up).
    """

    __slots__ = ("stage",)

    def __init__(self) -> None:
        self.stage = "preprocess"

    def __repr__(self) -> str:
        return f"<Progress {self.stage}>"
