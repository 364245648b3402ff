"""The drain-rate estimate behind Retry-After: explicit clock values, no sleeps."""

from __future__ import annotations

import pytest

from batcher.drain import DrainRate


def test_nothing_is_known_before_a_batch_completes() -> None:
    rate = DrainRate()
    assert rate.per_s is None
    assert rate.seconds_for(10) is None


def test_the_first_batch_counts_its_own_run_time() -> None:
    rate = DrainRate()
    rate.record(now=100.0, items=8, run_s=0.5)
    assert rate.per_s == pytest.approx(16.0)
    assert rate.seconds_for(32) == pytest.approx(2.0)


def test_later_batches_count_the_time_since_the_previous_completion() -> None:
    rate = DrainRate(smoothing=1.0)  # no smoothing: the newest interval alone
    rate.record(now=10.0, items=4, run_s=1.0)
    rate.record(now=10.5, items=4, run_s=1.0)  # two workers: a batch every 0.5 s
    assert rate.per_s == pytest.approx(8.0)


def test_the_rate_is_smoothed_towards_new_intervals() -> None:
    rate = DrainRate(smoothing=0.5)
    rate.record(now=0.0, items=10, run_s=1.0)  # 10/s
    rate.record(now=0.5, items=10, run_s=0.5)  # 20/s
    assert rate.per_s == pytest.approx(15.0)


def test_empty_batches_and_zero_intervals_change_nothing() -> None:
    rate = DrainRate()
    rate.record(now=1.0, items=4, run_s=1.0)
    rate.record(now=1.0, items=4, run_s=0.0)
    rate.record(now=2.0, items=0, run_s=1.0)
    assert rate.per_s == pytest.approx(4.0)


@pytest.mark.parametrize("smoothing", [0.0, -0.1, 1.5])
def test_the_smoothing_must_be_a_weight(smoothing: float) -> None:
    with pytest.raises(ValueError, match=rf"^smoothing must be in \(0, 1\], got {smoothing}$"):
        DrainRate(smoothing)
