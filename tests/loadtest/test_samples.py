"""The shared hostile uploads are what they claim to be."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from loadtest.samples import pixel_bomb, truncated
from tests.conftest import photo

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


def test_the_pixel_bomb_is_small_on_the_wire_and_huge_in_pixels() -> None:
    data = pixel_bomb(9_000)
    assert len(data) < 100_000
    assert Image.open(io.BytesIO(data)).size == (9_000, 9_000)


def test_a_truncated_photo_cannot_be_decoded() -> None:
    data = truncated(photo("cat.jpg"))
    assert len(data) == len(photo("cat.jpg")) // 2
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(data)).load()
