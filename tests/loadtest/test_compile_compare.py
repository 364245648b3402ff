"""The compile comparison's bookkeeping, with the cheap ``eager`` backend in place of inductor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loadtest.compile_compare import Variant, measure, table

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow


class _Recorder(nn.Module):
    """A tiny classifier that remembers the batch shapes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(int(x.shape[0]))
        return self.conv(x).mean(dim=(2, 3))


def test_static_variant_pads_to_buckets_and_times_every_real_size() -> None:
    module = _Recorder().eval()
    variant = measure(module, 8, 5, dynamic=False, min_s=0.0, backend="eager")
    assert variant.name == "static, padded"
    assert sorted(variant.images_per_s) == [1, 2, 3, 4, 5]
    assert all(rate > 0 for rate in variant.images_per_s.values())
    assert set(module.seen) <= {1, 2, 4, 5}


def test_dynamic_variant_runs_real_sizes_unpadded() -> None:
    module = _Recorder().eval()
    measure(module, 8, 3, dynamic=True, min_s=0.0, backend="eager")
    assert {1, 2, 3} <= set(module.seen)


def test_table_has_one_row_per_variant_and_a_column_per_size() -> None:
    rows = table([Variant("a", 1.0, {1: 2.0, 2: 3.0}), Variant("b", 4.0, {1: 5.0, 2: 6.0})])
    lines = rows.splitlines()
    assert lines[0] == "| variant | compile + warm-up | bs 1 | bs 2 |"
    assert lines[2] == "| a | 1 s | 2.0 | 3.0 |"
    assert lines[3] == "| b | 4 s | 5.0 | 6.0 |"
