"""A deterministic test engine: the engine contract without any network.

Its answer is derived from the input: the image's mean pixel picks the most
probable class, so different photos get different answers and the same photo
always the same one. The model it serves is described as the real one would be
(name, ImageNet labels and preprocessing from torchvision's registry entry) but
no weights are built or loaded, so a server starts in well under a second.

Tests about HTTP, the protocol, auth, limits, batching and shutdown use it
(``create_app(settings, preparer=prepare_test_engine)``); tests about the model
itself (engines, preprocessing parity, int8, model files, fidelity) load real ones.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from server.config import Settings
from server.engines import MAX_TOP_K, BuiltEngine, ModelInput, Row
from server.engines.contract import rows_from_logits
from server.models import loading, preprocess
from server.models.plan import RuntimePlan
from server.models.sources import served_name
from server.models.torchvision_models import LoadedModel, resolve_weights, weights_preprocessing
from server.service.preparation import Prepared


class MeanPixelEngine:
    """Class scores that peak at the class the batch item's mean pixel points to.

    Tests steer it with events, not sleeps: clear ``gate`` to hold every forward
    pass, acquire ``started`` to know one has begun, set ``fail_next`` to make the
    next one raise (or ``fail_above`` every batch larger than that); ``batch_sizes``
    records each batch.
    """

    name = "test"
    version = "mean-pixel 1"

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.precision = "fp32"
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Semaphore(0)
        self.batch_sizes: list[int] = []
        #: Each batch's ``alone`` flag, in order.
        self.alone: list[bool] = []
        self.fail_next: Exception | None = None
        #: Batches larger than this raise ``failure`` (out of memory, say); None: never.
        self.fail_above: int | None = None
        self.failure: Exception = RuntimeError("unset")
        #: torch's thread count in the inference thread, at each forward pass.
        self.threads_seen: list[int] = []

    def run(self, batch: Sequence[ModelInput], *, alone: bool = False) -> list[Row]:
        """One row per item, ranked; the most probable class follows the mean normalised pixel.

        A crop is normalised as a real engine's graph would, so an upload and its
        PIXELS tensor get the same answer.
        """
        began = time.perf_counter()
        self.batch_sizes.append(len(batch))
        self.alone.append(alone)
        self.started.release()
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        if self.fail_above is not None and len(batch) > self.fail_above:
            raise self.failure
        self.threads_seen.append(torch.get_num_threads())
        classes = self.model.num_classes
        means = torch.stack([self._normalised(item).float().mean() for item in batch])
        # Normalised pixels lie in about [-2.2, 2.7]; the sigmoid spreads them over the classes.
        peaks = torch.sigmoid(means) * (classes - 1)
        distance = (torch.arange(classes).unsqueeze(0) - peaks.unsqueeze(1)).abs()
        scores = (-distance).numpy()
        return rows_from_logits(scores, len(batch), MAX_TOP_K, time.perf_counter() - began)

    def _normalised(self, item: ModelInput) -> torch.Tensor:
        if isinstance(item, np.ndarray):
            return preprocess.normalise(item, self.model.preprocessing)
        return item

    def warm_up(self, max_batch_size: int) -> None:
        """Nothing to compile; the contract asks only that it returns."""


def describe_without_weights(settings: Settings) -> LoadedModel:
    """The model ``settings`` name, described from torchvision's registry, with no module."""
    choice = resolve_weights(settings.model, "random")
    spec = loading.configured_preprocessing(settings, weights_preprocessing(choice.entry))
    categories = tuple(choice.entry.meta["categories"])
    model = LoadedModel(None, served_name(settings), categories, spec)
    return dataclasses.replace(model, output=settings.output)


class EngineKeeper:
    """A :data:`~server.service.preparation.Preparer` of :class:`MeanPixelEngine` s.

    It keeps each engine it built by model name, for the test to steer.
    """

    def __init__(self) -> None:
        self.built: dict[str, MeanPixelEngine] = {}

    def __call__(self, settings: Settings, plan: RuntimePlan) -> Prepared:
        model = describe_without_weights(settings)
        engine = self.built[model.name] = MeanPixelEngine(model)
        return Prepared(model, BuiltEngine(engine))
