"""The process's compute: thread priorities, and one gate every forward pass goes through.

Several models each have their own workers, but they share the cores. The gate
admits a forward pass only while the compute threads of the passes running
(each counts its worker's threads) fit in the process's budget, one thread per
core by default: the process never runs more compute threads than cores, and a
busy model cannot starve the others of more than their turn.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Final

import torch

#: How much nicer than the event loop the compute threads are (Linux: per thread).
COMPUTE_NICENESS: Final = 5


def lower_thread_priority() -> None:
    """Make the calling thread (and the OpenMP threads it will spawn) yield to the event loop.

    With every core busy decoding and running the model, the event loop thread
    would otherwise wait for a time slice, and /health with it. Threads inherit
    their creator's niceness, so torch's OpenMP team started from an inference
    thread is lowered too.
    """
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + COMPUTE_NICENESS
        )


def init_compute_thread(threads: int) -> None:
    """An inference thread: lower priority, and torch's thread count set *in this thread*.

    OpenMP settings are per thread: set only in the event loop's thread, they do
    not reach the thread that runs the forward pass, which then starts with
    OpenMP's own default team.
    """
    lower_thread_priority()
    torch.set_num_threads(threads)


class ComputeGate:
    """A counting gate over compute threads, shared by every model of the process."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = max(1, budget or os.cpu_count() or 1)
        self._free = self.budget
        self._changed = threading.Condition()

    @property
    def free(self) -> int:
        """Threads not held by a running forward pass."""
        return self._free

    @contextlib.contextmanager
    def hold(self, threads: int) -> Iterator[None]:
        """Block until ``threads`` (at most the whole budget) are free; hold them meanwhile."""
        need = min(max(1, threads), self.budget)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            yield
        finally:
            with self._changed:
                self._free += need
                self._changed.notify_all()
