"""A model repository: one folder per model, read into each model's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.models.errors import ModelConfigError, ModelLoadError
from server.models.repository import default_model, model_specs
from tests.conftest import make_settings


def _folder(root: Path, name: str, files: dict[str, str | bytes]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for file, content in files.items():
        target = folder / file
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return folder


def test_each_folder_is_a_model_named_after_it_with_its_own_settings(tmp_path: Path) -> None:
    _folder(
        tmp_path,
        "resnet",
        {"config.toml": 'model = "resnet50"\nweights = "random"\nmax_batch_size = 2\n'},
    )
    _folder(
        tmp_path,
        "mine",
        {"model.onnx": b"x", "labels.txt": "a\nb\n", "config.toml": "crop_size = 240\n"},
    )
    _folder(tmp_path, ".hidden", {"model.pt": b"x"})
    specs = model_specs(
        make_settings(model_repository=tmp_path, max_batch_size=8, mean="0.5,0.5,0.5")
    )
    assert [spec.name for spec in specs] == ["mine", "resnet"]
    mine, resnet = (spec.settings for spec in specs)
    assert mine.model == str(tmp_path / "mine" / "model.onnx")
    assert mine.labels == tmp_path / "mine" / "labels.txt"
    assert (mine.crop_size, mine.max_batch_size, mine.model_name) == (240, 8, "mine")
    assert mine.mean == (0.5, 0.5, 0.5)  # process-wide values are every model's defaults
    assert (resnet.model, resnet.weights, resnet.max_batch_size) == ("resnet50", "random", 2)
    assert resnet.labels is None


def test_relative_paths_in_config_are_read_from_the_models_folder(tmp_path: Path) -> None:
    _folder(
        tmp_path,
        "flowers",
        {"config.toml": 'model = "resnet18"\nweights = "best.pth"\nlabels = "names.json"\n'},
    )
    (spec,) = model_specs(make_settings(model_repository=tmp_path))
    assert spec.settings.weights == str(tmp_path / "flowers" / "best.pth")
    assert spec.settings.labels == tmp_path / "flowers" / "names.json"


def test_a_process_wide_labels_file_is_never_another_models(tmp_path: Path) -> None:
    _folder(tmp_path, "a", {"config.toml": 'model = "resnet18"\n'})
    (spec,) = model_specs(make_settings(model_repository=tmp_path, labels=tmp_path / "x.txt"))
    assert spec.settings.labels is None


@pytest.mark.parametrize(("files", "message"), [
    ({"model.pt": b"x", "model.onnx": b"x"}, r"several model files \(model.pt, model.onnx\)"),
    ({"labels.txt": "a\n"}, "has no model file"),
    ({"model.pt2": b"x", "config.toml": 'model = "resnet50"\n'}, "both say what to serve"),
    ({"config.toml": 'model = "resnet50"\nport = 9\n'}, "unknown key.*port"),
    ({"config.toml": 'model = "resnet50"\nmax_batch_size = 0\n'}, "MAX_BATCH_SIZE"),
    ({"config.toml": "model = \n"}, "config.toml"),
])  # fmt: skip
def test_a_bad_folder_names_the_model_and_what_is_wrong(
    tmp_path: Path, files: dict, message: str
) -> None:
    _folder(tmp_path, "broken", files)
    with pytest.raises(ModelLoadError, match=message) as error:
        model_specs(make_settings(model_repository=tmp_path))
    assert "broken" in str(error.value)


def test_an_empty_or_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model folders"):
        model_specs(make_settings(model_repository=tmp_path))
    with pytest.raises(ModelLoadError, match="no such folder"):
        model_specs(make_settings(model_repository=tmp_path / "absent"))


def test_a_folder_name_must_be_a_valid_model_name(tmp_path: Path) -> None:
    _folder(tmp_path, "bad name", {"model.pt": b"x"})
    with pytest.raises(ModelLoadError, match="model's name"):
        model_specs(make_settings(model_repository=tmp_path))


def test_without_a_repository_the_settings_name_one_model() -> None:
    (spec,) = model_specs(make_settings(model="mobilenet_v2"))
    assert spec.name == "mobilenet_v2"
    assert model_specs(make_settings(model_name="cats"))[0].name == "cats"


def test_the_default_model() -> None:
    assert default_model(make_settings(), ["only"]) == "only"
    assert default_model(make_settings(default_model="b"), ["a", "b"]) == "b"
    with pytest.raises(ModelLoadError, match=r"several models are served \(a, b\).*DEFAULT_MODEL"):
        default_model(make_settings(), ["a", "b"])
    with pytest.raises(ModelLoadError, match="DEFAULT_MODEL=c is not served"):
        default_model(make_settings(default_model="c"), ["a", "b"])


@pytest.mark.parametrize("path", ["../secrets.pth", "weights/../../other/best.pth"])
def test_a_relative_path_that_leaves_the_models_folder_is_refused(
    tmp_path: Path, path: str
) -> None:
    _folder(tmp_path, "flowers", {"config.toml": f'model = "resnet18"\nweights = "{path}"\n'})
    with pytest.raises(ModelConfigError, match=r"weights = .* leads out of the model's folder"):
        model_specs(make_settings(model_repository=tmp_path))


def test_a_link_out_of_the_models_folder_is_refused_too(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = _folder(
        tmp_path / "repo",
        "flowers",
        {"config.toml": 'model = "resnet18"\nweights = "link/best.pth"\n'},
    )
    (folder / "link").symlink_to(outside)
    with pytest.raises(ModelConfigError, match="leads out of the model's folder"):
        model_specs(make_settings(model_repository=tmp_path / "repo"))


def test_an_absolute_path_stays_allowed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared" / "best.pth"
    _folder(
        tmp_path / "repo",
        "flowers",
        {"config.toml": f'model = "resnet18"\nweights = "{elsewhere}"\n'},
    )
    (spec,) = model_specs(make_settings(model_repository=tmp_path / "repo"))
    assert spec.settings.weights == str(elsewhere)


def _versioned(root: Path, versions: dict[str, dict[str, str | bytes]], config: str = "") -> Path:
    folder = _folder(root, "net", {"config.toml": config, "labels.txt": "a\nb\n"})
    for version, files in versions.items():
        _folder(folder, version, files)
    return folder


def test_numbered_folders_are_versions_and_the_newest_is_served_by_default(
    tmp_path: Path,
) -> None:
    folder = _versioned(tmp_path, {"1": {"model.onnx": b"x"}, "2": {"model.pt2": b"x"}})
    _folder(folder, "calibration", {"a.jpg": b"x"})  # not a number: not a version
    (spec,) = model_specs(make_settings(model_repository=tmp_path))
    assert (spec.name, spec.version) == ("net", 2)
    assert spec.settings.model == str(folder / "2" / "model.pt2")
    assert spec.settings.labels == folder / "labels.txt"  # the model's, beside the versions


def test_the_policy_picks_the_versions_each_with_its_own_files(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"model.onnx": b"x"}
    folder = _versioned(
        tmp_path,
        {"1": files, "2": {**files, "labels.txt": "c\nd\n"}, "3": files, "10": files},
        "version_policy = { latest = 2 }\nmax_batch_size = 4\n",
    )
    specs = model_specs(make_settings(model_repository=tmp_path))
    assert [spec.version for spec in specs] == [3, 10]  # numbers, not names, order them
    assert {spec.settings.max_batch_size for spec in specs} == {4}
    (folder / "config.toml").write_text("version_policy = { specific = [2, 1] }\n")
    one, two = model_specs(make_settings(model_repository=tmp_path))
    assert (one.version, one.settings.labels) == (1, folder / "labels.txt")
    assert (two.version, two.settings.labels) == (2, folder / "2" / "labels.txt")
    (folder / "config.toml").write_text("version_policy = { all = true }\n")
    assert len(model_specs(make_settings(model_repository=tmp_path))) == 4


@pytest.mark.parametrize(
    ("versions", "config", "message"),
    [
        ({"1": {}}, "", "version 1: .* has no model file"),
        ({"1": {"model.onnx": b"x", "model.pt": b"x"}}, "", "several model files"),
        ({"1": {"model.onnx": b"x"}}, "version_policy = { specific = [1, 4] }", "4, which have no"),
        ({"1": {"model.onnx": b"x"}}, 'model = "resnet50"', "version folders and a model of its"),
        ({"1": {"model.onnx": b"x"}}, "version_policy = { newest = 1 }", "write one of"),
        ({"1": {"model.onnx": b"x"}}, "version_policy = { latest = 0 }", "a count of at least"),
    ],
)
def test_a_bad_version_or_policy_names_the_model_and_what_is_wrong(
    tmp_path: Path, versions: dict[str, dict[str, str | bytes]], config: str, message: str
) -> None:
    _versioned(tmp_path, versions, config)
    with pytest.raises(ModelConfigError, match=message):
        model_specs(make_settings(model_repository=tmp_path))


def test_the_first_layout_is_version_1(tmp_path: Path) -> None:
    _folder(tmp_path, "net", {"model.onnx": b"x"})
    (spec,) = model_specs(make_settings(model_repository=tmp_path))
    assert spec.version == 1
    (tmp_path / "net" / "config.toml").write_text("version_policy = { specific = [2] }\n")
    with pytest.raises(ModelConfigError, match="version"):
        model_specs(make_settings(model_repository=tmp_path))


def test_a_mounted_folder_of_one_file_serves_it_with_its_labels(tmp_path: Path) -> None:
    """KServe's storage initializer copies a single-file storageUri into /mnt/models."""
    _folder(tmp_path, "mnt", {"resnet.onnx": b"x", "labels.txt": "a\nb\n"})
    (spec,) = model_specs(make_settings(model_dir=tmp_path / "mnt"))
    assert (spec.name, spec.version) == ("resnet", 1)
    assert spec.settings.model == str(tmp_path / "mnt" / "resnet.onnx")
    assert spec.settings.labels == tmp_path / "mnt" / "labels.txt"
    (named,) = model_specs(make_settings(model_dir=tmp_path / "mnt", model_name="classifier"))
    assert named.name == "classifier"


def test_a_mounted_folder_of_one_model_is_served_under_the_model_name(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    _folder(mnt, "1", {"model.onnx": b"x"})
    _folder(mnt, "2", {"model.pt2": b"x", "labels.txt": "v2\n"})
    specs = model_specs(make_settings(model_dir=mnt, model_name="isvc"))
    assert [(s.name, s.version) for s in specs] == [("isvc", 2)]  # the default policy: latest
    assert specs[0].settings.labels == mnt / "2" / "labels.txt"
    _folder(tmp_path, "flat", {"model.ts": b"x"})
    (flat,) = model_specs(make_settings(model_dir=tmp_path / "flat"))
    assert (flat.name, flat.settings.model) == ("model", str(tmp_path / "flat" / "model.ts"))


def test_a_mounted_repository_serves_every_model_folder(tmp_path: Path) -> None:
    _folder(tmp_path / "mnt", "a", {"model.onnx": b"x"})
    _folder(tmp_path / "mnt", "b", {"config.toml": 'model = "resnet18"\n'})
    specs = model_specs(make_settings(model_dir=tmp_path / "mnt"))
    assert [spec.name for spec in specs] == ["a", "b"]
    assert specs[0].settings.model_repository == tmp_path / "mnt"


def test_a_mounted_folder_with_two_files_or_none_is_a_clear_error(tmp_path: Path) -> None:
    _folder(tmp_path, "two", {"a.onnx": b"x", "b.onnx": b"x"})
    with pytest.raises(ModelConfigError, match="several model files"):
        model_specs(make_settings(model_dir=tmp_path / "two"))
    with pytest.raises(ModelConfigError, match="no such folder"):
        model_specs(make_settings(model_dir=tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelConfigError, match="has no model folders"):
        model_specs(make_settings(model_dir=tmp_path / "empty"))


def test_an_openvino_ir_is_one_model_file_with_its_weights_beside_it(tmp_path: Path) -> None:
    """Its .bin is no second model: a mounted IR is served under its stem; a folder, as model."""
    _folder(tmp_path, "mnt", {"resnet.xml": b"<net/>", "resnet.bin": b"w"})
    (spec,) = model_specs(make_settings(model_dir=tmp_path / "mnt"))
    assert (spec.name, spec.settings.model) == ("resnet", str(tmp_path / "mnt" / "resnet.xml"))
    _folder(tmp_path / "repo", "net", {"model.xml": b"<net/>", "model.bin": b"w"})
    (folder,) = model_specs(make_settings(model_repository=tmp_path / "repo"))
    assert folder.settings.model == str(tmp_path / "repo" / "net" / "model.xml")
