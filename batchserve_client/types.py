"""What the server answers, as typed values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Prediction:
    """One class of an answer."""

    index: int
    label: str
    probability: float


@dataclass(frozen=True, slots=True)
class Classification:
    """One image's answer: its top-k classes, most probable first."""

    predictions: tuple[Prediction, ...]
    model: str
    batch_size: int
    timing_ms: dict[str, float]
    request_id: str | None

    @property
    def top(self) -> Prediction:
        """The most probable class."""
        return self.predictions[0]


@dataclass(frozen=True, slots=True)
class ImageError:
    """Why the server could not classify one image of several (``invalid_image``, ...)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One served model, as ``GET /models`` lists it."""

    name: str
    ready: bool
    default: bool
    engine: str
    precision: str
    classes: int


def predictions(items: list[dict[str, Any]]) -> tuple[Prediction, ...]:
    """Prediction values from their JSON."""
    return tuple(
        Prediction(int(p["index"]), str(p["label"]), float(p["probability"])) for p in items
    )


def classification(body: dict[str, Any]) -> Classification:
    """A /predict answer from its JSON."""
    return Classification(
        predictions(body["predictions"]),
        str(body["model"]),
        int(body["batch_size"]),
        {k: float(v) for k, v in body["timing_ms"].items()},
        body.get("request_id"),
    )


def batch_results(body: dict[str, Any]) -> list[Classification | ImageError]:
    """A /predict/batch answer from its JSON: one entry per image, in order."""
    results: list[Classification | ImageError] = []
    for item in body["results"]:
        if "error" in item:
            results.append(ImageError(str(item["error"]["code"]), str(item["error"]["message"])))
            continue
        results.append(
            Classification(
                predictions(item["predictions"]),
                str(body["model"]),
                int(item["batch_size"]),
                {k: float(v) for k, v in body["timing_ms"].items()},
                body.get("request_id"),
            )
        )
    return results


def model_summaries(body: dict[str, Any]) -> list[ModelSummary]:
    """``GET /models`` from its JSON."""
    return [
        ModelSummary(
            str(m["name"]), bool(m["ready"]), bool(m["default"]), str(m["engine"]),
            str(m["precision"]), int(m["classes"]),
        )
        for m in body["models"]
    ]  # fmt: skip
