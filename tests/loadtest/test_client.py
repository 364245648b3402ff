from __future__ import annotations

import asyncio
import json
import time

import pytest

from loadtest.client import closed_loop, probe_health
from tests.conftest import photo

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_closed_loop_users_measure_throughput_latency_and_batches(resnet_server) -> None:
    result = asyncio.run(closed_loop(resnet_server.url, photo("cat.jpg"), 3, 1.5))
    assert result.errors == 0
    assert result.throughput > 0
    assert result.percentile_ms(50) > 0
    assert 1 <= result.mean_batch_size <= 4


def test_health_probes_are_timed(resnet_server) -> None:
    timings = asyncio.run(probe_health(resnet_server.url, time.monotonic() + 0.3, 0.05))
    assert len(timings) >= 2
    assert all(t > 0 for t in timings)


def test_the_probe_command_prints_health_timings(resnet_server, capsys) -> None:
    from loadtest.probe import main

    main([resnet_server.url, "0.3"])
    timings = json.loads(capsys.readouterr().out)
    assert timings
    assert all(t > 0 for t in timings)
