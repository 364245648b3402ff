"""Exit statuses: 2 for what the settings got wrong, 3 for a model that fails to load."""

from __future__ import annotations

import pytest

from server.cli.serve import EXIT_CONFIG, EXIT_MODEL
from server.cli.startup import STARTUP_ERRORS, exit_status
from server.engines.errors import CalibrationError, Int8FidelityError
from server.models.errors import ModelConfigError, ModelLoadError
from server.models.plan import DeviceError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ModelConfigError("unknown model 'resnet5'"), 2),
        (DeviceError("BATCHSERVE_DEVICE=cuda but no CUDA device is available"), 2),
        (CalibrationError("BATCHSERVE_CALIBRATION_DIR=x is not a directory"), 2),
        (ModelLoadError("x.onnx is not a readable ONNX model"), 3),
        (Int8FidelityError("int8 agrees with fp32 on 1 of 3 photos"), 3),
    ],
)
def test_each_startup_error_has_its_status(error: Exception, status: int) -> None:
    assert isinstance(error, STARTUP_ERRORS)
    assert exit_status(error) == status
    assert (EXIT_CONFIG, EXIT_MODEL) == (2, 3)
