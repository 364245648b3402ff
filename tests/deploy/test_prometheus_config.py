"""deploy/prometheus: config and alert rules pass promtool; the alerts pass their unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

PROMETHEUS = Path(__file__).parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> str:
    result = subprocess.run(
        [require_tool("promtool"), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_scrape_config_is_valid() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")


def test_the_alert_rules_are_valid() -> None:
    assert "SUCCESS: 5 rules found" in _promtool("check", "rules", "alerts.yml")


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test_severity_and_summary() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    for rule in rules:
        assert rule["alert"] in tested, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
