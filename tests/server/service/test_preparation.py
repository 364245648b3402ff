"""Engine preparation: a model loaded and its engine built, on a thread of its own."""

from __future__ import annotations

import pytest
import torch

from server.engines import MAX_TOP_K
from server.models.errors import ModelConfigError
from server.models.plan import resolve_plan
from server.service.preparation import prepare_in_compute_thread
from tests.conftest import make_settings


@pytest.mark.slow
def test_preparing_loads_the_model_and_builds_the_plans_engine() -> None:
    settings = make_settings(model="mobilenet_v3_small")
    prepared = prepare_in_compute_thread(settings, resolve_plan(settings))
    crop = prepared.model.preprocessing.crop_size
    (row,) = prepared.built.engine.run([torch.zeros(3, crop, crop)])
    assert prepared.model.name == "mobilenet_v3_small"
    assert prepared.built.engine.name == "torch"
    assert len(row.top) == MAX_TOP_K


def test_a_failure_on_the_preparing_thread_is_raised_in_the_caller() -> None:
    plan = resolve_plan(make_settings())
    with pytest.raises(ModelConfigError, match="unknown model 'no_such_net'"):
        prepare_in_compute_thread(make_settings(model="no_such_net"), plan)
