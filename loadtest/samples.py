"""Hostile uploads shared by the soak and the Locust users, made in memory."""

from __future__ import annotations

import io

from PIL import Image


def pixel_bomb(side: int = 12_000) -> bytes:
    """A 1-bit PNG of ``side`` x ``side`` pixels: a few kB that would decode to ``side``² bytes."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    """The first half of ``data``: a JPEG cut there cannot be decoded."""
    return data[: len(data) // 2]
