"""From settings to a loaded model: names, labels, preprocessing and output width, any source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loadtest.exports import exported_with_fixed_batch
from server.models.errors import ModelLoadError
from server.models.loading import IMAGENET_SPEC, load_model
from server.models.sources import served_name
from tests.conftest import make_settings, tiny_classifier

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["ts", "pt2", "onnx"])
def test_a_model_file_gets_its_stem_imagenet_preprocessing_and_generated_labels(
    tiny_files: dict[str, Path], kind: str
) -> None:
    model = load_model(make_settings(model=str(tiny_files[kind])))
    assert model.name == "model"
    assert model.num_classes == 12
    assert model.categories[:2] == ("class_0", "class_1")
    assert model.labels_source == "generated"
    assert model.preprocessing == IMAGENET_SPEC
    assert model.sha256 is not None
    assert len(model.sha256) == 64
    assert not model.random_weights


def test_a_path_keeps_its_case(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "MyNet.pt2"
    path.write_bytes(tiny_files["pt2"].read_bytes())
    model = load_model(make_settings(model=str(path)))
    assert model.name == "MyNet"


def test_labels_name_and_preprocessing_settings_apply(
    tiny_files: dict[str, Path], tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"flower {i}\n" for i in range(12)))
    settings = make_settings(
        model=str(tiny_files["ts"]), labels=labels, model_name="flowers", resize_size=240,
        crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bicubic",
        output="probabilities",
    )  # fmt: skip
    model = load_model(settings)
    assert (model.name, model.output) == ("flowers", "probabilities")
    assert model.categories[11] == "flower 11"
    assert model.labels_source == str(labels)
    spec = model.preprocessing
    assert (spec.resize_size, spec.crop_size, spec.mean, spec.std, spec.interpolation) == (
        240, 224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic"
    )  # fmt: skip


def test_a_label_count_mismatch_names_both_numbers(
    tiny_files: dict[str, Path], tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(ModelLoadError, match="has 2 labels but the model outputs 12 classes"):
        load_model(make_settings(model=str(tiny_files["onnx"]), labels=labels))


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_a_fixed_input_size_other_than_the_crop_is_refused(
    tiny_files: dict[str, Path], kind: str
) -> None:
    with pytest.raises(ModelLoadError, match="takes 224x224 images but the crop size is 240"):
        load_model(make_settings(model=str(tiny_files[kind]), crop_size=240, resize_size=274))


def test_torchscript_reveals_its_input_size_in_the_probe(tmp_path: Path) -> None:
    """A traced ViT only takes 224x224: the probe pass fails at startup with the crop named."""
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(224, 32, 1, 2, 32, 64, num_classes=5).eval()
    path = tmp_path / "vit.ts"
    torch.jit.trace(vit, torch.zeros(1, 3, 224, 224), check_trace=False).save(str(path))
    assert load_model(make_settings(model=str(path))).num_classes == 5
    with pytest.raises(ModelLoadError, match=r"a 1x3x192x192 input failed.*BATCHSERVE_CROP_SIZE"):
        load_model(make_settings(model=str(path), crop_size=192))


def test_a_fixed_batch_export_is_refused_unless_batches_are_that_size(tmp_path: Path) -> None:
    path = exported_with_fixed_batch(tiny_classifier(), tmp_path / "one.pt2", 224, batch=1)
    with pytest.raises(ModelLoadError, match=r"batches of exactly 1.*MAX_BATCH_SIZE=1"):
        load_model(make_settings(model=str(path), max_batch_size=4))
    assert load_model(make_settings(model=str(path), max_batch_size=1)).num_classes == 12


def test_a_twelve_class_state_dict_sizes_the_head_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flowers.pth"
    torch.save(tiny_classifier(12).state_dict(), path)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"flower_{i}" for i in range(12)))
    model = load_model(make_settings(model="resnet18", weights=str(path), labels=labels))
    assert model.num_classes == 12
    assert model.categories[0] == "flower_0"
    assert model.name == "resnet18"
    assert model.source == "torchvision"
    # Its preprocessing stays the architecture's registry default.
    assert model.preprocessing.crop_size == 224
    assert model.preprocessing.resize_size == 256
    expected = tiny_classifier(12)(torch.ones(1, 3, 224, 224))
    assert model.module is not None
    assert torch.allclose(model.module(torch.ones(1, 3, 224, 224)), expected, atol=1e-5)


def test_a_thousand_output_file_gets_imagenet_labels(tmp_path: Path) -> None:
    path = tmp_path / "net.ts"
    torch.jit.trace(tiny_classifier(1000), torch.zeros(1, 3, 224, 224)).save(str(path))
    model = load_model(make_settings(model=str(path)))
    assert model.labels_source == "imagenet"
    assert model.categories[281] == "tabby"


def test_resize_smaller_than_crop_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="smaller than BATCHSERVE_CROP_SIZE"):
        load_model(make_settings(model="mobilenet_v3_small", resize_size=200, crop_size=224))


def test_a_file_name_that_is_no_valid_model_name_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="BATCHSERVE_MODEL_NAME"):
        served_name(make_settings(model=str(tmp_path / "my net!.pt2")))
    assert (
        served_name(make_settings(model=str(tmp_path / "my net!.pt2"), model_name="net")) == "net"
    )


def test_an_output_that_is_not_batch_by_classes_is_refused(tmp_path: Path) -> None:
    class Features(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3), keepdim=True)

    path = tmp_path / "features.ts"
    torch.jit.trace(Features(), torch.zeros(1, 3, 224, 224)).save(str(path))
    with pytest.raises(ModelLoadError, match="batch x classes"):
        load_model(make_settings(model=str(path)))
