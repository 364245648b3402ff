"""Labels files: text or JSON, counted against the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.models.errors import ModelLoadError
from server.models.labels import check_count, read_labels


def test_one_label_per_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("daisy\n dandelion \nrose\n")
    assert read_labels(path) == ("daisy", "dandelion", "rose")


def test_a_json_list(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text('["a", "b c"]')
    assert read_labels(path) == ("a", "b c")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("l.txt", "a\n\nb\n", "empty line 2"),
    ("l.json", '{"a": 1}', "list of strings"),
    ("l.json", "[1, 2]", "list of strings"),
    ("l.json", "[", "invalid JSON"),
])  # fmt: skip
def test_bad_files_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ModelLoadError, match=message):
        read_labels(path)


def test_a_count_mismatch_names_both_numbers(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="has 3 labels but the model outputs 12 classes"):
        check_count(("a", "b", "c"), 12, tmp_path / "labels.txt")
