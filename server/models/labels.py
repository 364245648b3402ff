"""Class labels: a text file (one label per line) or a JSON list, checked against the model."""

from __future__ import annotations

import json
from pathlib import Path

from server.models.errors import ModelLoadError


def read_labels(path: Path) -> tuple[str, ...]:
    """The labels in ``path``: a JSON list of strings, or one label per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"BATCHSERVE_LABELS={path}: cannot read it: {exc}") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        return _json_labels(path, text)
    lines = [line.strip() for line in text.rstrip("\n").splitlines()]
    if not lines or "" in lines:
        raise ModelLoadError(
            f"BATCHSERVE_LABELS={path}: empty line {lines.index('') + 1 if lines else 1}; "
            "each line must hold one label"
        )
    return tuple(lines)


def _json_labels(path: Path, text: str) -> tuple[str, ...]:
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"BATCHSERVE_LABELS={path}: invalid JSON: {exc}") from exc
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ModelLoadError(f"BATCHSERVE_LABELS={path}: the JSON must be a list of strings")
    return tuple(labels)


def check_count(labels: tuple[str, ...], classes: int, path: Path) -> None:
    """Refuse labels whose number differs from the model's output width."""
    if len(labels) != classes:
        raise ModelLoadError(
            f"BATCHSERVE_LABELS={path} has {len(labels)} labels but the model outputs "
            f"{classes} classes: give one label per class, in the model's order"
        )
