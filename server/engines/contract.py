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
    logits: torch.Tensor, batch_size: int, top_k: int, elapsed_s: float, *, softmax: bool = True
) -> list[Row]:
    """Softmax and top-k of a ``batch x classes`` tensor, copied to the host once per batch.

    ``softmax=False`` for a model whose output already is probabilities.
    """
    probabilities = logits.float().softmax(dim=1) if softmax else logits.float()
    values, indices = probabilities.topk(top_k, dim=1)
    pairs = torch.stack([indices.to(torch.float64), values.to(torch.float64)], dim=2)
    host, every = pairs.cpu().tolist(), probabilities.cpu().numpy()
    return [
        Row(tuple((int(i), p) for i, p in row), batch_size, elapsed_s, every[n])
        for n, row in enumerate(host)
    ]
