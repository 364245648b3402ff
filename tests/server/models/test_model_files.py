"""Reading TorchScript, torch.export, ONNX and OpenVINO IR files, and refusing what is not one."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from loadtest.exports import exported_with_fixed_batch
from server.models.errors import ModelLoadError
from server.models.loading import load_model
from server.models.model_files import read_model_file
from server.models.sources import source_of
from tests.conftest import make_settings, tiny_classifier

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("kind", "source"),
    [("ts", "torchscript"), ("pt2", "exported"), ("onnx", "onnx"), ("xml", "openvino")],
)
def test_each_file_kind_is_read_as_its_source(
    tiny_files: dict[str, Path], kind: str, source: str
) -> None:
    file = read_model_file(tiny_files[kind])
    assert file.source == source
    if source not in ("onnx", "openvino"):
        assert file.module is not None
        with torch.inference_mode():
            assert file.module(torch.zeros(3, 3, 224, 224)).shape == (3, 12)
    if source == "exported":
        assert file.fixed_batch is None  # exported with a dynamic batch
        assert file.fixed_size == (224, 224)
    if source in ("onnx", "openvino"):
        assert file.module is None  # OpenVINO runs it as it is
        assert file.fixed_size == (224, 224)
        assert file.fixed_batch is None


def test_a_pt_that_is_torchscript_is_read(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(tiny_files["ts"].read_bytes())
    assert read_model_file(path).source == "torchscript"


def test_a_pickled_module_is_refused_without_being_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_Bomb(), path)  # unpickling it would create a marker file
    with pytest.raises(ModelLoadError, match="pickled module") as error:
        read_model_file(path)
    assert "torch.jit.script" in str(error.value)
    assert "torch.export" in str(error.value)
    assert not (tmp_path / "unpickled").exists()


class _Bomb(torch.nn.Module):
    """A module whose unpickling leaves a trace: proof that the server never unpickled it."""

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (Path(_marker_dir[0]) / "unpickled",))


_marker_dir: list[str] = []


@pytest.fixture(autouse=True)
def _marker(tmp_path: Path) -> None:
    _marker_dir[:] = [str(tmp_path)]


def test_a_state_dict_in_a_pt_names_the_settings_that_serve_it(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_classifier().state_dict(), path)
    with pytest.raises(ModelLoadError, match="state_dict") as error:
        read_model_file(path)
    assert f"BATCHSERVE_WEIGHTS={path}" in str(error.value)


@pytest.mark.parametrize("kind", ["ts", "pt", "pt2", "onnx", "xml"])
def test_a_corrupt_file_is_a_load_error_naming_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"model.{kind}"
    path.write_bytes(b"\x00garbage" * 100)
    path.with_suffix(".bin").write_bytes(b"\x00garbage" * 100)  # an IR's weights
    with pytest.raises(ModelLoadError, match=str(path)):
        read_model_file(path)


def test_a_truncated_archive_is_a_load_error(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    data = tiny_files["pt2"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"not a torch\.export archive"):
        read_model_file(path)


def test_an_unknown_extension_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"x")
    with pytest.raises(
        ModelLoadError, match=r"unknown model file type '\.h5'.*\.ts, \.pt, \.pt2, \.onnx, \.xml"
    ):
        source_of(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        source_of(tmp_path / "absent.pt2")


def test_a_fixed_batch_export_is_detected(tmp_path: Path) -> None:
    path = exported_with_fixed_batch(tiny_classifier(), tmp_path / "model.pt2", 224, batch=1)
    assert read_model_file(path).fixed_batch == 1


def test_pickle_is_really_what_torch_save_wrote(tmp_path: Path) -> None:
    """The refusal test above is meaningful only if torch.load(weights_only=False) would run it."""
    path = tmp_path / "model.pt"
    torch.save(_Bomb(), path)
    with pytest.raises((pickle.UnpicklingError, AttributeError, TypeError, RuntimeError)):
        torch.load(path, weights_only=True)
    torch.load(path, weights_only=False)
    assert (tmp_path / "unpickled").exists()


def test_an_ir_is_one_model_with_its_weights_file(
    tiny_files: dict[str, Path], tmp_path: Path
) -> None:
    """Its identity (cache key, /info's file_sha256) covers model.bin: new weights, new model."""
    for name in ("model.xml", "model.bin"):
        (tmp_path / name).write_bytes(tiny_files["xml"].with_name(name).read_bytes())
    settings = make_settings(model=str(tmp_path / "model.xml"), engine="openvino")
    before = load_model(settings)
    assert (before.source, before.num_classes) == ("openvino", 12)
    weights = bytearray((tmp_path / "model.bin").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "model.bin").write_bytes(bytes(weights))
    assert load_model(settings).sha256 != before.sha256
    (tmp_path / "model.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"needs its weights beside it, model\.bin"):
        read_model_file(tmp_path / "model.xml")
