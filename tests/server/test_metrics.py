"""Metrics: names, buckets, initialised series, and the per-model batcher observer."""

from __future__ import annotations

from batcher import BatchRecord, DropReason
from server.metrics import Metrics


def _metrics() -> Metrics:
    return Metrics(
        batch_sizes=(1, 2, 4, 8),
        endpoints=["/predict"],
        grpc_methods=["/inference.GRPCInferenceService/ModelInfer"],
        error_codes=["invalid_image"],
    )


def test_the_batch_size_buckets_are_the_plans() -> None:
    metrics = _metrics()
    metrics.for_model("m")
    text = metrics.exposition("")[0].decode()
    for bucket in ("1.0", "2.0", "4.0", "8.0", "+Inf"):
        assert f'batchserve_batch_size_bucket{{le="{bucket}",model="m",version="1"}} 0.0' in text
    assert 'le="16.0"' not in text


def test_labelled_series_exist_from_the_start() -> None:
    metrics = _metrics()
    metrics.for_model("a")
    metrics.for_model("b")
    text = metrics.exposition("")[0].decode()
    assert 'batchserve_errors_total{code="invalid_image"} 0.0' in text
    for model in ("a", "b"):
        for reason in DropReason:
            labels = f'model="{model}",reason="{reason.value}",version="1"'
            assert f"batchserve_dropped_total{{{labels}}} 0.0" in text
        count = f'batchserve_preprocess_duration_seconds_count{{model="{model}",version="1"}}'
        assert f"{count} 0.0" in text
    unnamed = (
        'batchserve_request_duration_seconds_count{endpoint="/predict",model="",protocol="http",'
        'version=""}'
    )
    assert f"{unnamed} 0.0" in text
    method = "/inference.GRPCInferenceService/ModelInfer"
    grpc = f'{{endpoint="{method}",model="",protocol="grpc",version=""}}'
    assert f"batchserve_request_duration_seconds_count{grpc} 0.0" in text


def test_the_observer_hooks_feed_batch_queue_and_drop_metrics_of_their_model_only() -> None:
    metrics = _metrics()
    observer, other = metrics.for_model("m", 2), metrics.for_model("other")
    observer.on_batch(BatchRecord(size=3, queue_waits_s=(0.001, 0.002, 0.003), run_s=0.2, ok=True))
    observer.on_drop(DropReason.DEADLINE)
    metrics.count_images("m", "2", "/predict", 3)
    text = metrics.exposition("")[0].decode()
    assert 'batchserve_batch_size_bucket{le="4.0",model="m",version="2"} 1.0' in text
    assert 'batchserve_queue_wait_seconds_count{model="m",version="2"} 3.0' in text
    assert 'batchserve_inference_duration_seconds_count{model="m",version="2"} 1.0' in text
    assert 'batchserve_dropped_total{model="m",reason="deadline",version="2"} 1.0' in text
    images = 'batchserve_images_total{endpoint="/predict",model="m",protocol="http",version="2"}'
    assert f"{images} 3.0" in text
    assert 'batchserve_inference_duration_seconds_count{model="other",version="1"} 0.0' in text
    assert 'batchserve_inference_duration_seconds_count{model="m",version="1"}' not in text
    assert other.model == "other"


def test_requests_carry_the_model_they_were_for() -> None:
    metrics = _metrics()
    metrics.observe_request("/models/{name}/predict", 200, 0.1, "m", "3")
    text = metrics.exposition("")[0].decode()
    labels = 'endpoint="/models/{name}/predict",model="m",protocol="http",status="200",version="3"'
    assert f"batchserve_requests_total{{{labels}}} 1.0" in text


def test_grpc_calls_are_counted_with_their_protocol_and_status_name() -> None:
    metrics = _metrics()
    method = "/inference.GRPCInferenceService/ModelInfer"
    metrics.observe_request(method, "NOT_FOUND", 0.01, protocol="grpc")
    metrics.count_images("m", "1", method, 2, protocol="grpc")
    text = metrics.exposition("")[0].decode()
    labels = f'endpoint="{method}",model="",protocol="grpc",status="NOT_FOUND",version=""'
    assert f"batchserve_requests_total{{{labels}}} 1.0" in text
    images = f'endpoint="{method}",model="m",protocol="grpc",version="1"'
    assert f"batchserve_images_total{{{images}}} 2.0" in text


def test_openmetrics_is_served_when_asked_for() -> None:
    body, content_type = _metrics().exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


def test_model_info_is_one_series_per_model_with_value_one() -> None:
    metrics = _metrics()
    labels = {
        "model": "m", "version": "1", "state": "READY", "weights": "w", "engine": "openvino",
        "engine_version": "2026.4.1", "device": "cpu", "precision": "int8",
        "max_batch_size": "8", "workers": "1",
    }  # fmt: skip
    metrics.set_model_info(**labels)
    metrics.set_model_info(**{**labels, "model": "n"})
    text = metrics.exposition("")[0].decode()
    assert text.count("batchserve_model_info{") == 2
    assert 'model="n"' in text
    assert 'model="m"' in text
    metrics.clear_model_info()
    assert "batchserve_model_info{" not in metrics.exposition("")[0].decode()
