"""Reading the Grafana dashboard: its panels' PromQL, and the metric names it uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).parents[2] / "grafana" / "dashboards" / "batchserve.json"
_FUNCTIONS = {
    "histogram_quantile", "sum", "rate", "increase", "max_over_time", "avg_over_time",
    "clamp_min", "by", "le", "ignoring", "group_left", "on",
}  # fmt: skip


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label names, functions and variables removed)."""
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    without_grouping = re.sub(r"(by|ignoring|on|without)\s*\([^)]*\)", "", without_labels)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_grouping))
    return {w for w in words if w not in _FUNCTIONS and "_" in w}


def concrete(expr: str, job: str, rate_interval: str, model: str = ".*") -> str:
    """The expression Grafana would send with the variables set."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$job", job)
        .replace("$instance", ".*")
        .replace("$model", model)
    )
