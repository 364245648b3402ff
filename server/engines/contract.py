"""What every engine promises: a batch of preprocessed images in, one ranked row per image out.

An engine is built once for a model and a runtime plan, warmed up at every
batch size the batcher can form, then called from the inference workers'
threads, each call one batched forward pass. Rows never include padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from server.config import MAX_TOP_K
from server.models.torchvision_models import LoadedModel

__all__ = ["MAX_TOP_K", "BuiltEngine", "Engine", "Row", "rows_from_logits"]


@dataclass(frozen=True, slots=True)
class Row:
    """One item's answer: (class index, probability) pairs, most probable first."""

    top: tuple[tuple[int, float], ...]
    batch_size: int
    inference_s: float
    #: Every class's probability: a float32 NumPy array (a row of the batch's, no copy).
    probabilities: npt.NDArray[np.float32]


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

    def run(self, batch: Sequence[torch.Tensor]) -> list[Row]:
        """Classify preprocessed ``3 x H x W`` tensors; one row per item, in order."""
        ...

    def warm_up(self, max_batch_size: int) -> None:
        """Run every batch size the batcher can form once, before the server is ready."""
        ...


@dataclass(frozen=True, slots=True)
class BuiltEngine:
    """An engine ready to warm up; for int8, how it compared with fp32 and its cache entry."""

    engine: Engine
    fidelity: dict[str, float] | None = None
    cache_entry: Path | None = None


def rows_from_logits(
    logits: npt.NDArray[np.float32], batch_size: int, top_k: int, elapsed_s: float,
    *, softmax: bool = True,
) -> list[Row]:  # fmt: skip
    """Softmax and top-k of a ``batch x classes`` host array, in NumPy.

    NumPy, not torch: on the OpenVINO path a torch call would enter torch's
    OpenMP team while OpenVINO's threads and the decode pool hold the cores.
    ``softmax=False`` for a model whose output already is probabilities.
    """
    scores = np.asarray(logits, dtype=np.float32)
    probabilities = _softmax(scores) if softmax else scores
    # The k largest in any order, then those k sorted (ties keep the lower index first).
    top = np.argpartition(-probabilities, top_k - 1, axis=1)[:, :top_k]
    values = np.take_along_axis(probabilities, top, axis=1)
    order = np.lexsort((top, -values), axis=1)
    top, values = np.take_along_axis(top, order, 1), np.take_along_axis(values, order, 1)
    return [
        Row(tuple(zip(top[n].tolist(), values[n].astype(np.float64).tolist(), strict=True)),
            batch_size, elapsed_s, probabilities[n])
        for n in range(scores.shape[0])
    ]  # fmt: skip


def _softmax(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float32] = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities
