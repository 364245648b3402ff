"""What every engine promises: a batch of images in, one ranked row per image out.

An engine is built once for a model and a runtime plan, warmed up at every
batch size the batcher can form, then called from the inference workers'
threads, each call one batched forward pass. Rows never include padding.

An item is either a decoded image's crop (``crop x crop x 3`` uint8 RGB, what
the decode pool hands over; the engine scales and normalises it inside its
own graph) or the model's float input itself (``3 x crop x crop``, already
normalised, as the Open Inference Protocol's PIXELS tensor sends it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from server.config import MAX_TOP_K
from server.models.torchvision_models import LoadedModel

__all__ = [
    "MAX_TOP_K",
    "BuiltEngine",
    "Crop",
    "Engine",
    "ModelInput",
    "Row",
    "logits_by_kind",
    "rows_from_logits",
]

#: A decoded image, resized and cropped: ``crop x crop x 3`` uint8 RGB.
Crop: TypeAlias = npt.NDArray[np.uint8]
#: What a batch holds: crops, or the model's normalised ``3 x crop x crop`` float input.
ModelInput: TypeAlias = Crop | torch.Tensor


@dataclass(frozen=True, slots=True)
class Row:
    """One item's answer: (class index, probability) pairs, most probable first."""

    top: tuple[tuple[int, float], ...]
    batch_size: int
    inference_s: float
    #: Every class's probability: a float32 NumPy array (a row of the batch's, no copy).
    probabilities: npt.NDArray[np.float32]
    #: The batch's softmax and top-k, after the forward pass (the statistics' compute_output).
    output_s: float = 0.0


class Engine(Protocol):
    """A model ready to run batches: the contract the service and the batcher rely on."""

    #: ``torch`` or ``openvino``.
    name: str
    #: The model it runs (labels, preprocessing).
    model: LoadedModel
    #: What the forward pass computes in: ``fp32``, ``bf16``, ``fp16`` or ``int8``.
    precision: str

    @property
    def version(self) -> str:
        """The engine library's version, for /info and ``batchserve_model_info``."""
        ...

    def run(self, batch: Sequence[ModelInput], *, alone: bool = False) -> list[Row]:
        """Classify crops or normalised tensors (mixed or not); one row per item, in order.

        ``alone``: no other batch is in flight or queued, so an engine with a
        latency layout (OpenVINO's streams by load) may give this one every core.
        """
        ...

    def warm_up(self, max_batch_size: int) -> None:
        """Run every batch size the batcher can form once (crops), before the server is ready."""
        ...


@dataclass(frozen=True, slots=True)
class BuiltEngine:
    """An engine ready to warm up; for int8, how it compared with fp32 and its cache entry."""

    engine: Engine
    fidelity: dict[str, float] | None = None
    cache_entry: Path | None = None


def logits_by_kind(
    batch: Sequence[ModelInput],
    crops: Callable[[Sequence[Crop]], npt.NDArray[np.float32]],
    tensors: Callable[[Sequence[torch.Tensor]], npt.NDArray[np.float32]],
) -> npt.NDArray[np.float32]:
    """One ``batch x classes`` array from a batch that may mix crops and normalised tensors.

    Each kind has its own graph, so a mixed batch (an image upload and a PIXELS
    request collected together) runs as one pass per kind, rows put back in order.
    """
    crop_items = [item for item in batch if isinstance(item, np.ndarray)]
    tensor_items = [item for item in batch if isinstance(item, torch.Tensor)]
    if not tensor_items:
        return crops(crop_items)
    if not crop_items:
        return tensors(tensor_items)
    is_crop = np.array([isinstance(item, np.ndarray) for item in batch])
    crop_rows, tensor_rows = crops(crop_items), tensors(tensor_items)
    logits = np.empty((len(batch), crop_rows.shape[1]), dtype=np.float32)
    logits[is_crop], logits[~is_crop] = crop_rows, tensor_rows
    return logits


def rows_from_logits(
    logits: npt.NDArray[np.float32], batch_size: int, top_k: int, elapsed_s: float,
    *, softmax: bool = True,
) -> list[Row]:  # fmt: skip
    """Softmax and top-k of a ``batch x classes`` host array, in NumPy.

    NumPy, not torch: on the OpenVINO path a torch call would enter torch's
    OpenMP team while OpenVINO's threads and the decode pool hold the cores.
    ``softmax=False`` for a model whose output already is probabilities.
    """
    started = time.perf_counter()
    scores = np.asarray(logits, dtype=np.float32)
    probabilities = _softmax(scores) if softmax else scores
    # The k largest in any order, then those k sorted (ties keep the lower index first).
    top = np.argpartition(-probabilities, top_k - 1, axis=1)[:, :top_k]
    values = np.take_along_axis(probabilities, top, axis=1)
    order = np.lexsort((top, -values), axis=1)
    top, values = np.take_along_axis(top, order, 1), np.take_along_axis(values, order, 1)
    indices, chances = top.tolist(), values.astype(np.float64).tolist()
    output_s = time.perf_counter() - started
    return [
        Row(tuple(zip(indices[n], chances[n], strict=True)),
            batch_size, elapsed_s, probabilities[n], output_s)
        for n in range(scores.shape[0])
    ]  # fmt: skip


def _softmax(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float32] = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities
