"""Resolving and loading weights: registry names, files, random, and the offline remedy."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torchvision.models import Weights, get_model, get_model_weights

from server.models.errors import ModelLoadError
from server.models.torchvision_models import (
    WeightsChoice,
    cached_weights_path,
    ensure_weights,
    expected_hash_prefix,
    load_torchvision_model,
    resolve_weights,
    weights_preprocessing,
)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_default_means_the_models_best_registry_weights() -> None:
    choice = resolve_weights("resnet50", "DEFAULT")
    assert choice.source == "registry"
    assert choice.label == "ResNet50_Weights.IMAGENET1K_V2"


@pytest.mark.parametrize(
    "name", ["IMAGENET1K_V1", "imagenet1k_v1", "ResNet50_Weights.IMAGENET1K_V1"]
)
def test_a_registry_name_selects_that_entry(name: str) -> None:
    assert resolve_weights("resnet50", name).label == "ResNet50_Weights.IMAGENET1K_V1"


def test_random_takes_labels_and_preprocessing_from_the_default_entry() -> None:
    choice = resolve_weights("resnet50", "random")
    assert (choice.source, choice.label) == ("random", "random")
    assert choice.entry == get_model_weights("resnet50").DEFAULT
    assert ensure_weights(choice) is None


def test_an_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelLoadError, match=r"unknown model 'resnet51'.*resnet50"):
        resolve_weights("resnet51", "DEFAULT")


def test_an_unknown_weights_value_names_the_choices() -> None:
    with pytest.raises(ModelLoadError, match=r"\(DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2, random\)"):
        resolve_weights("resnet50", "/no/such/file.pth")


@dataclass
class WeightsSite:
    """A real HTTP server publishing one weights file under a torchvision-style hashed name."""

    url: str
    directory: Path
    name: str
    content: bytes
    served: list[str]


@pytest.fixture
def weights_site(tmp_path: Path) -> Iterator[WeightsSite]:
    buffer = io.BytesIO()
    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), buffer)
    content = buffer.getvalue()
    name = f"mobilenet_v2-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    site = tmp_path / "site"
    site.mkdir()
    (site / name).write_bytes(content)
    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            served.append(self.path)

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}"
        yield WeightsSite(url, site, name, content, served)
        server.shutdown()


def _published(site: WeightsSite, name: str | None = None) -> WeightsChoice:
    default = get_model_weights("mobilenet_v2").DEFAULT
    entry = Weights(
        url=f"{site.url}/{name or site.name}", transforms=default.transforms, meta=default.meta
    )
    return WeightsChoice("mobilenet_v2", "registry", entry)


def test_registry_weights_are_downloaded_once_and_checked(torch_home, weights_site) -> None:
    choice = _published(weights_site)
    target = cached_weights_path(choice.entry)
    assert target.parent == torch_home / "hub" / "checkpoints"
    assert ensure_weights(choice) == target
    assert target.read_bytes() == weights_site.content
    assert ensure_weights(choice) == target
    assert len(weights_site.served) == 1
    assert load_torchvision_model(choice).num_classes == 1000


def test_a_download_that_does_not_match_its_hash_is_deleted_never_loaded(
    torch_home, weights_site
) -> None:
    # The same bytes under a name promising another hash: as if corrupted on the way.
    wrong = weights_site.name.replace(weights_site.name[13:21], "00000000")
    (weights_site.directory / wrong).write_bytes(weights_site.content)
    choice = _published(weights_site, wrong)
    with pytest.raises(ModelLoadError, match=r'invalid hash value \(expected "00000000"'):
        ensure_weights(choice)
    checkpoints = torch_home / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []


def test_a_damaged_cached_file_is_deleted_and_downloaded_again(torch_home, weights_site) -> None:
    choice = _published(weights_site)
    target = cached_weights_path(choice.entry)
    target.parent.mkdir(parents=True)
    target.write_bytes(weights_site.content[: len(weights_site.content) // 2])  # partial
    assert ensure_weights(choice) == target
    assert target.read_bytes() == weights_site.content
    assert len(weights_site.served) == 1


def test_the_published_hash_prefix_is_read_from_the_file_name() -> None:
    assert expected_hash_prefix(get_model_weights("resnet50").DEFAULT) == "11ad3fa6"


def test_a_failed_download_is_a_clear_error_that_names_the_remedies(torch_home: Path) -> None:
    default = get_model_weights("resnet50").DEFAULT
    # A real download attempt to a port where nothing listens.
    unreachable = Weights(
        url="http://127.0.0.1:9/resnet50-unreachable.pth",
        transforms=default.transforms,
        meta=default.meta,
    )
    choice = WeightsChoice("resnet50", "registry", unreachable)
    with pytest.raises(ModelLoadError) as caught:
        ensure_weights(choice)
    message = str(caught.value)
    assert "could not download" in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert "BATCHSERVE_WEIGHTS=random" in message
    assert "BATCHSERVE_WEIGHTS=/path/to/state_dict.pth" in message
    assert not (torch_home / "hub" / "checkpoints" / "resnet50-unreachable.pth").exists()


def test_a_state_dict_file_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(3)
    original = get_model("mobilenet_v2", weights=None)
    path = tmp_path / "mine.pth"
    torch.save(original.state_dict(), path)
    loaded = load_torchvision_model(resolve_weights("mobilenet_v2", str(path)))
    assert loaded.weights_label == str(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not loaded.module.training
    for ours, theirs in zip(loaded.module.parameters(), original.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_a_checkpoint_wrapping_its_state_dict_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": get_model("mobilenet_v2", weights=None).state_dict()}, path)
    assert load_torchvision_model(resolve_weights("mobilenet_v2", str(path))).num_classes == 1000


def test_a_file_that_does_not_fit_the_model_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save(get_model("mobilenet_v2", weights=None).state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"could not load weights for resnet50 from .*wrong"):
        load_torchvision_model(resolve_weights("resnet50", str(path)))


def test_preprocessing_comes_from_the_weights_metadata() -> None:
    inception = weights_preprocessing(get_model_weights("inception_v3").DEFAULT)
    assert (inception.resize_size, inception.crop_size) == (342, 299)
    resnet = weights_preprocessing(get_model_weights("resnet50").DEFAULT)
    assert (resnet.resize_size, resnet.crop_size, resnet.interpolation) == (232, 224, "bilinear")
    assert resnet.mean == pytest.approx((0.485, 0.456, 0.406))
