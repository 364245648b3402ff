"""The process's compute: thread priorities, and one gate every forward pass goes through.

Several models each have their own workers, but they share the cores. The gate
admits a forward pass only while the compute threads of the passes running
(each counts its worker's threads) fit in the process's budget, one thread per
usable core (the runtime plan's ``cores``): the process never runs more compute
threads than cores. Between models it takes turns by compute time used, in
proportion to each model's weight (:class:`ComputeGate`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(slots=True)
class Held:
    """One pass's hold on the gate; once it ends, the compute it was charged."""

    model: str
    threads: int
    order: int
    #: Wall seconds x the budget's share held: a pass holding every core for 1 s is 1.
    compute_s: float = 0.0


#: How long a busy model that is owed the next turn may take to bring its next batch.
ANTICIPATION_S: Final = 0.02


class ComputeGate:
    """A counting gate over compute threads, shared by every model of the process.

    When passes of several models wait, the next one is the model's that has
    used the least compute per unit of weight (its ``used`` seconds / weight),
    so busy models share the machine in proportion to their weights, measured
    in seconds of compute, not in batches: a model whose batches take a quarter
    of the time runs four of them to the other's one.

    A model with one worker is never waiting while its pass runs: its next
    batch forms after. So when a pass ends and its model is still owed compute,
    the gate keeps the turn for it for up to ``anticipation_s`` (its clients'
    next requests arriving, the batch window) rather than hand it to the model
    that is ahead; a model back after longer than that was idle, and resumes
    level with the least-served busy model, never with credit saved up. A
    model alone waits only for threads.
    """

    def __init__(
        self,
        budget: int,
        clock: Callable[[], float] = time.perf_counter,
        anticipation_s: float = ANTICIPATION_S,
    ) -> None:
        """``budget``: the compute threads the process may run at once (its usable cores)."""
        self.budget = max(1, budget)
        self.anticipation_s = anticipation_s
        self._clock = clock
        self._free = self.budget
        self._changed = threading.Condition()
        self._used: dict[str, float] = {}
        self._active: Counter[str] = Counter()
        self._released: dict[str, float] = {}
        self._waiting: list[Held] = []
        self._orders = itertools.count()

    @property
    def free(self) -> int:
        """Threads not held by a running forward pass."""
        return self._free

    @property
    def waiting(self) -> int:
        """Passes waiting for their turn or their threads."""
        return len(self._waiting)

    def used(self, model: str) -> float:
        """The model's compute seconds divided by its weight (what decides whose turn it is)."""
        return self._used.get(model, 0.0)

    @contextlib.contextmanager
    def hold(self, threads: int, model: str = "", weight: float = 1.0) -> Iterator[Held]:
        """Block until it is ``model``'s turn and ``threads`` (at most the budget) are free."""
        held = Held(model, min(max(1, threads), self.budget), next(self._orders))
        with self._changed:
            self._join(model)
            self._waiting.append(held)
            # A turn kept for a model that may not come back ends by the clock: look again.
            poll = self.anticipation_s / 4 or None
            while not self._admits(held):
                self._changed.wait(poll)
            self._waiting.remove(held)
            self._free -= held.threads
        started = self._clock()
        try:
            yield held
        finally:
            ended = self._clock()
            held.compute_s = (ended - started) * held.threads / self.budget
            with self._changed:
                self._free += held.threads
                self._used[model] = self.used(model) + held.compute_s / weight
                self._active[model] -= 1
                self._released[model] = ended
                self._changed.notify_all()

    def _recent(self, model: str) -> bool:
        """Whether the model's last pass ended within the anticipation window."""
        released = self._released.get(model)
        return released is not None and self._clock() - released <= self.anticipation_s

    def _join(self, model: str) -> None:
        """A model back from idle starts at the least-served busy model's level, not below."""
        busy = [self.used(m) for m, n in self._active.items() if n > 0 and m != model]
        if self._active[model] == 0 and busy and not self._recent(model):
            self._used[model] = max(self.used(model), min(busy))
        self._active[model] += 1

    def _admits(self, held: Held) -> bool:
        first = min(self._waiting, key=lambda w: (self.used(w.model), w.order))
        if first is not held or self._free < held.threads:
            return False
        mine = self.used(held.model)
        return not any(
            self._active[m] == 0 and self.used(m) < mine and self._recent(m)
            for m in self._released
            if m != held.model
        )
