"""Engine preparation: a model loaded and its engine built (converted, quantized, compiled).

``batchserve serve`` prepares every model before uvicorn starts; a unit given
no prepared engine prepares its own when it starts, through its preparer (a
test hands in one that builds no network).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from server.config import Settings
from server.engines import BuiltEngine, build_engine
from server.models import loading
from server.models.plan import RuntimePlan
from server.models.torchvision_models import LoadedModel
from server.service.compute import lower_thread_priority


@dataclass(frozen=True, slots=True)
class Prepared:
    """A model and its engine built before the server starts (``batchserve serve`` does this)."""

    model: LoadedModel
    built: BuiltEngine


def prepare(settings: Settings, plan: RuntimePlan) -> Prepared:
    """Load the model and build its engine (conversion, int8, compilation): blocking, seconds."""
    model = loading.load_model(settings)
    return Prepared(model, build_engine(model, plan, settings))


#: What prepares a model for a unit: :func:`prepare`, unless a test hands in its own.
Preparer = Callable[[Settings, RuntimePlan], Prepared]


def prepare_in_compute_thread(settings: Settings, plan: RuntimePlan) -> Prepared:
    """:func:`prepare` on a thread of lowered priority, which it hands down.

    OpenVINO starts its own thread pool while the model compiles; those threads
    run every later forward pass and inherit the priority of the thread that
    created them. Built from the main thread, which becomes the event loop,
    they would compete with it as equals and /health would wait behind them.
    A daemon thread: a Ctrl-C in the main thread never waits for it.
    """
    result: Future[Prepared] = Future()

    def run() -> None:
        lower_thread_priority()
        try:
            result.set_result(prepare(settings, plan))
        except BaseException as exc:  # handed to the caller, who decides
            result.set_exception(exc)

    threading.Thread(target=run, name="prepare", daemon=True).start()
    return result.result()
