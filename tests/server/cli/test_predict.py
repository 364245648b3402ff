"""``batchserve predict``: images in requests within the server's limits; top-k checked here."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from server.cli.predict import MAX_TOP_K, _top_k, chunks


def _images(tmp_path: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(b"x" * size)
        paths.append(path)
    return paths


def test_more_images_than_the_server_takes_go_in_several_requests(tmp_path: Path) -> None:
    images = _images(tmp_path, [10] * 7)
    groups = chunks(images, {"max_files": 3, "max_request_mb": 64})
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [p for g in groups for p in g] == images  # order kept


def test_requests_stay_within_the_servers_body_limit(tmp_path: Path) -> None:
    images = _images(tmp_path, [400_000, 400_000, 400_000])
    groups = chunks(images, {"max_files": 16, "max_request_mb": 1})
    assert [len(g) for g in groups] == [2, 1]


def test_an_image_over_the_limit_alone_still_goes_to_the_server_to_be_refused(
    tmp_path: Path,
) -> None:
    """The server answers that image's own error; the others are classified."""
    images = _images(tmp_path, [10, 3_000_000, 10])
    groups = chunks(images, {"max_files": 16, "max_request_mb": 1})
    assert [len(g) for g in groups] == [1, 1, 1]


@pytest.mark.parametrize("text", ["0", "21", "-1", "five", "2.5"])
def test_top_k_is_checked_before_anything_is_sent(text: str) -> None:
    with pytest.raises(
        argparse.ArgumentTypeError, match=rf"^must be a whole number from 1 to {MAX_TOP_K}$"
    ):
        _top_k(text)
    assert _top_k("20") == 20
