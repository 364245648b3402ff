"""The process-wide compute gate: running passes never hold more threads than the budget."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from server.service.compute import ComputeGate
from tests.conftest import wait_until


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


class _Clock:
    """A clock the passes advance: each pass lasts exactly what the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _admission_order(
    gate: ComputeGate, clock: _Clock, passes: list[tuple[str, float, float]]
) -> list[str]:
    """Queue ``passes`` (model, seconds, weight) in order behind a held gate, then let them go."""
    order: list[str] = []
    release = threading.Event()

    def run(model: str, seconds: float, weight: float) -> None:
        with gate.hold(1, model, weight):
            order.append(model)
            clock.now += seconds

    with ThreadPoolExecutor(len(passes) + 1) as pool:
        blocker_in = threading.Event()
        pool.submit(_hold_until, gate, blocker_in, release)
        assert blocker_in.wait(30)
        for n, arguments in enumerate(passes, start=1):
            pool.submit(run, *arguments)
            wait_until(lambda n=n: gate.waiting == n)
        release.set()
    return order


def _hold_until(gate: ComputeGate, inside: threading.Event, release: threading.Event) -> None:
    with gate.hold(1, "blocker"):
        inside.set()
        assert release.wait(30)


def test_busy_models_take_turns_by_compute_time_not_by_batch() -> None:
    clock = _Clock()
    gate = ComputeGate(budget=1, clock=clock)
    # "fast" batches take 1 s, "slow" ones 3 s: fast runs three batches to slow's one.
    passes = [("fast", 1.0, 1.0)] * 4 + [("slow", 3.0, 1.0)] * 4
    assert _admission_order(gate, clock, passes) == ["fast", "slow"] + ["fast"] * 3 + ["slow"] * 3
    assert (gate.used("fast"), gate.used("slow")) == (4.0, 12.0)


def test_a_weight_of_three_gets_three_times_the_compute() -> None:
    clock = _Clock()
    gate = ComputeGate(budget=1, clock=clock)
    passes = [("heavy", 1.0, 3.0)] * 4 + [("light", 1.0, 1.0)] * 4
    assert (
        _admission_order(gate, clock, passes) == ["heavy", "light"] + ["heavy"] * 3 + ["light"] * 3
    )


def test_a_model_back_from_idle_saves_no_credit() -> None:
    clock = _Clock()
    gate = ComputeGate(budget=1, clock=clock)
    assert _admission_order(gate, clock, [("busy", 10.0, 1.0)]) == ["busy"]
    release, inside = threading.Event(), threading.Event()
    with ThreadPoolExecutor(2) as pool:
        pool.submit(_hold_until_as, gate, "busy", inside, release)
        assert inside.wait(30)
        back_in, back_done = threading.Event(), threading.Event()
        back_done.set()
        joined = pool.submit(_hold_until_as, gate, "back", back_in, back_done)
        wait_until(lambda: gate.waiting == 1)
        # It starts level with the busy model, not 10 s behind it with 10 s to claim.
        assert gate.used("back") == gate.used("busy") == 10.0
        release.set()
        joined.result(timeout=30)
    assert back_in.is_set()


def _hold_until_as(
    gate: ComputeGate, model: str, inside: threading.Event, release: threading.Event
) -> None:
    with gate.hold(1, model):
        inside.set()
        assert release.wait(30)


def test_a_pass_is_charged_its_share_of_the_budget() -> None:
    clock = _Clock()
    gate = ComputeGate(budget=4, clock=clock)
    with gate.hold(2, "half") as held:
        clock.now += 3.0
    assert held.compute_s == 1.5  # 3 s on half the cores
    assert gate.used("half") == 1.5


def test_the_turn_waits_briefly_for_a_model_still_owed_compute() -> None:
    # A model with one worker is not waiting while its own pass runs; when the pass ends
    # and it is still behind, its next batch gets the turn if it comes within the window.
    clock = _Clock()
    gate = ComputeGate(budget=1, clock=clock, anticipation_s=0.5)
    assert _admission_order(gate, clock, [("slow", 3.0, 1.0)]) == ["slow"]
    clock.now += 10  # slow has been idle since
    order: list[str] = []
    fast_in, fast_release, slow_in = threading.Event(), threading.Event(), threading.Event()

    def fast() -> None:
        with gate.hold(1, "fast"):
            order.append("fast")
            clock.now += 1.0
            fast_in.set()
            assert fast_release.wait(30)

    def slow() -> None:
        with gate.hold(1, "slow"):
            order.append("slow")
            slow_in.set()

    with ThreadPoolExecutor(3) as pool:
        pool.submit(fast)
        assert fast_in.wait(30)
        pool.submit(slow)
        wait_until(lambda: gate.waiting == 1)
        fast_release.set()
        assert not slow_in.wait(0.2)  # a guard: the turn is kept for fast (1 s used < 3 s)
        fast_in.clear()
        pool.submit(fast)
        assert fast_in.wait(30)  # fast's next batch came within the window: it goes first
        assert not slow_in.is_set()
        clock.now += 1.0  # and once fast's window is over, the turn passes on
        assert slow_in.wait(30)
    assert order == ["fast", "fast", "slow"]


class _TickingClock(_Clock):
    """A clock that also moves on by a microsecond each read, so no release is ever 'just now'."""

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now


def test_a_model_loaded_at_run_time_takes_its_share_without_a_burst() -> None:
    clock = _TickingClock()
    gate = ComputeGate(budget=1, clock=clock, anticipation_s=0.0)
    # The gate-holding "blocker" of _admission_order is busy too: it gets the others' history.
    _admission_order(gate, clock, [("a", 1.0, 1.0), ("b", 1.0, 1.0)] * 4 + [("blocker", 4.0, 1.0)])
    # "new" arrives (loaded while the server runs) owed nothing: 4 s behind the others, it
    # starts level with them instead of running its three batches first to catch up.
    passes = [("a", 1.0, 1.0)] * 3 + [("b", 1.0, 1.0)] * 3 + [("new", 1.0, 1.0)] * 3
    order = _admission_order(gate, clock, passes)
    rounds = [set(order[i : i + 3]) for i in range(0, 9, 3)]
    assert rounds == [{"a", "b", "new"}] * 3, order
    assert abs(gate.used("new") - gate.used("a")) < 0.01  # lifted to their level as it joined
