"""Out of memory on a batch: which errors count, and the retry in two halves."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from server.service.memory import in_halves_when_out_of_memory, is_out_of_memory


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 8 GB"), True),
        (RuntimeError("[enforce fail] out of memory"), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),  # only the allocators' RuntimeError counts
        (MemoryError(), False),
    ],
)
def test_which_errors_are_out_of_memory(error: BaseException, expected: bool) -> None:
    assert is_out_of_memory(error) is expected


class Forward:
    """Fails batches larger than ``fits`` with ``error``; records every call's size."""

    def __init__(self, fits: int, error: Exception) -> None:
        self.fits, self.error, self.sizes = fits, error, []

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.sizes.append(len(items))
        if len(items) > self.fits:
            raise self.error
        return [item * 10 for item in items]


async def test_a_batch_that_fits_runs_once_and_releases_nothing() -> None:
    released: list[bool] = []
    forward = Forward(4, torch.OutOfMemoryError("unused"))
    assert await in_halves_when_out_of_memory(forward, [1, 2, 3], lambda: released.append(True))
    assert forward.sizes == [3]
    assert released == []


async def test_out_of_memory_releases_then_runs_two_halves_in_order() -> None:
    released: list[bool] = []
    forward = Forward(2, torch.OutOfMemoryError("injected"))
    rows = await in_halves_when_out_of_memory(forward, [1, 2, 3, 4], lambda: released.append(True))
    assert rows == [10, 20, 30, 40]
    assert forward.sizes == [4, 2, 2]
    assert released == [True]


async def test_halves_that_still_do_not_fit_fail_and_are_not_halved_again() -> None:
    forward = Forward(1, torch.OutOfMemoryError("injected"))
    with pytest.raises(torch.OutOfMemoryError):
        await in_halves_when_out_of_memory(forward, [1, 2, 3, 4], lambda: None)
    assert forward.sizes == [4, 2]


@pytest.mark.parametrize("items", [[1], [1, 2]], ids=["single", "pair"])
async def test_other_errors_and_single_items_are_not_retried(items: list[int]) -> None:
    error = ValueError("a bug") if len(items) == 2 else torch.OutOfMemoryError("one item")
    forward = Forward(0, error)
    with pytest.raises(type(error)):
        await in_halves_when_out_of_memory(forward, items, lambda: None)
    assert forward.sizes == [len(items)]
