"""The process-wide compute gate: running passes never hold more threads than the budget."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from server.service.compute import ComputeGate


def test_a_pass_waits_until_its_threads_are_free() -> None:
    gate = ComputeGate(budget=2)
    holding, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with gate.hold(2):
            holding.set()
            release.wait(30)

    def second() -> None:
        with gate.hold(1):
            second_in.set()

    with ThreadPoolExecutor(2) as pool:
        pool.submit(first)
        assert holding.wait(30)
        pool.submit(second)
        assert not second_in.wait(0.2)  # only a guard: it must still be waiting
        release.set()
        assert second_in.wait(30)
    assert gate.free == 2


def test_passes_that_fit_run_together_and_the_budget_is_never_exceeded() -> None:
    gate = ComputeGate(budget=4)
    lock, peak, inside = threading.Lock(), [0], [0]
    both_in = threading.Barrier(2, timeout=30)

    def run(threads: int) -> None:
        with gate.hold(threads):
            with lock:
                inside[0] += threads
                peak[0] = max(peak[0], inside[0])
            if threads == 2:
                both_in.wait()  # two 2-thread passes fit at once: they must meet here
            with lock:
                inside[0] -= threads

    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(run, t) for t in (2, 2, 3, 4, 1, 3)]:
            future.result(timeout=60)
    assert peak[0] <= 4
    assert gate.free == 4


def test_a_pass_wider_than_the_budget_takes_all_of_it() -> None:
    gate = ComputeGate(budget=2)
    with gate.hold(16):
        assert gate.free == 0
    assert gate.free == 2
