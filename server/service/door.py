"""What the web layer may know of a served model: a frozen description, its limits, and the
one domain error for a model that cannot take work.

Nothing here imports torch, Pillow or NumPy: the web layer reads these values and
never the unit's model, batcher or metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a value to read; its module (Pillow, torch) is not imported here
    from server.models.preprocess import PreprocessSpec


class NotReadyError(Exception):
    """The model cannot take work now (loading, warming up, failed or draining); says why."""


class ModelNotServedError(Exception):
    """An unload named a model that is not served."""


class ModelLoadFailedError(Exception):
    """A load failed; the message says why (the old versions, if any, still serve)."""


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """A loaded model and how it runs; fixed once the model is loaded."""

    name: str
    #: The version this unit serves (a repository's numbered folder; 1 otherwise).
    version: int
    #: ``torchvision``, ``torchscript``, ``exported``, ``onnx`` or ``openvino`` (an IR).
    source: str
    file: str | None
    file_sha256: str | None
    labels_source: str
    output: str
    weights: str
    random_weights: bool
    labels: tuple[str, ...]
    preprocessing: PreprocessSpec
    #: What transparent pixels are composited onto (RGB).
    background: tuple[int, int, int]
    engine: str
    engine_version: str
    device: str
    precision: str
    compiled: bool
    cpu: str
    cpu_flags: tuple[str, ...]
    cores: int
    workers: int
    threads_per_worker: int
    torch_threads: int
    decode_threads: int
    streams: str
    solo_threads: int | None
    max_batch_size: int
    max_batch_wait_ms: float
    max_queue_size: int
    fidelity: dict[str, float] | None

    @property
    def num_classes(self) -> int:
        """How many classes the model scores."""
        return len(self.labels)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """The model's input: channels, height, width."""
        crop = self.preprocessing.crop_size
        return (3, crop, crop)


@dataclass(frozen=True, slots=True)
class ServingLimits:
    """What one request to this model may carry and how long it may take."""

    max_upload_bytes: int
    max_request_bytes: int
    max_upload_mb: float
    max_request_mb: float
    max_files: int
    max_image_pixels: int
    request_timeout_s: float
    body_timeout_s: float
    formats: tuple[str, ...]
