"""The dashboard JSON: fixed uid, editable, the variables, and every panel the issue lists."""

from __future__ import annotations

import re

from tests.grafana.dashboard import load, metric_names, queries

REQUIRED_PANELS = (
    "Request rate by status", "Error ratio by code", "Latency p50 / p95 / p99",
    "Queue depth", "Queue wait p50 / p99", "Batch size (average and p95)",
    "Batch size distribution", "Inference time per batch", "Images per second through the model",
    "Worker utilisation", "Dropped requests by reason", "Resident memory", "CPU",
)  # fmt: skip


def test_the_dashboard_is_editable_with_a_fixed_uid_and_job_instance_variables() -> None:
    dashboard = load()
    assert dashboard["uid"] == "batchserve-overview"
    assert dashboard["editable"] is True
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance", "model"} <= set(variables)
    assert variables["model"]["includeAll"]
    assert variables["model"]["multi"]
    assert variables["instance"]["includeAll"]
    assert variables["job"]["includeAll"]


def test_every_required_panel_is_there_with_queries_and_a_unit() -> None:
    panels = {p["title"].split(" (predict endpoints)")[0]: p for p in load()["panels"]}
    for title in REQUIRED_PANELS:
        assert title in panels, title
    for panel in load()["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = load()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & area, p["title"]
        cells |= area


def test_every_query_filters_by_job_and_instance() -> None:
    for title, expr in queries(load()):
        for selector in re.findall(r"\{([^}]*)\}", expr):
            assert 'job=~"$job"' in selector, title
            assert 'instance=~"$instance"' in selector, title


def test_the_queries_name_only_batchserve_and_process_metrics() -> None:
    names = {name for _, expr in queries(load()) for name in metric_names(expr)}
    assert names
    assert all(n.startswith(("batchserve_", "process_")) for n in names), names


def test_request_queries_cover_every_predict_endpoint_and_filter_the_model() -> None:
    """Not just /predict: /models/{name}/predict (and any later predict endpoint) too."""
    for title, expr in queries(load()):
        assert 'endpoint="/predict"' not in expr, title
        for match in re.finditer(r"(batchserve_\w+)\{([^}]*)\}", expr):
            name, selector = match.groups()
            if name.startswith("batchserve_request"):
                assert 'endpoint=~".*(predict|predict/batch|infer|ModelInfer)"' in selector, title
            if name not in ("batchserve_errors_total", "batchserve_inflight_requests"):
                assert 'model=~"$model"' in selector, (title, name)


def test_predict_endpoint_filter_matches_every_inference_route() -> None:
    from server.web.app import ENDPOINTS
    from server.web.grpc.messages import method_names
    from server.web.grpc.service import endpoint

    methods = [endpoint(name) for name in method_names()]
    pattern = ".*(predict|predict/batch|infer|ModelInfer)"
    matched = {e for e in [*ENDPOINTS, *methods] if re.fullmatch(pattern, e)}
    assert matched == {
        "/predict", "/predict/batch", "/models/{name}/predict", "/models/{name}/predict/batch",
        "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
        "/inference.GRPCInferenceService/ModelInfer",
    }  # fmt: skip
