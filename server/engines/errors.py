"""Why an engine cannot be built; each message says what to do. Light: no engine imports."""

from __future__ import annotations


class CalibrationError(Exception):
    """The int8 calibration images cannot be used."""


class Int8FidelityError(Exception):
    """int8 disagrees with fp32 too often on the held-out photos."""
