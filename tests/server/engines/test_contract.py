"""The engine contract's post-processing: softmax and top-k of a batch, in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.engines.contract import logits_by_kind, rows_from_logits


def _logits(rows: int, classes: int) -> np.ndarray:
    return np.random.default_rng(rows * classes).normal(0, 3, (rows, classes)).astype(np.float32)


@pytest.mark.parametrize(("rows", "classes", "k"), [(1, 1000, 20), (5, 1000, 5), (3, 7, 7)])
def test_the_rows_are_torchs_softmax_and_top_k(rows: int, classes: int, k: int) -> None:
    logits = _logits(rows, classes)
    expected = torch.from_numpy(logits).softmax(dim=1)
    values, indices = expected.topk(k, dim=1)
    answer = rows_from_logits(logits, rows, k, 0.25)
    assert len(answer) == rows
    for n, row in enumerate(answer):
        assert [i for i, _ in row.top] == indices[n].tolist()
        assert [p for _, p in row.top] == pytest.approx(values[n].tolist(), abs=1e-6)
        assert np.allclose(row.probabilities, expected[n].numpy(), atol=1e-6)
        assert row.probabilities.dtype == np.float32
        assert (row.batch_size, row.inference_s) == (rows, 0.25)


def test_probabilities_are_not_softmaxed_again() -> None:
    probabilities = np.array([[0.1, 0.6, 0.3]], dtype=np.float32)
    (row,) = rows_from_logits(probabilities, 1, 3, 0.0, softmax=False)
    assert [i for i, _ in row.top] == [1, 2, 0]
    assert [p for _, p in row.top] == pytest.approx([0.6, 0.3, 0.1])
    assert np.array_equal(row.probabilities, probabilities[0])


def test_ties_rank_the_lower_class_first_and_huge_logits_stay_finite() -> None:
    (tied,) = rows_from_logits(np.zeros((1, 10), dtype=np.float32), 1, 4, 0.0)
    assert [i for i, _ in tied.top] == [0, 1, 2, 3]
    (huge,) = rows_from_logits(np.array([[1e30, 0.0, -1e30]], dtype=np.float32), 1, 2, 0.0)
    assert huge.top == ((0, 1.0), (1, 0.0))


def _by_kind(marker: float):
    """A fake graph: each item's row is ``marker`` and the item's first value."""

    def run(items) -> np.ndarray:
        return np.array([[marker, float(np.asarray(item).flat[0])] for item in items], np.float32)

    return run


def test_a_mixed_batch_runs_each_kind_once_and_keeps_the_order() -> None:
    crop = lambda v: np.full((2, 2, 3), v, dtype=np.uint8)  # noqa: E731
    tensor = lambda v: torch.full((3, 2, 2), float(v))  # noqa: E731
    calls: list[int] = []
    crops, tensors = _by_kind(1.0), _by_kind(2.0)

    def counted(graph):
        return lambda items: calls.append(len(items)) or graph(items)

    batch = [crop(5), tensor(6), tensor(7), crop(8)]
    logits = logits_by_kind(batch, counted(crops), counted(tensors))
    assert logits.tolist() == [[1, 5], [2, 6], [2, 7], [1, 8]]
    assert calls == [2, 2]
    calls.clear()
    assert logits_by_kind([crop(1), crop(2)], counted(crops), counted(tensors)).shape == (2, 2)
    assert logits_by_kind([tensor(3)], counted(crops), counted(tensors)).tolist() == [[2, 3]]
    assert calls == [2, 1]
