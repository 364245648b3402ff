from __future__ import annotations

import asyncio

import pytest

from batcher import resolve
from batcher.pending import Pending


async def test_deliver_gives_each_caller_its_own_row_and_skips_cancelled_ones() -> None:
    loop = asyncio.get_running_loop()
    batch = [Pending(i, loop.create_future(), 0.0) for i in range(3)]
    batch[1].future.cancel()
    resolve.deliver(batch, ["a", "b", "c"])
    assert batch[0].future.result() == "a"
    assert batch[1].future.cancelled()
    assert batch[2].future.result() == "c"


async def test_deliver_refuses_a_result_count_that_does_not_match() -> None:
    loop = asyncio.get_running_loop()
    batch = [Pending(i, loop.create_future(), 0.0) for i in range(2)]
    with pytest.raises(ValueError, match="zip"):
        resolve.deliver(batch, ["only one"])


async def test_fail_gives_each_waiting_caller_its_own_error_instance() -> None:
    loop = asyncio.get_running_loop()
    batch = [Pending(i, loop.create_future(), 0.0) for i in range(3)]
    batch[0].future.set_result("done")
    assert resolve.fail(batch, lambda: RuntimeError("boom")) == 2
    errors = [batch[1].future.exception(), batch[2].future.exception()]
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert errors[0] is not errors[1]
