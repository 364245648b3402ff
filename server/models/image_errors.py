"""Why an upload cannot become a model input: raised by preprocessing, answered by errors.py.

A module of its own, free of Pillow and torch, so the web layer can map these
errors without importing the image stack.
"""

from __future__ import annotations


class ImageError(Exception):
    """The upload cannot be turned into a model input."""


class InvalidImageError(ImageError):
    """The bytes are not a decodable image (corrupt, truncated, not an image)."""


class UnsupportedImageFormatError(ImageError):
    """The image is decodable but its format or mode is not served."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed; refused from its header, before decoding."""
