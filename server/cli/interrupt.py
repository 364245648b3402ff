"""SIGINT and SIGTERM as an exception, so that no signal ends in a traceback.

uvicorn handles both signals while it serves (a graceful drain), then raises
the signal again once it is done; before serving (say, during the weights
download) nothing handles them. :func:`install` makes both raise
:class:`Interrupted` in the main thread, which the command line turns into a
one-line message and an exit status.
"""

from __future__ import annotations

import signal
from types import FrameType


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived outside uvicorn's own handling.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise)
