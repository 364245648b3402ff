"""The soak driver against a real server: every answer as expected, memory sampled."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.soak import SoakResult, report, soak, uploads
from tests.conftest import RunningServer

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_the_mix_has_photos_a_twelve_megapixel_one_and_hostile_uploads() -> None:
    mix = {u.name: u for u in uploads()}
    assert mix["rocket_12mp.jpg"].expected == 200
    assert {u.expected for u in mix.values()} == {200, 400, 422}


def test_a_short_soak_gets_only_expected_answers_and_samples_rss(
    resnet_server: RunningServer,
) -> None:
    result = asyncio.run(soak(resnet_server.url, concurrency=3, duration_s=4, every_s=0.5))
    assert sum(result.outcomes.values()) > 0
    assert not result.unexpected, result.unexpected
    assert len(result.rss_mb) >= 2
    assert all(mb > 50 for _, mb in result.rss_mb)
    text = report(result, 4, 3)
    assert "unexpected answers: 0" in text
    assert "| t (s) | RSS (MB) |" in text


def test_the_report_shows_wrong_answers() -> None:
    result = SoakResult()
    result.outcomes[("cat.jpg", 500)] = 2
    result.unexpected[("cat.jpg", 500)] = 2
    assert "unexpected answers: 2" in report(result, 10, 1)
