"""The statistics extension's counts and cumulative nanoseconds, kept per model version."""

from __future__ import annotations

from server.service.statistics import InferenceStatistics, RequestStages


def test_requests_passes_and_failures_add_up_in_the_protocols_shape() -> None:
    stats = InferenceStatistics()
    stats.succeeded(
        2, 0.010, RequestStages(input_s=0.002, queue_s=0.003, infer_s=0.004, output_s=0.0005)
    )
    stats.succeeded(
        1, 0.020, RequestStages(input_s=0.001, queue_s=0.0, infer_s=0.004, output_s=0.0005)
    )
    stats.failed(0.5)
    stats.executed(3, 0.004, 0.0005)
    stats.executed(1, 0.002, 0.0001)
    stats.executed(1, 0.002, 0.0001)
    body = stats.as_dict("resnet50", "2")
    inference = body["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": 30_000_000}
    assert inference["fail"] == {"count": 1, "ns": 500_000_000}
    assert inference["queue"] == {"count": 2, "ns": 3_000_000}
    assert inference["compute_input"] == {"count": 2, "ns": 3_000_000}
    assert inference["compute_infer"] == {"count": 2, "ns": 8_000_000}
    assert inference["compute_output"] == {"count": 2, "ns": 1_000_000}
    assert inference["cache_hit"] == inference["cache_miss"] == {"count": 0, "ns": 0}
    assert (body["name"], body["version"]) == ("resnet50", "2")
    assert (body["inference_count"], body["execution_count"]) == (3, 3)
    assert body["batch_stats"] == [
        {"batch_size": 1, "compute_infer": {"count": 2, "ns": 4_000_000},
         "compute_output": {"count": 2, "ns": 200_000}},
        {"batch_size": 3, "compute_infer": {"count": 1, "ns": 4_000_000},
         "compute_output": {"count": 1, "ns": 500_000}},
    ]  # fmt: skip
    assert body["last_inference"] > 0
    assert body["memory_usage"] == []


def test_a_new_model_has_counted_nothing() -> None:
    body = InferenceStatistics().as_dict("m", "1")
    assert body["last_inference"] == body["inference_count"] == body["execution_count"] == 0
    assert all(d == {"count": 0, "ns": 0} for d in body["inference_stats"].values())
    assert body["batch_stats"] == []
